"""The models this server serves, by id and alias, each bound to its running engine."""

from __future__ import annotations

import difflib
import logging
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from appliance.config import LoadedConfig, ModelConfig, OpenAIBackend, VllmBackend
from appliance.errors import ModelNotFound
from backends.base import Backend, EngineError

log = logging.getLogger(__name__)


@dataclass
class ServedModel:
    config: ModelConfig
    backend_name: str
    engine: Backend
    created: int = field(default_factory=lambda: int(time.time()))

    @property
    def id(self) -> str:
        return self.config.id


def build_engine(
    loaded: LoadedConfig, model: ModelConfig, shared: dict[str, Any] | None = None
) -> Backend:
    """Make the engine a model's backend names; engine modules are imported only here.

    `shared` keeps what the models of one backend share (an openai backend's replicas).
    """
    backend = loaded.config.backends[model.backend]
    shared = {} if shared is None else shared
    if isinstance(backend, OpenAIBackend):
        from backends.openai.engine import PoolSettings, ReplicaPool, UpstreamBackend

        if model.backend not in shared:
            shared[model.backend] = ReplicaPool(
                PoolSettings(
                    name=model.backend,
                    urls=tuple(backend.urls),
                    api_key=backend.api_key,
                    health_interval=backend.health_interval,
                    connect_timeout=backend.connect_timeout,
                    timeout=backend.timeout,
                )
            )
        pool = shared[model.backend]
        return UpstreamBackend(pool, model.id, model.upstream_model or model.id)
    if isinstance(backend, VllmBackend):
        from backends.vllm.engine import VllmEngine, VllmSettings

        safe_id = re.sub(r"[^A-Za-z0-9._-]", "_", model.id)
        return VllmEngine(
            VllmSettings(
                model_id=model.id,
                python=str(loaded.resolve(backend.python)),
                model=loaded.vllm_model(model),
                context_length=model.context_length,
                log_path=loaded.database_path.parent / "logs" / f"vllm-{safe_id}.log",
                args=dict(backend.args),
                gpus=None if backend.gpus is None else tuple(backend.gpus),
                env=dict(backend.env),
                tool_parser=model.tool_parser,
                startup_timeout=backend.startup_timeout,
                timeout=backend.timeout,
            )
        )
    from backends.llamacpp.engine import LlamaCppBackend, LlamaCppSettings

    return LlamaCppBackend(
        LlamaCppSettings(
            model_id=model.id,
            path=loaded.model_path(model),
            context_length=model.context_length,
            threads=backend.threads,
            batch_size=backend.batch_size,
            max_queue=backend.max_queue,
            embeddings=model.embeddings,
            gpu_layers=backend.gpu_layers,
        )
    )


class ModelRegistry:
    def __init__(self, models: list[ServedModel]) -> None:
        self._models = models
        self._by_name: dict[str, ServedModel] = {}
        for served in models:
            self._by_name[served.id] = served
            for alias in served.config.aliases:
                self._by_name[alias] = served

    @classmethod
    def from_config(cls, loaded: LoadedConfig) -> ModelRegistry:
        shared: dict[str, Any] = {}
        return cls(
            [
                ServedModel(model, model.backend, build_engine(loaded, model, shared))
                for model in loaded.config.models
            ]
        )

    def __iter__(self) -> Iterator[ServedModel]:
        return iter(self._models)

    def resolve(self, name: str) -> ServedModel:
        served = self._by_name.get(name)
        if served is None:
            near = difflib.get_close_matches(name, list(self._by_name), n=1)
            hint = f" Did you mean `{near[0]}`?" if near else ""
            raise ModelNotFound(
                f"The model `{name}` does not exist on this server.{hint}", param="model"
            )
        return served

    async def start_all(self) -> None:
        """Load every model in turn, logging progress; a model that fails stops the start."""
        total = len(self._models)
        for number, served in enumerate(self._models, start=1):
            log.info(
                "loading model %d/%d: %s on backend %s",
                number,
                total,
                served.id,
                served.backend_name,
            )
            started = time.perf_counter()
            try:
                await served.engine.start()
            except EngineError as exc:
                log.error("model %s failed to load: %s", served.id, exc)
                raise
            log.info("loaded %s in %.2f s", served.id, time.perf_counter() - started)

    async def stop_all(self) -> None:
        for served in self._models:
            try:
                await served.engine.stop()
            except Exception:
                log.exception("stopping %s failed", served.id)
