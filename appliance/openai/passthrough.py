"""Serving a request on a proxy engine (vLLM, remote replicas): forward, relay, bill.

The upstream renders and counts; Radiance still decides. Before anything is sent, the
request's declared parameters and the key's limits are checked and the request is
admitted, charging an estimate of the prompt plus the completion it may produce. The body
goes upstream as the client sent it (so engine-specific fields survive) with three
changes: the model, a `max_tokens` when the key's tier or the model sets a default, and
`stream_options.include_usage` forced on so every stream reports what it used. A
non-streamed chat or text completion is streamed upstream all the same and assembled
into one body (`assembly.py`), so its tokens are counted as they are made. The answer
comes back with the model id the client knows and Radiance's request id; the usage chunk
reaches the client only if it asked for it. The ledger row holds the usage the upstream
reported (for a request abandoned by its client: what was received until then).

What is passed on stays the upstream's JSON (its extra fields survive); it has the shapes of
`answers.py`, which /schema/openapi.json documents for every engine alike.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import anyio
import msgspec

from appliance.errors import (
    ApiError,
    BadGateway,
    InvalidRequest,
    PayloadTooLarge,
    ServiceUnavailable,
)
from appliance.openai.assembly import Assembly
from appliance.openai.engine_calls import api_error
from appliance.openai.protocol import ChatCompletionRequest, CompletionRequest, EmbeddingRequest
from appliance.openai.sampling import check_declared
from appliance.openai.sse import sse_event
from appliance.registry import ServedModel
from appliance.request_context import CLOSE_SECONDS, RequestContext
from backends.base import (
    Endpoint,
    EngineError,
    EngineOverloaded,
    EngineUnavailable,
    ProxyEngine,
    UnsupportedRequest,
    UpstreamError,
    UpstreamReply,
)

_ENDPOINTS: dict[str, Endpoint] = {
    "chat": "chat/completions",
    "completions": "completions",
    "embeddings": "embeddings",
}
_ID_PREFIX = {"chat": "chatcmpl-", "completions": "cmpl-"}
# Tokens of chat-template framing counted per message on top of its text.
_MESSAGE_OVERHEAD = 4


def estimate_tokens(value: Any, bytes_per_token: int = 4) -> int:
    """A prompt's tokens, estimated from its text (about 4 bytes a token) before the
    upstream counts them; token-id lists count exactly. With `bytes_per_token=1`, the
    most a byte-level tokenizer can make of it."""
    if isinstance(value, str):
        return math.ceil(len(value.encode()) / bytes_per_token)
    if isinstance(value, list) and value and all(isinstance(v, int) for v in value):
        return len(value)
    if isinstance(value, list):
        return sum(estimate_tokens(v, bytes_per_token) for v in value)
    if isinstance(value, dict):
        return sum(estimate_tokens(v, bytes_per_token) for v in value.values())
    return 0


def _prompt_estimate(endpoint: str, data: dict[str, Any], bytes_per_token: int = 4) -> int:
    if endpoint == "chat":
        messages = data.get("messages") or []
        tools = (
            estimate_tokens(msgspec.json.encode(data["tools"]).decode(), bytes_per_token)
            if "tools" in data
            else 0
        )
        overhead = _MESSAGE_OVERHEAD
        return sum(estimate_tokens(m, bytes_per_token) + overhead for m in messages) + tools
    field = data.get("prompt" if endpoint == "completions" else "input")
    return estimate_tokens(field, bytes_per_token)


def _completion_budget(
    body: ChatCompletionRequest | CompletionRequest,
    data: dict[str, Any],
    served: ServedModel,
    ctx: RequestContext,
    prompt: int,
) -> int:
    """The most one choice may generate; sets `max_tokens` upstream when a default applies."""
    cap = ctx.policy.max_tokens
    requested: int | None = body.max_tokens
    param = "max_tokens"
    if isinstance(body, ChatCompletionRequest) and body.max_completion_tokens is not None:
        requested, param = body.max_completion_tokens, "max_completion_tokens"
    if requested is not None:
        if cap is not None and requested > cap:
            raise InvalidRequest(
                f"`{param}` is {requested}, but this API key's tier allows at most {cap}.",
                param=param,
                code="max_tokens_exceeded",
            )
        # Never more than the context holds: the limits count this, and a value beyond
        # it is for the upstream to refuse (a 400 naming it), not a rate limit to retry.
        return min(requested, served.config.context_length)
    if isinstance(body, CompletionRequest):
        default: int | None = min(16, cap) if cap is not None else 16  # OpenAI's default
    else:
        defaults = [x for x in (served.config.default_max_tokens, cap) if x is not None]
        default = min(defaults) if defaults else None
    if default is not None:
        data["max_tokens"] = default
        return default
    return max(1, served.config.context_length - prompt)


async def forward(
    raw: bytes,
    body: ChatCompletionRequest | CompletionRequest | EmbeddingRequest | Any,
    served: ServedModel,
    engine: ProxyEngine,
    ctx: RequestContext,
) -> dict[str, Any] | AsyncIterator[bytes]:
    """Check, admit and forward one request; a dict, or SSE bytes for a stream."""
    data: dict[str, Any] = msgspec.json.decode(raw)
    # The upstream endpoint the body is for (/v1/responses comes here as a chat request).
    endpoint = (
        "chat"
        if isinstance(body, ChatCompletionRequest)
        else "completions"
        if isinstance(body, CompletionRequest)
        else ctx.endpoint
    )
    prompt = _prompt_estimate(endpoint, data)
    ctx.prompt_tokens = prompt
    ctx.prompt_bound = _prompt_estimate(endpoint, data, bytes_per_token=1)  # for the budget
    if isinstance(body, EmbeddingRequest):
        if not served.config.embeddings:
            raise InvalidRequest(
                f"the model `{served.id}` does not serve embeddings", param="model"
            )
        await ctx.admit(0)
        stream = False
    else:
        check_declared(body, served, engine.capabilities, None)
        budget = _completion_budget(body, data, served, ctx, prompt)
        await ctx.admit((body.n or 1) * budget)
        stream = bool(body.stream)
        if stream:
            data["stream_options"] = {**(data.get("stream_options") or {}), "include_usage": True}
    data["model"] = served.id
    assemble = not stream and endpoint in _ID_PREFIX and _streamable(data)
    if assemble:  # streamed upstream all the same, so tokens are counted as they come
        data["stream"] = True
        data["stream_options"] = {"include_usage": True}
    try:
        reply = await engine.forward(_ENDPOINTS[endpoint], data, stream=stream or assemble)
    except EngineError as exc:
        raise upstream_api_error(exc) from exc
    ctx.replica = reply.deployment
    if assemble:
        try:
            return await _assembled(reply, served, ctx, endpoint)
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(CLOSE_SECONDS):
                await reply.close()
    if reply.events is None:
        try:
            return _whole(reply.body or {}, served, ctx)
        finally:
            await reply.close()
    include_usage = bool(
        isinstance(body, (ChatCompletionRequest, CompletionRequest))
        and body.stream_options
        and body.stream_options.include_usage
    )
    return ctx.stream(_relay(reply, served, ctx, include_usage), close=reply.close)


def _streamable(data: dict[str, Any]) -> bool:
    """Whether a non-streamed request may be streamed upstream and assembled: not when it
    asks for what only a whole answer carries (candidates ranked by `best_of`, beam
    search, the prompt's log-probabilities)."""
    best_of, n = data.get("best_of"), data.get("n")
    ranked = isinstance(best_of, int) and best_of > (n if isinstance(n, int) else 1)
    return not ranked and not data.get("use_beam_search") and data.get("prompt_logprobs") is None


async def _assembled(
    reply: UpstreamReply, served: ServedModel, ctx: RequestContext, endpoint: str
) -> dict[str, Any]:
    """One answer made of the upstream's chunks."""
    assembly = Assembly(endpoint)
    async with contextlib.aclosing(_counted(reply, ctx)) as batches:
        async for batch in batches:
            for event in batch:
                assembly.add(event)
    return _rename(assembly.body(ctx.usage()), served, ctx)


def upstream_api_error(exc: EngineError) -> ApiError:
    """An upstream's error as the client should see it.

    The upstream's 4xx are the client's own errors and pass through with their status and
    message, except those that say the gateway itself is misconfigured (401, 403, 404:
    502) or busy (429: 503). 5xx and broken connections are 502 with Retry-After; an
    engine that is down or has no replica to take the request is 503 with Retry-After.
    """
    if isinstance(exc, (EngineUnavailable, EngineOverloaded, UnsupportedRequest)):
        return api_error(exc)
    if not isinstance(exc, UpstreamError):
        return BadGateway(f"the upstream failed: {exc}")
    status, message = exc.status, f"upstream: {exc}"
    if status in (401, 403):
        return BadGateway(f"the upstream refused Radiance's credentials ({status}): {exc}")
    if status == 404:
        return BadGateway(message, code="upstream_not_found")
    if status in (429, 503):
        return ServiceUnavailable(message, retry_after=exc.retry_after or 1)
    if status == 413:
        return PayloadTooLarge(message)
    if status >= 500:
        return BadGateway(message, retry_after=exc.retry_after or 1)
    error = InvalidRequest(str(exc), param=exc.param, code=exc.code)
    error.status = status
    return error


def _record_usage(ctx: RequestContext, usage: Any) -> bool:
    """Take the upstream's usage as the request's; False if it is not a usage object."""
    if not isinstance(usage, dict) or not isinstance(usage.get("prompt_tokens"), int):
        return False
    ctx.prompt_tokens = usage["prompt_tokens"]
    completion = usage.get("completion_tokens")
    completion = completion if isinstance(completion, int) else 0
    if completion > ctx.completion_tokens:
        ctx.add_tokens(completion - ctx.completion_tokens)
    else:
        ctx.completion_tokens = completion
    return True


def _rename(event: dict[str, Any], served: ServedModel, ctx: RequestContext) -> dict[str, Any]:
    if "model" in event:
        event["model"] = served.id
    prefix = _ID_PREFIX.get(ctx.endpoint)
    if prefix and "id" in event:
        event["id"] = prefix + ctx.id
    return event


def _whole(body: dict[str, Any], served: ServedModel, ctx: RequestContext) -> dict[str, Any]:
    if not _record_usage(ctx, body.get("usage")):
        # An upstream that reports no usage is billed on the estimate and the text.
        texts = [
            c.get("text") or (c.get("message") or {}).get("content") or ""
            for c in body.get("choices") or []
        ]
        ctx.add_tokens(sum(estimate_tokens(t) for t in texts if isinstance(t, str)))
    return _rename(body, served, ctx)


def _generated(event: dict[str, Any]) -> int:
    """Tokens an event carries when the upstream does not count them: one per choice
    with text (servers send about one token per event)."""
    count = 0
    for choice in event.get("choices") or ():
        if not isinstance(choice, dict):
            continue
        delta = choice.get("delta") or {}
        if choice.get("text") or (
            isinstance(delta, dict) and (delta.get("content") or delta.get("tool_calls"))
        ):
            count += 1
    return count


async def _counted(
    reply: UpstreamReply, ctx: RequestContext
) -> AsyncGenerator[list[dict[str, Any]], None]:
    """The upstream's events, in the lists they arrive in, each counted into the request
    as it arrives (so a request that ends early is billed for what was made until then)."""
    counted = False  # the upstream reported usage: no more estimating
    try:
        async for batch in reply.events or _nothing():
            generated = 0
            for position, event in enumerate(batch):
                if "error" in event and not event.get("choices"):
                    if position:
                        ctx.add_tokens(generated)
                        yield batch[:position]
                    raise _stream_error(event)
                usage = event.get("usage")
                if usage is not None and _record_usage(ctx, usage):
                    counted, generated = True, 0
                elif not counted:
                    generated += _generated(event)
            ctx.add_tokens(generated)  # once per batch: the events arrived together
            yield batch
    except EngineError as exc:
        raise upstream_api_error(exc) from exc


async def _relay(
    reply: UpstreamReply, served: ServedModel, ctx: RequestContext, include_usage: bool
) -> AsyncIterator[bytes]:
    """Pass the events on as they arrive; the request's lifecycle ends the stream, writes
    the row, and only then closes the upstream."""
    async with contextlib.aclosing(_counted(reply, ctx)) as batches:
        async for batch in batches:
            out = b"".join(_relayed(event, served, ctx, include_usage) for event in batch)
            if out:
                yield out


def _relayed(
    event: dict[str, Any], served: ServedModel, ctx: RequestContext, include_usage: bool
) -> bytes:
    if not event.get("choices") and event.get("usage") is not None:
        # The final usage chunk, if the client asked for it.
        return sse_event(_rename(event, served, ctx)) if include_usage else b""
    if include_usage:
        event["usage"] = None
    else:
        event.pop("usage", None)
    return sse_event(_rename(event, served, ctx))


def _stream_error(event: dict[str, Any]) -> ApiError:
    """An error event the upstream sent after the stream began."""
    error = event.get("error")
    message = error.get("message") if isinstance(error, dict) else error
    return BadGateway(f"the upstream failed mid-stream: {message or error}")


async def _nothing() -> AsyncIterator[list[dict[str, Any]]]:
    return
    yield
