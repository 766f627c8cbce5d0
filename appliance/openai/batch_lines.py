"""One line of a batch, served as the same request made directly would be.

The line's body goes through the endpoint's own serving path (`inference.serve_body`, and the
Responses translation for /v1/responses) inside a `RequestContext` of the batch's key:
its allow-list, `max_tokens` cap and budget apply, rate limits (rpm, tpm, concurrency) do
not, and the ledger row carries the batch's id and the model's batch price. What the
direct request would have answered becomes the line's result, as OpenAI writes it:
`{"id", "custom_id", "response": {"status_code", "request_id", "body"}, "error"}`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import msgspec

from appliance.accounting.limits import Policy
from appliance.accounting.meter import Meter
from appliance.errors import ApiError, InternalError, envelope
from appliance.openai.batch_protocol import LineError, LineResponse, ResultLine
from appliance.openai.embeddings import create_embeddings
from appliance.openai.inference import Answer, serve_body, serve_chat, serve_completion
from appliance.openai.protocol import ChatCompletionRequest, CompletionRequest, EmbeddingRequest
from appliance.openai.responses_routes import _OnChat
from appliance.registry import ModelRegistry, ServedModel
from appliance.request_context import RequestContext
from appliance.state.keys import ApiKey
from appliance.state.responses import ResponseStore
from backends.base import TokenEngine
from backends.replicas import Lease

Serve = Callable[[Any, ServedModel, TokenEngine, RequestContext], Awaitable[Answer]]
# The URL of a line, as the ledger names its endpoint, its body and how it is served.
ENDPOINTS: dict[str, tuple[str, type[msgspec.Struct], Serve]] = {
    "/v1/chat/completions": ("chat", ChatCompletionRequest, serve_chat),
    "/v1/completions": ("completions", CompletionRequest, serve_completion),
    "/v1/embeddings": ("embeddings", EmbeddingRequest, create_embeddings),
    "/v1/responses": ("responses", ChatCompletionRequest, serve_chat),
}
# Errors that say "not now" rather than "not this request": the line runs again later.
RETRIED = frozenset({"overloaded", "model_unavailable", "server_stopping"})


@dataclass(frozen=True)
class LineResult:
    outcome: str  # "output" (a 2xx answer) or "error"
    line: bytes  # the result line, JSON and a newline
    tokens: tuple[int, int] = (0, 0)  # prompt, completion
    retry: bool = False  # not an answer: leave the line to run again


def result_line(
    request_id: str,
    custom_id: str | None,
    response: LineResponse | None = None,
    error: LineError | None = None,
) -> bytes:
    line = ResultLine(
        id=f"batch_req_{request_id}", custom_id=custom_id, response=response, error=error
    )
    return msgspec.json.encode(line) + b"\n"


@dataclass(frozen=True)
class BatchCaller:
    """Whose batch it is and the parts that serve its lines."""

    key: ApiKey
    policy: Policy
    meter: Meter
    models: ModelRegistry
    responses: ResponseStore


async def serve_line(
    caller: BatchCaller,
    batch_id: str,
    url: str,
    custom_id: str | None,
    body: bytes,
    lease: Lease[Any] | None,
) -> LineResult:
    """Run one line on `lease` (taken on spare capacity; released when it ends)."""
    endpoint, kind, serve = ENDPOINTS[url]
    ctx = RequestContext(caller.meter, caller.key, caller.policy, endpoint, batch=batch_id)
    if lease is not None:
        ctx.releases.append(lease.release)
    translation = _OnChat(caller.responses, caller.key) if url == "/v1/responses" else None
    answer: Answer | None = None
    async with ctx:
        raw = body if translation is None else await translation.request(body, ctx)
        try:
            answer = await serve_body(raw, kind, serve, ctx, caller.models, None, lease)
            if translation is not None:
                answer = await translation.answer(answer, ctx)
        except ApiError as exc:
            if translation is None:
                raise
            raise translation.error(exc) from None
    ctx.release()  # the lease, also when the request never reached a replica
    if ctx.error is None and isinstance(answer, AsyncIterator):
        ctx.error = InternalError("a batch line cannot be streamed")
    if ctx.error is not None or answer is None:
        error = ctx.error or InternalError("the server failed to handle this request")
        return _failed(ctx.id, custom_id, error)
    payload = answer if isinstance(answer, dict) else msgspec.to_builtins(answer)
    response = LineResponse(status_code=200, request_id=ctx.id, body=payload)
    return LineResult(
        "output",
        result_line(ctx.id, custom_id, response),
        (ctx.prompt_tokens, ctx.completion_tokens),
    )


def _failed(request_id: str, custom_id: str | None, error: ApiError) -> LineResult:
    body = msgspec.to_builtins(envelope(error))
    response = LineResponse(status_code=error.status, request_id=request_id, body=body)
    retry = error.status == 503 and error.code in RETRIED
    return LineResult("error", result_line(request_id, custom_id, response), retry=retry)
