"""The openai engine: several OpenAI-compatible servers (replicas) behind one model.

A request goes to the healthy replica with the fewest requests in flight (ties go round
the list). A replica that refuses a connection, answers 502/503/504 or fails a health
check is ejected and the request is retried on another; an ejected replica is probed
again after a backoff (doubling up to a minute) and returns when a probe succeeds. The
`deployment` of each reply is the URL of the replica that served.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from backends.backoff import Backoff
from backends.base import (
    Endpoint,
    EngineError,
    EngineStats,
    EngineStatus,
    EngineUnavailable,
    ProxyEngine,
    UpstreamError,
    UpstreamReply,
)
from backends.least_busy import LeastBusy
from backends.openai.client import OpenAIServer, TransportError, Unreachable, new_client

log = logging.getLogger(__name__)
MAX_BACKOFF = 60.0
# Statuses that say "this replica cannot serve now", not "this request is wrong".
_REPLICA_DOWN = frozenset({502, 503, 504})


@dataclass(frozen=True)
class PoolSettings:
    name: str
    urls: tuple[str, ...]
    api_key: str | None = None
    health_interval: float = 5.0
    connect_timeout: float = 5.0
    timeout: float = 600.0


@dataclass
class Replica:
    server: OpenAIServer
    url: str
    in_flight: int = 0
    served: int = 0
    healthy: bool = False
    failures: int = 0
    retry_at: float = 0.0  # when an ejected replica is probed again
    error: str | None = field(default=None)

    def eject(self, reason: str, backoff: Backoff) -> None:
        if self.healthy or self.error is None:
            log.warning("replica %s ejected: %s", self.url, reason)
        self.healthy = False
        self.failures += 1
        self.error = reason
        self.retry_at = time.monotonic() + backoff.after(self.failures)

    def restore(self) -> None:
        if not self.healthy:
            log.info("replica %s is healthy", self.url)
        self.healthy, self.failures, self.error = True, 0, None


class ReplicaPool:
    """The replicas of one backend, shared by every model on it (so a request in flight
    for one model counts when another model's request picks a replica)."""

    def __init__(self, settings: PoolSettings) -> None:
        self.settings = settings
        self._client: aiohttp.ClientSession | None = None
        self.replicas: list[Replica] = []
        self._picker: LeastBusy[Replica] = LeastBusy()
        # An ejected replica is probed again after one health interval, doubling.
        self._backoff = Backoff(first=settings.health_interval, most=MAX_BACKOFF)
        self._health: asyncio.Task[None] | None = None
        self._users = 0
        self._started = asyncio.Lock()

    @property
    def ready(self) -> bool:
        return any(r.healthy for r in self.replicas)

    def stats(self) -> EngineStats:
        healthy = sum(r.healthy for r in self.replicas)
        extra = {"replicas": float(len(self.replicas)), "replicas_healthy": float(healthy)}
        for index, replica in enumerate(self.replicas):
            extra[f"replica{index}_in_flight"] = float(replica.in_flight)
            extra[f"replica{index}_served"] = float(replica.served)
        errors = [f"{r.url}: {r.error}" for r in self.replicas if r.error]
        return EngineStats(
            running=sum(r.in_flight for r in self.replicas),
            error="; ".join(errors) or None,
            extra=extra,
        )

    async def start(self) -> None:
        """Probe every replica once (the first user starts the pool); serving starts even
        if none answers yet."""
        async with self._started:
            self._users += 1
            if self._users > 1:
                return
            settings = self.settings
            self._client = new_client(settings.connect_timeout, settings.timeout)
            self.replicas = [
                Replica(
                    OpenAIServer(
                        url,
                        self._client,
                        settings.api_key,
                        connect_timeout=settings.connect_timeout,
                        timeout=settings.timeout,
                    ),
                    url,
                )
                for url in settings.urls
            ]
            await asyncio.gather(*(self._probe(r) for r in self.replicas))
            self._health = asyncio.create_task(self._check_health(), name=f"health-{settings.name}")
            if not self.ready:
                log.warning("no replica of backend %s answers yet; retrying", settings.name)

    async def stop(self) -> None:
        """The last user stops the health checks and closes the connections."""
        self._users -= 1
        if self._users > 0:
            return
        if self._health is not None:
            self._health.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._health
        for replica in self.replicas:
            replica.server.close()
        if self._client is not None:
            await self._client.close()

    async def _probe(self, replica: Replica) -> None:
        """GET {url}/models: healthy on 200, ejected on anything else."""
        try:
            response = await replica.server.get("models", wait=self.settings.connect_timeout)
        except TransportError as exc:
            replica.eject(f"health check failed: {exc or type(exc).__name__}", self._backoff)
        else:
            if response.status == 200:
                replica.restore()
            else:
                replica.eject(f"health check answered {response.status}", self._backoff)

    async def _check_health(self) -> None:
        while True:
            await asyncio.sleep(self.settings.health_interval)
            now = time.monotonic()
            due = [r for r in self.replicas if r.healthy or r.retry_at <= now]
            await asyncio.gather(*(self._probe(r) for r in due))

    def _pick(self, tried: list[Replica]) -> Replica | None:
        """The healthy replica with the fewest requests in flight, not tried yet."""
        return self._picker.pick(
            self.replicas, lambda r: r.healthy and all(r is not t for t in tried)
        )

    async def forward(
        self, endpoint: Endpoint, body: dict[str, Any], *, stream: bool
    ) -> UpstreamReply:
        tried: list[Replica] = []
        last: EngineError | None = None
        while (replica := self._pick(tried)) is not None:
            tried.append(replica)
            replica.in_flight += 1
            try:
                reply = await replica.server.forward(
                    endpoint, body, stream=stream, deployment=replica.url
                )
            except Unreachable as exc:
                replica.in_flight -= 1
                replica.eject(str(exc), self._backoff)
                last = exc
                continue
            except UpstreamError as exc:
                replica.in_flight -= 1
                if exc.status not in _REPLICA_DOWN:
                    raise
                replica.eject(f"answered {exc.status}: {exc}", self._backoff)
                last = exc
                continue
            except BaseException:
                replica.in_flight -= 1
                raise
            replica.served += 1
            return self._released(reply, replica)
        retry = min((r.retry_at for r in self.replicas), default=0.0) - time.monotonic()
        reason = f" (last: {last})" if last else ""
        raise EngineUnavailable(
            f"no replica of backend `{self.settings.name}` can take the request now{reason}; "
            f"retry in {max(1.0, retry):.0f} s"
        )

    def _released(self, reply: UpstreamReply, replica: Replica) -> UpstreamReply:
        """The reply, with `close` ending the replica's count of requests in flight, and a
        connection lost mid-stream ejecting the replica."""
        closed = False
        inner = reply.close

        async def close() -> None:
            nonlocal closed
            if not closed:
                closed = True
                replica.in_flight -= 1
            await inner()

        async def watched(
            events: AsyncIterator[list[dict[str, Any]]],
        ) -> AsyncIterator[list[dict[str, Any]]]:
            try:
                async for event in events:
                    yield event
            except EngineError as exc:
                replica.eject(str(exc), self._backoff)
                raise
            finally:
                await events.aclose()  # type: ignore[attr-defined]

        reply.close = close
        if reply.events is not None:
            reply.events = watched(reply.events)
        return reply


class UpstreamEngine(ProxyEngine):
    """One model served by a backend's replicas, under the name they know it by."""

    def __init__(self, pool: ReplicaPool, model_id: str, upstream_model: str) -> None:
        self.pool = pool
        self.model_id = model_id
        self.upstream_model = upstream_model
        self._started = False
        self._load_seconds: float | None = None

    @property
    def status(self) -> EngineStatus:
        if not self._started:
            return EngineStatus.STOPPED
        return EngineStatus.READY if self.pool.ready else EngineStatus.FAILED

    def stats(self) -> EngineStats:
        stats = self.pool.stats()
        stats.load_seconds = self._load_seconds
        return stats

    async def start(self) -> None:
        started = time.perf_counter()
        await self.pool.start()
        self._started = True
        self._load_seconds = time.perf_counter() - started

    async def stop(self) -> None:
        if self._started:
            self._started = False
            await self.pool.stop()

    async def forward(
        self, endpoint: Endpoint, body: dict[str, Any], *, stream: bool
    ) -> UpstreamReply:
        body = {**body, "model": self.upstream_model}
        return await self.pool.forward(endpoint, body, stream=stream)
