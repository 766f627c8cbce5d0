"""Request bodies from bytes to Structs, with every failure as a 400 naming the field."""

from __future__ import annotations

import logging
from typing import Any, TypeVar

import msgspec

from appliance.conversion import ConversionFailed, Failure, Step, convert
from appliance.errors import InvalidRequest
from appliance.openai.fields import shown, unknown_fields

log = logging.getLogger(__name__)

T = TypeVar("T", bound=msgspec.Struct)

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
        return convert(data, kind), data
    except ConversionFailed as failed:
        raise invalid_value(failed.failure) from None
    except RecursionError:
        raise _too_deep() from None


def _too_deep() -> InvalidRequest:
    return InvalidRequest("the request body is nested too deeply", code="invalid_json")


def invalid_value(failure: Failure) -> InvalidRequest:
    """A 400 naming the parameter at fault as msgspec writes paths: `messages[0].role`."""
    trail = failure.trail[:-1] if failure.reason == "key" else failure.trail
    param = shown("".join(map(_written, trail)).removeprefix(".")) or None
    text = failure.message
    if len(text) > _MESSAGE_CHARS:  # msgspec may quote the client's value
        text = text[:_MESSAGE_CHARS] + "…"
    if failure.reason == "missing_field":
        field = failure.names[0]
        param = f"{param}.{field}" if param else field
        return InvalidRequest(f"missing required parameter `{param}`", param=param)
    where = f" for `{param}`" if param else ""
    return InvalidRequest(f"invalid value{where}: {text}", param=param)


def _written(step: Step) -> str:
    """A step as msgspec writes it: `.field`, `[index]`, and `[...]` for a mapping's entry."""
    return {"field": f".{step.key}", "index": f"[{step.key}]"}.get(step.kind, "[...]")


def check_metadata(metadata: dict[str, str] | None) -> None:
    """OpenAI's bounds on `metadata`: 16 pairs, keys of 64 characters, values of 512."""
    if metadata is None:
        return
    if len(metadata) > 16:
        raise InvalidRequest("`metadata` holds at most 16 pairs", param="metadata")
    for name, value in metadata.items():
        if len(name) > 64 or len(value) > 512:
            raise InvalidRequest(
                "`metadata` keys are at most 64 characters, values at most 512",
                param="metadata",
            )
