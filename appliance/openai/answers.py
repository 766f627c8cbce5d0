"""OpenAI response bodies as msgspec Structs: what the server sends, and what
/schema/openapi.json documents.

Shapes and names follow OpenAI's own spec (openai/openai-openapi:
CreateChatCompletionResponse, ChatCompletionStreamResponse, CreateCompletionResponse,
CreateEmbeddingResponse, Model, ListModelsResponse, ErrorResponse), plus Radiance's
extras (a model's pricing and context length, an admin's view of the engine). Every field
with a plain default is always sent (`null` included, as OpenAI sends `"logprobs": null`);
a field that defaults to `UNSET` is left out unless it is set, as OpenAI leaves
`usage` out of a stream's chunks unless `stream_options.include_usage` asks for it.

An answer relayed from an upstream OpenAI server (a proxy engine) is passed on as the
upstream's JSON, which has these shapes and may hold more fields.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal, TypeVar

import msgspec
from msgspec import UNSET, UnsetType


class ResponseBody(msgspec.Struct, kw_only=True):
    """Base of response bodies: every field is sent, but those left `UNSET`."""


# -- errors ---------------------------------------------------------------------------


L = TypeVar("L")


def cursor_list(kind: Callable[..., L], page: Sequence[Any], has_more: bool) -> L:
    """One page of an OpenAI list (`data`, `first_id`, `last_id`, `has_more`) whose
    entries have ids; the next page starts `after` its `last_id`."""
    return kind(
        data=list(page),
        first_id=page[0].id if page else None,
        last_id=page[-1].id if page else None,
        has_more=has_more,
    )


class OpenAIError(ResponseBody, kw_only=True):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorResponse(ResponseBody, kw_only=True):
    """Every OpenAI API error (4xx, 5xx), and an error event inside a stream."""

    error: OpenAIError


# -- usage and log-probabilities ------------------------------------------------------


class CompletionTokensDetails(ResponseBody, kw_only=True):
    reasoning_tokens: int  # of completion_tokens, those the model spent reasoning


class CompletionUsage(ResponseBody, kw_only=True):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletionUsage(CompletionUsage, kw_only=True):
    # Present when the model reasoned apart (`reasoning_content`).
    completion_tokens_details: CompletionTokensDetails | UnsetType = UNSET


class TopLogprob(ResponseBody, kw_only=True):
    token: str
    logprob: float
    bytes: list[int] | None


class ChatCompletionTokenLogprob(ResponseBody, kw_only=True):
    token: str
    logprob: float
    bytes: list[int] | None
    top_logprobs: list[TopLogprob]


class ChatChoiceLogprobs(ResponseBody, kw_only=True):
    content: list[ChatCompletionTokenLogprob] | None
    refusal: list[ChatCompletionTokenLogprob] | None = None  # as OpenAI sends it: null


# -- chat completions -----------------------------------------------------------------


class FunctionCallOut(ResponseBody, kw_only=True):
    name: str
    arguments: str  # a JSON text


class ChatCompletionMessageToolCall(ResponseBody, kw_only=True):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCallOut


class ChatCompletionResponseMessage(ResponseBody, kw_only=True):
    role: Literal["assistant"] = "assistant"
    content: str | None
    refusal: str | None = None  # Radiance's models never refuse through this field
    tool_calls: list[ChatCompletionMessageToolCall] | UnsetType = UNSET
    # The model's reasoning (<think>, harmony's analysis channel) as vLLM and llama-server
    # send it; absent when the model did not reason or the model keeps it inline.
    reasoning_content: str | UnsetType = UNSET


class ChatChoice(ResponseBody, kw_only=True):
    index: int
    message: ChatCompletionResponseMessage
    logprobs: ChatChoiceLogprobs | None
    finish_reason: str  # stop, length, tool_calls, content_filter


class CreateChatCompletionResponse(ResponseBody, kw_only=True):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: ChatCompletionUsage


class FunctionCallDelta(ResponseBody, kw_only=True):
    """The first delta of a call names the function (arguments ``""``); later ones carry
    fragments of the arguments, which join to a JSON text."""

    name: str | UnsetType = UNSET
    arguments: str | UnsetType = UNSET


class ChatCompletionMessageToolCallChunk(ResponseBody, kw_only=True):
    index: int
    id: str | UnsetType = UNSET
    type: Literal["function"] | UnsetType = UNSET
    function: FunctionCallDelta | UnsetType = UNSET


class ChatCompletionStreamResponseDelta(ResponseBody, kw_only=True):
    role: Literal["assistant"] | UnsetType = UNSET
    content: str | UnsetType | None = UNSET
    reasoning_content: str | UnsetType = UNSET
    tool_calls: list[ChatCompletionMessageToolCallChunk] | UnsetType = UNSET


class ChatStreamChoice(ResponseBody, kw_only=True):
    index: int
    delta: ChatCompletionStreamResponseDelta
    logprobs: ChatChoiceLogprobs | None
    finish_reason: str | None  # null until the choice's last chunk


class ChatCompletionStreamResponse(ResponseBody, kw_only=True):
    """One chunk of a streamed chat completion: each `data:` line of the event stream is
    one (then `data: [DONE]`). With `stream_options.include_usage`, every chunk has
    `usage: null` but the last, which has no choices and the usage."""

    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChatStreamChoice]
    usage: ChatCompletionUsage | UnsetType | None = UNSET


# -- legacy completions ---------------------------------------------------------------


class CompletionLogprobs(ResponseBody, kw_only=True):
    tokens: list[str]
    token_logprobs: list[float]
    top_logprobs: list[dict[str, float]]
    text_offset: list[int]


class CompletionChoice(ResponseBody, kw_only=True):
    index: int
    text: str
    logprobs: CompletionLogprobs | None
    finish_reason: str | None  # stop or length; null in a stream until the last chunk


class CreateCompletionResponse(ResponseBody, kw_only=True):
    """A text completion, and (with `stream`) each chunk of one: each `data:` line of the
    event stream is one, with `usage` as in a chat stream."""

    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: CompletionUsage | UnsetType | None = UNSET


# -- embeddings -----------------------------------------------------------------------


class Embedding(ResponseBody, kw_only=True):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str  # a string: base64 of little-endian float32


class EmbeddingUsage(ResponseBody, kw_only=True):
    prompt_tokens: int
    total_tokens: int


class CreateEmbeddingResponse(ResponseBody, kw_only=True):
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: EmbeddingUsage


# -- models ---------------------------------------------------------------------------


class ModelPricing(ResponseBody, kw_only=True):
    """USD per million tokens, as decimal strings."""

    prompt: str
    completion: str


class DownloadProgress(ResponseBody, kw_only=True):
    source: str
    state: str
    bytes: int
    total_bytes: int | None
    percent: float | None
    error: str | None


class Model(ResponseBody, kw_only=True):
    """OpenAI's model object, Radiance's description of it, and (for the admin key
    only) the engine's state and load."""

    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str
    name: str
    context_length: int
    pricing: ModelPricing
    supported_sampling_parameters: list[str]
    aliases: list[str]
    parent: str | None  # vLLM's field: the model a deployment runs
    status: str | UnsetType = UNSET  # ready, loading, failed, stopped
    backend: str | UnsetType = UNSET
    source: str | UnsetType | None = UNSET
    load_seconds: float | UnsetType | None = UNSET
    requests_running: int | UnsetType = UNSET
    requests_waiting: int | UnsetType = UNSET
    error: str | UnsetType | None = UNSET
    engine_stats: dict[str, float] | UnsetType = UNSET
    replicas: int | UnsetType = UNSET
    download: DownloadProgress | UnsetType = UNSET


class ListModelsResponse(ResponseBody, kw_only=True):
    object: Literal["list"] = "list"
    data: list[Model]


# A whole (non-streamed) answer: one of the Structs above, or the JSON body an upstream
# OpenAI server answered (a proxy engine), which has their shape.
WholeAnswer = (
    CreateChatCompletionResponse
    | CreateCompletionResponse
    | CreateEmbeddingResponse
    | dict[str, Any]
)

# What /schema/openapi.json documents, and the components their schemas use.
DOCUMENTED: list[type[msgspec.Struct]] = [
    CreateChatCompletionResponse,
    ChatCompletionStreamResponse,
    CreateCompletionResponse,
    CreateEmbeddingResponse,
    Model,
    ListModelsResponse,
    ErrorResponse,
]
