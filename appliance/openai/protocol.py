"""OpenAI request bodies as lenient msgspec Structs.

Lenient means unknown fields are accepted (and logged by the decoder), because SDKs add
fields faster than servers learn them. Values are still checked: a field of the wrong
type or out of range is a 400 that names it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

Temperature = Annotated[float, Meta(ge=0.0, le=2.0)]
TopP = Annotated[float, Meta(ge=0.0, le=1.0)]
Penalty = Annotated[float, Meta(ge=-2.0, le=2.0)]
RepetitionPenalty = Annotated[float, Meta(gt=0.0, le=2.0)]
MaxTokens = Annotated[int, Meta(ge=1)]
ChoiceCount = Annotated[int, Meta(ge=1, le=16)]
TopLogprobs = Annotated[int, Meta(ge=0, le=20)]
StopList = Annotated[list[str], Meta(max_length=4)]


class Wire(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Base of request bodies: unknown fields are ignored, not rejected."""


class ContentPart(Wire, kw_only=True):
    type: str
    text: str | None = None


class FunctionCall(Wire, kw_only=True):
    name: str
    arguments: str | dict[str, Any] = "{}"


class ToolCall(Wire, kw_only=True):
    function: FunctionCall
    id: str | None = None
    type: Literal["function"] = "function"


class ChatMessage(Wire, kw_only=True):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None


class FunctionDefinition(Wire, kw_only=True):
    name: Annotated[str, Meta(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(Wire, kw_only=True):
    type: Literal["function"]
    function: FunctionDefinition


class ToolChoiceFunction(Wire, kw_only=True):
    name: str


class NamedToolChoice(Wire, kw_only=True):
    type: Literal["function"]
    function: ToolChoiceFunction


ToolChoice = Literal["none", "auto", "required"] | NamedToolChoice


class JsonSchemaFormat(Wire, kw_only=True):
    name: str = "response"
    schema: dict[str, Any] | None = None
    description: str | None = None
    strict: bool | None = None


class ResponseFormat(Wire, kw_only=True):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None


class StreamOptions(Wire, kw_only=True):
    include_usage: bool = False


class SamplingFields(Wire, kw_only=True):
    """Fields shared by chat and legacy completions."""

    model: str
    max_tokens: MaxTokens | None = None
    temperature: Temperature | None = None
    top_p: TopP | None = None
    n: ChoiceCount | None = None
    stop: str | StopList | None = None
    seed: int | None = None
    frequency_penalty: Penalty | None = None
    presence_penalty: Penalty | None = None
    repetition_penalty: RepetitionPenalty | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = None


class ChatCompletionRequest(SamplingFields, kw_only=True):
    messages: Annotated[list[ChatMessage], Meta(min_length=1)]
    max_completion_tokens: MaxTokens | None = None
    logprobs: bool | None = None
    top_logprobs: TopLogprobs | None = None
    response_format: ResponseFormat | None = None
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None


PromptItem = str | int | list[int]


class CompletionRequest(SamplingFields, kw_only=True):
    prompt: str | Annotated[list[PromptItem], Meta(min_length=1)]
    logprobs: Annotated[int, Meta(ge=0, le=5)] | None = None
    echo: bool = False
    suffix: str | None = None
    best_of: Annotated[int, Meta(ge=1)] | None = None


class EmbeddingRequest(Wire, kw_only=True):
    model: str
    input: str | Annotated[list[PromptItem], Meta(min_length=1)]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: Annotated[int, Meta(ge=1)] | None = None
    user: str | None = None
