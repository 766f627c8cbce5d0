"""Several engines of one model serving as one: the replicas of a deployment.

A request takes a `Lease` on the ready replica with the fewest requests in flight (ties
go round the list) and keeps it until it ends, so its prompt is rendered and generated on
the same engine (or its body forwarded by it). Replicas join when they are ready and leave
in two steps: `retire` takes one out of the choice at once, `drain` waits until its last
lease is released and stops it, so scaling down or replacing replicas drops no request.

A `ReplicaSet[E]` holds engines of one contract (`E`: a `TokenEngine`, a `ProxyEngine`,
or `Engine` for a deployment whose replacement may change the kind); it serves nothing
itself: the caller serves on its lease's engine. Its status and figures are those of its
replicas; while it has no ready replica (the model is still downloading or loading, or it
failed) its status is what its owner set with `hold`.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from backends.base import Capabilities, Engine, EngineStats, EngineStatus, EngineUnavailable
from backends.least_busy import LeastBusy

log = logging.getLogger(__name__)

E = TypeVar("E", bound=Engine)
# How far back `spare_lease` looks for the most interactive requests in flight at once.
PEAK_WINDOW_SECONDS = 60.0


@dataclass
class Replica(Generic[E]):
    """One engine of a deployment; `slot` numbers it (and picks its GPUs, for vLLM)."""

    id: str
    slot: int
    engine: E
    in_flight: int = 0
    background: int = 0  # of in_flight, leases taken by `spare_lease` (batch lines)
    served: int = 0
    retired: bool = False
    _idle: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self._idle.set()

    @property
    def ready(self) -> bool:
        return not self.retired and self.engine.status is EngineStatus.READY

    def take(self) -> None:
        self.in_flight += 1
        self.served += 1
        self._idle.clear()

    def give_back(self) -> None:
        self.in_flight -= 1
        if self.in_flight <= 0:
            self.in_flight = 0
            self._idle.set()

    async def idle(self) -> None:
        await self._idle.wait()


class Lease(Generic[E]):
    """One request's hold on one replica: serve on `engine`; `release` ends it (once)."""

    def __init__(self, replica: Replica[E], background: bool = False) -> None:
        self.replica = replica
        self.background = background
        self._released = False
        replica.take()
        if background:
            replica.background += 1

    @property
    def id(self) -> str:
        return self.replica.id

    @property
    def engine(self) -> E:
        return self.replica.engine

    def release(self) -> None:
        if not self._released:
            self._released = True
            if self.background:
                self.replica.background -= 1
            self.replica.give_back()


class ReplicaSet(Generic[E]):
    def __init__(self, name: str, replicas: Sequence[Replica[E]] = ()) -> None:
        self.name = name
        self.replicas: list[Replica[E]] = list(replicas)
        self._picker: LeastBusy[Replica[E]] = LeastBusy()
        self._held = EngineStatus.STOPPED
        self._held_error: str | None = None
        self._capabilities: Capabilities | None = None
        # (monotonic time, interactive requests in flight) at each interactive lease.
        self._interactive: collections.deque[tuple[float, int]] = collections.deque()

    # -- the set ------------------------------------------------------------------------

    @property
    def capabilities(self) -> Capabilities:
        for replica in self.replicas:
            return replica.engine.capabilities
        return self._capabilities or Capabilities()

    def hold(self, status: EngineStatus, error: str | None = None) -> None:
        """The status to report while no replica is ready (loading, failed, stopped)."""
        self._held, self._held_error = status, error

    def add(self, replica: Replica[E]) -> None:
        """Put a replica in the choice (it is chosen once its engine is ready)."""
        self._capabilities = replica.engine.capabilities
        self.replicas.append(replica)

    def active(self) -> list[Replica[E]]:
        return [r for r in self.replicas if not r.retired]

    def free_slot(self) -> int:
        used = {r.slot for r in self.replicas}
        slot = 0
        while slot in used:
            slot += 1
        return slot

    def retire(self, replica: Replica[E]) -> None:
        """Take a replica out of the choice; requests it holds go on."""
        replica.retired = True

    async def drain(self, replica: Replica[E], wait: float | None = None) -> None:
        """Retire a replica, wait until its requests end (up to `wait` s), stop it."""
        self.retire(replica)
        if replica.in_flight:
            log.info("replica %s: draining %d requests", replica.id, replica.in_flight)
        try:
            await asyncio.wait_for(replica.idle(), wait)
        except TimeoutError:
            log.warning(
                "replica %s: %d requests still running after %.0f s; stopping it",
                replica.id,
                replica.in_flight,
                wait or 0,
            )
        try:
            await replica.engine.stop()
        finally:
            if replica in self.replicas:
                self.replicas.remove(replica)
        log.info("replica %s stopped", replica.id)

    def lease(self) -> Lease[E]:
        """A hold on the ready replica with the fewest requests in flight."""
        best = self._picker.pick(self.replicas, lambda r: r.ready)
        if best is None:
            raise EngineUnavailable(f"no replica of `{self.name}` is ready")
        lease = Lease(best)
        now = time.monotonic()
        count = sum(r.in_flight - r.background for r in self.replicas)
        while self._interactive and self._interactive[-1][1] <= count:
            self._interactive.pop()  # a later, higher count covers it
        self._interactive.append((now, count))
        return lease

    def interactive_peak(self) -> int:
        """The most interactive requests in flight at once in the last PEAK_WINDOW_SECONDS."""
        horizon = time.monotonic() - PEAK_WINDOW_SECONDS
        while self._interactive and self._interactive[0][0] < horizon:
            self._interactive.popleft()
        now = sum(r.in_flight - r.background for r in self.replicas)
        return max([now, *(count for _, count in self._interactive)])

    def spare_lease(self) -> Lease[E] | None:
        """A hold for background work (a batch line) on spare capacity only, else None.

        With C slots over the ready replicas (each engine's `capabilities.parallel`), B
        requests in flight on them (interactive and background) and P the most
        interactive requests in flight at once in the last minute (`interactive_peak`),
        it is lent only if B + 1 + P + 1 <= C: as many slots as interactive traffic
        recently needed at once, plus one, stay free, so interactive requests up to that
        concurrency never wait behind a batch line and share the decode steps with few
        of them. A deployment of one slot is lent only while idle (a request that comes
        then waits for that one line). The replica with the most free slots is chosen."""
        reserve = self.interactive_peak() + 1
        ready = [r for r in self.replicas if r.ready]
        slots = {id(r): max(1, r.engine.capabilities.parallel) for r in ready}
        capacity = sum(slots.values())
        busy = sum(r.in_flight for r in ready)
        room = busy == 0 if capacity == 1 else busy + 1 + reserve <= capacity
        if not ready or not room:
            return None
        best = max(ready, key=lambda r: slots[id(r)] - r.in_flight)
        if slots[id(best)] - best.in_flight <= 0:
            return None
        return Lease(best, background=True)

    # -- status and lifecycle, over the replicas -----------------------------------------

    @property
    def status(self) -> EngineStatus:
        statuses = [r.engine.status for r in self.active()]
        if EngineStatus.READY in statuses:
            return EngineStatus.READY
        if self._held is not EngineStatus.STOPPED or not statuses:
            return self._held
        if EngineStatus.LOADING in statuses:
            return EngineStatus.LOADING
        return EngineStatus.FAILED if EngineStatus.FAILED in statuses else EngineStatus.STOPPED

    def stats(self) -> EngineStats:
        parts = [r.engine.stats() for r in self.replicas]
        loads = [p.load_seconds for p in parts if p.load_seconds is not None]
        errors = [
            f"{r.id}: {p.error}" for r, p in zip(self.replicas, parts, strict=True) if p.error
        ]
        # One replica's own figures pass through; several would not add up.
        extra = dict(parts[0].extra) if len(parts) == 1 else {}
        extra["deployment_replicas"] = float(len(self.active()))
        error = self._held_error if not parts else "; ".join(errors) or None
        return EngineStats(
            running=sum(p.running for p in parts),
            waiting=sum(p.waiting for p in parts),
            load_seconds=max(loads) if loads else None,
            error=error,
            extra=extra,
        )

    async def start(self) -> None:
        for replica in self.replicas:
            await replica.engine.start()

    async def stop(self) -> None:
        for replica in list(self.replicas):
            try:
                await replica.engine.stop()
            except Exception:
                log.exception("stopping replica %s failed", replica.id)
        self.replicas.clear()
