"""Serving /v1/embeddings, in float lists or base64 (little-endian float32, the SDK default)."""

from __future__ import annotations

import base64
from typing import Any

import numpy as np

from appliance.errors import ContextLengthExceeded, InvalidRequest
from appliance.openai.engine_calls import api_error
from appliance.openai.protocol import EmbeddingRequest
from appliance.registry import ServedModel
from appliance.request_context import RequestContext
from backends.base import EngineError, Prompt


def _inputs(body: EmbeddingRequest, served: ServedModel) -> list[Prompt]:
    raw = body.input
    if isinstance(raw, str):
        items: list[Any] = [raw]
    elif all(isinstance(item, int) for item in raw):
        items = [list(raw)]
    else:
        items = list(raw)
    prompts = []
    for index, item in enumerate(items):
        if isinstance(item, str):
            if not item:
                raise InvalidRequest("an input string is empty", param=f"input[{index}]")
            prompts.append(served.engine.render_text(item))
        elif isinstance(item, list):
            prompts.append(Prompt(served.engine.detokenize(item), tuple(item)))
        else:
            raise InvalidRequest("`input` mixes token ids and strings", param=f"input[{index}]")
        if len(prompts[-1].tokens) > served.config.context_length:
            raise ContextLengthExceeded(
                f"input {index} has {len(prompts[-1].tokens)} tokens; this model's maximum "
                f"context length is {served.config.context_length} tokens",
                param="input",
            )
    return prompts


async def create_embeddings(
    body: EmbeddingRequest, served: ServedModel, ctx: RequestContext
) -> dict[str, Any]:
    if not served.engine.capabilities.embeddings or not served.config.embeddings:
        raise InvalidRequest(
            f"the model `{served.id}` does not serve embeddings",
            param="model",
            code="unsupported_model",
        )
    if body.dimensions is not None:
        raise InvalidRequest("`dimensions` is not supported", param="dimensions")
    prompts = _inputs(body, served)
    ctx.prompt_tokens = sum(len(p.tokens) for p in prompts)
    await ctx.admit(0)
    try:
        result = await served.engine.embed(prompts)
    except EngineError as exc:
        raise api_error(exc) from exc
    data = []
    for index, vector in enumerate(result.vectors):
        embedding: list[float] | str = vector
        if body.encoding_format == "base64":
            embedding = base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode()
        data.append({"object": "embedding", "index": index, "embedding": embedding})
    return {
        "object": "list",
        "data": data,
        "model": served.id,
        "usage": {
            "prompt_tokens": ctx.prompt_tokens,
            "total_tokens": ctx.prompt_tokens,
        },  # no completion
    }
