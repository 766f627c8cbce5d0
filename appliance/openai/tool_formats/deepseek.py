"""DeepSeek V3, R1 and V3.1 tool calls (markers spelled with U+FF5C and U+2581)::

    CALLS_BEGIN CALL_BEGIN function SEP name
    ```json
    {...}
    ``` CALL_END CALLS_END

(without the spaces) and V3.1's ``CALL_BEGIN name SEP {...} CALL_END``.
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
    text_until,
)

CALLS_BEGIN = "<｜tool▁calls▁begin｜>"
CALLS_END = "<｜tool▁calls▁end｜>"
CALL_BEGIN = "<｜tool▁call▁begin｜>"
CALL_END = "<｜tool▁call▁end｜>"
SEP = "<｜tool▁sep｜>"
_FENCED = re.compile(r"\s*([^\n]+?)\s*\n```(?:json)?\s*\n?(.*?)\n?```\s*", re.DOTALL)


def _json_object(text: str) -> object:
    decoded = decode_json(text)
    if decoded is None or text[decoded[1] :].strip():
        return None
    return decoded[0]


def deepseek_call(body: str, tools: Tools) -> Found | None:
    head, sep, tail = body.partition(SEP)
    if not sep:
        return None
    if head.strip() == "function":
        fenced = _FENCED.fullmatch(tail)
        if fenced is None:
            return None
        name, arguments = fenced.group(1), _json_object(fenced.group(2))
    else:
        name, arguments = head.strip(), _json_object(tail)
    if not isinstance(arguments, dict):
        return None
    return call_from_object({"name": name, "arguments": arguments}, tools)


class DeepSeek:
    name = "deepseek"

    def scan(self, text: str, tools: Tools, final: bool) -> list[Item]:
        before, at = text_until(text, CALLS_BEGIN, final)
        items: list[Item] = [Text(before)]
        if at < 0:
            return items
        pos = at + len(CALLS_BEGIN)
        while True:
            while pos < len(text) and text[pos].isspace():
                pos += 1
            rest = text[pos:]
            if rest.startswith(CALLS_END):
                return [*items, *self.scan(text[pos + len(CALLS_END) :], tools, final)]
            if rest.startswith(CALL_BEGIN):
                end = text.find(CALL_END, pos)
                if end < 0:
                    if final:
                        items.append(Text(text[pos:]))
                    return items
                body = text[pos + len(CALL_BEGIN) : end]
                items.append(deepseek_call(body, tools) or Text(text[pos : end + len(CALL_END)]))
                pos = end + len(CALL_END)
                continue
            if not final and (CALL_BEGIN.startswith(rest) or CALLS_END.startswith(rest)):
                return items
            return [*items, *self.scan(rest, tools, final)]
