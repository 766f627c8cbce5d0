"""The names requests route to, each bound to a deployment's engine.

Every model of radiance.yaml is a deployment of its own, and the API adds more at run
time (`appliance.deployments`); each routes by its id (and a declared model's aliases)
to a `ServedModel` whose engine is the deployment's replica set. `build_engine` makes one
replica's engine through its engine's plugin, which imports the engine's modules.
"""

from __future__ import annotations

import difflib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appliance.config import LoadedConfig, ModelConfig
from appliance.errors import ModelNotFound, ServiceUnavailable
from appliance.hub.progress import DownloadProgress
from backends.base import Engine, EngineError, EngineStatus
from backends.engines import plugin_of
from backends.plugin import ReplicaPlan
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
    # The key a fine-tuned model belongs to: no other key (but the admin) sees or uses it.
    owner: str | None = None

    def hidden_from(self, key_id: str | None, admin: bool = False) -> bool:
        """Whether a caller (no key: None) may not know of this model at all."""
        return self.owner is not None and not admin and key_id != self.owner

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
    """Make one replica's engine for the model's backend, by its engine's plugin.

    `path` is the local copy of a model's hub source (once downloaded); `shared` keeps
    what the models of one backend share (an upstream pool); `slot` numbers the replica
    and `gpus` are its GPUs.
    """
    backend = loaded.config.backends[model.backend]
    plan = ReplicaPlan(
        backend_name=model.backend,
        model=model,
        base_dir=loaded.base_dir,
        log_dir=loaded.database_path.parent / "logs",
        fetched=path,
        slot=slot,
        gpus=gpus,
        shared={} if shared is None else shared,
    )
    return plugin_of(backend).build(backend, plan)


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
