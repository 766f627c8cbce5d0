"""Families that write a marker then a JSON list of ``{"name", "arguments"}`` calls:
IBM Granite 3.x (``<|tool_call|>[...]``) and Phi-4-mini (``functools[...]``)."""

from __future__ import annotations

from dataclasses import dataclass

from appliance.openai.tool_formats.model import (
    Found,
    Item,
    Text,
    Tools,
    call_from_object,
    decode_json,
    text_until,
)


def json_list_calls(text: str, tools: Tools) -> tuple[list[Found], int] | None:
    """The calls of a JSON list at the start of ``text`` and where it ends; None when it
    is complete and not a list of declared calls; ``([], -1)`` while it is incomplete."""
    decoded = decode_json(text)
    if decoded is None:
        return [], -1
    value, end = decoded
    if not isinstance(value, list) or not value:
        return None
    calls = [call_from_object(entry, tools) for entry in value]
    if any(call is None for call in calls):
        return None
    return [call for call in calls if call is not None], end


@dataclass(frozen=True)
class PrefixedList:
    name: str
    marker: str

    def scan(self, text: str, tools: Tools, final: bool) -> list[Item]:
        items: list[Item] = []
        pos = 0
        while True:
            before, at = text_until(text[pos:], self.marker, final)
            items.append(Text(before))
            if at < 0:
                return items
            start = pos + at + len(self.marker)
            result = json_list_calls(text[start:], tools)
            if result is not None and result[1] < 0 and not final:
                return items  # still being written
            if result is None or result[1] < 0:
                items.append(Text(self.marker))  # not calls: the marker is text
                pos = start
                continue
            calls, end = result
            items.extend(calls)
            pos = start + end


GRANITE = PrefixedList("granite", "<|tool_call|>")
PHI4_MINI = PrefixedList("phi4_mini", "functools")
