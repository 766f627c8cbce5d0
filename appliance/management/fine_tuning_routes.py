"""/v1/fine-tuning: the seed's view of fine-tuning jobs, for any key (its own jobs; the
admin key: every job), in the management envelope. The same jobs as /v1/fine_tuning/jobs,
made and cancelled by the same service (`appliance.fine_tuning.jobs`)."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, QueryParameter
from msgspec import Meta

from appliance.fine_tuning.datasets import Datasets
from appliance.fine_tuning.jobs import FineTuning
from appliance.management.envelope import page_params
from appliance.management.errors import invalid
from appliance.management.fine_tuning_view import in_management_envelope, job_view
from appliance.management.typed_envelope import USER_ERRORS, Item, Page, error_spec
from appliance.management.wire import FineTuningJobView
from appliance.openai.decoding import decode_body
from appliance.openai.files_routes import owner
from appliance.openai.fine_tuning_protocol import (
    Auto,
    BatchSize,
    CreateFineTuningJobRequest,
    Epochs,
    Hyperparameters,
    JobStatus,
    Multiplier,
    Seed,
    Suffix,
)
from appliance.openapi_docs import body
from appliance.state.keys import ApiKey

FileId = Annotated[str, Meta(min_length=1, max_length=256)]


class FineTuningHyperparametersBody(
    msgspec.Struct, rename="camel", kw_only=True, forbid_unknown_fields=True
):
    """Left out or "auto": the trainer chooses."""

    n_epochs: Epochs | Auto = "auto"
    batch_size: BatchSize | Auto = "auto"
    learning_rate_multiplier: Multiplier | Auto = "auto"


class CreateFineTuningBody(
    msgspec.Struct, rename="camel", kw_only=True, forbid_unknown_fields=True
):
    """A job trains `model` on a `fine-tune` file: `trainingFile`, or a ready dataset's
    (`datasetId`), one of the two."""

    model: Annotated[str, Meta(min_length=1, max_length=256)]
    training_file: FileId | None = None
    dataset_id: FileId | None = None
    validation_file: FileId | None = None
    hyperparameters: FineTuningHyperparametersBody | None = None
    suffix: Suffix | None = None
    seed: Seed | None = None
    metadata: dict[str, str] | None = None


JOB_NOT_FOUND = error_spec("No such job for this key (FINE_TUNING_JOB_NOT_FOUND)")
CREATE_ERRORS = {
    **USER_ERRORS,
    403: error_spec("The key may not use the model (FORBIDDEN)"),
    404: error_spec("No such model, file or dataset for this key (MODEL_NOT_FOUND, ...)"),
    429: error_spec("The key's budget is spent (RATE_LIMITED)"),
}
ONE = {**USER_ERRORS, 404: JOB_NOT_FOUND}


async def _request(
    wanted: CreateFineTuningBody, caller: ApiKey, datasets: Datasets
) -> CreateFineTuningJobRequest:
    if wanted.dataset_id is not None and wanted.training_file is None:
        training_file = await datasets.training_file(caller, wanted.dataset_id)
    elif wanted.training_file is not None and wanted.dataset_id is None:
        training_file = wanted.training_file
    else:
        raise invalid("give `trainingFile` or `datasetId`, one of the two", field="trainingFile")
    hyper = wanted.hyperparameters
    return CreateFineTuningJobRequest(
        model=wanted.model,
        training_file=training_file,
        validation_file=wanted.validation_file,
        hyperparameters=None
        if hyper is None
        else Hyperparameters(
            n_epochs=hyper.n_epochs,
            batch_size=hyper.batch_size,
            learning_rate_multiplier=hyper.learning_rate_multiplier,
        ),
        suffix=wanted.suffix,
        seed=wanted.seed,
        metadata=wanted.metadata,
    )


class SeedFineTuningController(Controller):
    path = "/fine-tuning"
    tags = ("fine-tuning",)

    @post(
        "/",
        status_code=201,
        summary="Start a fine-tuning job on a `fine-tune` file or a ready dataset",
        operation_class=body(CreateFineTuningBody),
        responses=CREATE_ERRORS,
    )
    async def create_job(
        self,
        request: Request[Any, Any, Any],
        caller: NamedDependency[ApiKey],
        fine_tuning: NamedDependency[FineTuning],
        datasets: NamedDependency[Datasets],
    ) -> Item[FineTuningJobView]:
        # A bad body's error names the field as it was sent (the shared handler's envelope).
        wanted = decode_body(await request.body(), CreateFineTuningBody)
        with in_management_envelope():
            job = await fine_tuning.create(caller, await _request(wanted, caller, datasets))
            stored = await fine_tuning.owned(job.id, caller)
        return Item(job_view(stored), "Fine-tuning job created; its files are being validated")

    @get(
        "/",
        summary="The fine-tuning jobs of this key (the admin: every job), newest first",
        responses=USER_ERRORS,
    )
    async def list_jobs(
        self,
        caller: NamedDependency[ApiKey],
        fine_tuning: NamedDependency[FineTuning],
        limit: Annotated[int | None, QueryParameter(ge=1, le=1000)] = None,
        offset: Annotated[int | None, QueryParameter(ge=0, le=2**62)] = None,
        status: FromQuery[JobStatus | None] = None,
    ) -> Page[FineTuningJobView]:
        limit, offset = page_params(limit, offset)
        found, total = await fine_tuning.store.offset_page(owner(caller), status, limit, offset)
        return Page.cut([job_view(s) for s in found], total, limit, offset, f"{total} jobs")

    @get("/{job_id:str}", summary="One fine-tuning job, with its progress", responses=ONE)
    async def get_job(
        self,
        caller: NamedDependency[ApiKey],
        fine_tuning: NamedDependency[FineTuning],
        job_id: FromPath[str],
    ) -> Item[FineTuningJobView]:
        with in_management_envelope("FINE_TUNING_JOB_NOT_FOUND"):
            stored = await fine_tuning.owned(job_id, caller)
        return Item(job_view(stored), "Fine-tuning job")

    @post(
        "/{job_id:str}/cancel",
        status_code=200,
        summary="Cancel a job under way: its trainer stops, and it is `cancelled`",
        responses={**ONE, 400: error_spec("The job has ended already (VALIDATION_ERROR)")},
    )
    async def cancel_job(
        self,
        caller: NamedDependency[ApiKey],
        fine_tuning: NamedDependency[FineTuning],
        job_id: FromPath[str],
    ) -> Item[FineTuningJobView]:
        with in_management_envelope("FINE_TUNING_JOB_NOT_FOUND"):
            job = await fine_tuning.cancel(job_id, caller)
            stored = await fine_tuning.owned(job.id, caller)
        return Item(job_view(stored), "Fine-tuning job cancelled")
