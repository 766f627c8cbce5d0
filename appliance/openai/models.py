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
        # vLLM's field for a model served under another name: the model it runs.
        "parent": served.parent,
    }


def may_use(served: ServedModel, allowed: frozenset[str] | None) -> bool:
    """Whether an allow-list admits a model: by its id, or the model a deployment runs."""
    return allowed is None or served.id in allowed or served.parent in allowed


def admin_fields(served: ServedModel) -> dict[str, Any]:
    """What an admin also sees: the engine's state and load, and a download's progress."""
    stats = served.engine.stats()
    fields: dict[str, Any] = {
        "status": served.engine.status.value,
        "backend": served.backend_name,
        "source": served.config.source,
        "load_seconds": stats.load_seconds,
        "requests_running": stats.running,
        "requests_waiting": stats.waiting,
        "error": stats.error,
        "engine_stats": stats.extra,
        "replicas": int(stats.extra.get("deployment_replicas", 1)),
    }
    if served.download is not None:
        fields["download"] = served.download.as_json()
    return fields


def list_models(
    registry: ModelRegistry, allowed: frozenset[str] | None = None, admin: bool = False
) -> dict[str, Any]:
    """The models a key may use (all of them for `allowed=None`)."""
    data = []
    for served in registry:
        if may_use(served, allowed):
            item = model_object(served)
            data.append({**item, **admin_fields(served)} if admin else item)
    return {"object": "list", "data": data}
