"""/v1/batches: create, retrieve, list and cancel batches of one key (the admin: any).

The work itself is the runner's (`appliance.batches.runner`); a handler reads or writes
the batch's row and wakes the runner."""

from __future__ import annotations

import secrets
from typing import Annotated, Any

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.exceptions import HTTPException
from litestar.params import FromPath, FromQuery, QueryParameter

from appliance.batches.runner import BatchRunner
from appliance.error_handlers import from_http_exception
from appliance.errors import InvalidRequest, NotFound
from appliance.openai.answers import ErrorResponse, cursor_list
from appliance.openai.batch_protocol import (
    BATCH_EXAMPLES,
    Batch,
    BatchList,
    CreateBatchRequest,
)
from appliance.openai.decoding import check_metadata, decode_request
from appliance.openai.files_routes import owner
from appliance.openapi_docs import documented
from appliance.state.batches import BatchStore
from appliance.state.files import FileStore
from appliance.state.keys import ApiKey

AnyRequest = Request[Any, Any, Any]
MAX_PAGE = 100
WINDOWS = {"24h": 24 * 3600}
_ERRORS = {"401": "No key, a bad, revoked or expired key", "404": "No such batch for this key"}


def _missing(batch_id: str) -> NotFound:
    return NotFound(f"No batch with id `{batch_id[:64]}` found.", param="batch_id")


class BatchesController(Controller):
    path = "/batches"

    @post(
        "/",
        status_code=200,
        summary="Create a batch: run a `batch` file's JSONL requests on spare capacity",
        operation_class=documented(
            body=CreateBatchRequest,
            examples=BATCH_EXAMPLES,
            answer=Batch,
            answer_description="The batch, `validating`",
            errors={
                "400": "The body does not decode, or a field is invalid (`param` names it); "
                "the input file is not a `batch` file",
                "401": _ERRORS["401"],
                "404": "No such input file for this key",
            },
            error=ErrorResponse,
        ),
    )
    async def create(
        self,
        request: AnyRequest,
        caller: NamedDependency[ApiKey],
        files: NamedDependency[FileStore],
        batches: NamedDependency[BatchStore],
        batch_runner: NamedDependency[BatchRunner],
    ) -> Batch:
        try:
            raw = await request.body()
        except HTTPException as exc:
            raise from_http_exception(exc) from None
        body, _ = decode_request(raw, CreateBatchRequest)
        check_metadata(body.metadata)
        stored = await files.get(body.input_file_id, owner(caller))
        if stored is None:
            raise NotFound(
                f"No file with id `{body.input_file_id[:64]}` found.", param="input_file_id"
            )
        if stored.file.purpose != "batch":
            raise InvalidRequest(
                f"The input file has purpose `{stored.file.purpose}`; upload it with "
                "purpose `batch`.",
                param="input_file_id",
            )
        batch = await batches.create(
            "batch_" + secrets.token_hex(12),
            caller.id,
            body.endpoint,
            body.input_file_id,
            body.completion_window,
            WINDOWS[body.completion_window],
            body.metadata,
        )
        batch_runner.poke()
        return batch

    @get(
        "/",
        summary="The batches of this key (the admin: every batch), newest first",
        operation_class=documented(
            answer=BatchList,
            answer_description="A page of batches",
            errors={"401": _ERRORS["401"], "400": "`limit` is invalid"},
            error=ErrorResponse,
        ),
    )
    async def list_batches(
        self,
        caller: NamedDependency[ApiKey],
        batches: NamedDependency[BatchStore],
        limit: Annotated[int, QueryParameter(ge=1, le=MAX_PAGE)] = 20,
        after: FromQuery[str | None] = None,
    ) -> BatchList:
        page, more = await batches.page(owner(caller), after, limit)
        return cursor_list(BatchList, page, more)

    @get(
        "/{batch_id:str}",
        summary="One batch: its status, counts and result files",
        operation_class=documented(
            answer=Batch, answer_description="The batch", errors=_ERRORS, error=ErrorResponse
        ),
    )
    async def retrieve(
        self,
        caller: NamedDependency[ApiKey],
        batches: NamedDependency[BatchStore],
        batch_id: FromPath[str],
    ) -> Batch:
        stored = await batches.get(batch_id, owner(caller))
        if stored is None:
            raise _missing(batch_id)
        return stored.batch

    @post(
        "/{batch_id:str}/cancel",
        status_code=200,
        summary="Cancel a batch: `cancelling`, then `cancelled` once its running lines stop",
        operation_class=documented(
            answer=Batch,
            answer_description="The batch, `cancelling` (or already ended)",
            errors={**_ERRORS, "400": "The batch has ended already (completed, failed, expired)"},
            error=ErrorResponse,
        ),
    )
    async def cancel(
        self,
        caller: NamedDependency[ApiKey],
        batches: NamedDependency[BatchStore],
        batch_runner: NamedDependency[BatchRunner],
        batch_id: FromPath[str],
    ) -> Batch:
        stored = await batches.get(batch_id, owner(caller))
        if stored is None:
            raise _missing(batch_id)
        moved = await batches.move(batch_id, "cancelling", ["validating", "in_progress"])
        if not moved and stored.batch.status not in ("cancelling", "cancelled"):
            raise InvalidRequest(
                f"The batch is {stored.batch.status}; only a running batch can be cancelled.",
                param="batch_id",
                code="batch_not_cancellable",
            )
        batch_runner.poke()
        refreshed = await batches.get(batch_id, None)
        assert refreshed is not None
        return refreshed.batch
