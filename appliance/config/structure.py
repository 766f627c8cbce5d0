"""radiance.yaml's values against its schema: the first one that does not fit, located.

The document is converted to `Config` by `appliance.conversion`, which walks it field by
field, so a problem's `$.path` comes from that walk and its hint from the schema (the
nearest field, tag or choice, a name's shape, quotes for text), never from msgspec's
wording.
"""

from __future__ import annotations

import types
from functools import reduce
from typing import Any, Literal, Union, get_args, get_origin

import msgspec

from appliance.config.problems import ConfigError, ConfigProblem, SourceMap, child_path, suggest
from appliance.config.schema import Config, Name
from appliance.conversion import ConversionFailed, Failure, convert, without_annotations

_NAME_PATTERN: str = get_args(Name)[1].pattern
_NAME_HINT = "use up to 128 letters, digits and `._:/-`, starting with a letter or digit"
_QUOTES_HINT = "put the value in quotes to keep it as text"


def decode_config(data: object, where: SourceMap) -> Config:
    """`data` as a `Config`, or `ConfigError` with the first value that does not fit."""
    try:
        return convert(data, Config)
    except ConversionFailed as failed:
        raise ConfigError([problem_of(failed.failure, where)]) from None


def problem_of(failure: Failure, where: SourceMap) -> ConfigProblem:
    """A conversion failure at the line of the value (or key) it names, with a hint."""
    path = reduce(child_path, failure.keys, "$")
    last = failure.keys[-1] if failure.keys else None
    if failure.reason == "key":
        return where.problem(path, *_explain(failure), key=True)
    if failure.reason == "unknown_field":
        hint = suggest(str(last), failure.names)
        return where.problem(path, f"unknown field `{last}`", hint, key=True)
    if failure.reason == "unknown_tag":
        hint = suggest(str(failure.value), failure.names)
        return where.problem(path, f"unknown {last} `{failure.value}`", hint)
    kind = without_annotations(_optional(failure.type))
    if get_origin(kind) is Literal:
        return where.problem(
            path, failure.message, suggest(str(failure.value), map(str, get_args(kind)))
        )
    return where.problem(path, *_explain(failure))


def _explain(failure: Failure) -> tuple[str, str | None]:
    """msgspec's words, or plainer ones for a bad name; a hint where the value needs quotes."""
    value, kind = failure.value, failure.type
    if isinstance(value, str) and _NAME_PATTERN in _patterns(_optional(kind)):
        return f"`{value}` is not a valid name", _NAME_HINT
    if without_annotations(kind) is str and isinstance(value, int | float):
        return failure.message, _QUOTES_HINT
    return failure.message, None


def _optional(kind: Any) -> Any:
    """The type an optional `kind` holds when not null, else `kind`; constraints kept."""
    options = [o for o in get_args(without_annotations(kind)) if o is not type(None)]
    union = get_origin(without_annotations(kind)) in (Union, types.UnionType)
    return options[0] if union and len(options) == 1 else kind


def _patterns(kind: Any) -> list[str]:
    return [
        meta.pattern
        for meta in get_args(kind)[1:]
        if isinstance(meta, msgspec.Meta) and meta.pattern
    ]
