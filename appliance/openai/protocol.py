"""OpenAI request bodies as lenient msgspec Structs, with the bounds every request meets.

Lenient means unknown fields decode (``appliance.openai.fields`` then decides: a field
that does not change the output is accepted, one that would and cannot be honoured is a
400), because SDKs add fields faster than servers learn them. Values are checked: a field
of the wrong type, out of range or over a bound below is a 400 that names it. The bounds
keep the work a request can cause before any limit applies small: a name is not a
megabyte, a list is not a million items.
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
StopText = Annotated[str, Meta(max_length=1024)]
StopList = Annotated[list[StopText], Meta(max_length=4)]

# Bounds on what one request may hold (documented in the README's limits table).
MAX_NAME = 256  # a model name, a message's `name`, a tool call id
MAX_MESSAGES = 2048
MAX_TOOLS = 128  # as OpenAI
MAX_INPUTS = 2048  # embedding inputs or completion prompts in one request, as OpenAI
MAX_LOGIT_BIAS = 1024
MAX_EMBEDDING_TOKENS = 300_000  # tokens in all the inputs of one request, as OpenAI
MAX_COMPLETION_RUNS = 128  # prompts times n in one /v1/completions request
MAX_TEMPLATE_KWARGS = 64  # variables in a request's chat_template_kwargs
ShortText = Annotated[str, Meta(max_length=MAX_NAME)]
FunctionName = Annotated[str, Meta(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
# {"token id": bias}: added to the token's logit, -100 bans it and 100 all but forces it.
LogitBias = Annotated[
    dict[str, Annotated[float, Meta(ge=-100.0, le=100.0)]], Meta(max_length=MAX_LOGIT_BIAS)
]


TemplateKwargs = Annotated[dict[ShortText, Any], Meta(max_length=MAX_TEMPLATE_KWARGS)]


class Wire(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Base of request bodies: unknown fields are ignored, not rejected."""


class ContentPart(Wire, kw_only=True):
    type: str
    text: str | None = None


class FunctionCall(Wire, kw_only=True):
    name: ShortText
    arguments: str | dict[str, Any] = "{}"


class ToolCall(Wire, kw_only=True):
    function: FunctionCall
    id: ShortText | None = None
    type: Literal["function"] = "function"


class ChatMessage(Wire, kw_only=True):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    name: ShortText | None = None
    tool_calls: Annotated[list[ToolCall], Meta(max_length=MAX_TOOLS)] | None = None
    tool_call_id: ShortText | None = None


class FunctionDefinition(Wire, kw_only=True):
    name: FunctionName
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(Wire, kw_only=True):
    type: Literal["function"]
    function: FunctionDefinition


class ToolChoiceFunction(Wire, kw_only=True):
    name: FunctionName


class NamedToolChoice(Wire, kw_only=True):
    type: Literal["function"]
    function: ToolChoiceFunction


ToolChoice = Literal["none", "auto", "required"] | NamedToolChoice


class JsonSchemaFormat(Wire, kw_only=True):
    name: ShortText = "response"
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

    model: ShortText
    max_tokens: MaxTokens | None = None
    temperature: Temperature | None = None
    top_p: TopP | None = None
    n: ChoiceCount | None = None
    stop: StopText | StopList | None = None
    seed: int | None = None
    frequency_penalty: Penalty | None = None
    presence_penalty: Penalty | None = None
    repetition_penalty: RepetitionPenalty | None = None
    logit_bias: LogitBias | None = None
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    user: str | None = None


class ChatCompletionRequest(SamplingFields, kw_only=True):
    messages: Annotated[list[ChatMessage], Meta(min_length=1, max_length=MAX_MESSAGES)]
    max_completion_tokens: MaxTokens | None = None
    logprobs: bool | None = None
    top_logprobs: TopLogprobs | None = None
    response_format: ResponseFormat | None = None
    tools: Annotated[list[Tool], Meta(max_length=MAX_TOOLS)] | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    # Read by the chat template (a llama.cpp model's; a proxy engine gets them as sent).
    reasoning_effort: Literal["low", "medium", "high"] | None = None
    # Extra template variables, e.g. {"enable_thinking": false} (vLLM's field).
    chat_template_kwargs: TemplateKwargs | None = None
    # A prefill (vLLM's fields): the last, assistant message is continued, not answered.
    add_generation_prompt: bool = True
    continue_final_message: bool = False


PromptItem = str | int | list[int]


class CompletionRequest(SamplingFields, kw_only=True):
    prompt: str | Annotated[list[PromptItem], Meta(min_length=1)]
    logprobs: Annotated[int, Meta(ge=0, le=5)] | None = None
    echo: bool = False
    suffix: str | None = None
    best_of: Annotated[int, Meta(ge=1)] | None = None


class EmbeddingRequest(Wire, kw_only=True):
    model: ShortText
    input: str | Annotated[list[PromptItem], Meta(min_length=1)]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: Annotated[int, Meta(ge=1)] | None = None
    user: str | None = None


# Request bodies the OpenAPI document shows as examples (and a contract test sends).
_HELLO = [{"role": "user", "content": "Say hello."}]
CHAT_EXAMPLES: dict[str, dict[str, Any]] = {
    "chat": {"model": "my-model", "messages": _HELLO, "max_tokens": 8},
    "streamed, with usage": {
        "model": "my-model",
        "messages": _HELLO,
        "max_tokens": 8,
        "stream": True,
        "stream_options": {"include_usage": True},
    },
    "two choices with log-probabilities": {
        "model": "my-model",
        "messages": _HELLO,
        "max_tokens": 4,
        "n": 2,
        "logprobs": True,
        "top_logprobs": 2,
        "seed": 1,
    },
    "template variables": {
        "model": "my-model",
        "messages": _HELLO,
        "max_tokens": 8,
        "reasoning_effort": "low",
        "chat_template_kwargs": {"enable_thinking": False},
    },
    "a forced tool call": {
        "model": "my-model",
        "messages": [{"role": "user", "content": "Weather in Paris?"}],
        "max_tokens": 8,
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "weather",
                    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
                },
            }
        ],
        "tool_choice": {"type": "function", "function": {"name": "weather"}},
    },
}
COMPLETION_EXAMPLES: dict[str, dict[str, Any]] = {
    "completion": {"model": "my-model", "prompt": "Once upon a time", "max_tokens": 8},
    "streamed, echoed, with log-probabilities": {
        "model": "my-model",
        "prompt": ["Once upon", "a time"],
        "max_tokens": 4,
        "echo": True,
        "logprobs": 2,
        "stream": True,
        "stream_options": {"include_usage": True},
    },
}
EMBEDDING_EXAMPLES: dict[str, dict[str, Any]] = {
    "floats": {"model": "my-model", "input": ["hello world", "goodbye"]},
    "base64": {"model": "my-model", "input": "hello", "encoding_format": "base64"},
}
