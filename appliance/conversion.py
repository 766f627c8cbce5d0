"""msgspec conversion that says where a value failed, found by walking the value itself.

`convert` is `msgspec.convert`, except that a failure raises `ConversionFailed`, whose
`Failure` holds the trail of keys and indices to the failing value, the type it failed
against and msgspec's own words for it. The trail comes from walking the value against
the type, field by field, in the order msgspec checks them; the words come from
converting the failing value alone, so they never carry a path and no message is parsed.
"""

from __future__ import annotations

import types
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin

import msgspec

T = TypeVar("T")
# What went wrong at the end of the trail: the value itself; a mapping key (the last step);
# a key that names no field; a required field left out; an unknown `tag_field` value.
_ARRAYS = (list, tuple, set, frozenset)
Reason = Literal["value", "key", "unknown_field", "missing_field", "unknown_tag"]


@dataclass(frozen=True)
class Step:
    """One step down: a Struct `field`, a list `index` or a mapping `entry` (by key)."""

    kind: Literal["field", "index", "entry"]
    key: Any


@dataclass(frozen=True)
class Failure:
    """Where a value failed to convert and why, in msgspec's words (with no path)."""

    trail: tuple[Step, ...]
    message: str
    value: Any
    type: Any
    reason: Reason = "value"
    # unknown_field: the fields the Struct has; missing_field: the field left out;
    # unknown_tag: the tags the union knows.
    names: tuple[str, ...] = ()

    @property
    def keys(self) -> list[Any]:
        """The trail's keys and indices."""
        return [step.key for step in self.trail]


class ConversionFailed(ValueError):
    """A value that does not convert to its type; `failure` says where and why."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.message)
        self.failure = failure


def convert(data: object, kind: type[T]) -> T:
    """`data` as `kind`, or `ConversionFailed` locating the first value msgspec refused."""
    try:
        return msgspec.convert(data, kind)
    except msgspec.ValidationError as error:
        found = _locate(data, kind, ())
        raise ConversionFailed(found or Failure((), str(error), data, kind)) from None


def message_of(value: object, kind: Any) -> str | None:
    """msgspec's words for `value` as `kind` (it names no path at the top), or None."""
    try:
        msgspec.convert(value, kind)
    except msgspec.ValidationError as error:
        return str(error)
    return None


def without_annotations(kind: Any) -> Any:
    """`kind` without `Annotated` constraints."""
    while get_origin(kind) is Annotated:
        kind = get_args(kind)[0]
    return kind


def _locate(value: object, kind: Any, trail: tuple[Step, ...]) -> Failure | None:
    """The first failure msgspec meets converting `value` to `kind`, or None if none."""
    message = message_of(value, kind)
    if message is None:
        return None
    bare = without_annotations(kind)
    found: Failure | None = None
    if get_origin(bare) in (Union, types.UnionType):
        found = _locate_union(value, bare, trail, message)
    elif _outside_length(value, kind):
        pass  # msgspec checks a container's length before its items
    elif isinstance(value, dict) and _is_struct(bare):
        found = _locate_struct(value, bare, trail, message)
    elif isinstance(value, dict) and get_origin(bare) is dict:
        found = _locate_dict(value, bare, trail)
    elif isinstance(value, list) and get_origin(bare) in _ARRAYS:
        item_type = (get_args(bare) or (Any,))[0]
        items = enumerate(value)
        found = _first(_locate(item, item_type, (*trail, Step("index", i))) for i, item in items)
    return found or Failure(trail, message, value, kind)


def _locate_union(
    value: object, union: Any, trail: tuple[Step, ...], message: str
) -> Failure | None:
    """Into the option msgspec picks for `value`: by the tag, or by the value's shape."""
    options = [option for option in get_args(union) if option is not type(None)]
    structs = [option for option in map(without_annotations, options) if _is_struct(option)]
    if isinstance(value, dict) and structs and structs[0].__struct_config__.tag_field:
        return _locate_tagged(value, structs, trail, message)
    for option in options:
        bare = without_annotations(option)
        if isinstance(value, dict) and (get_origin(bare) is dict or _is_struct(bare)):
            return _locate(value, option, trail)
        if isinstance(value, list) and get_origin(bare) in _ARRAYS:
            return _locate(value, option, trail)
    return None


def _locate_tagged(
    value: dict[Any, Any], structs: list[Any], trail: tuple[Step, ...], message: str
) -> Failure | None:
    """A tagged union: the tag field first, then the Struct it names."""
    tag_field = structs[0].__struct_config__.tag_field
    tags = {struct.__struct_config__.tag: struct for struct in structs}
    if tag_field not in value:
        return Failure(trail, message, value, structs[0], "missing_field", (tag_field,))
    tag, at_tag = value[tag_field], (*trail, Step("field", tag_field))
    tag_type = type(next(iter(tags)))
    if not isinstance(tag, tag_type):
        return Failure(at_tag, message_of(tag, tag_type) or message, tag, tag_type)
    if tag not in tags:
        known = Literal[tuple(tags)]  # type: ignore[valid-type]
        names = tuple(map(str, tags))
        return Failure(at_tag, message_of(tag, known) or message, tag, known, "unknown_tag", names)
    return _locate(value, tags[tag], trail)


def _locate_struct(
    value: dict[Any, Any], kind: Any, trail: tuple[Step, ...], message: str
) -> Failure | None:
    """In msgspec's order: each key as given, then required fields left out."""
    config = kind.__struct_config__
    fields = {field.encode_name: field for field in msgspec.structs.fields(kind)}
    for key, item in value.items():
        if key == config.tag_field and config.tag_field is not None:
            continue
        if not isinstance(key, str):
            return Failure(
                (*trail, Step("entry", key)), message_of(key, str) or message, key, str, "key"
            )
        field = fields.get(key)
        if field is None and config.forbid_unknown_fields:
            names = (*fields, *([config.tag_field] if config.tag_field else []))
            return Failure(
                (*trail, Step("field", key)), message, item, kind, "unknown_field", names
            )
        found = _locate(item, field.type, (*trail, Step("field", key))) if field else None
        if found is not None:
            return found
    for name, field in fields.items():
        if field.required and name not in value:
            return Failure(trail, message, value, kind, "missing_field", (name,))
    return None


def _locate_dict(value: dict[Any, Any], kind: Any, trail: tuple[Step, ...]) -> Failure | None:
    key_type, item_type = get_args(kind) or (Any, Any)
    for key, item in value.items():
        at = (*trail, Step("entry", key))
        if (message := message_of(key, key_type)) is not None:
            return Failure(at, message, key, key_type, "key")
        if (found := _locate(item, item_type, at)) is not None:
            return found
    return None


def _outside_length(value: object, kind: Any) -> bool:
    """Whether a container breaks the length bounds `kind` puts on it."""
    if get_origin(kind) is not Annotated or not isinstance(value, (list, dict)):
        return False
    for meta in get_args(kind)[1:]:
        if isinstance(meta, msgspec.Meta):
            low, high = meta.min_length, meta.max_length
            if (low is not None and len(value) < low) or (high is not None and len(value) > high):
                return True
    return False


def _is_struct(kind: Any) -> bool:
    return isinstance(kind, type) and issubclass(kind, msgspec.Struct)


def _first(failures: Iterator[Failure | None]) -> Failure | None:
    return next((failure for failure in failures if failure is not None), None)
