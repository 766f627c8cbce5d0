"""One answer's parser: the whole text at once, or a stream of pieces.

The stream re-reads the text so far on each piece and emits only what changed, so a
stream split anywhere ends with exactly what the whole-text parse gives: content and
reasoning trimmed of surrounding whitespace, and each call emitted once complete, its
name first, then its arguments as one valid JSON fragment.
"""

from __future__ import annotations

from dataclasses import dataclass

from appliance.openai.tool_formats.model import (
    Call,
    CallArguments,
    CallStart,
    Content,
    Event,
    Family,
    Found,
    IdFactory,
    Item,
    Parsed,
    Reasoning,
    Text,
    Think,
    Tools,
    random_call_id,
)


@dataclass
class _Split:
    content: str
    reasoning: str
    calls: list[Found]


def _split(items: list[Item]) -> _Split:
    content = [i.text for i in items if isinstance(i, Text)]
    reasoning = [i.text for i in items if isinstance(i, Think)]
    calls = [i for i in items if isinstance(i, Found)]
    return _Split("".join(content).strip(), "".join(reasoning).strip(), calls)


class FormatParser:
    """Parses one model's answers to one request (its declared tools)."""

    def __init__(self, family: Family, tools: Tools, ids: IdFactory = random_call_id) -> None:
        self.family = family
        self.tools = tools
        self.ids = ids

    def parse(self, text: str) -> Parsed:
        split = _split(self.family.scan(text, self.tools, True))
        return Parsed(
            content=split.content or None,
            reasoning=split.reasoning or None,
            calls=[Call(self.ids(), c.name, c.arguments) for c in split.calls],
        )

    def stream(self) -> StreamParser:
        return StreamParser(self)


class StreamParser:
    """Feed pieces of an answer as they come; each call returns the events they decide."""

    def __init__(self, parser: FormatParser) -> None:
        self._parser = parser
        self._text = ""
        self._content = ""
        self._reasoning = ""
        self._calls = 0
        self._finished = False

    def feed(self, piece: str) -> list[Event]:
        if self._finished:
            raise ValueError("the stream has finished")
        self._text += piece
        if not piece:
            return []
        return self._advance(final=False)

    def finish(self) -> list[Event]:
        """The events the end of the text decides (held-back text, a call left open)."""
        if self._finished:
            return []
        self._finished = True
        return self._advance(final=True)

    def _advance(self, final: bool) -> list[Event]:
        split = _split(self._parser.family.scan(self._text, self._parser.tools, final))
        events: list[Event] = []
        # Trailing whitespace is held back: it may end the content (and be trimmed).
        if split.reasoning.startswith(self._reasoning) and split.reasoning != self._reasoning:
            events.append(Reasoning(split.reasoning[len(self._reasoning) :]))
            self._reasoning = split.reasoning
        if split.content.startswith(self._content) and split.content != self._content:
            events.append(Content(split.content[len(self._content) :]))
            self._content = split.content
        for found in split.calls[self._calls :]:
            index = self._calls
            events.append(CallStart(index, self._parser.ids(), found.name))
            events.append(CallArguments(index, found.arguments))
            self._calls += 1
        return events
