"""The OpenAI-compatible endpoints; each handler is a few lines over the serving layer."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol, TypeVar, runtime_checkable

import anyio
import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency, Provide
from litestar.exceptions import HTTPException
from litestar.params import FromPath
from litestar.response import Stream
from litestar.response.base import ASGIResponse
from litestar.types import Receive, Scope, Send

from appliance.accounting.limits import Policy
from appliance.accounting.meter import Meter
from appliance.error_handlers import api_error_response, from_http_exception
from appliance.errors import ApiError, InvalidRequest, ModelNotFound, NotFound
from appliance.openai.chat import complete_chat, open_chat_stream, plan_chat
from appliance.openai.completions import complete_text, open_text_stream, plan_completion
from appliance.openai.decoding import decode_request
from appliance.openai.embeddings import create_embeddings
from appliance.openai.engine_calls import api_error
from appliance.openai.fields import refuse_unhonoured, unknown_fields
from appliance.openai.models import admin_fields, list_models, may_use, model_object
from appliance.openai.passthrough import forward
from appliance.openai.protocol import ChatCompletionRequest, CompletionRequest, EmbeddingRequest
from appliance.openapi_docs import body
from appliance.registry import ModelRegistry, ServedModel
from appliance.request_context import REQUEST_ID, RequestContext
from appliance.state.keys import ApiKey
from backends.base import Engine, EngineError, ProxyEngine, TokenEngine
from backends.replicas import ReplicaSet

T = TypeVar("T", bound=msgspec.Struct)
AnyRequest = Request[Any, Any, Any]
Answer = dict[str, Any] | msgspec.Struct | AsyncIterator[bytes]


class Translation(Protocol):
    """An API served on another endpoint's path (/v1/responses on chat): the request
    body is turned into that endpoint's, and its answer and errors back."""

    async def request(self, raw: bytes, ctx: RequestContext) -> bytes: ...

    async def answer(self, answer: Answer, ctx: RequestContext) -> Answer: ...

    def error(self, error: ApiError) -> ApiError: ...


def _json(
    payload: dict[str, Any] | msgspec.Struct, headers: dict[str, str] | None = None
) -> Response[bytes]:
    return Response(
        msgspec.json.encode(payload), media_type="application/json", headers=headers or {}
    )


@dataclasses.dataclass(frozen=True)
class Inference:
    """Who asks, under which limits, and the parts that serve an inference request."""

    caller: NamedDependency[ApiKey]
    policy: NamedDependency[Policy]
    meter: NamedDependency[Meter]
    models: NamedDependency[ModelRegistry]


def _on_replica(served: ServedModel, ctx: RequestContext) -> Engine:
    """The engine of one of `served`'s replicas (the least busy), held until the request
    ends."""
    replicas = served.engine
    if not isinstance(replicas, ReplicaSet):
        return replicas
    try:
        lease = replicas.lease()
    except EngineError as exc:
        raise api_error(exc) from exc
    ctx.releases.append(lease.release)
    ctx.replica = lease.id  # a proxy engine names the server that answers instead
    return lease.engine


async def _infer(
    request: AnyRequest,
    inference: Inference,
    endpoint: str,
    kind: type[T],
    serve: Callable[[T, ServedModel, TokenEngine, RequestContext], Awaitable[Answer]],
    deployment: str | None = None,
    translation: Translation | None = None,
) -> Response[Any]:
    """Serve the request (its caller authenticated) inside its lifecycle: one ledger row
    and one log line whatever happens; a client that goes away cancels the work.

    `deployment` (from the path) names the model when the body does not; `translation`
    serves another API's request on this endpoint."""
    ctx = RequestContext(inference.meter, inference.caller, inference.policy, endpoint)
    request.scope.setdefault("state", {})[REQUEST_ID] = ctx.id  # for an answer at shutdown
    answer: Answer = {}
    async with ctx:
        raw = await _body(request)
        if translation is not None:
            raw = await translation.request(raw, ctx)
        async with _until_disconnected(request, ctx):
            try:
                answer = await _serve(raw, kind, serve, ctx, inference.models, deployment)
                if translation is not None:
                    answer = await translation.answer(answer, ctx)
            except ApiError as exc:
                if translation is None:
                    raise
                raise translation.error(exc) from None
    if ctx.error is not None:
        return api_error_response(ctx.error, ctx.headers())
    if isinstance(answer, dict | msgspec.Struct):
        return _json(answer, ctx.headers())
    headers = {**ctx.headers(), "cache-control": "no-cache", "x-accel-buffering": "no"}
    return EventStream(answer, media_type="text/event-stream", headers=headers)


async def _body(request: AnyRequest) -> bytes:
    try:
        return await request.body()
    except HTTPException as exc:  # Litestar's own: a body over the limit
        raise from_http_exception(exc) from None


async def _serve(
    raw: bytes,
    kind: type[T],
    serve: Callable[[T, ServedModel, TokenEngine, RequestContext], Awaitable[Answer]],
    ctx: RequestContext,
    models: ModelRegistry,
    deployment: str | None,
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
    engine = _on_replica(served, ctx)
    if isinstance(engine, ProxyEngine):
        return await forward(raw, body, served, engine, ctx)
    if not isinstance(engine, TokenEngine):
        raise TypeError(f"{type(engine).__name__} implements no engine contract")
    refuse_unhonoured(unknown_fields(data, kind.__struct_fields__), data, served.id)
    return await serve(body, served, engine, ctx)


@contextlib.asynccontextmanager
async def _until_disconnected(request: AnyRequest, ctx: RequestContext) -> AsyncIterator[None]:
    """Run the body until it ends or the client goes away, which cancels it (the request
    is then settled as cancelled, billed for what was generated). The request's body is
    read already, so the only message left to receive is the disconnect."""
    with anyio.CancelScope() as scope:

        async def watch() -> None:
            while (await request.receive())["type"] != "http.disconnect":
                pass
            ctx.disconnected = True
            scope.cancel()

        # A task beside the body, not a task group: the body's errors stay its own.
        watcher = asyncio.ensure_future(watch())
        try:
            yield
        finally:
            watcher.cancel()


class EventStream(Stream):
    """A streamed answer whose events are closed however the response ends: the client
    went away, sending failed, or the response never started; closing settles the
    request (`SettledStream.aclose`)."""

    def to_asgi_response(self, *args: Any, **kwargs: Any) -> ASGIResponse:
        response = super().to_asgi_response(*args, **kwargs)
        if isinstance(self.iterator, Settling):
            return _ClosingResponse(response, self.iterator)
        return response


@runtime_checkable
class Settling(Protocol):
    """Events whose closing settles their request: a `SettledStream`, or events made
    from one."""

    async def aclose(self) -> None: ...


class _ClosingResponse(ASGIResponse):
    def __init__(self, response: ASGIResponse, events: Settling) -> None:
        super().__init__()
        self._response = response
        self._events = events

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self._response(scope, receive, send)
        finally:
            await self._events.aclose()  # shielded


async def _chat(
    body: ChatCompletionRequest, served: ServedModel, engine: TokenEngine, ctx: RequestContext
) -> Answer:
    plan = await plan_chat(body, served, engine, ctx)
    await ctx.admit(sum(choice.max_tokens for choice in plan.choices))
    return await (open_chat_stream(plan, ctx) if body.stream else complete_chat(plan, ctx))


async def _completion(
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


class OpenAIController(Controller):
    """Mounted under /v1 and at the root, as clients use both."""

    dependencies = {"inference": Provide(Inference, sync_to_thread=False)}  # noqa: RUF012

    @get("/models", summary="List the models this key may use, with pricing and context length")
    async def models(
        self,
        caller: NamedDependency[ApiKey],
        policy: NamedDependency[Policy],
        models: NamedDependency[ModelRegistry],
    ) -> Response[bytes]:
        return _json(list_models(models, policy.models, admin=caller.is_admin))

    @get(
        "/models/{model_id:path}",
        summary="One model by id or alias; an admin also sees status, load time and load",
    )
    async def model(
        self,
        caller: NamedDependency[ApiKey],
        policy: NamedDependency[Policy],
        models: NamedDependency[ModelRegistry],
        model_id: FromPath[str],
    ) -> Response[bytes]:
        name = model_id.lstrip("/")
        served = models.resolve(name)
        if not may_use(served, policy.models):
            raise ModelNotFound(
                f"The model `{name}` does not exist or this key may not use it.", param="model"
            )
        item = model_object(served)
        return _json({**item, **admin_fields(served)} if caller.is_admin else item)

    @post(
        "/chat/completions",
        status_code=200,
        summary="Chat completion, optionally streamed",
        operation_class=body(ChatCompletionRequest),
    )
    async def chat(
        self, request: AnyRequest, inference: NamedDependency[Inference]
    ) -> Response[Any]:
        return await _infer(request, inference, "chat", ChatCompletionRequest, _chat)

    @post(
        "/completions",
        status_code=200,
        summary="Legacy text completion",
        operation_class=body(CompletionRequest),
    )
    async def completions(
        self, request: AnyRequest, inference: NamedDependency[Inference]
    ) -> Response[Any]:
        return await _infer(request, inference, "completions", CompletionRequest, _completion)

    @post(
        "/models/{target:path}",
        status_code=200,
        summary="POST /models/{deployment}/completions: text completion on one deployment "
        "(the body's `model` may be left out)",
        operation_class=body(CompletionRequest),
    )
    async def deployment_completions(
        self, request: AnyRequest, inference: NamedDependency[Inference], target: FromPath[str]
    ) -> Response[Any]:
        # One handler under the path of GET /models/{id}: ids may hold slashes.
        deployment, _, action = target.strip("/").rpartition("/")
        if action != "completions" or not deployment:
            raise NotFound(
                f"No route POST /v1/models/{target.strip('/')}; "
                "use POST /v1/models/{deployment}/completions.",
                code="not_found",
            )
        return await _infer(
            request, inference, "completions", CompletionRequest, _completion, deployment
        )

    @post(
        "/embeddings",
        status_code=200,
        summary="Embeddings as floats or base64",
        operation_class=body(EmbeddingRequest),
    )
    async def embeddings(
        self, request: AnyRequest, inference: NamedDependency[Inference]
    ) -> Response[Any]:
        return await _infer(request, inference, "embeddings", EmbeddingRequest, create_embeddings)
