"""The Responses API on the wire: the request Radiance reads and the objects it sends.

Requests are lenient as the other wire Structs (``appliance.openai.protocol``): unknown
fields decode and are then accepted or refused by ``responses_request``. The `input`
items are decoded one by one (``input_item``), each by its `type`, so an error names the
item. The response objects follow OpenAI's Responses API (`Response`, its output items
and the streaming events) and are what /schema/openapi.json documents.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from appliance.openai.protocol import (
    MAX_MESSAGES,
    MAX_NAME,
    MAX_TOOLS,
    FunctionName,
    MaxTokens,
    ShortText,
    Temperature,
    TopP,
    Wire,
)

MAX_METADATA = 16  # keys, as OpenAI
MetadataKey = Annotated[str, Meta(max_length=64)]
MetadataValue = Annotated[str, Meta(max_length=512)]
Metadata = Annotated[dict[MetadataKey, MetadataValue], Meta(max_length=MAX_METADATA)]
ItemId = Annotated[str, Meta(max_length=MAX_NAME)]


# -- the request -----------------------------------------------------------------------


class InputPart(Wire, kw_only=True):
    """A part of a message's content: text in (`input_text`), or text a model wrote
    (`output_text`, `refusal`) when an earlier answer is sent back."""

    type: Literal["input_text", "output_text", "text", "refusal"]
    text: str | None = None
    refusal: str | None = None


class MessageItem(Wire, kw_only=True):
    type: Literal["message"] = "message"
    role: Literal["user", "assistant", "system", "developer"]
    content: str | Annotated[list[InputPart], Meta(max_length=MAX_MESSAGES)]
    id: ItemId | None = None
    status: str | None = None


class FunctionCallItem(Wire, kw_only=True):
    type: Literal["function_call"] = "function_call"
    call_id: ShortText
    name: FunctionName
    arguments: str
    id: ItemId | None = None
    status: str | None = None


class FunctionCallOutputItem(Wire, kw_only=True):
    type: Literal["function_call_output"] = "function_call_output"
    call_id: ShortText
    output: str | Annotated[list[InputPart], Meta(max_length=MAX_MESSAGES)]
    id: ItemId | None = None
    status: str | None = None


InputItem = MessageItem | FunctionCallItem | FunctionCallOutputItem
# Items a client may send back that add nothing to the prompt: a model's earlier reasoning
# (chat templates leave past thinking out of the conversation).
SKIPPED_ITEMS = frozenset({"reasoning"})
ITEM_KINDS: dict[str, type[InputItem]] = {
    "message": MessageItem,
    "function_call": FunctionCallItem,
    "function_call_output": FunctionCallOutputItem,
}


class FunctionTool(Wire, kw_only=True):
    type: str  # only "function" is served; `responses_request` names any other
    name: FunctionName | None = None
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class FunctionChoice(Wire, kw_only=True):
    type: str
    name: FunctionName | None = None


ToolChoice = Literal["none", "auto", "required"] | FunctionChoice


class TextFormat(Wire, kw_only=True):
    type: Literal["text", "json_object", "json_schema"]
    name: ShortText | None = None
    schema: dict[str, Any] | None = None
    description: str | None = None
    strict: bool | None = None


class TextConfig(Wire, kw_only=True):
    format: TextFormat | None = None
    verbosity: str | None = None


class ResponsesRequest(Wire, kw_only=True):
    model: ShortText
    # A string, or items decoded one by one (`input_item`) so an error names the item.
    input: str | Annotated[list[dict[str, Any]], Meta(min_length=1, max_length=MAX_MESSAGES)]
    instructions: str | None = None
    max_output_tokens: MaxTokens | None = None
    temperature: Temperature | None = None
    top_p: TopP | None = None
    tools: Annotated[list[FunctionTool], Meta(max_length=MAX_TOOLS)] | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    text: TextConfig | None = None
    metadata: Metadata | None = None
    store: bool | None = None
    previous_response_id: ItemId | None = None
    stream: bool | None = None
    user: str | None = None
    # Not in OpenAI's Responses API; as on /v1/chat/completions (vLLM's servers take it too).
    seed: int | None = None


# -- what is sent back -----------------------------------------------------------------


class Struct(msgspec.Struct, kw_only=True):
    """Base of response objects: every field is sent, `None` as null."""


class OutputText(Struct, kw_only=True, tag_field="type", tag="output_text"):
    text: str
    annotations: list[dict[str, Any]] = msgspec.field(default_factory=list)
    logprobs: list[dict[str, Any]] = msgspec.field(default_factory=list)


class InputText(Struct, kw_only=True, tag_field="type", tag="input_text"):
    text: str


class OutputMessage(Struct, kw_only=True, tag_field="type", tag="message"):
    id: str
    status: Literal["in_progress", "completed", "incomplete"]
    role: Literal["assistant"] = "assistant"
    content: list[OutputText]


class FunctionCall(Struct, kw_only=True, tag_field="type", tag="function_call"):
    id: str
    call_id: str
    name: str
    arguments: str
    status: Literal["in_progress", "completed", "incomplete"]


class ReasoningText(Struct, kw_only=True, tag_field="type", tag="reasoning_text"):
    text: str


class ReasoningItem(Struct, kw_only=True, tag_field="type", tag="reasoning"):
    """What a reasoning model thought before it answered (its `<think>` text, or harmony's
    analysis channel)."""

    id: str
    summary: list[dict[str, Any]] = msgspec.field(default_factory=list)
    content: list[ReasoningText]
    status: Literal["in_progress", "completed", "incomplete"] = "completed"


OutputItem = OutputMessage | FunctionCall | ReasoningItem


class StoredMessage(Struct, kw_only=True, tag_field="type", tag="message"):
    """An input message as /v1/responses/{id}/input_items lists it."""

    id: str
    status: Literal["completed"] = "completed"
    role: Literal["user", "assistant", "system", "developer"]
    content: list[InputText | OutputText]


class StoredFunctionCallOutput(Struct, kw_only=True, tag_field="type", tag="function_call_output"):
    id: str
    call_id: str
    output: str
    status: Literal["completed"] = "completed"


StoredItem = StoredMessage | FunctionCall | StoredFunctionCallOutput


class InputTokensDetails(Struct, kw_only=True):
    cached_tokens: int = 0
    cache_write_tokens: int = 0


class OutputTokensDetails(Struct, kw_only=True):
    reasoning_tokens: int = 0


class ResponseUsage(Struct, kw_only=True):
    input_tokens: int
    input_tokens_details: InputTokensDetails = msgspec.field(default_factory=InputTokensDetails)
    output_tokens: int
    output_tokens_details: OutputTokensDetails = msgspec.field(default_factory=OutputTokensDetails)
    total_tokens: int


class IncompleteDetails(Struct, kw_only=True):
    reason: Literal["max_output_tokens", "content_filter"]


class ResponseError(Struct, kw_only=True):
    code: str
    message: str


class ResponseFormat(Struct, kw_only=True, omit_defaults=True):
    type: Literal["text", "json_object", "json_schema"]
    name: str | None = None
    schema: dict[str, Any] | None = None
    description: str | None = None
    strict: bool | None = None


class ResponseText(Struct, kw_only=True):
    format: ResponseFormat


class ResponseTool(Struct, kw_only=True):
    type: Literal["function"] = "function"
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class NamedFunction(Struct, kw_only=True):
    type: Literal["function"] = "function"
    name: str


ItemStatus = Literal["in_progress", "completed", "incomplete"]
Status = Literal["completed", "failed", "in_progress", "cancelled", "queued", "incomplete"]


class Response(Struct, kw_only=True):
    """OpenAI's Response object; `output_text` joins the text of the output messages."""

    id: str
    object: Literal["response"] = "response"
    created_at: int
    completed_at: int | None = None
    status: Status
    error: ResponseError | None = None
    incomplete_details: IncompleteDetails | None = None
    instructions: str | None = None
    max_output_tokens: int | None = None
    model: str
    output: list[OutputItem]
    output_text: str = ""
    parallel_tool_calls: bool = True
    previous_response_id: str | None = None
    reasoning: dict[str, Any] | None = None
    store: bool = True
    temperature: float | None = None
    text: ResponseText
    tool_choice: Literal["none", "auto", "required"] | NamedFunction = "auto"
    tools: list[ResponseTool] = msgspec.field(default_factory=list)
    top_p: float | None = None
    truncation: Literal["disabled"] = "disabled"
    usage: ResponseUsage | None = None
    user: str | None = None
    metadata: dict[str, str] = msgspec.field(default_factory=dict)


class ResponseStreamEvent(Struct, kw_only=True, omit_defaults=True):
    """One event of a streamed Response (the SSE `data:`; its `event:` line is `type`).
    Which fields it carries depends on `type`, as OpenAI documents each event."""

    type: str
    sequence_number: int
    response: Response | None = None
    output_index: int | None = None
    item: OutputItem | None = None
    item_id: str | None = None
    content_index: int | None = None
    part: OutputText | ReasoningText | None = None
    delta: str | None = None
    text: str | None = None
    name: str | None = None
    arguments: str | None = None
    logprobs: list[dict[str, Any]] | None = None
    code: str | None = None
    message: str | None = None
    param: str | None = None


class DeletedResponse(Struct, kw_only=True):
    id: str
    object: Literal["response.deleted"] = "response.deleted"
    deleted: bool = True


class InputItemList(Struct, kw_only=True):
    object: Literal["list"] = "list"
    data: list[StoredItem]
    first_id: str | None
    last_id: str | None
    has_more: bool


_WEATHER = {
    "type": "function",
    "name": "get_weather",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}
# Requests the OpenAPI document shows (and the contract test sends).
RESPONSES_EXAMPLES: dict[str, dict[str, Any]] = {
    "text": {"model": "my-model", "input": "Hello!", "max_output_tokens": 8},
    "streamed, with instructions": {
        "model": "my-model",
        "instructions": "Be brief.",
        "input": [{"role": "user", "content": [{"type": "input_text", "text": "Hello!"}]}],
        "max_output_tokens": 8,
        "stream": True,
    },
    "a forced function call": {
        "model": "my-model",
        "input": "Weather in Paris?",
        "tools": [_WEATHER],
        "tool_choice": {"type": "function", "name": "get_weather"},
        "max_output_tokens": 8,
    },
    "structured output": {
        "model": "my-model",
        "input": "Answer in JSON.",
        "text": {"format": {"type": "json_schema", "name": "reply", "schema": {"type": "object"}}},
        "max_output_tokens": 8,
        "store": False,
    },
}
# The response objects the OpenAPI document describes.
DOCUMENTED: list[type[msgspec.Struct]] = [
    ResponsesRequest,
    Response,
    ResponseStreamEvent,
    DeletedResponse,
    InputItemList,
]
