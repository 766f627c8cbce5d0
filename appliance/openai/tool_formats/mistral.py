"""Mistral: ``[TOOL_CALLS][{"name": ..., "arguments": {...}}, ...]`` (older models) or
``[TOOL_CALLS]name[ARGS]{...}`` (newer ones, optionally ``name[CALL_ID]id[ARGS]{...}``),
one ``[TOOL_CALLS]`` per call.

A ``[TOOL_CALLS]`` that does not begin a well-formed call of a declared function is
text, and reading goes on after it.
"""

from __future__ import annotations

import re

from appliance.openai.tool_formats.model import (
    Found,
    Item,
    Text,
    Tools,
    call_from_object,
    decode_json,
    partial_marker,
    text_until,
)

TOOL_CALLS = "[TOOL_CALLS]"
ARGS = "[ARGS]"
CALL_ID = "[CALL_ID]"
_HEAD = re.compile(r"([A-Za-z0-9_.\-]*)(?:\[CALL_ID\][A-Za-z0-9]*)?")


def _json_list(text: str, start: int, tools: Tools, final: bool) -> tuple[list[Found], int] | None:
    """Calls of a JSON list at ``start`` and where it ends; None when not calls; ``([], -1)``
    while the list is still being written."""
    decoded = decode_json(text, start)
    if decoded is None:
        return None if final else ([], -1)
    value, end = decoded
    if not isinstance(value, list) or not value:
        return None
    calls = [call_from_object(entry, tools) for entry in value]
    if any(call is None for call in calls):
        return None
    return [c for c in calls if c is not None], end


def _named(text: str, start: int, tools: Tools, final: bool) -> tuple[list[Found], int] | None:
    """``name[ARGS]{...}`` at ``start``, as for _json_list."""
    args = text.find(ARGS, start)
    if args < 0:
        if final:
            return None
        written = text[start:]
        held = written[: partial_marker(written, (ARGS, CALL_ID))]
        return ([], -1) if _HEAD.fullmatch(held) else None
    head = _HEAD.fullmatch(text[start:args])
    if head is None or not head.group(1):
        return None
    decoded = decode_json(text, args + len(ARGS))
    if decoded is None:
        return None if final else ([], -1)
    found = call_from_object({"name": head.group(1), "arguments": decoded[0]}, tools)
    return None if found is None else ([found], decoded[1])


class Mistral:
    name = "mistral"

    def scan(self, text: str, tools: Tools, final: bool) -> list[Item]:
        items: list[Item] = []
        pos = 0
        while True:
            before, at = text_until(text[pos:], TOOL_CALLS, final)
            items.append(Text(before))
            if at < 0:
                return items
            start = pos + at + len(TOOL_CALLS)
            rest = text[start:].lstrip()
            if not rest and not final:
                return items
            read = _json_list if rest.startswith("[") else _named
            result = read(text, start, tools, final)
            if result is None:
                items.append(Text(TOOL_CALLS))  # not a call: the marker is text
                pos = start
                continue
            calls, end = result
            if end < 0:
                return items  # still being written
            items.extend(calls)
            pos = end
