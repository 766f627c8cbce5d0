"""The OpenAI-compatible endpoints; each handler is a few lines over the serving layer."""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.exceptions import HTTPException
from litestar.params import FromPath

from appliance.error_handlers import from_http_exception
from appliance.errors import NotFound
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
from appliance.openai.embeddings import create_embeddings
from appliance.openai.event_stream import EventStream
from appliance.openai.inference import (
    Inference,
    Serve,
    Translation,
    infer,
    inference_of,
    serve_chat,
    serve_completion,
)
from appliance.openai.lane import Lane
from appliance.openai.models import Audience, find_model, list_models
from appliance.openai.protocol import (
    CHAT_EXAMPLES,
    COMPLETION_EXAMPLES,
    EMBEDDING_EXAMPLES,
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingRequest,
)
from appliance.openapi_docs import documented
from appliance.registry import ModelRegistry

T = TypeVar("T", bound=msgspec.Struct)
AnyRequest = Request[Any, Any, Any]


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


def _json(payload: WholeAnswer | msgspec.Struct) -> Response[bytes]:
    return Response(msgspec.json.encode(payload), media_type="application/json")


def request_inference(request: AnyRequest) -> Inference:
    """The caller of a Litestar request (or 401), its policy and the serving parts."""
    return inference_of(request.app.state.runtime, request.headers.get("authorization"))


async def _infer(
    request: AnyRequest,
    inference: Inference,
    endpoint: str,
    kind: type[T],
    serve: Serve[T],
    deployment: str | None = None,
    translation: Translation | None = None,
) -> Response[Any]:
    """`infer` under Litestar: for the endpoints not on the lane (a deployment's path,
    /v1/responses), and for the lane's own should it be taken off."""
    reply = await infer(
        inference,
        request.scope,
        request.receive,
        lambda: _body(request),
        endpoint,
        kind,
        serve,
        deployment,
        translation,
    )
    if reply.events is None:
        return Response(
            reply.body,
            status_code=reply.status,
            media_type="application/json",
            headers=reply.headers,
        )
    return EventStream(reply.events, media_type="text/event-stream", headers=reply.headers)


async def _body(request: AnyRequest) -> bytes:
    try:
        return await request.body()
    except HTTPException as exc:  # Litestar's own: a body over the limit
        raise from_http_exception(exc) from None


_CHAT = Lane("chat", ChatCompletionRequest, serve_chat)
_TEXT = Lane("completions", CompletionRequest, serve_completion)
_EMBEDDINGS = Lane("embeddings", EmbeddingRequest, create_embeddings)
# The POST routes the lanes answer, under /v1 and at the root (the server calls them
# straight for these paths).
LANES = {
    f"{root}{path}": lane
    for root in ("/v1", "")
    for path, lane in (
        ("/chat/completions", _CHAT),
        ("/completions", _TEXT),
        ("/embeddings", _EMBEDDINGS),
    )
}

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
        middleware=[_CHAT.middleware],
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
        inference = request_inference(request)
        return await _infer(request, inference, "chat", ChatCompletionRequest, serve_chat)

    @post(
        "/completions",
        status_code=200,
        middleware=[_TEXT.middleware],
        summary="Legacy text completion",
        operation_class=_COMPLETIONS,
    )
    async def completions(self, request: AnyRequest) -> Response[Any]:
        inference = request_inference(request)
        return await _infer(request, inference, "completions", CompletionRequest, serve_completion)

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
        inference = request_inference(request)
        return await _infer(
            request, inference, "completions", CompletionRequest, serve_completion, deployment
        )

    @post(
        "/embeddings",
        status_code=200,
        middleware=[_EMBEDDINGS.middleware],
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
        inference = request_inference(request)
        return await _infer(request, inference, "embeddings", EmbeddingRequest, create_embeddings)
