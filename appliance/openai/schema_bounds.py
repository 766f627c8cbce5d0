"""Bounds on the JSON schemas a request carries (response_format, tool parameters).

A schema becomes a grammar that every sampled token of its request is checked against,
and a tool list is rendered into the prompt: both are bounded before any of that work.
"""

from __future__ import annotations

from typing import Any

import msgspec

from appliance.errors import InvalidRequest

MAX_SCHEMA_BYTES = 64 * 1024  # one schema, as JSON
MAX_SCHEMA_DEPTH = 32  # objects and arrays nested in one schema
MAX_TOOLS_BYTES = 256 * 1024  # every tool definition of a request, as JSON


def depth(value: Any) -> int:
    """How deeply objects and arrays nest in `value` (a scalar is 0), without recursion."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, level + 1)
        stack.extend((child, level + 1) for child in children)
    return deepest


def check_schema(schema: dict[str, Any], param: str) -> None:
    size = len(msgspec.json.encode(schema))
    if size > MAX_SCHEMA_BYTES:
        raise InvalidRequest(
            f"the schema is {size} bytes of JSON; at most {MAX_SCHEMA_BYTES} are allowed",
            param=param,
        )
    nested = depth(schema)
    if nested > MAX_SCHEMA_DEPTH:
        raise InvalidRequest(
            f"the schema nests {nested} levels deep; at most {MAX_SCHEMA_DEPTH} are allowed",
            param=param,
        )


def check_tools(tools: list[dict[str, Any]]) -> None:
    size = len(msgspec.json.encode(tools))
    if size > MAX_TOOLS_BYTES:
        raise InvalidRequest(
            f"`tools` is {size} bytes of JSON; at most {MAX_TOOLS_BYTES} are allowed",
            param="tools",
        )
    for index, tool in enumerate(tools):
        parameters = tool.get("function", {}).get("parameters")
        if parameters is not None:
            check_schema(parameters, f"tools[{index}].function.parameters")
