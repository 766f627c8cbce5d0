"""Fine-tuning jobs and datasets as the seed's routes show them (camelCase), and the
fine-tuning service's OpenAI-style errors in the management envelope."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from appliance.errors import ApiError
from appliance.management.errors import ManagementError
from appliance.management.key_view import iso
from appliance.management.wire import (
    DatasetLineError,
    DatasetView,
    FineTuningJobView,
    JobFailure,
    JobHyperparameters,
)
from appliance.state.datasets import StoredDataset
from appliance.state.fine_tuning import StoredJob

# A request field as the service names it (OpenAI's snake_case) and as the seed does.
_RENAMED = {"fine_tuning_job_id": "id"}
_NOT_FOUND = {
    "id": "NOT_FOUND",
    "fine_tuning_job_id": "FINE_TUNING_JOB_NOT_FOUND",
    "dataset_id": "DATASET_NOT_FOUND",
    "training_file": "FILE_NOT_FOUND",
    "validation_file": "FILE_NOT_FOUND",
    "file_id": "FILE_NOT_FOUND",
    "model": "MODEL_NOT_FOUND",
}
_CODES = {
    400: "VALIDATION_ERROR",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    413: "PAYLOAD_TOO_LARGE",
    429: "RATE_LIMITED",
}


def camel_field(param: str) -> str:
    """`hyperparameters.n_epochs` as the seed's body names it: `hyperparameters.nEpochs`."""
    if param in _RENAMED:
        return _RENAMED[param]

    def camel(part: str) -> str:
        head, *rest = part.split("_")
        return head + "".join(word[:1].upper() + word[1:] for word in rest)

    return ".".join(camel(part) for part in param.split("."))


def management_error(exc: ApiError, not_found: str | None = None) -> ManagementError:
    """The service's error with its status; `details.field` names the camelCase field and
    `details.reason` keeps the OpenAI code. A 404 is `not_found` if given."""
    code = _CODES.get(exc.status, "REQUEST_ERROR")
    if exc.status == 404:
        code = not_found or _NOT_FOUND.get(exc.param or "", "NOT_FOUND")
    details: dict[str, str] = {"reason": exc.code}
    if exc.param:
        details["field"] = camel_field(exc.param)
    return ManagementError(exc.status, code, exc.message, details)


@contextlib.contextmanager
def in_management_envelope(not_found: str | None = None) -> Iterator[None]:
    """Raise the service's OpenAI-style errors as management errors."""
    try:
        yield
    except ApiError as exc:
        if exc.status >= 500:
            raise
        raise management_error(exc, not_found) from None


def job_view(stored: StoredJob) -> FineTuningJobView:
    job, hyper = stored.job, stored.job.hyperparameters
    failure = job.error
    return FineTuningJobView(
        id=job.id,
        model=job.model,
        status=job.status,
        training_file=job.training_file,
        fine_tuned_model=job.fine_tuned_model,
        validation_file=job.validation_file,
        hyperparameters=JobHyperparameters(
            n_epochs=hyper.n_epochs,
            batch_size=hyper.batch_size,
            learning_rate_multiplier=hyper.learning_rate_multiplier,
        ),
        trained_tokens=job.trained_tokens,
        step=stored.step,
        total_steps=stored.total_steps,
        last_loss=stored.last_loss,
        error=None
        if failure is None
        else JobFailure(
            code=failure.code,
            message=failure.message,
            field=None if failure.param is None else camel_field(failure.param),
        ),
        suffix=job.user_provided_suffix,
        seed=job.seed,
        created_at=iso(job.created_at),
        finished_at=iso(job.finished_at),
        estimated_finish=iso(job.estimated_finish),
        metadata=job.metadata,
    )


def dataset_view(stored: StoredDataset) -> DatasetView:
    return DatasetView(
        id=stored.id,
        name=stored.name,
        file_id=stored.file_id,
        status=stored.status,
        model=stored.model,
        examples=stored.examples,
        tokens=stored.tokens,
        errors=[DatasetLineError(e.line, e.field, e.message) for e in stored.errors],
        created_at=iso(stored.created_at),
    )
