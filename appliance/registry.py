"""The names requests route to, each bound to a deployment's engine.

Every model of radiance.yaml is a deployment of its own, and the API adds more at run
time (`appliance.deployments`); each routes by its id (and a declared model's aliases)
to a `ServedModel` whose engine is the deployment's replica set. `build_engine` makes one
replica's engine; engine modules are imported only there.
"""

from __future__ import annotations

import difflib
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appliance.config import LoadedConfig, ModelConfig, OpenAIBackend, VllmBackend
from appliance.errors import ModelNotFound, ServiceUnavailable
from appliance.hub.progress import DownloadProgress
from backends.base import Engine, EngineError, EngineStatus
from backends.replicas import ReplicaSet

UNAVAILABLE_RETRY_SECONDS = 30


class NoModelLoaded(EngineError):
    """Every model failed to load: the server has nothing to serve."""


@dataclass
class ServedModel:
    config: ModelConfig
    backend_name: str
    engine: ReplicaSet[Engine] | Engine
    created: int = field(default_factory=lambda: int(time.time()))
    # The declared model a deployment of another name runs; None for the model itself.
    parent: str | None = None
    # A download of the model's file, while and after it runs.
    download: DownloadProgress | None = None

    @property
    def id(self) -> str:
        return self.config.id

    def require_ready(self) -> None:
        """Raise 503 `model_unavailable` unless the model is loaded."""
        status = self.engine.status
        if status is EngineStatus.READY:
            return
        reason = self.engine.stats().error
        why = f"failed to load: {reason}" if status is EngineStatus.FAILED else status.value
        raise ServiceUnavailable(
            f"The model `{self.id}` is unavailable ({why}).",
            retry_after=UNAVAILABLE_RETRY_SECONDS,
            code="model_unavailable",
        )


def build_engine(
    loaded: LoadedConfig,
    model: ModelConfig,
    path: Path | None = None,
    shared: dict[str, Any] | None = None,
    *,
    slot: int = 0,
    gpus: tuple[int, ...] | None = None,
) -> Engine:
    """Make one replica's engine for the model's backend.

    `path` is a llamacpp model's GGUF file when it is not the config's own source (a file
    fetched from the hub); `shared` keeps what the models of one backend share (an openai
    backend's replicas); `slot` numbers the replica and `gpus` are its GPUs (vllm).
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

        safe_id = re.sub(r"[^A-Za-z0-9._-]", "_", model.id) + (f"-{slot}" if slot else "")
        return VllmEngine(
            VllmSettings(
                model_id=model.id,
                python=str(loaded.resolve(backend.python)),
                model=str(path) if path is not None else loaded.vllm_model(model),
                context_length=model.context_length,
                log_path=loaded.database_path.parent / "logs" / f"vllm-{safe_id}.log",
                args=dict(backend.args),
                gpus=gpus
                if gpus is not None
                else None
                if backend.gpus is None
                else tuple(backend.gpus),
                env=dict(backend.env),
                tool_parser=model.tool_parser,
                startup_timeout=backend.startup_timeout,
                timeout=backend.timeout,
            )
        )
    from backends.llamacpp.engine import LlamaCppEngine, LlamaCppSettings

    return LlamaCppEngine(
        LlamaCppSettings(
            model_id=model.id,
            path=path or loaded.model_path(model),
            context_length=model.context_length,
            threads=backend.threads,
            batch_size=backend.batch_size,
            max_queue=backend.max_queue,
            embeddings=model.embeddings,
            gpu_layers=backend.gpu_layers,
            parallel=backend.parallel,
        )
    )


class ModelRegistry:
    def __init__(self, models: list[ServedModel] | None = None) -> None:
        self._models = list(models or [])
        self._by_name: dict[str, ServedModel] = {}
        for served in self._models:
            self._by_name[served.id] = served
            for alias in served.config.aliases:
                self._by_name[alias] = served

    def __len__(self) -> int:
        return len(self._models)

    def add(self, served: ServedModel) -> None:
        """Route `served`'s id and aliases to it."""
        self._models.append(served)
        for name in (served.id, *served.config.aliases):
            self._by_name[name] = served

    def remove(self, model_id: str) -> None:
        """Stop routing to a model; requests already on it go on."""
        self._models = [s for s in self._models if s.id != model_id]
        self._by_name = {n: s for n, s in self._by_name.items() if s.id != model_id}

    def taken(self, name: str) -> bool:
        return name in self._by_name

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
