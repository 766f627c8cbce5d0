"""Hermes, Qwen 2.5 and Qwen 3: ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``."""

from __future__ import annotations

from appliance.openai.tool_formats.model import (
    Found,
    Item,
    Tools,
    call_from_object,
    decode_json,
    scan_blocks,
)

OPEN = "<tool_call>"
CLOSE = "</tool_call>"


def json_call(body: str, tools: Tools) -> Found | None:
    """The call a block's body holds as one JSON object, or None."""
    decoded = decode_json(body)
    if decoded is None or body[decoded[1] :].strip():
        return None
    return call_from_object(decoded[0], tools)


class Hermes:
    name = "hermes"

    def scan(self, text: str, tools: Tools, final: bool) -> list[Item]:
        return scan_blocks(text, final, OPEN, CLOSE, lambda body: json_call(body, tools))
