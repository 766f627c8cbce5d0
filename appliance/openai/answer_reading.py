"""How the text of a chat answer is read: in the model's own tool-call and reasoning format.

The format is the one radiance.yaml names (``tool_parser:``) or else the one the model's
chat template points to (``tool_formats.detect``). Under tool_choice ``auto``, ``none`` or
without tools the family's parser splits the text into content, reasoning and tool calls,
whole or streamed in OpenAI's delta shape; a forced tool_choice is read by the grammar it
imposed (``tool_calls.ToolPlan``), its calls sent whole at the end.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from appliance.config.schema import ModelConfig
from appliance.openai.answers import (
    ChatCompletionMessageToolCall,
    ChatCompletionMessageToolCallChunk,
    FunctionCallDelta,
    FunctionCallOut,
)
from appliance.openai.answers import ChatCompletionStreamResponseDelta as MessageDelta
from appliance.openai.tool_calls import ToolPlan, call_schemas
from appliance.openai.tool_formats import (
    FAMILIES,
    CallArguments,
    CallStart,
    Content,
    Event,
    FormatParser,
    Reasoning,
    StreamParser,
    ToolFormat,
    Tools,
    by_name,
    detect,
)


def answer_format(config: ModelConfig, template: str | None) -> ToolFormat:
    """The format a model writes: named by ``tool_parser`` or detected from its template."""
    if config.tool_parser is not None:
        return by_name(config.tool_parser)
    found = detect(template)
    if found.name == "generic" and template is not None and "tools" not in template:
        # A template that does not read `tools` gets them from the engine as Hermes-style
        # instructions (TokenEngine.render_chat): the model is taught <tool_call> blocks.
        return by_name("hermes", thinking=found.thinking)
    return found


def describe_format(config: ModelConfig, template: str | None) -> str:
    """The format as `radiance check` and the ready line show it, e.g. ``hermes+think``."""
    fmt = answer_format(config, template)
    name = fmt.name + ("+think" if fmt.thinking else "")
    return name + (", reasoning inline" if config.reasoning == "inline" else "")


def generic_schema(tools: ToolPlan) -> dict[str, Any]:
    """What a model whose template has no tool-call markup may answer under ``auto``:
    ``{"response": text}`` or ``{"tool_calls": [...]}`` (llama.cpp's generic format)."""
    most = 4 if tools.parallel else 1
    calls = {"type": "array", "items": {"anyOf": call_schemas(tools.tools)}}
    return {
        "anyOf": [
            {
                "type": "object",
                "properties": {"response": {"type": "string"}},
                "required": ["response"],
                "additionalProperties": False,
            },
            {
                "type": "object",
                "properties": {"tool_calls": {**calls, "minItems": 1, "maxItems": most}},
                "required": ["tool_calls"],
                "additionalProperties": False,
            },
        ]
    }


@dataclass(frozen=True)
class Reading:
    """One whole answer as the message shows it."""

    content: str | None
    reasoning: str | None
    calls: list[ChatCompletionMessageToolCall]


class AnswerReader:
    """Reads the answers to one request."""

    def __init__(
        self,
        tools: ToolPlan,
        fmt: ToolFormat,
        declared: list[dict[str, Any]] | None,
        prompt: str,
        *,
        inline: bool = False,
    ) -> None:
        self.tools = tools
        self.inline = inline
        known = Tools.from_openai(declared if tools.mode == "auto" else None)
        if tools.mode != "auto" and fmt.name != "harmony":
            # No call to find: text streams as it comes (a family would hold back text
            # that may open a call, e.g. JSON); <think> is still split. Harmony's channels
            # are its reasoning, so it is read as itself.
            fmt = ToolFormat(FAMILIES["plain"], fmt.thinking)
        # Inline reasoning: the family without its <think> wrapper, so the tags stay text.
        self._parser = (
            FormatParser(fmt.family, known) if inline else fmt.parser(known, prompt=prompt)
        )

    def whole(self, text: str) -> Reading:
        if self.tools.constrained:
            content, calls = self.tools.parse(text)
            return Reading(content, None, calls)
        parsed = self._parser.parse(text)
        content, reasoning = parsed.content, parsed.reasoning
        if not parsed.calls and not reasoning:
            content = text or None  # plain text as written, its whitespace kept
        if self.inline and reasoning:
            content, reasoning = "\n\n".join(filter(None, (reasoning, content))), None
        calls = [
            ChatCompletionMessageToolCall(
                id=call.id, function=FunctionCallOut(name=call.name, arguments=call.arguments)
            )
            for call in parsed.calls
        ]
        return Reading(content, reasoning, calls)

    def stream(self) -> ReadingStream:
        return ReadingStream(self)


class ReadingStream:
    """Pieces of one answer in, OpenAI message deltas out."""

    def __init__(self, reader: AnswerReader) -> None:
        self._reader = reader
        self._stream: StreamParser | None = (
            None if reader.tools.constrained else reader._parser.stream()
        )
        self._held: list[str] = []  # the text so far
        self._content = False  # whether content has been sent
        self._thought_inline = False  # the last content sent was inline reasoning
        self.calls = 0
        self.reasoning: list[str] = []

    def feed(self, piece: str) -> list[MessageDelta]:
        self._held.append(piece)
        if self._stream is None:
            return []
        return self._deltas(self._stream.feed(piece))

    def finish(self) -> list[MessageDelta]:
        if self._stream is not None:
            deltas = self._deltas(self._stream.finish())
            text = "".join(self._held)
            trailing = text[len(text.rstrip()) :]
            if self._plain and trailing and text.strip():
                deltas.append(MessageDelta(content=trailing))  # plain text as written
            return deltas
        reading = self._reader.whole("".join(self._held))
        self.calls = len(reading.calls)
        if reading.calls:
            chunks = [
                ChatCompletionMessageToolCallChunk(
                    index=i,
                    id=call.id,
                    type="function",
                    function=FunctionCallDelta(
                        name=call.function.name, arguments=call.function.arguments
                    ),
                )
                for i, call in enumerate(reading.calls)
            ]
            return [MessageDelta(tool_calls=chunks)]
        return [MessageDelta(content=reading.content)] if reading.content else []

    @property
    def _plain(self) -> bool:
        """Whether the answer so far is plain text (the parser trims it; the answer does not)."""
        return not self.calls and not self.reasoning

    def _deltas(self, events: list[Event]) -> list[MessageDelta]:
        deltas = []
        for event in events:
            if isinstance(event, Reasoning) and not self._reader.inline:
                self.reasoning.append(event.text)
                deltas.append(MessageDelta(reasoning_content=event.text))
            elif isinstance(event, Content | Reasoning):
                text = event.text
                if not self._content and self._plain and isinstance(event, Content):
                    so_far = "".join(self._held)
                    text = so_far[: len(so_far) - len(so_far.lstrip())] + text
                if isinstance(event, Content) and self._thought_inline:
                    text = "\n\n" + text  # as the whole answer joins them
                self._thought_inline = isinstance(event, Reasoning)
                self._content = True
                deltas.append(MessageDelta(content=text))
            elif isinstance(event, CallStart):
                self.calls += 1
                function = FunctionCallDelta(name=event.name, arguments="")
                call = ChatCompletionMessageToolCallChunk(
                    index=event.index, id=event.id, type="function", function=function
                )
                deltas.append(MessageDelta(tool_calls=[call]))
            elif isinstance(event, CallArguments):
                function = FunctionCallDelta(arguments=event.fragment)
                call = ChatCompletionMessageToolCallChunk(index=event.index, function=function)
                deltas.append(MessageDelta(tool_calls=[call]))
        return deltas
