"""Llama 3.x: ``{"name": ..., "parameters": {...}}`` as the whole answer, or after
``<|python_tag|>``; several calls separated by ``;`` or newlines.

Calls are read from the start of the answer (or the tag) while they parse as calls of
declared functions; from the first thing that is not one, the rest is text.
"""

from __future__ import annotations

from appliance.openai.tool_formats.model import (
    Item,
    Text,
    Tools,
    call_from_object,
    decode_json,
    text_until,
)

PYTHON_TAG = "<|python_tag|>"
_SEPARATORS = " \t\r\n;"


def call_sequence(text: str, tools: Tools, final: bool) -> list[Item]:
    """Calls one after another, then text."""
    items: list[Item] = []
    pos = 0
    while True:
        while pos < len(text) and text[pos] in _SEPARATORS:
            pos += 1
        if pos == len(text):
            return items
        if text[pos] != "{":
            items.append(Text(text[pos:]))
            return items
        decoded = decode_json(text, pos)
        if decoded is None:
            if final:
                items.append(Text(text[pos:]))
            return items
        found = call_from_object(decoded[0], tools)
        if found is None:
            items.append(Text(text[pos:]))
            return items
        items.append(found)
        pos = decoded[1]


class Llama3:
    name = "llama3"

    def scan(self, text: str, tools: Tools, final: bool) -> list[Item]:
        stripped = text.lstrip()
        if stripped.startswith("{"):
            return call_sequence(stripped, tools, final)
        before, at = text_until(text, PYTHON_TAG, final)
        if at < 0:
            return [Text(before)]
        return [Text(before), *call_sequence(text[at + len(PYTHON_TAG) :], tools, final)]
