"""/v1/files: upload (multipart `file` + `purpose`, streamed to disk), list, retrieve,
content, delete. A key sees only its own files; the admin key sees every file."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from litestar import Controller, Request, Response, delete, get, post
from litestar.di import NamedDependency
from litestar.openapi import ResponseSpec
from litestar.params import FromPath, FromQuery, QueryParameter
from litestar.response import File

from appliance.errors import InvalidRequest, NotFound
from appliance.openai.answers import ErrorResponse, cursor_list
from appliance.openai.batch_protocol import (
    UPLOAD_PURPOSES,
    FileDeleted,
    FileList,
    FileObject,
    FilePurpose,
    FileUpload,
)
from appliance.openai.uploads import streamed_upload
from appliance.openapi_docs import documented
from appliance.state.files import FileStore, StoredFile
from appliance.state.keys import ApiKey

AnyRequest = Request[Any, Any, Any]
MAX_PAGE = 10000


def owner(caller: ApiKey) -> str | None:
    """Whose files a caller sees: its own, or (the admin) everyone's."""
    return None if caller.is_admin else caller.id


def _missing(file_id: str) -> NotFound:
    return NotFound(f"No file with id `{file_id[:64]}` found.", param="file_id")


async def find_file(files: FileStore, caller: ApiKey, file_id: str) -> StoredFile:
    stored = await files.get(file_id, owner(caller))
    if stored is None:
        raise _missing(file_id)
    return stored


_ERRORS = {"401": "No key, a bad, revoked or expired key", "404": "No such file for this key"}


class FilesController(Controller):
    path = "/files"

    @post(
        "/",
        status_code=200,
        summary="Upload a file (multipart `file` and `purpose`), streamed to disk",
        request_max_body_size=None,  # the upload is capped by server.max_file_bytes
        operation_class=documented(
            body=FileUpload,
            form=True,
            answer=FileObject,
            answer_description="The file",
            errors={
                "400": "No `file` part, or `purpose` is missing or not one of "
                + ", ".join(UPLOAD_PURPOSES),
                "401": _ERRORS["401"],
                "413": "The file is over server.max_file_bytes",
            },
            error=ErrorResponse,
        ),
    )
    async def upload(
        self,
        request: AnyRequest,
        caller: NamedDependency[ApiKey],
        files: NamedDependency[FileStore],
    ) -> FileObject:
        async with streamed_upload(request, files, {"purpose": 64}) as upload:
            purpose = upload.text("purpose") or ""
            if purpose not in UPLOAD_PURPOSES:
                raise InvalidRequest(
                    f"`purpose` must be one of {', '.join(UPLOAD_PURPOSES)}", param="purpose"
                )
            return await upload.commit(caller.id, purpose)

    @get(
        "/",
        summary="The files of this key (the admin: every file), newest first",
        operation_class=documented(
            answer=FileList,
            answer_description="A page of files",
            errors={"401": _ERRORS["401"], "400": "`limit`, `order` or `purpose` is invalid"},
            error=ErrorResponse,
        ),
    )
    async def list_files(
        self,
        caller: NamedDependency[ApiKey],
        files: NamedDependency[FileStore],
        limit: Annotated[int, QueryParameter(ge=1, le=MAX_PAGE)] = MAX_PAGE,
        order: FromQuery[Literal["asc", "desc"]] = "desc",
        after: FromQuery[str | None] = None,
        purpose: FromQuery[FilePurpose | None] = None,
    ) -> FileList:
        page, more = await files.page(owner(caller), purpose, after, limit, order)
        return cursor_list(FileList, page, more)

    @get(
        "/{file_id:str}",
        summary="One file's details",
        operation_class=documented(
            answer=FileObject, answer_description="The file", errors=_ERRORS, error=ErrorResponse
        ),
    )
    async def retrieve(
        self,
        caller: NamedDependency[ApiKey],
        files: NamedDependency[FileStore],
        file_id: FromPath[str],
    ) -> FileObject:
        return (await find_file(files, caller, file_id)).file

    @get(
        "/{file_id:str}/content",
        summary="A file's content",
        media_type="application/octet-stream",
        responses={
            int(status): ResponseSpec(
                data_container=ErrorResponse, description=when, generate_examples=False
            )
            for status, when in _ERRORS.items()
        },
    )
    async def content(
        self,
        caller: NamedDependency[ApiKey],
        files: NamedDependency[FileStore],
        file_id: FromPath[str],
    ) -> Response[Any]:
        stored = await find_file(files, caller, file_id)
        path = files.path(stored.file.id)
        if not path.exists():
            raise _missing(file_id)
        return File(path, filename=stored.file.filename, media_type="application/octet-stream")

    @delete(
        "/{file_id:str}",
        status_code=200,
        summary="Delete a file",
        operation_class=documented(
            answer=FileDeleted, answer_description="Deleted", errors=_ERRORS, error=ErrorResponse
        ),
    )
    async def remove(
        self,
        caller: NamedDependency[ApiKey],
        files: NamedDependency[FileStore],
        file_id: FromPath[str],
    ) -> FileDeleted:
        if not await files.delete(file_id, owner(caller)):
            raise _missing(file_id)
        return FileDeleted(id=file_id)
