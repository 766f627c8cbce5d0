"""Deployments at run time: bring them up, scale them, change them, remove them.

Every model of radiance.yaml is a declared deployment; the API adds deployments that are
stored in SQLite and deployed again after a restart. Each change of one deployment runs
under its lock, as a task of its own, so the API answers at once and the status says
how far it got:

- bring-up: pending -> downloading (an hf:// file not yet in the models folder) ->
  loading -> ready, or failed with the reason;
- scaling: new replicas start and join when ready; the ones removed leave the choice at
  once and stop when their last request has ended;
- a change of settings (backend, context length): the new replicas start beside the old
  ones, take over when all are ready, and the old ones drain; if a new one cannot start,
  the old ones go on serving and the error says why;
- delete: the name stops routing, the replicas drain, then their memory is freed.

Autoscaled deployments are looked at every second (`Autoscaler.decide`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import Coroutine, Iterator
from typing import Any

import msgspec

from appliance.config import LoadedConfig, ModelConfig
from appliance.deployments import origins
from appliance.deployments.autoscaler import Load
from appliance.deployments.deployment import Deployment, Status, deployment_json
from appliance.deployments.provisioner import EngineFactory, Provisioner
from appliance.deployments.spec import (
    Configuration,
    CreateDeploymentBody,
    check_scaling_fields,
    merge,
    plan_model,
)
from appliance.hub.download import DownloadError
from appliance.registry import ModelRegistry, NoModelLoaded
from appliance.state.deployments import DeploymentStore
from appliance.webhooks.events import EventBus
from backends.base import EngineError, EngineStatus

log = logging.getLogger(__name__)


class DeploymentNotFound(LookupError):
    pass


class DeploymentDeclared(Exception):
    """Declared in radiance.yaml: change it there."""


class DeploymentExists(Exception):
    """The name routes to a model or deployment already."""


class DeploymentManager:
    def __init__(
        self,
        loaded: LoadedConfig,
        registry: ModelRegistry,
        store: DeploymentStore,
        events: EventBus,
        *,
        factory: EngineFactory | None = None,
        drain_timeout: float = 600.0,
        interval: float = 1.0,
    ) -> None:
        self.loaded = loaded
        self.registry = registry
        self.store = store
        self.events = events
        self.interval = interval
        self._deployments: dict[str, Deployment] = {}
        self._claimed: set[str] = set()  # names being stored by a create
        self._work = Provisioner(loaded, factory, drain_timeout)
        self._tasks: set[asyncio.Task[None]] = set()

    # -- reading -----------------------------------------------------------------------

    def __iter__(self) -> Iterator[Deployment]:
        return iter(list(self._deployments.values()))

    def get(self, deployment_id: str) -> Deployment:
        try:
            return self._deployments[deployment_id]
        except KeyError:
            raise DeploymentNotFound(deployment_id) from None

    # -- start and stop ----------------------------------------------------------------

    async def start(self) -> None:
        """Bring up radiance.yaml's models and the stored deployments, one after another.

        Models a test put in the registry are adopted as they are. NoModelLoaded if
        radiance.yaml declares models and none of them could load.
        """
        given = list(self.registry)
        made = (
            [origins.adopted(served) for served in given]
            if given
            else [origins.declared(model, self.registry) for model in self.loaded.config.models]
        )
        for stored in await self.store.all():
            if self.registry.taken(stored.id):
                log.error(
                    "deployment %s is stored, but radiance.yaml now declares a model of that "
                    "name; the declared model serves",
                    stored.id,
                )
                continue
            made.append(origins.restored(self.loaded, stored, self.registry))
        self._deployments.update((dep.id, dep) for dep in made)
        total = len(self._deployments)
        for number, dep in enumerate(self, start=1):
            log.info(
                "loading model %d/%d: %s on backend %s",
                number,
                total,
                dep.id,
                dep.model.backend if dep.model else "?",
            )
            await self._bring_up(dep)
        # Only radiance.yaml's models decide: a stored deployment that fails must not keep
        # the server, and with it the API that could fix it, from starting.
        declared = [d for d in self if d.declared]
        if declared and all(d.status != "ready" for d in declared):
            raise NoModelLoaded("no model could be loaded; the errors above say why")

    async def stop(self) -> None:
        """Cancel changes under way and stop every replica."""
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task
        for dep in self:
            try:
                await dep.replicas.stop()
            except Exception:
                log.exception("stopping %s failed", dep.id)

    async def run(self) -> None:
        """The autoscaler: a look at every autoscaled deployment each `interval`."""
        while True:
            await asyncio.sleep(self.interval)
            for dep in self:
                try:
                    self._autoscale(dep)
                except Exception:
                    log.exception("autoscaling %s failed", dep.id)

    # -- the API's changes -------------------------------------------------------------

    async def create(self, body: CreateDeploymentBody, owner: str | None = None) -> Deployment:
        """Check and store a new deployment, and start bringing it up; with an `owner`, only
        that key (and the admin) sees and uses it (a fine-tuned model)."""
        name = body.name or body.model_id
        if name in self._deployments or name in self._claimed or self.registry.taken(name):
            raise DeploymentExists(name)
        check_scaling_fields(body.configuration, body.configuration)
        model = plan_model(
            self.loaded,
            name,
            body.model_id,
            body.source,
            body.pricing,
            body.configuration,
            body.adapter,
        )
        # Claimed before the first await: a second create of the same name, arriving
        # while this one is stored, is told the name is taken (409), not a database error.
        self._claimed.add(name)
        try:
            stored = await self.store.add(
                name,
                body.model_id,
                body.source,
                body.pricing,
                body.configuration,
                body.adapter,
                owner,
            )
        except sqlite3.IntegrityError:  # another process stored it first
            raise DeploymentExists(name) from None
        finally:
            self._claimed.discard(name)
        dep = origins.stored(stored, model, self.registry)
        self._deployments[dep.id] = dep
        self._spawn(dep, self._bring_up(dep))
        return dep

    async def update(self, deployment_id: str, changes: Configuration) -> Deployment:
        """Scale or change a deployment; the change rolls out in the background."""
        dep = self.get(deployment_id)
        if dep.declared:
            raise DeploymentDeclared(deployment_id)
        if dep.status == "draining":
            raise DeploymentNotFound(deployment_id)
        wanted = merge(dep.configuration, changes)
        if changes.auto_scaling is False:
            wanted = msgspec.structs.replace(
                wanted,
                min_replicas=None,
                max_replicas=None,
                cooldown_seconds=None,
                target_queue=None,
            )
        check_scaling_fields(changes, wanted)
        model = plan_model(
            self.loaded, dep.id, dep.model_id, dep.source, dep.pricing, wanted, dep.adapter
        )
        previous = dep.configuration
        await self.store.update(dep.id, wanted)
        dep.configuration = wanted
        self._spawn(dep, self._change(dep, model, wanted, previous))
        return dep

    async def delete(self, deployment_id: str) -> Deployment:
        """Stop routing to a deployment, drain its replicas, free them."""
        dep = self.get(deployment_id)
        if dep.declared:
            raise DeploymentDeclared(deployment_id)
        if dep.status == "draining":
            return dep
        self.registry.remove(dep.id)
        await self.store.remove(dep.id)
        for task in dep.tasks:
            task.cancel()
        await self._set(dep, "draining")
        self._spawn(dep, self._remove(dep), own=False)
        return dep

    # -- changes, each under the deployment's lock ---------------------------------------

    def _spawn(self, dep: Deployment, work: Coroutine[Any, Any, None], *, own: bool = True) -> None:
        """Run a change of `dep` as a task; `own`: one that deleting it cancels."""

        async def guarded() -> None:
            try:
                await work
            except Exception as exc:
                # A fault of ours, not the model's: say so rather than stay `loading`.
                log.exception("deployment %s: the change failed", dep.id)
                reason = f"internal error: {exc}"
                if dep.status == "draining":
                    return
                if any(replica.ready for replica in dep.replicas.replicas):
                    await self._set(dep, "ready", reason)  # it still serves
                else:
                    dep.replicas.hold(EngineStatus.FAILED, reason)
                    await self._set(dep, "failed", reason)

        task = asyncio.create_task(guarded(), name=f"deployment-{dep.id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        if own:
            dep.tasks.add(task)
            task.add_done_callback(dep.tasks.discard)

    async def _set(self, dep: Deployment, status: Status, error: str | None = None) -> None:
        previous = dep.status
        dep.error = error
        dep.updated_at = time.time()
        if previous == status:
            return
        dep.status = status
        log.info(
            "deployment %s: %s -> %s%s", dep.id, previous, status, f" ({error})" if error else ""
        )
        data = {"deployment": deployment_json(dep), "previous": previous, "status": status}
        await self.events.publish("deployment.status_changed", data)

    async def _fail(self, dep: Deployment, reason: str) -> None:
        log.error("model %s failed to load, it answers 503 model_unavailable: %s", dep.id, reason)
        dep.replicas.hold(EngineStatus.FAILED, reason)
        await self._set(dep, "failed", reason)
        data = {"model": dep.id, "backend": dep.served.backend_name, "error": reason}
        await self.events.publish("model.failed", data)

    async def _bring_up(self, dep: Deployment) -> None:
        async with dep.lock:
            if dep.model is None:
                await self._fail(dep, dep.error or "the deployment cannot be planned")
                return
            if dep.replicas.replicas:  # adopted with its engine
                await self._start_adopted(dep)
                return
            started = time.perf_counter()
            try:
                dep.path = await self._work.fetch(
                    dep, dep.model, lambda: self._set(dep, "downloading")
                )
                await self._set(dep, "loading")
                dep.target = dep.scaling.replicas
                errors = await self._work.add(dep, dep.model, dep.target)
            except (EngineError, DownloadError) as exc:
                await self._fail(dep, str(exc))
                return
            if not any(r.ready for r in dep.replicas.replicas):
                await self._fail(dep, errors[0] if errors else "no replica started")
                return
            dep.replicas.hold(EngineStatus.STOPPED)
            note = f"{len(errors)} replicas failed to start: {errors[0]}" if errors else None
            await self._set(dep, "ready", note)
            log.info("loaded %s in %.2f s", dep.id, time.perf_counter() - started)

    async def _start_adopted(self, dep: Deployment) -> None:
        try:
            await dep.replicas.start()
        except EngineError as exc:
            await self._fail(dep, str(exc))
            return
        dep.replicas.hold(EngineStatus.STOPPED)
        await self._set(dep, "ready")

    async def _change(
        self, dep: Deployment, model: ModelConfig, wanted: Configuration, previous: Configuration
    ) -> None:
        """Apply a PUT: scale in place, or replace the replicas when the engine changes.

        A replacement whose new replicas cannot start leaves the old ones serving and the
        configuration as it was (`previous`), in memory and in the store."""
        async with dep.lock:
            old = dep.model
            if dep.status == "failed" or old is None:
                # Nothing serves: bring it up again with the new settings.
                dep.model = model
                dep.served.config, dep.served.backend_name = model, model.backend
                await dep.replicas.stop()
                dep.replicas.hold(EngineStatus.LOADING)
                await self._set(dep, "pending")
            else:
                await self._set(dep, "updating")
                try:
                    errors = await self._work.roll(dep, old, model)
                except EngineError as exc:
                    errors = [str(exc)]
                if errors and dep.model is old and dep.configuration is wanted:
                    dep.configuration = previous
                    await self.store.update(dep.id, previous)
                note = f"update failed: {errors[0]}" if errors else None
                await self._set(dep, "ready", note)
                return
        await self._bring_up(dep)

    async def _remove(self, dep: Deployment) -> None:
        for task in list(dep.tasks):
            with contextlib.suppress(BaseException):
                await task
        async with dep.lock:
            await self._work.drain_all(dep)
            dep.replicas.hold(EngineStatus.STOPPED)
            self._deployments.pop(dep.id, None)
            log.info("deployment %s removed; its replicas are stopped", dep.id)
            data = {"deployment": deployment_json(dep), "previous": "draining", "status": "deleted"}
            await self.events.publish("deployment.status_changed", data)

    def _autoscale(self, dep: Deployment) -> None:
        scaling = dep.scaling
        if not scaling.auto or dep.status != "ready" or dep.lock.locked():
            return
        replicas = dep.replicas
        stats = replicas.stats()
        active = len(replicas.active())
        load = Load(
            replicas=active,
            running=stats.running,
            waiting=stats.waiting,
            parallel=replicas.capabilities.parallel,
        )
        want = dep.autoscaler.decide(scaling, load, time.monotonic())
        if want == active:
            return
        log.info(
            "deployment %s: autoscaling %d -> %d replicas (%d running, %d waiting)",
            dep.id,
            active,
            want,
            stats.running,
            stats.waiting,
        )

        async def step() -> None:
            async with dep.lock:
                errors = await self._work.scale(dep, want)
                if errors:
                    log.error("deployment %s: a new replica failed: %s", dep.id, errors[0])

        self._spawn(dep, step())
