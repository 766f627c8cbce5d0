"""gpt-oss's harmony format: messages on channels.

    <|channel|>analysis<|message|>thinking...<|end|>
    <|start|>assistant<|channel|>commentary to=functions.f <|constrain|>json<|message|>{...}<|call|>
    <|start|>assistant<|channel|>final<|message|>the answer<|return|>

The prompt ends with ``<|start|>assistant``, so the first message's header starts at
``<|channel|>``; the recipient may also stand before the channel
(``<|start|>assistant to=functions.f<|channel|>commentary json<|message|>``). ``analysis``
is reasoning, a message to ``functions.NAME`` is a call, any other message is content.
``<|call|>`` and ``<|return|>`` end generation, so a text may end without them.
"""

from __future__ import annotations

import re

from appliance.openai.tool_formats.model import (
    Item,
    Text,
    Think,
    Tools,
    call_from_object,
    decode_json,
    partial_marker,
)

START = "<|start|>"
MESSAGE = "<|message|>"
ENDS = ("<|end|>", "<|call|>", "<|return|>", START)
_CHANNEL = re.compile(r"<\|channel\|>\s*([A-Za-z_]+)")
_RECIPIENT = re.compile(r"\bto=([^\s<]+)")


def _body_end(text: str, start: int) -> tuple[int, int]:
    """Where a message body ends and where the next message starts (-1, -1 if open)."""
    best = (-1, -1)
    for marker in ENDS:
        found = text.find(marker, start)
        if found >= 0 and (best[0] < 0 or found < best[0]):
            best = (found, found if marker == START else found + len(marker))
    return best


def _message(header: str, body: str, tools: Tools) -> Item:
    channel = _CHANNEL.search(header)
    recipient = _RECIPIENT.search(header)
    if recipient is not None and recipient.group(1).startswith("functions."):
        decoded = decode_json(body)
        if decoded is not None and not body[decoded[1] :].strip():
            name = recipient.group(1).removeprefix("functions.")
            found = call_from_object({"name": name, "arguments": decoded[0]}, tools)
            if found is not None:
                return found
        return Text(body)
    if channel is not None and channel.group(1) == "analysis":
        return Think(body)
    return Text(body)


class Harmony:
    name = "harmony"

    def scan(self, text: str, tools: Tools, final: bool) -> list[Item]:
        items: list[Item] = []
        pos = 0
        while pos < len(text):
            if text.startswith(START, pos):
                pos += len(START)
            message = text.find(MESSAGE, pos)
            if message < 0:
                if final:
                    header = text[pos:]
                    if "<|channel|>" not in header and not header.startswith("assistant"):
                        items.append(Text(header))  # a bare answer with no header
                return items
            header = text[pos:message]
            body_start = message + len(MESSAGE)
            end, after = _body_end(text, body_start)
            if end < 0:
                if final:
                    items.append(_message(header, text[body_start:], tools))
                elif not _RECIPIENT.search(header):  # reasoning and answers stream
                    partial = _message(header, text[body_start:], tools)
                    stop = partial_marker(text, ENDS) - body_start
                    if isinstance(partial, Think) and stop > 0:
                        items.append(Think(partial.text[:stop]))
                    elif isinstance(partial, Text) and stop > 0:
                        items.append(Text(partial.text[:stop]))
                return items
            items.append(_message(header, text[body_start:end], tools))
            pos = after
        return items
