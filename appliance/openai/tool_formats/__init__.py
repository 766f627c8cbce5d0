"""Model families' own tool-call and reasoning formats, parsed whole or streamed.

Families: hermes (Hermes, Qwen 2.5, Qwen 3), qwen3_coder, llama3, mistral, deepseek
(V3, R1, V3.1), harmony (gpt-oss), granite, phi4_mini, generic (JSON) and plain; any of
them may be wrapped for ``<think>`` reasoning. Pure: the standard library only. Use::

    fmt = detect(engine.chat_template)       # or by_name(model.tool_parser)
    parser = fmt.parser(Tools.from_openai(request_tools), prompt=prompt.text)
    parsed = parser.parse(text)              # Parsed(content, reasoning, calls)
    stream = parser.stream()
    events = stream.feed(piece) ...; events += stream.finish()

A stream's events: ``Content``/``Reasoning`` text; per call one ``CallStart`` (index, id,
name: OpenAI's first tool-call delta) then ``CallArguments`` (its whole arguments, valid
JSON), emitted once the call is complete. Fed at any split, a stream ends with exactly
what ``parse`` gives (ids aside). Markup never reaches content; a call that is malformed,
cut short or names an undeclared function stays text, markup included, as the model
wrote it. Content and reasoning are trimmed of surrounding whitespace.
"""

from appliance.openai.tool_formats.model import (
    Call,
    CallArguments,
    CallStart,
    Content,
    Event,
    Family,
    Parsed,
    Reasoning,
    Tools,
    random_call_id,
)
from appliance.openai.tool_formats.parser import FormatParser, StreamParser
from appliance.openai.tool_formats.reasoning import prompt_opens_thinking
from appliance.openai.tool_formats.registry import (
    ALIASES,
    FAMILIES,
    ToolFormat,
    UnknownFormat,
    by_name,
    detect,
)

__all__ = [
    "ALIASES",
    "FAMILIES",
    "Call",
    "CallArguments",
    "CallStart",
    "Content",
    "Event",
    "Family",
    "FormatParser",
    "Parsed",
    "Reasoning",
    "StreamParser",
    "ToolFormat",
    "Tools",
    "UnknownFormat",
    "by_name",
    "detect",
    "prompt_opens_thinking",
    "random_call_id",
]
