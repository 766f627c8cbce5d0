"""Tool calling: what grammar a tool_choice imposes, and how model text becomes tool_calls.

- ``none`` (or no tools): plain text.
- a named function: the output is constrained to that function's parameters schema and
  returned as one call (finish_reason ``stop``, as OpenAI does for a forced call).
- ``required``: the output is constrained to a JSON list of ``{"name", "arguments"}``
  objects naming declared functions.
- ``auto``: unconstrained; the model's own tool-call format (``tool_formats``, read by
  ``answer_reading``) says which parts of the text are calls.

A call's ``arguments`` is always a valid JSON text. A constrained answer cut short by
``max_tokens`` is not a call at all: the message has neither content nor tool_calls, and
its finish_reason ``length`` says why.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any, Literal

from appliance.errors import InvalidRequest
from appliance.openai.answers import ChatCompletionMessageToolCall, FunctionCallOut
from appliance.openai.protocol import ChatCompletionRequest, NamedToolChoice, Tool

Mode = Literal["none", "auto", "required", "named"]


def _call(name: str, arguments: Any) -> ChatCompletionMessageToolCall:
    text = arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False)
    return ChatCompletionMessageToolCall(
        id=f"call_{uuid.uuid4().hex[:24]}",
        function=FunctionCallOut(name=name, arguments=text),
    )


def _parameters(tool: Tool) -> dict[str, Any]:
    return tool.function.parameters or {"type": "object", "properties": {}}


def call_schemas(tools: tuple[Tool, ...]) -> list[dict[str, Any]]:
    """One JSON schema per tool for a call ``{"name", "arguments"}`` of it."""
    return [
        {
            "type": "object",
            "properties": {"name": {"const": t.function.name}, "arguments": _parameters(t)},
            "required": ["name", "arguments"],
            "additionalProperties": False,
        }
        for t in tools
    ]


@dataclass(frozen=True)
class ToolPlan:
    mode: Mode
    tools: tuple[Tool, ...] = ()
    name: str | None = None
    parallel: bool = True

    @property
    def constrained(self) -> bool:
        return self.mode in ("required", "named")

    def json_schema(self) -> dict[str, Any] | None:
        if self.mode == "named":
            tool = next(t for t in self.tools if t.function.name == self.name)
            return _parameters(tool)
        if self.mode == "required":
            most = 4 if self.parallel else 1
            items = {"anyOf": call_schemas(self.tools)}
            return {"type": "array", "items": items, "minItems": 1, "maxItems": most}
        return None

    def parse(self, text: str) -> tuple[str | None, list[ChatCompletionMessageToolCall]]:
        """Read a forced call's text into (content, tool_calls); other text is content."""
        if self.mode == "named":
            assert self.name is not None
            try:
                arguments = json.loads(text)
            except ValueError:
                return None, []  # cut short by max_tokens
            return None, [_call(self.name, arguments)]
        if self.mode == "required":
            try:
                items = json.loads(text)
                return None, [_call(item["name"], item["arguments"]) for item in items]
            except (ValueError, TypeError, KeyError):
                return None, []  # cut short by max_tokens
        return text, []


def plan_tools(body: ChatCompletionRequest) -> ToolPlan:
    tools = tuple(body.tools or ())
    choice = body.tool_choice
    if not tools:
        if choice not in (None, "none"):
            raise InvalidRequest("`tool_choice` needs `tools` to choose from", param="tool_choice")
        return ToolPlan("none")
    names = [t.function.name for t in tools]
    if len(set(names)) != len(names):
        raise InvalidRequest("two tools share one function name", param="tools")
    if isinstance(choice, NamedToolChoice):
        if choice.function.name not in names:
            raise InvalidRequest(
                f"tool_choice names `{choice.function.name}`, which is not in `tools`",
                param="tool_choice",
            )
        return ToolPlan("named", tools, choice.function.name)
    if choice == "none":
        return ToolPlan("none", tools)
    return ToolPlan(choice or "auto", tools, parallel=body.parallel_tool_calls is not False)
