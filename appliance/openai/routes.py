"""The OpenAI-compatible endpoints; each handler is a few lines over the serving layer."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol, TypeVar

import anyio
import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.exceptions import HTTPException
from litestar.params import FromPath

from appliance.accounting.limits import Policy
from appliance.accounting.meter import Meter
from appliance.error_handlers import api_error_response, from_http_exception
from appliance.errors import ApiError, InternalError, InvalidRequest, NotFound
from appliance.openai.answers import (
    ChatCompletionStreamResponse,
    CreateChatCompletionResponse,
    CreateCompletionResponse,
    CreateEmbeddingResponse,
    ErrorResponse,
    ListModelsResponse,
    Model,
    WholeAnswer,
)
from appliance.openai.chat import complete_chat, open_chat_stream, plan_chat
from appliance.openai.completions import complete_text, open_text_stream, plan_completion
from appliance.openai.decoding import decode_request
from appliance.openai.embeddings import create_embeddings
from appliance.openai.engine_calls import api_error
from appliance.openai.event_stream import EventStream
from appliance.openai.fields import refuse_unhonoured, unknown_fields
from appliance.openai.models import Audience, find_model, list_models
from appliance.openai.passthrough import forward
from appliance.openai.protocol import (
    CHAT_EXAMPLES,
    COMPLETION_EXAMPLES,
    EMBEDDING_EXAMPLES,
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingRequest,
)
from appliance.openapi_docs import documented
from appliance.registry import ModelRegistry, ServedModel
from appliance.request_context import REQUEST_ID, RequestContext
from appliance.runtime import Runtime
from appliance.state.keys import ApiKey
from backends.base import Engine, EngineError, ProxyEngine, TokenEngine
from backends.replicas import Lease, ReplicaSet

T = TypeVar("T", bound=msgspec.Struct)
AnyRequest = Request[Any, Any, Any]
# What serving a request gives back: a whole answer (a Struct of answers.py, or an
# upstream's JSON body of that shape; a Response of /v1/responses), or the SSE events of a
# stream (`data: {chunk}\n\n`).
Answer = WholeAnswer | msgspec.Struct | AsyncIterator[bytes]


class Translation(Protocol):
    """An API served on another endpoint's path (/v1/responses on chat): the request
    body is turned into that endpoint's, and its answer and errors back."""

    async def request(self, raw: bytes, ctx: RequestContext) -> bytes: ...

    async def answer(self, answer: Answer, ctx: RequestContext) -> Answer: ...

    def error(self, error: ApiError) -> ApiError: ...


def _json(
    payload: WholeAnswer | msgspec.Struct, headers: dict[str, str] | None = None
) -> Response[bytes]:
    """The one place a whole OpenAI answer is encoded."""
    return Response(
        msgspec.json.encode(payload), media_type="application/json", headers=headers or {}
    )


_AUTH_ERRORS = {
    "401": "No key, a bad, revoked or expired key",
    "403": "The key may not use the model (model_not_allowed)",
}
INFERENCE_ERRORS = {
    "400": "The body does not decode, a field is out of range, or the model cannot honour "
    "it (`param` names the field)",
    **_AUTH_ERRORS,
    "404": "No such model",
    "413": "The body is over server.max_body_bytes",
    "429": "A rate limit (rpm, tpm, concurrency) or the key's budget (insufficient_quota)",
    "500": "The server failed",
    "502": "An upstream server failed (proxy engines)",
    "503": "The model is not ready, its queue is full, or the server is shutting down",
    "default": "Another 4xx an upstream server answered (proxy engines pass it on)",
}


@dataclasses.dataclass(frozen=True)
class Inference:
    """Who asks, under which limits, and the parts that serve an inference request."""

    caller: ApiKey
    policy: Policy
    meter: Meter
    models: ModelRegistry


def inference_of(request: AnyRequest) -> Inference:
    """The caller's key (or 401), its policy and the serving parts. Handlers call this
    themselves: as a Litestar dependency it cost a `State` built and a signature model
    parsed per request, about 5% of a proxied request's CPU."""
    runtime: Runtime = request.app.state.runtime
    caller = runtime.auth.bearer(request.headers.get("authorization"))
    return Inference(caller, runtime.policy(caller), runtime.meter, runtime.models)


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
    answer: Answer | None = None
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
    if ctx.error is not None or answer is None:  # the context records why none came
        error = ctx.error or InternalError("the server failed to handle this request")
        return api_error_response(error, ctx.headers())
    if not isinstance(answer, AsyncIterator):
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


_COMPLETIONS = documented(
    body=CompletionRequest,
    examples=COMPLETION_EXAMPLES,
    answer=CreateCompletionResponse,
    answer_description="The text completion",
    stream=CreateCompletionResponse,
    errors=INFERENCE_ERRORS,
    error=ErrorResponse,
)


class OpenAIController(Controller):
    """Mounted under /v1 and at the root, as clients use both."""

    @get(
        "/models",
        summary="List the models: without a key the public ones, with a key those it may use",
        operation_class=documented(
            answer=ListModelsResponse,
            answer_description="The models, with pricing and context length; the admin key "
            "also sees each engine's state",
            errors={"401": "A bad, revoked or expired key (no key at all is fine)"},
            error=ErrorResponse,
        ),
    )
    async def models(
        self, audience: NamedDependency[Audience], models: NamedDependency[ModelRegistry]
    ) -> Response[bytes]:
        return _json(list_models(models, audience))

    @get(
        "/models/{model_id:path}",
        summary="One model by id or alias; an admin also sees status, load time and load",
        operation_class=documented(
            answer=Model,
            answer_description="The model",
            errors={
                "401": "A bad, revoked or expired key (no key at all is fine)",
                "404": "No such model, or not one the key (without a key: the public) may see",
            },
            error=ErrorResponse,
        ),
    )
    async def model(
        self,
        audience: NamedDependency[Audience],
        models: NamedDependency[ModelRegistry],
        model_id: FromPath[str],
    ) -> Response[bytes]:
        return _json(find_model(models, model_id.lstrip("/"), audience))

    @post(
        "/chat/completions",
        status_code=200,
        summary="Chat completion, optionally streamed",
        operation_class=documented(
            body=ChatCompletionRequest,
            examples=CHAT_EXAMPLES,
            answer=CreateChatCompletionResponse,
            answer_description="The chat completion",
            stream=ChatCompletionStreamResponse,
            errors=INFERENCE_ERRORS,
            error=ErrorResponse,
        ),
    )
    async def chat(self, request: AnyRequest) -> Response[Any]:
        return await _infer(request, inference_of(request), "chat", ChatCompletionRequest, _chat)

    @post(
        "/completions",
        status_code=200,
        summary="Legacy text completion",
        operation_class=_COMPLETIONS,
    )
    async def completions(self, request: AnyRequest) -> Response[Any]:
        inference = inference_of(request)
        return await _infer(request, inference, "completions", CompletionRequest, _completion)

    @post(
        "/models/{target:path}",
        status_code=200,
        summary="POST /models/{deployment}/completions: text completion on one deployment "
        "(the body's `model` may be left out)",
        operation_class=_COMPLETIONS,
    )
    async def deployment_completions(
        self, request: AnyRequest, target: FromPath[str]
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
            request,
            inference_of(request),
            "completions",
            CompletionRequest,
            _completion,
            deployment,
        )

    @post(
        "/embeddings",
        status_code=200,
        summary="Embeddings as floats or base64",
        operation_class=documented(
            body=EmbeddingRequest,
            examples=EMBEDDING_EXAMPLES,
            answer=CreateEmbeddingResponse,
            answer_description="The embeddings",
            errors=INFERENCE_ERRORS,
            error=ErrorResponse,
        ),
    )
    async def embeddings(self, request: AnyRequest) -> Response[Any]:
        inference = inference_of(request)
        return await _infer(request, inference, "embeddings", EmbeddingRequest, create_embeddings)
