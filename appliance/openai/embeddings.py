"""Serving /v1/embeddings, in float lists or base64 (little-endian float32, the SDK default)."""

from __future__ import annotations

import base64

import numpy as np

from appliance.errors import ContextLengthExceeded, InvalidRequest
from appliance.openai import prompts
from appliance.openai.answers import CreateEmbeddingResponse, Embedding, EmbeddingUsage
from appliance.openai.engine_calls import api_error
from appliance.openai.protocol import MAX_EMBEDDING_TOKENS, EmbeddingRequest
from appliance.registry import ServedModel
from appliance.request_context import RequestContext
from backends.base import EngineError, Prompt, TokenEngine


async def _inputs(body: EmbeddingRequest, served: ServedModel, engine: TokenEngine) -> list[Prompt]:
    found = prompts.items(body.input, "input")
    for index, item in enumerate(found):
        if not item:
            what = "string" if isinstance(item, str) else "token list"
            raise InvalidRequest(f"an input {what} is empty", param=f"input[{index}]")
    rendered = await prompts.render(engine, found, "input")
    total = sum(len(prompt.tokens) for prompt in rendered)
    if total > MAX_EMBEDDING_TOKENS:
        raise InvalidRequest(
            f"`input` holds {total} tokens; at most {MAX_EMBEDDING_TOKENS} may be embedded "
            "in one request",
            param="input",
        )
    for index, prompt in enumerate(rendered):
        if len(prompt.tokens) > served.config.context_length:
            raise ContextLengthExceeded(
                f"input {index} has {len(prompt.tokens)} tokens; this model's maximum "
                f"context length is {served.config.context_length} tokens",
                param="input",
            )
    return rendered


async def create_embeddings(
    body: EmbeddingRequest, served: ServedModel, engine: TokenEngine, ctx: RequestContext
) -> CreateEmbeddingResponse:
    if not engine.capabilities.embeddings or not served.config.embeddings:
        raise InvalidRequest(
            f"the model `{served.id}` does not serve embeddings",
            param="model",
            code="unsupported_model",
        )
    if body.dimensions is not None:
        raise InvalidRequest("`dimensions` is not supported", param="dimensions")
    inputs = await _inputs(body, served, engine)
    ctx.prompt_tokens = sum(len(p.tokens) for p in inputs)
    await ctx.admit(0)
    try:
        result = await engine.embed(inputs)
    except EngineError as exc:
        raise api_error(exc) from exc
    data = []
    for index, vector in enumerate(result.vectors):
        embedding: list[float] | str = vector
        if body.encoding_format == "base64":
            embedding = base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode()
        data.append(Embedding(index=index, embedding=embedding))
    usage = EmbeddingUsage(prompt_tokens=ctx.prompt_tokens, total_tokens=ctx.prompt_tokens)
    return CreateEmbeddingResponse(data=data, model=served.id, usage=usage)  # no completion
