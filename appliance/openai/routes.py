"""The OpenAI-compatible endpoints; each handler is a few lines over the serving layer."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.exceptions import HTTPException
from litestar.params import FromPath
from litestar.response import Stream

from appliance.errors import (
    ApiError,
    InternalError,
    InvalidRequest,
    ModelNotFound,
    NotFound,
    error_response,
    from_http_exception,
)
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
from appliance.registry import ServedModel
from appliance.request_context import RequestContext
from appliance.runtime import Runtime
from backends.base import EngineError
from backends.replicas import ReplicaSet

log = logging.getLogger(__name__)
T = TypeVar("T", bound=msgspec.Struct)
AnyRequest = Request[Any, Any, Any]
Answer = dict[str, Any] | AsyncIterator[bytes]


def _json(payload: dict[str, Any], headers: dict[str, str] | None = None) -> Response[bytes]:
    return Response(
        msgspec.json.encode(payload), media_type="application/json", headers=headers or {}
    )


def _on_replica(served: ServedModel, ctx: RequestContext) -> ServedModel:
    """`served` bound to one of its replicas (the least busy) until the request ends."""
    replicas = served.engine
    if not isinstance(replicas, ReplicaSet):
        return served
    try:
        lease = replicas.lease()
    except EngineError as exc:
        raise api_error(exc) from exc
    ctx.releases.append(lease.release)
    ctx.replica = lease.id  # a passthrough engine names the server that answers instead
    return dataclasses.replace(served, engine=lease)


async def _infer(
    request: AnyRequest,
    endpoint: str,
    kind: type[T],
    serve: Callable[[T, ServedModel, RequestContext], Awaitable[Answer]],
    deployment: str | None = None,
) -> Response[Any]:
    """Authenticate, decode, resolve the model, serve; one ledger row whatever happens.

    `deployment` (from the path) names the model when the body does not."""
    runtime = Runtime.of(request)
    key = runtime.auth.bearer(request.headers.get("authorization"))
    ctx = RequestContext(runtime.meter, key, runtime.policy(key), endpoint)
    try:
        raw = await request.body()
        if deployment is not None:
            raw = _with_model(raw, deployment)
        body, data = decode_request(raw, kind)
        ctx.route_model = getattr(body, "model", None)
        served = runtime.models.resolve(ctx.route_model or "")
        if deployment is not None and served is not runtime.models.resolve(deployment):
            raise InvalidRequest(
                f"`model` names `{ctx.route_model}`, but the path names deployment "
                f"`{deployment}`; leave `model` out or make them agree",
                param="model",
            )
        ctx.use_model(served)
        served.require_ready()
        served = _on_replica(served, ctx)
        if served.engine.capabilities.passthrough:
            answer = await forward(raw, body, served, ctx)
        else:
            refuse_unhonoured(unknown_fields(data, kind.__struct_fields__), data, served.id)
            answer = await serve(body, served, ctx)
    except (ApiError, HTTPException) as exc:  # Litestar's own: a body over the limit
        error = exc if isinstance(exc, ApiError) else from_http_exception(exc)
        await ctx.fail(error)
        return error_response(error, ctx.headers())
    except Exception:
        log.exception("request %s failed in the server", ctx.id)
        error = InternalError("the server failed to handle this request")
        await ctx.fail(error)
        return error_response(error, ctx.headers())
    except BaseException:  # cancelled: the client went away, or the server stops
        await ctx.finish("cancelled", 499)
        raise
    if isinstance(answer, dict):
        await ctx.finish()
        return _json(answer, ctx.headers())
    headers = {**ctx.headers(), "cache-control": "no-cache", "x-accel-buffering": "no"}
    return Stream(answer, media_type="text/event-stream", headers=headers)


async def _chat(body: ChatCompletionRequest, served: ServedModel, ctx: RequestContext) -> Answer:
    plan = await plan_chat(body, served, ctx)
    await ctx.admit(sum(choice.max_tokens for choice in plan.choices))
    return await (open_chat_stream(plan, ctx) if body.stream else complete_chat(plan, ctx))


async def _completion(body: CompletionRequest, served: ServedModel, ctx: RequestContext) -> Answer:
    plan = await plan_completion(body, served, ctx)
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

    @get("/models", summary="List the models this key may use, with pricing and context length")
    async def models(self, request: AnyRequest) -> Response[bytes]:
        runtime = Runtime.of(request)
        key = runtime.auth.bearer(request.headers.get("authorization"))
        policy = runtime.policy(key)
        return _json(list_models(runtime.models, policy.models, admin=key.is_admin))

    @get(
        "/models/{model_id:path}",
        summary="One model by id or alias; an admin also sees status, load time and load",
    )
    async def model(self, request: AnyRequest, model_id: FromPath[str]) -> Response[bytes]:
        runtime = Runtime.of(request)
        key = runtime.auth.bearer(request.headers.get("authorization"))
        name = model_id.lstrip("/")
        try:
            served = runtime.models.resolve(name)
            if not may_use(served, runtime.policy(key).models):
                raise ModelNotFound(
                    f"The model `{name}` does not exist or this key may not use it.",
                    param="model",
                )
        except ApiError as exc:
            return error_response(exc)
        item = model_object(served)
        return _json({**item, **admin_fields(served)} if key.is_admin else item)

    @post(
        "/chat/completions",
        status_code=200,
        summary="Chat completion, optionally streamed",
        operation_class=body(ChatCompletionRequest),
    )
    async def chat(self, request: AnyRequest) -> Response[Any]:
        return await _infer(request, "chat", ChatCompletionRequest, _chat)

    @post(
        "/completions",
        status_code=200,
        summary="Legacy text completion",
        operation_class=body(CompletionRequest),
    )
    async def completions(self, request: AnyRequest) -> Response[Any]:
        return await _infer(request, "completions", CompletionRequest, _completion)

    @post(
        "/models/{target:path}",
        status_code=200,
        summary="POST /models/{deployment}/completions: text completion on one deployment "
        "(the body's `model` may be left out)",
        operation_class=body(CompletionRequest),
    )
    async def deployment_completions(
        self, request: AnyRequest, target: FromPath[str]
    ) -> Response[Any]:
        # One handler under the path of GET /models/{id}: ids may hold slashes.
        deployment, _, action = target.strip("/").rpartition("/")
        if action != "completions" or not deployment:
            missing = NotFound(
                f"No route POST /v1/models/{target.strip('/')}; "
                "use POST /v1/models/{deployment}/completions.",
                code="not_found",
            )
            return error_response(missing)
        return await _infer(request, "completions", CompletionRequest, _completion, deployment)

    @post(
        "/embeddings",
        status_code=200,
        summary="Embeddings as floats or base64",
        operation_class=body(EmbeddingRequest),
    )
    async def embeddings(self, request: AnyRequest) -> Response[Any]:
        return await _infer(request, "embeddings", EmbeddingRequest, create_embeddings)
