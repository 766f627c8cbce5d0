"""An inference request from its body to its reply, whatever carries it over HTTP.

`infer` runs one request inside its lifecycle (one ledger row and one log line whatever
happens; a client that goes away cancels the work) and gives back a `Reply`: the status,
the headers and a JSON body or the SSE events of a stream. The hot endpoints send it
straight over ASGI (`lane.py`); the others make a Litestar response of it (`routes.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, Protocol, TypeVar

import anyio
import msgspec
from litestar.types import Receive, Scope

from appliance.accounting.limits import Policy
from appliance.accounting.meter import Meter
from appliance.errors import ApiError, InternalError, InvalidRequest, envelope
from appliance.openai.answers import WholeAnswer
from appliance.openai.chat import complete_chat, open_chat_stream, plan_chat
from appliance.openai.completions import complete_text, open_text_stream, plan_completion
from appliance.openai.decoding import decode_request
from appliance.openai.engine_calls import api_error
from appliance.openai.fields import refuse_unhonoured, unknown_fields
from appliance.openai.passthrough import forward
from appliance.openai.protocol import ChatCompletionRequest, CompletionRequest
from appliance.registry import ModelRegistry, ServedModel
from appliance.request_context import REQUEST_ID, RequestContext
from appliance.runtime import Runtime
from appliance.state.keys import ApiKey
from backends.base import Engine, EngineError, ProxyEngine, TokenEngine
from backends.replicas import Lease, ReplicaSet

T = TypeVar("T", bound=msgspec.Struct)
# What serving a request gives back: a whole answer (a Struct of answers.py, or an
# upstream's JSON body of that shape; a Response of /v1/responses), or the SSE events of a
# stream (`data: {chunk}\n\n`).
Answer = WholeAnswer | msgspec.Struct | AsyncIterator[bytes]
Serve = Callable[[T, ServedModel, TokenEngine, RequestContext], Awaitable[Answer]]
STREAM_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


class Translation(Protocol):
    """An API served on another endpoint's path (/v1/responses on chat): the request
    body is turned into that endpoint's, and its answer and errors back."""

    async def request(self, raw: bytes, ctx: RequestContext) -> bytes: ...

    async def answer(self, answer: Answer, ctx: RequestContext) -> Answer: ...

    def error(self, error: ApiError) -> ApiError: ...


@dataclasses.dataclass(frozen=True)
class Inference:
    """Who asks, under which limits, and the parts that serve an inference request."""

    caller: ApiKey
    policy: Policy
    meter: Meter
    models: ModelRegistry


def inference_of(runtime: Runtime, authorization: str | None) -> Inference:
    """The caller of an `Authorization` header (or 401), its policy and the serving parts.
    Not a Litestar dependency: as one it cost a `State` built and a signature model
    parsed per request, about 5% of a proxied request's CPU."""
    caller = runtime.auth.bearer(authorization)
    return Inference(caller, runtime.policy(caller), runtime.meter, runtime.models)


@dataclasses.dataclass(slots=True)
class Reply:
    """What a request is answered: a JSON `body`, or the SSE `events` of a stream."""

    status: int
    headers: dict[str, str]
    body: bytes = b""
    events: AsyncIterator[bytes] | None = None


class BodyCut(Exception):
    """The client hung up before its whole body arrived."""


def error_reply(error: ApiError, headers: Mapping[str, str] | None = None) -> Reply:
    """An OpenAI API error, with its own headers (retry-after) and `headers`."""
    body = msgspec.json.encode(envelope(error))
    return Reply(error.status, {**error.headers, **(headers or {})}, body)


async def infer(
    inference: Inference,
    scope: Scope,
    receive: Receive,
    read_body: Callable[[], Awaitable[bytes]],
    endpoint: str,
    kind: type[T],
    serve: Serve[T],
    deployment: str | None = None,
    translation: Translation | None = None,
) -> Reply:
    """Serve the request (its caller authenticated) inside its lifecycle.

    `deployment` (from the path) names the model when the body does not; `translation`
    serves another API's request on this endpoint."""
    ctx = RequestContext(inference.meter, inference.caller, inference.policy, endpoint)
    scope.setdefault("state", {})[REQUEST_ID] = ctx.id  # for an answer at shutdown
    answer: Answer | None = None
    async with ctx:
        try:
            raw = await read_body()
        except BodyCut:
            ctx.disconnected = True  # settled as cancelled by its client (499)
            return Reply(499, ctx.headers())
        if translation is not None:
            raw = await translation.request(raw, ctx)
        async with until_disconnected(receive, ctx):
            try:
                answer = await serve_body(raw, kind, serve, ctx, inference.models, deployment)
                if translation is not None:
                    answer = await translation.answer(answer, ctx)
            except ApiError as exc:
                if translation is None:
                    raise
                raise translation.error(exc) from None
    if ctx.error is not None or answer is None:  # the context records why none came
        return error_reply(
            ctx.error or InternalError("the server failed to handle this request"),
            ctx.headers(),
        )
    if not isinstance(answer, AsyncIterator):
        return Reply(200, ctx.headers(), msgspec.json.encode(answer))
    return Reply(200, {**ctx.headers(), **STREAM_HEADERS}, events=answer)


def _on_replica(served: ServedModel, ctx: RequestContext, lease: Lease[Any] | None) -> Engine:
    """The engine of one of `served`'s replicas (the least busy), held until the request
    ends; or the one of `lease`, taken already (a batch line takes spare capacity)."""
    replicas = served.engine
    if not isinstance(replicas, ReplicaSet):
        return replicas
    if lease is not None and lease.replica in replicas.replicas:
        ctx.replica = lease.id
        engine: Engine = lease.engine
        return engine
    try:
        lease = replicas.lease()
    except EngineError as exc:
        raise api_error(exc) from exc
    ctx.releases.append(lease.release)
    ctx.replica = lease.id  # a proxy engine names the server that answers instead
    return lease.engine


async def serve_body(
    raw: bytes,
    kind: type[T],
    serve: Serve[T],
    ctx: RequestContext,
    models: ModelRegistry,
    deployment: str | None,
    lease: Lease[Any] | None = None,
) -> Answer:
    """Decode, resolve the model and its replica, and serve on it as its contract says:
    a proxy engine forwards the body, a token engine is given prompts to sample."""
    if deployment is not None:
        raw = _with_model(raw, deployment)
    body, data = decode_request(raw, kind)
    ctx.route_model = getattr(body, "model", None)
    served = models.resolve(ctx.route_model or "")
    if deployment is not None and served is not models.resolve(deployment):
        raise InvalidRequest(
            f"`model` names `{ctx.route_model}`, but the path names deployment "
            f"`{deployment}`; leave `model` out or make them agree",
            param="model",
        )
    ctx.use_model(served)
    served.require_ready()
    engine = _on_replica(served, ctx, lease)
    if isinstance(engine, ProxyEngine):
        return await forward(raw, body, served, engine, ctx)
    if not isinstance(engine, TokenEngine):
        raise TypeError(f"{type(engine).__name__} implements no engine contract")
    refuse_unhonoured(unknown_fields(data, kind.__struct_fields__), data, served.id)
    return await serve(body, served, engine, ctx)


@contextlib.asynccontextmanager
async def until_disconnected(receive: Receive, ctx: RequestContext) -> AsyncIterator[None]:
    """Run the body until it ends or the client goes away, which cancels it (the request
    is then settled as cancelled, billed for what was generated). The request's body is
    read already, so the only message left to receive is the disconnect."""
    with anyio.CancelScope() as scope:

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            ctx.disconnected = True
            scope.cancel()

        # A task beside the body, not a task group: the body's errors stay its own.
        watcher = asyncio.ensure_future(watch())
        try:
            yield
        finally:
            watcher.cancel()


async def serve_chat(
    body: ChatCompletionRequest, served: ServedModel, engine: TokenEngine, ctx: RequestContext
) -> Answer:
    plan = await plan_chat(body, served, engine, ctx)
    await ctx.admit(sum(choice.max_tokens for choice in plan.choices))
    return await (open_chat_stream(plan, ctx) if body.stream else complete_chat(plan, ctx))


async def serve_completion(
    body: CompletionRequest, served: ServedModel, engine: TokenEngine, ctx: RequestContext
) -> Answer:
    plan = await plan_completion(body, served, engine, ctx)
    await ctx.admit(sum(params.max_tokens for _, params in plan.runs))
    return await (open_text_stream(plan, ctx) if body.stream else complete_text(plan, ctx))


def _with_model(raw: bytes, deployment: str) -> bytes:
    """A body without `model` gets the deployment's name; anything else is left to decode."""
    try:
        data = msgspec.json.decode(raw)
    except (msgspec.DecodeError, RecursionError):
        return raw
    if isinstance(data, dict) and data.get("model") is None:
        data["model"] = deployment
        return msgspec.json.encode(data)
    return raw
