"""What every format shares: the parsed answer, the stream events, and a family's scan.

A family reads the text a model wrote and says which parts are content, which are
reasoning and which are tool calls. It is given the whole text so far and whether the
text is final; it answers only for the part it can decide for good (a marker still
open, or a suffix that may begin one, is held back). The stream parser and the
whole-text parse both run on those answers, so the two always agree.
"""

from __future__ import annotations

import json
import secrets
import string
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

_ID_ALPHABET = string.ascii_letters + string.digits


def random_call_id() -> str:
    """An OpenAI-shaped call id (``call_`` and 24 letters or digits)."""
    return "call_" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(24))


@dataclass(frozen=True)
class Call:
    """One tool call; ``arguments`` is always the JSON text of an object."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class Parsed:
    """A whole answer split as OpenAI shows it: content and reasoning are None when empty."""

    content: str | None
    reasoning: str | None
    calls: list[Call]


# Stream events, in the order they happened.
@dataclass(frozen=True)
class Content:
    text: str


@dataclass(frozen=True)
class Reasoning:
    text: str


@dataclass(frozen=True)
class CallStart:
    """The first event of a call: its index among this answer's calls, id and name."""

    index: int
    id: str
    name: str


@dataclass(frozen=True)
class CallArguments:
    """A fragment of a call's arguments; a call's fragments join to valid JSON."""

    index: int
    fragment: str


Event = Content | Reasoning | CallStart | CallArguments


# What a family's scan finds, in text order.
@dataclass(frozen=True)
class Text:
    text: str


@dataclass(frozen=True)
class Think:
    text: str


@dataclass(frozen=True)
class Found:
    name: str
    arguments: str


Item = Text | Think | Found


@dataclass(frozen=True)
class Tools:
    """The functions a request declares: name -> parameters JSON schema."""

    schemas: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    @classmethod
    def from_openai(cls, tools: Sequence[Mapping[str, Any]] | None) -> Tools:
        schemas: dict[str, Mapping[str, Any]] = {}
        for tool in tools or ():
            function = tool.get("function") if isinstance(tool, Mapping) else None
            if isinstance(function, Mapping) and isinstance(function.get("name"), str):
                parameters = function.get("parameters")
                schemas[function["name"]] = parameters if isinstance(parameters, Mapping) else {}
        return cls(schemas)

    def knows(self, name: object) -> bool:
        return isinstance(name, str) and name in self.schemas

    def property_type(self, function: str, parameter: str) -> object:
        """The JSON schema ``type`` of one parameter (None when the schema does not say)."""
        properties = self.schemas.get(function, {}).get("properties")
        if isinstance(properties, Mapping):
            schema = properties.get(parameter)
            if isinstance(schema, Mapping):
                return schema.get("type")
        return None


class Family(Protocol):
    """One model family's output format."""

    @property
    def name(self) -> str: ...

    def scan(self, text: str, tools: Tools, final: bool) -> list[Item]:
        """The items ``text`` decides for good; with ``final`` the whole text is decided
        (whatever is not a well-formed call of a declared function is Text)."""
        ...


IdFactory = Callable[[], str]

_DECODER = json.JSONDecoder()


def decode_json(text: str, start: int = 0) -> tuple[Any, int] | None:
    """The JSON value at ``start`` (after whitespace) and where it ends, or None."""
    index = start
    while index < len(text) and text[index] in " \t\r\n":
        index += 1
    try:
        return _DECODER.raw_decode(text, index)
    except ValueError:
        return None


def arguments_text(arguments: object) -> str | None:
    """A call's arguments as the JSON text of an object, or None when they are not one.

    Arguments given as a string holding a JSON object are decoded first; missing
    arguments are ``{}``.
    """
    if arguments is None:
        return "{}"
    if isinstance(arguments, str):
        decoded = decode_json(arguments)
        if decoded is None or arguments[decoded[1] :].strip():
            return None
        arguments = decoded[0]
    if not isinstance(arguments, dict):
        return None
    return json.dumps(arguments, ensure_ascii=False)


def call_from_object(value: object, tools: Tools) -> Found | None:
    """A call from ``{"name", "arguments"|"parameters"}`` (or OpenAI's ``{"function": ...}``)
    naming a declared function; None otherwise."""
    if not isinstance(value, dict):
        return None
    if isinstance(value.get("function"), dict):
        value = value["function"]
        assert isinstance(value, dict)
    name = value.get("name")
    if not tools.knows(name):
        return None
    assert isinstance(name, str)
    raw = value.get("arguments", value.get("parameters"))
    arguments = arguments_text(raw)
    return None if arguments is None else Found(name, arguments)


def partial_marker(text: str, markers: Sequence[str]) -> int:
    """Where a suffix of ``text`` that may begin one of ``markers`` starts (len(text) if none)."""
    for start in range(max(0, len(text) - max(len(m) for m in markers) + 1), len(text)):
        tail = text[start:]
        if any(m.startswith(tail) for m in markers):
            return start
    return len(text)


def text_until(text: str, marker: str, final: bool) -> tuple[str, int]:
    """The text before ``marker`` (or before a suffix that may begin it, unless final) and
    where the marker starts (-1 when it is absent)."""
    found = text.find(marker)
    if found >= 0:
        return text[:found], found
    end = len(text) if final else partial_marker(text, (marker,))
    return text[:end], -1


def scan_blocks(
    text: str,
    final: bool,
    opening: str,
    closing: str,
    parse_body: Callable[[str], Found | None],
    *,
    unclosed_at_end: bool = True,
) -> list[Item]:
    """Items of a text where each call sits between ``opening`` and ``closing``.

    An open block is held until it closes; at the end of the text a block left open
    still counts when its body parses (``unclosed_at_end``: models often stop before
    the closing tag). A block that is not a call stays text, markup included.
    """
    items: list[Item] = []
    pos = 0
    while True:
        before, at = text_until(text[pos:], opening, final)
        items.append(Text(before))
        if at < 0:
            return items
        start = pos + at
        body_start = start + len(opening)
        end = text.find(closing, body_start)
        if end < 0:
            if not final:
                return items
            found = parse_body(text[body_start:]) if unclosed_at_end else None
            items.append(found or Text(text[start:]))
            return items
        pos = end + len(closing)
        items.append(parse_body(text[body_start:end]) or Text(text[start:pos]))
