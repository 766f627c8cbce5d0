"""Request bodies from bytes to Structs, with every failure as a 400 naming the field."""

from __future__ import annotations

import logging
import re
from typing import Any, TypeVar

import msgspec

from appliance.errors import InvalidRequest
from appliance.openai.fields import shown, unknown_fields

log = logging.getLogger(__name__)

T = TypeVar("T", bound=msgspec.Struct)

# msgspec ends a validation message with " - at `$.path`"; the path is all it gives.
_AT_PATH = re.compile(r" - at `\$\.?(?P<path>[^`]*)`$")
_LOGGED_FIELDS = 5
_MESSAGE_CHARS = 200


def decode_body(raw: bytes, kind: type[T]) -> T:
    return decode_request(raw, kind)[0]


def decode_request(raw: bytes, kind: type[T]) -> tuple[T, dict[str, Any]]:
    """The body as `kind`, and as the JSON object it was (for the fields `kind` lacks)."""
    if not raw.strip():
        raise InvalidRequest("the request body is empty; send a JSON object", code="invalid_json")
    try:
        data: Any = msgspec.json.decode(raw)
    except msgspec.DecodeError as exc:
        raise InvalidRequest(
            f"the request body is not valid JSON: {exc}", code="invalid_json"
        ) from None
    except RecursionError:
        raise _too_deep() from None
    if not isinstance(data, dict):
        raise InvalidRequest("the request body must be a JSON object", code="invalid_json")
    unknown = unknown_fields(data, kind.__struct_fields__)
    if unknown:
        names = ", ".join(shown(name) for name in unknown[:_LOGGED_FIELDS])
        more = f" and {len(unknown) - _LOGGED_FIELDS} more" if len(unknown) > _LOGGED_FIELDS else ""
        log.debug("fields %s does not read: %s%s", kind.__name__, names, more)
    try:
        return msgspec.convert(data, kind), data
    except msgspec.ValidationError as exc:
        raise validation_error(exc) from None
    except RecursionError:
        raise _too_deep() from None


def _too_deep() -> InvalidRequest:
    return InvalidRequest("the request body is nested too deeply", code="invalid_json")


def validation_error(exc: msgspec.ValidationError) -> InvalidRequest:
    message = str(exc)
    match = _AT_PATH.search(message)
    param = match.group("path") if match else None
    text = message[: match.start()] if match else message
    if len(text) > _MESSAGE_CHARS:  # msgspec may quote the client's value
        text = text[:_MESSAGE_CHARS] + "…"
    if param is not None:
        param = shown(param)
    if text.startswith("Object missing required field"):
        field = text.split("`")[1]
        param = f"{param}.{field}" if param else field
        return InvalidRequest(f"missing required parameter `{param}`", param=param)
    where = f" for `{param}`" if param else ""
    return InvalidRequest(f"invalid value{where}: {text}", param=param)
