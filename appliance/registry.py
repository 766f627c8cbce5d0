"""The models this server serves, by id and alias, each bound to its running engine."""

from __future__ import annotations

import difflib
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from appliance.config import LoadedConfig, ModelConfig
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


def build_engine(loaded: LoadedConfig, model: ModelConfig) -> Backend:
    """Make the engine a model's backend names; engine modules are imported only here."""
    backend = loaded.config.backends[model.backend]
    from backends.llamacpp.engine import LlamaCppSettings, llamacpp_engine

    return llamacpp_engine(
        LlamaCppSettings(
            model_id=model.id,
            path=loaded.model_path(model),
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
    def __init__(self, models: list[ServedModel]) -> None:
        self._models = models
        self._by_name: dict[str, ServedModel] = {}
        for served in models:
            self._by_name[served.id] = served
            for alias in served.config.aliases:
                self._by_name[alias] = served

    @classmethod
    def from_config(cls, loaded: LoadedConfig) -> ModelRegistry:
        return cls(
            [
                ServedModel(model, model.backend, build_engine(loaded, model))
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
