"""/v1/datasets: a key's `fine-tune` files under names, checked when they are made, for
any key (its own datasets; the admin key: every dataset), in the management envelope.

POST takes JSON naming a file already uploaded (`fileId`), or a multipart upload (`file`,
`name`, optional `model`) stored in /v1/files with purpose `fine-tune`. A dataset whose
file has errors is made all the same (201, `invalid`, its first errors listed)."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, delete, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, QueryParameter
from msgspec import Meta

from appliance.errors import PayloadTooLarge
from appliance.fine_tuning.datasets import Datasets
from appliance.management.envelope import page_params
from appliance.management.errors import invalid
from appliance.management.fine_tuning_view import dataset_view, in_management_envelope
from appliance.management.typed_envelope import USER_ERRORS, Item, Page, error_spec
from appliance.management.wire import DatasetView
from appliance.openai.decoding import decode_body
from appliance.openai.files_routes import owner
from appliance.openai.uploads import streamed_upload
from appliance.openapi_docs import documented
from appliance.state.datasets import StoredDataset
from appliance.state.files import FileStore
from appliance.state.keys import ApiKey

AnyRequest = Request[Any, Any, Any]
MAX_NAME = 200
MAX_JSON_BYTES = 64 * 1024
Name = Annotated[str, Meta(min_length=1, max_length=MAX_NAME)]
ModelName = Annotated[str, Meta(min_length=1, max_length=256)]


class CreateDatasetBody(msgspec.Struct, rename="camel", kw_only=True, forbid_unknown_fields=True):
    """A dataset of a file already uploaded with purpose `fine-tune`."""

    name: Name
    file_id: Annotated[str, Meta(min_length=1, max_length=256)]
    model: ModelName | None = None


class DatasetUpload(msgspec.Struct, kw_only=True):
    """POST /v1/datasets as multipart/form-data: the file's bytes, the dataset's name and,
    optionally, the model it is for."""

    file: str
    name: Name
    model: ModelName | None = None


DATASET_NOT_FOUND = error_spec("No such dataset for this key (DATASET_NOT_FOUND)")
ONE = {**USER_ERRORS, 404: DATASET_NOT_FOUND}
CREATE_ERRORS = {
    **USER_ERRORS,
    404: error_spec("No such file or model for this key (FILE_NOT_FOUND, MODEL_NOT_FOUND)"),
    413: error_spec("The upload is over server.max_file_bytes (PAYLOAD_TOO_LARGE)"),
}


async def _json(request: AnyRequest) -> bytes:
    """The body, read up to MAX_JSON_BYTES (the route takes uploads far larger)."""
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_JSON_BYTES:
            raise PayloadTooLarge(f"A JSON body is at most {MAX_JSON_BYTES} bytes.")
    return bytes(raw)


def _optional(value: str | None, field: str, most: int) -> str | None:
    """A text part of an upload, checked as the JSON body's field would be."""
    if value is not None and len(value) > most:
        raise invalid(f"`{field}` is at most {most} characters", field=field)
    return value or None


def _required(value: str | None, field: str, most: int) -> str:
    found = _optional(value, field, most)
    if found is None:
        raise invalid(f"the upload has no `{field}` part", field=field)
    return found


async def _from_upload(
    request: AnyRequest, caller: ApiKey, files: FileStore, datasets: Datasets
) -> StoredDataset:
    """A dataset of the file uploaded with the request, kept in /v1/files as `fine-tune`."""
    async with streamed_upload(request, files, {"name": 4 * MAX_NAME, "model": 1024}) as up:
        name = _required(up.text("name"), "name", MAX_NAME)
        model = _optional(up.text("model"), "model", 256)
        datasets.resolve_model(model)  # before the file is kept
        kept = await up.commit(caller.id, "fine-tune")
    return await datasets.create(caller, name, kept.id, model)


class DatasetsController(Controller):
    path = "/datasets"
    tags = ("fine-tuning",)

    @post(
        "/",
        status_code=201,
        summary="Make a dataset of a `fine-tune` file (JSON `fileId`, or a multipart upload)",
        request_max_body_size=None,  # an upload is capped by server.max_file_bytes
        operation_class=documented(body=CreateDatasetBody, upload=DatasetUpload),
        responses=CREATE_ERRORS,
    )
    async def create_dataset(
        self,
        request: AnyRequest,
        caller: NamedDependency[ApiKey],
        files: NamedDependency[FileStore],
        datasets: NamedDependency[Datasets],
    ) -> Item[DatasetView]:
        if request.headers.get("content-type", "").startswith("multipart/"):
            with in_management_envelope():
                stored = await _from_upload(request, caller, files, datasets)
        else:
            # A bad body's error names the field as it was sent (the shared handler's envelope).
            wanted = decode_body(await _json(request), CreateDatasetBody)
            with in_management_envelope():
                stored = await datasets.create(caller, wanted.name, wanted.file_id, wanted.model)
        if stored.status == "ready":
            return Item(dataset_view(stored), f"Dataset ready: {stored.examples} examples")
        return Item(dataset_view(stored), "Dataset invalid: its file has errors (see data.errors)")

    @get(
        "/",
        summary="This key's datasets (the admin: every one), newest first",
        responses=USER_ERRORS,
    )
    async def list_datasets(
        self,
        caller: NamedDependency[ApiKey],
        datasets: NamedDependency[Datasets],
        limit: Annotated[int | None, QueryParameter(ge=1, le=1000)] = None,
        offset: Annotated[int | None, QueryParameter(ge=0, le=2**62)] = None,
    ) -> Page[DatasetView]:
        limit, offset = page_params(limit, offset)
        found, total = await datasets.store.page(owner(caller), limit, offset)
        return Page.cut([dataset_view(s) for s in found], total, limit, offset, f"{total} datasets")

    @get(
        "/{dataset_id:str}", summary="One dataset, with its errors if it is invalid", responses=ONE
    )
    async def get_dataset(
        self,
        caller: NamedDependency[ApiKey],
        datasets: NamedDependency[Datasets],
        dataset_id: FromPath[str],
    ) -> Item[DatasetView]:
        with in_management_envelope("DATASET_NOT_FOUND"):
            stored = await datasets.owned(dataset_id, caller)
        return Item(dataset_view(stored), "Dataset")

    @delete(
        "/{dataset_id:str}",
        status_code=200,
        summary="Remove a dataset; its file stays in /v1/files",
        responses=ONE,
    )
    async def delete_dataset(
        self,
        caller: NamedDependency[ApiKey],
        datasets: NamedDependency[Datasets],
        dataset_id: FromPath[str],
    ) -> Item[DatasetView]:
        with in_management_envelope("DATASET_NOT_FOUND"):
            stored = await datasets.remove(dataset_id, caller)
        return Item(dataset_view(stored), "Dataset removed; its file stays in /v1/files")
