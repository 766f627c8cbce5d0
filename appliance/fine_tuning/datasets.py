"""Datasets: a key's `fine-tune` file under a name, its structure checked when it is made.

The check is the one a job makes of its files (`backends.training.examples.read_example_file`):
each line a chat example, every error naming its line and field. A dataset that fails it
is kept as `invalid` with its first errors, so its owner sees why; a job can be made only
from a `ready` one. Token counts need the base model's tokenizer, so they are left to a
job's validation (`tokens` stays null). Knows nothing of the web framework.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from appliance.errors import InvalidRequest, NotFound
from appliance.state.datasets import DatasetStore, LineError, StoredDataset
from appliance.state.files import FileStore
from appliance.state.keys import ApiKey
from backends.training.examples import read_example_file

MAX_ERRORS_KEPT = 20


def _owner(caller: ApiKey) -> str | None:
    return None if caller.is_admin else caller.id


@dataclass
class Datasets:
    store: DatasetStore
    files: FileStore
    model_id: Callable[[str], str | None]

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
        # The dataset belongs to the file's key (the admin may name another key's file).
        return await self.store.create(
            stored.key_id, name, stored.file.id, model_id, examples, errors
        )

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
