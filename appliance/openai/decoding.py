"""Request bodies from bytes to Structs, with every failure as a 400 naming the field."""

from __future__ import annotations

import logging
import re
from typing import Any, TypeVar

import msgspec

from appliance.errors import InvalidRequest

log = logging.getLogger(__name__)

T = TypeVar("T", bound=msgspec.Struct)

# msgspec ends a validation message with " - at `$.path`"; the path is all it gives.
_AT_PATH = re.compile(r" - at `\$\.?(?P<path>[^`]*)`$")


def decode_body(raw: bytes, kind: type[T]) -> T:
    if not raw.strip():
        raise InvalidRequest("the request body is empty; send a JSON object", code="invalid_json")
    try:
        data: Any = msgspec.json.decode(raw)
    except msgspec.DecodeError as exc:
        raise InvalidRequest(
            f"the request body is not valid JSON: {exc}", code="invalid_json"
        ) from None
    if not isinstance(data, dict):
        raise InvalidRequest("the request body must be a JSON object", code="invalid_json")
    known = set(kind.__struct_fields__)
    unknown = sorted(set(data) - known)
    if unknown:
        log.info("ignoring unknown fields in %s: %s", kind.__name__, ", ".join(unknown))
    try:
        return msgspec.convert(data, kind)
    except msgspec.ValidationError as exc:
        raise validation_error(exc) from None


def validation_error(exc: msgspec.ValidationError) -> InvalidRequest:
    message = str(exc)
    match = _AT_PATH.search(message)
    param = match.group("path") if match else None
    text = message[: match.start()] if match else message
    if text.startswith("Object missing required field"):
        field = text.split("`")[1]
        param = f"{param}.{field}" if param else field
        return InvalidRequest(f"missing required parameter `{param}`", param=param)
    where = f" for `{param}`" if param else ""
    return InvalidRequest(f"invalid value{where}: {text}", param=param)
