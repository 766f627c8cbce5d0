"""Remote OpenAI-compatible servers as the server sees them: replicas behind one backend."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

from msgspec import Meta

from backends.base import Engine
from backends.plugin import (
    EngineConfig,
    EnginePlugin,
    HttpUrl,
    Issue,
    ModelFields,
    ReplicaPlan,
    Seconds,
)


class OpenAIBackend(EngineConfig, frozen=True, tag="openai"):
    """OpenAI-compatible servers used as replicas: the least busy healthy one serves."""

    urls: Annotated[list[HttpUrl], Meta(min_length=1)]
    api_key: str | None = None
    # Seconds between health checks of each replica (GET {url}/models).
    health_interval: Seconds = 5.0
    connect_timeout: Seconds = 5.0
    timeout: Seconds = 600.0


class OpenAIPlugin(EnginePlugin):
    name = "openai"
    label = "OpenAI-compatible"
    config = OpenAIBackend
    model_fields = ("upstream_model",)

    def check_model(self, model: ModelFields, backend: Any) -> Iterator[Issue]:
        """Its replicas are the backend's urls, and they load the model themselves."""
        if model.replicas > 1 or model.autoscaling is not None:
            field = "replicas" if model.replicas > 1 else "autoscaling"
            hint = "its replicas are the backend's `urls`; list more there"
            yield Issue(field, f"`{field}` is not used by engine `openai`", hint, key=True)
        if model.source is not None:
            message = "`source` is not used by engine `openai`: the replicas load the model"
            hint = "name the replicas' model with `upstream_model` if it differs from the id"
            yield Issue("source", message, hint, key=True)

    def build(self, backend: Any, plan: ReplicaPlan) -> Engine:
        from backends.openai.engine import PoolSettings, ReplicaPool, UpstreamEngine

        if plan.backend_name not in plan.shared:
            plan.shared[plan.backend_name] = ReplicaPool(
                PoolSettings(
                    name=plan.backend_name,
                    urls=tuple(backend.urls),
                    api_key=backend.api_key,
                    health_interval=backend.health_interval,
                    connect_timeout=backend.connect_timeout,
                    timeout=backend.timeout,
                )
            )
        model = plan.model
        return UpstreamEngine(
            plan.shared[plan.backend_name], model.id, model.upstream_model or model.id
        )
