"""Serving /v1/models: OpenAI's model objects plus what Radiance knows about each.

Who asks decides what is listed (`Audience`): a caller without a key sees the public
models, a key the models it may use, the admin key every model and its engine's state.
Listing reads only the registry in memory: no database, no engine work.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec

from appliance.errors import ModelNotFound
from appliance.openai.answers import DownloadProgress, ListModelsResponse, Model, ModelPricing
from appliance.registry import ModelRegistry, ServedModel


@dataclass(frozen=True)
class Audience:
    """Who lists the models: anyone (no key: `public_only`), or a key with its allow-list
    (`allowed`, None for every model), or the admin key."""

    allowed: frozenset[str] | None = None
    admin: bool = False
    public_only: bool = False
    key_id: str | None = None

    def sees(self, served: ServedModel) -> bool:
        if served.hidden_from(self.key_id, self.admin):
            return False
        if self.public_only:
            return served.config.public
        return may_use(served, self.allowed)


def model_object(served: ServedModel, admin: bool = False) -> Model:
    config = served.config
    model = Model(
        id=served.id,
        created=served.created,
        owned_by="radiance",
        name=config.display_name,
        context_length=config.context_length,
        pricing=ModelPricing(prompt=config.pricing.prompt, completion=config.pricing.completion),
        supported_sampling_parameters=list(config.parameters),
        aliases=list(config.aliases),
        # vLLM's field for a model served under another name: the model it runs.
        parent=served.parent,
    )
    return _with_admin_fields(model, served) if admin else model


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


def _with_admin_fields(model: Model, served: ServedModel) -> Model:
    fields = admin_fields(served)
    if "download" in fields:
        fields["download"] = msgspec.convert(fields["download"], DownloadProgress)
    return msgspec.structs.replace(model, **fields)


def list_models(registry: ModelRegistry, audience: Audience) -> ListModelsResponse:
    """The models `audience` may see."""
    data = [model_object(s, audience.admin) for s in registry if audience.sees(s)]
    return ListModelsResponse(data=data)


def find_model(registry: ModelRegistry, name: str, audience: Audience) -> Model:
    """One model by id or alias, or 404 when there is none that `audience` may see."""
    if audience.public_only:
        # Private and unknown alike, and no hint that could name a private model.
        try:
            served = registry.resolve(name)
        except ModelNotFound:
            served = None
        if served is None or not audience.sees(served):
            raise ModelNotFound(
                f"The model `{name}` does not exist on this server.", param="model"
            ) from None
        return model_object(served)
    served = registry.resolve(name)
    if not audience.sees(served):
        raise ModelNotFound(
            f"The model `{name}` does not exist or this key may not use it.", param="model"
        )
    return model_object(served, audience.admin)
