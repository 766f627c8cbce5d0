"""Model families' own tool-call and reasoning formats, parsed whole or streamed.

Pure: the standard library only. Use::

    fmt = detect(template_source)            # or by_name(model.tool_parser)
    parser = fmt.parser(Tools.from_openai(request_tools), prompt=prompt.text)
    parsed = parser.parse(text)              # Parsed(content, reasoning, calls)
    stream = parser.stream()
    events = stream.feed(piece) ...; events += stream.finish()
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
