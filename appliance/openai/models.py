"""Serving /v1/models: OpenAI's model objects plus what Radiance knows about each."""

from __future__ import annotations

from typing import Any

from appliance.registry import ModelRegistry, ServedModel


def model_object(served: ServedModel) -> dict[str, Any]:
    config = served.config
    return {
        "id": served.id,
        "object": "model",
        "created": served.created,
        "owned_by": "radiance",
        "name": config.display_name,
        "context_length": config.context_length,
        "pricing": {"prompt": config.pricing.prompt, "completion": config.pricing.completion},
        "supported_sampling_parameters": list(config.parameters),
        "aliases": list(config.aliases),
    }


def list_models(registry: ModelRegistry) -> dict[str, Any]:
    return {"object": "list", "data": [model_object(served) for served in registry]}
