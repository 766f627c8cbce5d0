"""The models this server serves, by id and alias, each bound to its running engine.

A model whose source is on the hub starts with a `PendingEngine` in its place; loading
downloads the file (or finds it in the models folder) and swaps in the real engine. A
model that cannot be downloaded or loaded stays FAILED with its reason and answers 503
`model_unavailable`; the others serve. Only when no model at all could load does the
start fail, since a server with nothing to serve is a broken configuration.
"""

from __future__ import annotations

import difflib
import logging
import re
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appliance.config import LoadedConfig, ModelConfig, OpenAIBackend, VllmBackend
from appliance.errors import ModelNotFound, ServiceUnavailable
from appliance.hub.download import DownloadError, cached_file, download_async
from appliance.hub.pending_engine import PendingEngine
from appliance.hub.progress import DownloadProgress, ProgressLog
from appliance.hub.source import HubSource, is_hub_source
from backends.base import Backend, EngineError, EngineStatus

log = logging.getLogger(__name__)
# Makes the real engine of a model, after fetching its file if need be.
Prepare = Callable[[], Awaitable[Backend]]
OnFailed = Callable[["ServedModel", str], Awaitable[None]]
UNAVAILABLE_RETRY_SECONDS = 30


class NoModelLoaded(EngineError):
    """Every model failed to load: the server has nothing to serve."""


@dataclass
class ServedModel:
    config: ModelConfig
    backend_name: str
    engine: Backend
    created: int = field(default_factory=lambda: int(time.time()))
    # None: `engine` is the model's engine; else it is a stand-in until this has run.
    prepare: Prepare | None = None

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
) -> Backend:
    """Make the engine a model's backend names; engine modules are imported only here.

    `path` is a llamacpp model's GGUF file when it is not the config's own source (a file
    fetched from the hub); `shared` keeps what the models of one backend share (an openai
    backend's replicas).
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
    from backends.llamacpp.engine import LlamaCppSettings, llamacpp_engine

    return llamacpp_engine(
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


def hub_model(loaded: LoadedConfig, model: ModelConfig) -> ServedModel:
    """A model whose file comes from the hub: a stand-in until the file is local."""
    source = HubSource.parse(model.source or "")
    pending = PendingEngine(model.id, str(source))

    async def prepare() -> Backend:
        path = cached_file(source, loaded.models_dir)
        if path is None:
            logged = ProgressLog(log, model.id)

            def progress(state: DownloadProgress) -> None:
                pending.downloading(state)
                logged(state)

            try:
                path = await download_async(source, loaded.models_dir, on_progress=progress)
            except DownloadError as exc:
                pending.fail(str(exc))
                raise EngineError(str(exc)) from exc
        else:
            log.info("%s: using %s from the models folder", model.id, path)
        return build_engine(loaded, model, path)

    return ServedModel(model, model.backend, pending, prepare=prepare)


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
                hub_model(loaded, model)
                if model.source is not None and is_hub_source(model.source)
                else ServedModel(model, model.backend, build_engine(loaded, model, shared=shared))
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

    async def start_all(self, on_failed: OnFailed | None = None) -> None:
        """Fetch and load every model in turn, logging progress.

        A model that fails is left FAILED (and `on_failed` told why); NoModelLoaded if
        none of the models could load.
        """
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
                if served.prepare is not None:
                    served.engine = await served.prepare()
                    served.prepare = None
                await served.engine.start()
            except EngineError as exc:
                log.error(
                    "model %s failed to load, it answers 503 model_unavailable: %s", served.id, exc
                )
                if on_failed is not None:
                    await on_failed(served, str(exc))
                continue
            log.info("loaded %s in %.2f s", served.id, time.perf_counter() - started)
        if self._models and all(s.engine.status is not EngineStatus.READY for s in self):
            raise NoModelLoaded("no model could be loaded; the errors above say why")

    async def stop_all(self) -> None:
        for served in self._models:
            try:
                await served.engine.stop()
            except Exception:
                log.exception("stopping %s failed", served.id)
