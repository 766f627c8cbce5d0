"""Reading a batch's input file: one request per JSONL line.

A line that cannot become a request (not JSON, no `custom_id`, a method other than POST, a
`url` other than the batch's endpoint, a body that is not an object, `stream: true`)
becomes an error line at once, with a code and a message naming the line and the field;
the other lines run. The whole batch fails (`errors.data[]`: line, code, param) only when
the file cannot be a batch: empty, too many lines, or a `custom_id` used twice.
"""

from __future__ import annotations

import pathlib
from dataclasses import dataclass, field
from typing import Any

import msgspec

from appliance.openai.batch_lines import result_line
from appliance.openai.batch_protocol import BatchError, LineError
from appliance.request_context import new_request_id
from appliance.state.batches import LoadedLine

MAX_LINES = 50_000


@dataclass
class ReadFile:
    lines: list[LoadedLine] = field(default_factory=list)
    errors: list[BatchError] = field(default_factory=list)


def _error_line(number: int, custom_id: str | None, code: str, message: str) -> LoadedLine:
    line = result_line(
        new_request_id(), custom_id, error=LineError(code=code, message=f"line {number}: {message}")
    )
    return LoadedLine(number, custom_id, None, None, outcome="error", result=line)


def _line(number: int, text: bytes, endpoint: str) -> LoadedLine:
    try:
        data: Any = msgspec.json.decode(text)
    except (msgspec.DecodeError, RecursionError):
        return _error_line(number, None, "invalid_json", "the line is not valid JSON")
    if not isinstance(data, dict):
        return _error_line(number, None, "invalid_json", "the line is not a JSON object")
    custom_id = data.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        return _error_line(
            number, None, "missing_custom_id", "`custom_id` must be a non-empty string"
        )
    if data.get("method") != "POST":
        return _error_line(number, custom_id, "invalid_method", "`method` must be `POST`")
    if data.get("url") != endpoint:
        return _error_line(
            number,
            custom_id,
            "invalid_url",
            f"`url` must be the batch's endpoint `{endpoint}`",
        )
    body = data.get("body")
    if not isinstance(body, dict):
        return _error_line(number, custom_id, "invalid_body", "`body` must be a JSON object")
    if body.get("stream"):
        return _error_line(
            number, custom_id, "invalid_body", "`body.stream` cannot be true in a batch"
        )
    model = body.get("model")
    return LoadedLine(
        number,
        custom_id,
        model if isinstance(model, str) else None,
        msgspec.json.encode(body).decode(),
    )


def read_input(path: pathlib.Path, endpoint: str) -> ReadFile:
    """The lines of a batch file (blank lines are skipped), or why it cannot run."""
    read = ReadFile()
    seen: dict[str, int] = {}
    with path.open("rb") as source:
        for number, text in enumerate(source, start=1):
            if not text.strip():
                continue
            if len(read.lines) == MAX_LINES:
                read.errors.append(
                    BatchError(
                        code="too_many_requests",
                        message=f"a batch holds at most {MAX_LINES} requests",
                        line=number,
                    )
                )
                return read
            line = _line(number, text, endpoint)
            if line.custom_id is not None:
                if line.custom_id in seen:
                    read.errors.append(
                        BatchError(
                            code="duplicate_custom_id",
                            message=f"`custom_id` `{line.custom_id[:64]}` is used on line "
                            f"{seen[line.custom_id]} and line {number}; each must be unique",
                            param="custom_id",
                            line=number,
                        )
                    )
                seen.setdefault(line.custom_id, number)
            read.lines.append(line)
    if not read.lines and not read.errors:
        read.errors.append(BatchError(code="empty_file", message="the input file has no requests"))
    return read
