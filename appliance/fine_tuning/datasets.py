"""Datasets: a key's `fine-tune` file under a name, its structure checked when it is made.

The check is the one a job makes of its files (`backends.training.examples.read_example_file`):
each line a chat example, every error naming its line and field. A dataset that fails it
is kept as `invalid` with its first errors, so its owner sees why; a job can be made only
from a `ready` one. A dataset made for a `model` is `validating` until a trainer process
(validation only) has rendered every example with that model's chat template, checked it
against its context length and counted its tokens, as a job's first step does; without a
model `tokens` stays null. Knows nothing of the web framework.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from appliance.config import LoadedConfig
from appliance.errors import ApiError, InvalidRequest, NotFound
from appliance.fine_tuning.bases import local_weights, training_base
from appliance.fine_tuning.trainer_process import TrainerProcess
from appliance.state.datasets import DatasetStore, LineError, StoredDataset
from appliance.state.files import FileStore
from appliance.state.keys import ApiKey
from backends.training.examples import read_example_file

log = logging.getLogger("radiance.fine_tuning")
MAX_ERRORS_KEPT = 20


def _owner(caller: ApiKey) -> str | None:
    return None if caller.is_admin else caller.id


@dataclass
class Datasets:
    store: DatasetStore
    files: FileStore
    model_id: Callable[[str], str | None]
    loaded: LoadedConfig
    # Bounds the processes that check files against a tokenizer (shared with the jobs).
    checks: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(2))
    _checks: set[asyncio.Task[None]] = field(default_factory=set)

    async def owned(self, dataset_id: str, caller: ApiKey, param: str = "id") -> StoredDataset:
        stored = await self.store.get(dataset_id, _owner(caller))
        if stored is None:
            raise NotFound(f"No dataset with id `{dataset_id[:64]}` found.", param=param)
        return stored

    def resolve_model(self, model: str | None) -> str | None:
        """The id of the model a dataset is for (an id or alias); 404 if there is none."""
        if model is None:
            return None
        found = self.model_id(model)
        if found is None:
            raise NotFound(
                f"The model `{model[:128]}` does not exist.", param="model", code="model_not_found"
            )
        return found

    async def remove(self, dataset_id: str, caller: ApiKey) -> StoredDataset:
        """Remove the caller's dataset (its file stays); what it was."""
        stored = await self.store.delete(dataset_id, _owner(caller))
        if stored is None:
            raise NotFound(f"No dataset with id `{dataset_id[:64]}` found.", param="id")
        return stored

    async def create(
        self, caller: ApiKey, name: str, file_id: str, model: str | None
    ) -> StoredDataset:
        """A dataset of the caller's `fine-tune` file `file_id`, checked now."""
        model_id = self.resolve_model(model)
        stored = await self.files.get(file_id, _owner(caller))
        if stored is None:
            raise NotFound(f"No file with id `{file_id[:64]}` found.", param="file_id")
        if stored.file.purpose != "fine-tune":
            raise InvalidRequest(
                f"The file `{file_id}` has purpose `{stored.file.purpose}`; a dataset needs "
                "a file uploaded with purpose `fine-tune`.",
                param="file_id",
            )
        path = self.files.path(stored.file.id)
        read = await asyncio.to_thread(read_example_file, str(path))
        errors = [LineError(e.line, e.param, e.message) for e in read.errors[:MAX_ERRORS_KEPT]]
        examples = 0 if errors else len(read.examples)
        counted = model_id is not None and not errors
        if counted:
            training_base(self.loaded, model_id or "")  # 400 naming `model` if it cannot train
        # The dataset belongs to the file's key (the admin may name another key's file).
        made = await self.store.create(
            stored.key_id, name, stored.file.id, model_id, examples, errors, validating=counted
        )
        if counted:
            self._check(made)
        return made

    async def resume(self) -> None:
        """Count the datasets a stopped server left `validating`."""
        for stored in await self.store.validating():
            self._check(stored)

    async def close(self) -> None:
        for task in list(self._checks):
            task.cancel()
        await asyncio.gather(*self._checks, return_exceptions=True)

    def _check(self, stored: StoredDataset) -> None:
        task = asyncio.create_task(self._count(stored), name=f"dataset-{stored.id}")
        self._checks.add(task)
        task.add_done_callback(self._checks.discard)

    async def _count(self, stored: StoredDataset) -> None:
        """Render and count the dataset with its model's tokenizer (a validation-only
        trainer run), then record `ready` with its tokens, or `invalid` with its errors."""
        try:
            async with self.checks:
                errors, report = await self._validate(stored)
        except asyncio.CancelledError:
            raise
        except (ApiError, OSError) as exc:
            errors, report = [LineError(0, "model", str(exc))], {}
        except Exception as exc:
            log.exception("dataset %s: the check failed", stored.id)
            errors, report = [LineError(0, None, f"internal error: {exc}")], {}
        await self.store.finish(stored.id, report.get("examples"), report.get("tokens"), errors)

    async def _validate(self, stored: StoredDataset) -> tuple[list[LineError], dict[str, Any]]:
        base = training_base(self.loaded, stored.model or "")
        weights = await local_weights(self.loaded, base)
        folder = self.loaded.files_dir / "datasets" / stored.id
        threads = self.loaded.config.training.threads
        spec = {
            "base": str(weights),
            "training_file": str(self.files.path(stored.file_id)),
            "output_dir": str(folder),
            "context_length": base.model.context_length,
            "threads": threads,
            "validate_only": True,
        }
        trainer = await TrainerProcess.start(spec, folder, threads, [])
        try:
            outcome = (await trainer.validation())[0] or {}
        finally:
            with contextlib.suppress(ProcessLookupError):
                await trainer.stop()
        if outcome.get("event") == "validated":
            return [], outcome
        if outcome.get("event") == "invalid":
            found = outcome.get("errors") or []
            return [
                LineError(int(e.get("line", 0)), e.get("param") or None, str(e.get("message")))
                for e in found[:MAX_ERRORS_KEPT]
            ], {}
        reason = outcome.get("message") or trainer.log_tail() or "the trainer ended early"
        return [LineError(0, None, f"the check failed: {reason}")], {}

    async def training_file(self, caller: ApiKey, dataset_id: str) -> str:
        """The file of the caller's `ready` dataset, for a job; 404 or 400 naming `param`."""
        stored = await self.owned(dataset_id, caller, "dataset_id")
        if stored.status != "ready":
            raise InvalidRequest(
                f"The dataset `{stored.id}` is {stored.status}: its file has errors "
                f"(GET /v1/datasets/{stored.id} lists them); fix the file and make a new "
                "dataset.",
                param="dataset_id",
                code="invalid_dataset",
            )
        return stored.file_id
