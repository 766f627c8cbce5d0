"""Fine-tuning jobs as the API sees them: made, read and cancelled by the key that owns them.

Both the OpenAI routes (/v1/fine_tuning/jobs) and the seed's (/v1/fine-tuning) call this;
it knows nothing of the web framework. A job is checked before it exists: the model can be
fine-tuned and the key may use it, the files are the key's `fine-tune` files and every line
of them is a valid chat example (an error names the line and field), the budget is not
spent. What needs the base's tokenizer (lengths, token counts) is the runner's first step.
"""

from __future__ import annotations

import asyncio
import logging
import pathlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field

from appliance.accounting.limits import Policy, RateLimited
from appliance.accounting.meter import Meter
from appliance.config import LoadedConfig
from appliance.deployments.manager import DeploymentManager, DeploymentNotFound
from appliance.errors import Forbidden, InvalidRequest, ModelNotFound, NotFound
from appliance.fine_tuning.bases import training_base
from appliance.fine_tuning.runner import FineTuningRunner, model_name
from appliance.openai.decoding import check_metadata
from appliance.openai.fine_tuning_protocol import (
    CreateFineTuningJobRequest,
    FineTuningJob,
    Hyperparameters,
    ResolvedHyperparameters,
)
from appliance.state.files import FileStore
from appliance.state.fine_tuning import FineTuningStore, StoredJob
from appliance.state.keys import ApiKey
from backends.training.examples import read_example_file

log = logging.getLogger("radiance.fine_tuning")
MAX_ERRORS_SHOWN = 3


def _owner(caller: ApiKey) -> str | None:
    return None if caller.is_admin else caller.id


@dataclass
class FineTuning:
    store: FineTuningStore
    runner: FineTuningRunner
    files: FileStore
    deployments: DeploymentManager
    meter: Meter
    loaded: LoadedConfig
    model_id: Callable[[str], str | None]
    policy_of: Callable[[ApiKey], Policy]
    _creating: asyncio.Lock = field(default_factory=asyncio.Lock)

    model_name = staticmethod(model_name)

    async def owned(self, job_id: str, caller: ApiKey) -> StoredJob:
        stored = await self.store.get(job_id, _owner(caller))
        if stored is None:
            raise NotFound(
                f"No fine-tuning job with id `{job_id[:64]}` found.", param="fine_tuning_job_id"
            )
        return stored

    async def create(self, caller: ApiKey, body: CreateFineTuningJobRequest) -> FineTuningJob:
        check_metadata(body.metadata)
        hyper = _hyperparameters(body)
        model = self.model_id(body.model)
        if model is None:
            raise NotFound(
                f"The model `{body.model[:128]}` does not exist.",
                param="model",
                code="model_not_found",
            )
        policy = self.policy_of(caller)
        if policy.models is not None and model not in policy.models:
            raise Forbidden(
                f"This API key may not use the model `{body.model[:128]}`.",
                param="model",
                code="model_not_allowed",
            )
        base = training_base(self.loaded, model)
        await self._check_room(caller)  # early, before the files are read
        await self._check_file(caller, body.training_file, "training_file")
        if body.validation_file is not None:
            await self._check_file(caller, body.validation_file, "validation_file")
        admission = await self.meter.admit(caller, policy, 0, rate_limited=False)
        if admission is not None:  # the budget is not spent; nothing is held yet
            admission.settle(0)
            admission.release_hold()
        async with self._creating:  # counted and stored with no other create between
            await self._check_room(caller)
            job = await self._store_job(caller, base.model.id, body, hyper)
        log.info(
            "fine-tuning job %s created: key=%s model=%s training_file=%s",
            job.id,
            caller.name,
            job.model,
            job.training_file,
        )
        self.runner.poke()
        return job

    async def _check_room(self, caller: ApiKey) -> None:
        """429 when the key has `training.jobs_per_key` jobs under way already."""
        most = self.loaded.config.training.jobs_per_key
        if not caller.is_admin and await self.store.under_way(caller.id) >= most:
            raise RateLimited(
                f"This key has {most} fine-tuning jobs under way, as many as it may; wait "
                "for one to end or cancel one.",
                kind="fine_tuning_jobs",
                retry_after=None,
                retry=False,
            )

    async def _store_job(
        self, caller: ApiKey, model: str, body: CreateFineTuningJobRequest, hyper: Hyperparameters
    ) -> FineTuningJob:
        return await self.store.create(
            caller.id,
            model,
            body.training_file,
            body.validation_file,
            body.suffix,
            secrets.randbelow(2**31) if body.seed is None else body.seed,
            ResolvedHyperparameters(
                n_epochs=hyper.n_epochs,
                batch_size=hyper.batch_size,
                learning_rate_multiplier=hyper.learning_rate_multiplier,
            ),
            body.metadata,
        )

    async def cancel(self, job_id: str, caller: ApiKey) -> FineTuningJob:
        stored = await self.owned(job_id, caller)
        if not await self.runner.cancel(stored.job.id) and stored.job.status != "cancelled":
            raise InvalidRequest(
                f"The job has {stored.job.status}; only a job under way can be cancelled.",
                param="fine_tuning_job_id",
                code="job_not_cancellable",
            )
        refreshed = await self.store.get(stored.job.id, None)
        assert refreshed is not None
        log.info("fine-tuning job %s cancelled by key=%s", stored.job.id, caller.name)
        return refreshed.job

    async def delete_model(self, name: str, caller: ApiKey) -> None:
        """Remove a fine-tuned model: the key it belongs to, or the admin."""
        try:
            dep = self.deployments.get(name)
        except DeploymentNotFound:
            dep = None
        if dep is None or dep.served.hidden_from(caller.id, caller.is_admin):
            raise ModelNotFound(
                f"The model `{name[:128]}` does not exist or this key may not use it.",
                param="model",
            )
        if dep.adapter is None or not name.startswith("ft:"):
            raise InvalidRequest(
                f"`{name[:128]}` is not a fine-tuned model; only those can be deleted here.",
                param="model",
                code="model_not_deletable",
            )
        await self.deployments.delete(name)

    async def _check_file(self, caller: ApiKey, file_id: str, param: str) -> None:
        stored = await self.files.get(file_id, _owner(caller))
        if stored is None:
            raise NotFound(f"No file with id `{file_id[:64]}` found.", param=param)
        if stored.file.purpose != "fine-tune":
            raise InvalidRequest(
                f"The file `{file_id}` has purpose `{stored.file.purpose}`; upload it with "
                "purpose `fine-tune`.",
                param=param,
            )
        path: pathlib.Path = self.files.path(file_id)
        read = await asyncio.to_thread(read_example_file, str(path))
        errors = read.errors
        if errors:
            shown = "; ".join(
                f"line {e.line}" + (f", {e.param}" if e.param else "") + f": {e.message}"
                for e in errors[:MAX_ERRORS_SHOWN]
            )
            rest = read.error_count - min(len(errors), MAX_ERRORS_SHOWN)
            more = f" (and {rest} more)" if rest > 0 else ""
            raise InvalidRequest(
                f"The {param.replace('_', ' ')} is not a valid fine-tune file: {shown}{more}.",
                param=param,
                code="invalid_file",
            )


def _hyperparameters(body: CreateFineTuningJobRequest) -> Hyperparameters:
    """The job's hyperparameters, given at the top or in `method.supervised`, not both."""
    method = body.method.supervised if body.method and body.method.supervised else None
    inner = method.hyperparameters if method else None
    if inner is not None and body.hyperparameters is not None and inner != body.hyperparameters:
        raise InvalidRequest(
            "`hyperparameters` and `method.supervised.hyperparameters` differ; give one.",
            param="hyperparameters",
        )
    return inner or body.hyperparameters or Hyperparameters()
