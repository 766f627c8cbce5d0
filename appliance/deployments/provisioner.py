"""Making, starting, scaling and replacing the replicas of a deployment.

The manager decides what a deployment should be and reports its status; this does the
work on its replica set: fetch the model's file, start replicas on free slots (each with
its slice of the backend's GPUs), drain the ones no longer wanted, and replace them all
when the engine's settings change, the new ones first.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec

from appliance.config import LoadedConfig, ModelConfig
from appliance.config.engine_checks import hub_item
from appliance.deployments.deployment import Deployment
from appliance.deployments.spec import gpu_slice, scaling_of
from appliance.hub.download import cached_file, download_async
from appliance.hub.progress import DownloadProgress, ProgressLog
from appliance.hub.repository import cached_repo, download_repo_async
from appliance.hub.source import HubRepo
from appliance.registry import build_engine
from backends.base import Engine, EngineError, ProxyEngine
from backends.engines import plugin_of
from backends.replicas import Replica

log = logging.getLogger("appliance.deployments.manager")
# Makes the engine of one replica: (model, GGUF file if downloaded, slot, GPUs).
EngineFactory = Callable[[ModelConfig, Path | None, int, tuple[int, ...] | None], Engine]


class Provisioner:
    def __init__(
        self, loaded: LoadedConfig, factory: EngineFactory | None, drain_timeout: float
    ) -> None:
        self.loaded = loaded
        self.drain_timeout = drain_timeout
        self._shared: dict[str, Any] = {}
        self._factory = factory or self._build

    def _build(
        self, model: ModelConfig, path: Path | None, slot: int, gpus: tuple[int, ...] | None
    ) -> Engine:
        return build_engine(self.loaded, model, path, self._shared, slot=slot, gpus=gpus)

    async def fetch(
        self, dep: Deployment, model: ModelConfig, downloading: Callable[[], Awaitable[None]]
    ) -> Path | None:
        """The local copy of a model on the hub (a file or a repository, as its engine
        loads), downloaded into the models folder if need be (`downloading` is awaited
        first); None for a model whose source is local."""
        source = model.source
        if source is None:
            return None
        models_dir = self.loaded.models_dir
        plugin = plugin_of(self.loaded.config.backends[model.backend])
        item = hub_item(plugin, source, self.loaded.base_dir)
        if isinstance(item, HubRepo):
            found = cached_repo(item, models_dir)
            fetch = functools.partial(download_repo_async, item, models_dir)
        elif item is not None:
            found = cached_file(item, models_dir)
            fetch = functools.partial(download_async, item, models_dir)
        else:
            return None
        name = str(item)
        if found is not None:
            log.info("%s: using %s from the models folder", dep.id, found)
            return found
        await downloading()
        logged = ProgressLog(log, dep.id)
        dep.served.download = DownloadProgress(name)

        def progress(state: DownloadProgress) -> None:
            dep.served.download = state
            logged(state)

        path: Path = await fetch(on_progress=progress)
        return path

    async def add(self, dep: Deployment, model: ModelConfig, count: int) -> list[str]:
        """Start `count` more replicas of `model` beside the set's; their errors."""
        started = await self.start_replicas(dep, model, count, set())
        for replica in started[0]:
            dep.replicas.add(replica)
        return started[1]

    async def start_replicas(
        self, dep: Deployment, model: ModelConfig, count: int, taken: set[int]
    ) -> tuple[list[Replica[Engine]], list[str]]:
        """Start `count` replicas on slots neither the set nor `taken` uses."""
        slots: list[int] = []
        used = {r.slot for r in dep.replicas.replicas} | taken
        slot = 0
        while len(slots) < count:
            if slot not in used:
                slots.append(slot)
            slot += 1
        backend = self.loaded.config.backends[model.backend]
        gpu_list = plugin_of(backend).gpus(backend)
        most = scaling_of(model).most
        replicas = [
            Replica(
                f"{dep.id}-{slot}",
                slot,
                self._factory(model, dep.path, slot, gpu_slice(gpu_list, most, slot)),
            )
            for slot in slots
        ]
        try:
            results = await self.start_engines([r.engine for r in replicas])
        except BaseException:
            for replica in replicas:
                await _stop_quietly(replica.engine)
            raise
        good, errors = [], []
        for replica, result in zip(replicas, results, strict=True):
            if result is not None:
                log.error("replica %s failed to start: %s", replica.id, result)
                errors.append(str(result))
                await _stop_quietly(replica.engine)
            else:
                log.info("replica %s is ready", replica.id)
                good.append(replica)
        return good, errors

    @staticmethod
    async def start_engines(engines: list[Engine]) -> list[BaseException | None]:
        """Start engines: processes of their own (vLLM) side by side, in-process ones
        (llama.cpp, whose loading is not safe from two threads at once) one by one."""

        async def start(engine: Engine) -> BaseException | None:
            try:
                await engine.start()
            except EngineError as exc:
                return exc
            return None

        if all(isinstance(engine, ProxyEngine) for engine in engines):
            return list(await asyncio.gather(*(start(e) for e in engines)))
        return [await start(engine) for engine in engines]

    async def scale(self, dep: Deployment, count: int) -> list[str]:
        """Run `count` replicas: start the missing ones, drain the extra ones."""
        dep.target = count
        active = dep.replicas.active()
        if count > len(active):
            assert dep.model is not None
            return await self.add(dep, dep.model, count - len(active))
        extra = sorted(active, key=lambda r: (r.in_flight, -r.slot))[: len(active) - count]
        for replica in extra:
            dep.replicas.retire(replica)
        await asyncio.gather(*(dep.replicas.drain(r, self.drain_timeout) for r in extra))
        return []

    async def roll(self, dep: Deployment, old: ModelConfig, model: ModelConfig) -> list[str]:
        same_engine = msgspec.structs.replace(
            old, replicas=model.replicas, autoscaling=model.autoscaling
        )
        scaling = scaling_of(model)
        # A change that leaves `replicas` alone keeps an autoscaled count where it is.
        current = len(dep.replicas.active())
        target = scaling.replicas if model.replicas != old.replicas else scaling.clamp(current)
        dep.autoscaler.last_change = time.monotonic()
        if same_engine == model:
            dep.model = model
            dep.served.config = model
            return await self.scale(dep, target)
        # Another backend or context: new replicas first, then the old ones drain.
        new, errors = await self.start_replicas(dep, model, target, set())
        if errors or not new:
            for replica in new:
                await _stop_quietly(replica.engine)
            return errors or ["no replica started"]
        retiring = dep.replicas.active()
        for replica in retiring:
            dep.replicas.retire(replica)
        for replica in new:
            dep.replicas.add(replica)
        dep.model, dep.target = model, target
        dep.served.config, dep.served.backend_name = model, model.backend
        await asyncio.gather(*(dep.replicas.drain(r, self.drain_timeout) for r in retiring))
        return []

    async def drain_all(self, dep: Deployment) -> None:
        """Drain and stop every replica of `dep`."""
        replicas = list(dep.replicas.replicas)
        await asyncio.gather(*(dep.replicas.drain(r, self.drain_timeout) for r in replicas))


async def _stop_quietly(engine: Engine) -> None:
    try:
        await engine.stop()
    except Exception:
        log.exception("stopping a replica failed")
