"""A multipart/form-data upload streamed to disk: its `file` part goes through a
`FileWriter` chunk by chunk (capped by server.max_file_bytes), its small text parts are
kept. /v1/files and /v1/datasets both take files this way."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from typing import Any

import multipart  # type: ignore[import-untyped]
from litestar import Request

from appliance.errors import InvalidRequest, PayloadTooLarge
from appliance.openai.batch_protocol import FileObject
from appliance.state.files import FileStore, FileTooLarge, FileWriter

AnyRequest = Request[Any, Any, Any]
# Room for the multipart framing and the text parts around the file's own bytes.
_FRAMING = 64 * 1024
_MAX_FILENAME = 255


class Upload:
    """The parts of one multipart upload as they stream in: `file` goes to disk, and each
    text part named in `fields` (name: most bytes) is kept in `texts`."""

    def __init__(self, files: FileStore, fields: Mapping[str, int]) -> None:
        self.files = files
        self.fields = fields
        self.writer: FileWriter | None = None
        self.filename: str | None = None
        self.texts: dict[str, bytearray] = {}
        self._part: str | None = None

    def text(self, name: str) -> str | None:
        """A text part, decoded and stripped; None if it was not sent."""
        raw = self.texts.get(name)
        return None if raw is None else raw.decode("utf-8", "replace").strip()

    async def commit(self, key_id: str, purpose: str) -> FileObject:
        """Keep the file (of `key_id`, for `purpose`) and record it."""
        if self.writer is None or self.filename is None:
            raise InvalidRequest("the upload has no `file` part", param="file")
        return await self.files.commit(self.writer, key_id, self.filename, purpose)

    def event(self, event: object) -> None:
        if isinstance(event, multipart.MultipartSegment):
            self._part = event.name
            if event.name == "file":
                if self.writer is not None:
                    raise InvalidRequest("send one `file` part", param="file")
                self.filename = (event.filename or "upload.jsonl")[:_MAX_FILENAME]
                self.writer = self.files.writer()
            elif event.name in self.fields:
                self.texts.setdefault(event.name, bytearray())
        elif event is None:
            self._part = None
        elif isinstance(event, bytes | bytearray):
            if self._part == "file" and self.writer is not None:
                self.writer.write(bytes(event))
            elif self._part is not None and self._part in self.fields:
                text = self.texts[self._part]
                text += event
                if len(text) > self.fields[self._part]:
                    raise InvalidRequest(f"`{self._part}` is too long", param=self._part)


def _boundary(request: AnyRequest, parts: str) -> str:
    kind, options = multipart.parse_options_header(request.headers.get("content-type", ""))
    if kind != "multipart/form-data" or not options.get("boundary"):
        raise InvalidRequest(
            f"Upload a file as multipart/form-data with the parts {parts}.", param="file"
        )
    return str(options["boundary"])


async def _receive(request: AnyRequest, upload: Upload, limit: int, parts: str) -> None:
    try:
        parser = multipart.PushMultipartParser(_boundary(request, parts), max_header_count=8)
    except multipart.MultipartError as exc:
        raise InvalidRequest(f"bad multipart body: {exc}", param="file") from None
    received = 0
    try:
        with parser:
            async for chunk in request.stream():
                received += len(chunk)
                if received > limit + _FRAMING:
                    raise FileTooLarge(limit)
                for event in parser.parse(chunk):
                    upload.event(event)
            for event in parser.parse(b""):
                upload.event(event)
    except multipart.MultipartError as exc:
        raise InvalidRequest(f"bad multipart body: {exc}", param="file") from None


@contextlib.asynccontextmanager
async def streamed_upload(
    request: AnyRequest, files: FileStore, fields: Mapping[str, int]
) -> AsyncIterator[Upload]:
    """The request's upload, its `file` on disk but not yet kept: the body of the `with`
    commits it (`FileStore.commit`), or it is removed when the block ends. 400 without a
    `file` part, 413 over server.max_file_bytes."""
    upload = Upload(files, fields)
    parts = ", ".join(f"`{name}`" for name in ("file", *fields))
    try:
        await _receive(request, upload, files.max_bytes, parts)
        if upload.writer is None or upload.filename is None:
            raise InvalidRequest("the upload has no `file` part", param="file")
        yield upload
    except FileTooLarge:
        raise PayloadTooLarge(
            f"The file is larger than this server accepts ({files.max_bytes} bytes).",
            param="file",
            code="file_too_large",
        ) from None
    finally:
        if upload.writer is not None and not upload.writer.path.exists():
            upload.writer.discard()
