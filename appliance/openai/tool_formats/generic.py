"""A generic JSON answer, for models whose template names no format of its own:
``{"tool_calls": [...]}``, ``{"tool_call": {...}}``, ``{"name": ..., "arguments": ...}``,
a list of those, or ``{"response": "text"}``. Anything else is text."""

from __future__ import annotations

from appliance.openai.tool_formats.model import (
    Found,
    Item,
    Text,
    Tools,
    call_from_object,
    decode_json,
)


def _calls(value: object, tools: Tools) -> list[Item] | None:
    if isinstance(value, dict):
        if isinstance(value.get("response"), str) and len(value) == 1:
            return [Text(value["response"])]
        if "tool_calls" in value and len(value) == 1:
            value = value["tool_calls"]
        elif "tool_call" in value and len(value) == 1:
            value = [value["tool_call"]]
        else:
            value = [value]
    if not isinstance(value, list) or not value:
        return None
    calls: list[Found | None] = [call_from_object(entry, tools) for entry in value]
    if any(call is None for call in calls):
        return None
    return [call for call in calls if call is not None]


class Generic:
    name = "generic"

    def scan(self, text: str, tools: Tools, final: bool) -> list[Item]:
        stripped = text.lstrip()
        if not stripped or stripped[0] not in "{[":
            return [Text(text)] if stripped or final else []
        decoded = decode_json(stripped)
        if decoded is None:
            return [Text(text)] if final else []
        value, end = decoded
        found = _calls(value, tools)
        if found is None:
            return [Text(text)]
        return [*found, Text(stripped[end:])]


class Plain:
    """No tool-call format: all text (reasoning may still be split out)."""

    name = "plain"

    def scan(self, text: str, tools: Tools, final: bool) -> list[Item]:
        return [Text(text)]
