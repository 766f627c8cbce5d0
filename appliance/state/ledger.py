"""The ledger: one row per inference request, however it ended, with its exact cost.

Rows go through one writer thread that commits them in groups: every row waiting when
a commit starts joins it, so a busy server pays one fsync for many requests, and
``record`` returns only once its row is durable. The same transaction folds each row
into the hourly rollups (``usage_hourly``, ``latency_hourly``) that analytics read, so
rollups and rows never disagree.
"""

from __future__ import annotations

import asyncio
import logging
import math
import pathlib
import queue
import sqlite3
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import astuple, dataclass, fields
from typing import Any, TypeVar

log = logging.getLogger(__name__)

# Latency histograms: bucket b holds values in [1.1^b, 1.1^(b+1)) ms, so a percentile
# read back from the buckets is within 5% of the exact one.
BUCKET_BASE = 1.1
STATUSES = ("ok", "error", "cancelled", "rate_limited")


def latency_bucket(ms: float) -> int:
    return 0 if ms < 1 else int(math.log(ms) / math.log(BUCKET_BASE))


def bucket_value(bucket: int) -> float:
    """The geometric middle of a bucket, in ms."""
    return float(BUCKET_BASE ** (bucket + 0.5))


@dataclass(frozen=True)
class RequestRecord:
    id: str
    key_id: str | None
    key_name: str | None
    endpoint: str
    route_model: str | None
    model: str | None
    backend: str | None
    prompt_tokens: int
    completion_tokens: int
    status: str  # one of STATUSES
    http_status: int
    error_code: str | None
    latency_ms: float
    ttft_ms: float | None
    started_at: float
    ended_at: float
    prompt_price: str = "0"  # USD per 1M tokens in force for this request
    completion_price: str = "0"
    cost_pusd: int = 0  # picodollars, exact
    tokens_per_s: float | None = None  # decode speed after the first token
    batch_id: str | None = None  # the /v1/batches job the request was a line of

    @property
    def hour(self) -> int:
        return int(self.started_at // 3600)

    @property
    def generation(self) -> tuple[int, float] | None:
        """(tokens after the first, ms they took), when there were at least two tokens."""
        if self.ttft_ms is None or self.completion_tokens < 2:
            return None
        return self.completion_tokens - 1, max(self.latency_ms - self.ttft_ms, 0.001)


_COLUMNS = ", ".join(f.name for f in fields(RequestRecord))
_PLACEHOLDERS = ", ".join("?" for _ in fields(RequestRecord))
# Column names come from the dataclass, never from input.
_INSERT = f"INSERT INTO requests ({_COLUMNS}) VALUES ({_PLACEHOLDERS})"  # noqa: S608
_USAGE_UPSERT = """
INSERT INTO usage_hourly (hour, key_id, key_name, model, prompt_price, completion_price,
    requests, ok, errors, cancelled, rate_limited, prompt_tokens, completion_tokens, cost_pusd,
    gen_tokens, gen_ms)
VALUES (?, ?, ?, ?, ?, ?, 1, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (hour, key_id, model, prompt_price, completion_price) DO UPDATE SET
    key_name = excluded.key_name,
    requests = requests + 1,
    ok = ok + excluded.ok,
    errors = errors + excluded.errors,
    cancelled = cancelled + excluded.cancelled,
    rate_limited = rate_limited + excluded.rate_limited,
    prompt_tokens = prompt_tokens + excluded.prompt_tokens,
    completion_tokens = completion_tokens + excluded.completion_tokens,
    cost_pusd = cost_pusd + excluded.cost_pusd,
    gen_tokens = gen_tokens + excluded.gen_tokens,
    gen_ms = gen_ms + excluded.gen_ms
"""
_LATENCY_UPSERT = """
INSERT INTO latency_hourly (hour, model, kind, bucket, count) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (hour, model, kind, bucket) DO UPDATE SET count = count + excluded.count
"""


def usage_values(row: RequestRecord) -> tuple[object, ...]:
    generation = row.generation or (0, 0.0)
    return (
        row.hour,
        row.key_id or "",
        row.key_name or "",
        row.model or "",
        row.prompt_price,
        row.completion_price,
        *(int(row.status == status) for status in STATUSES),
        row.prompt_tokens,
        row.completion_tokens,
        row.cost_pusd,
        *generation,
    )


def latency_counts(rows: list[RequestRecord]) -> Counter[tuple[int, str, str, int]]:
    """Histogram increments: latency of successful requests, time to first token of any."""
    counts: Counter[tuple[int, str, str, int]] = Counter()
    for row in rows:
        if row.model is None:
            continue
        if row.status == "ok":
            counts[row.hour, row.model, "latency", latency_bucket(row.latency_ms)] += 1
        if row.ttft_ms is not None:
            counts[row.hour, row.model, "ttft", latency_bucket(row.ttft_ms)] += 1
    return counts


T = TypeVar("T")
Listener = Callable[[list[RequestRecord]], None]


@dataclass
class _Read:
    """A query run on the writer's thread, in order with the commits."""

    query: Callable[[sqlite3.Connection], object]
    done: asyncio.Future[object]


Job = tuple[RequestRecord, "asyncio.Future[None]"] | _Read | None  # None: stop


class Ledger:
    """Writes rows in group commits on a thread of its own; ``start``, then ``close``.

    The thread owns a plain sqlite3 connection: a whole group costs one hop between
    threads and one fsync, and the event loop never waits on the disk. Results and
    listener calls go back to the loop in commit order.
    """

    def __init__(self, path: pathlib.Path) -> None:
        self._path = path
        self._jobs: queue.SimpleQueue[Job] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.commits = 0  # on the writer's thread: the groups committed so far
        # On the event loop: the number of the commit whose listeners are being called.
        self.notified = 0
        # Called on the event loop with each group of rows once it is committed.
        self.listeners: list[Listener] = []

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name="ledger-writer", daemon=True)
        self._thread.start()

    async def close(self) -> None:
        """Write what is queued, then stop the writer."""
        if self._thread is None:
            return
        self._jobs.put(None)
        await asyncio.to_thread(self._thread.join)
        self._thread = None

    async def record(self, row: RequestRecord) -> None:
        """Store the row; it is committed to disk when this returns."""
        if self._loop is None:
            raise RuntimeError("the ledger is not started")
        done: asyncio.Future[None] = self._loop.create_future()
        self._jobs.put((row, done))
        await done

    async def read(self, query: Callable[[sqlite3.Connection], T]) -> T:
        """Run `query` on the writer's connection, after every row recorded before it."""
        if self._loop is None:
            raise RuntimeError("the ledger is not started")
        done: asyncio.Future[object] = self._loop.create_future()
        self._jobs.put(_Read(query, done))
        return await done  # type: ignore[return-value]

    def _reply(
        self, done: asyncio.Future[Any], result: object, error: BaseException | None
    ) -> None:
        def settle() -> None:
            if done.done():
                return  # the caller was cancelled; the row is stored all the same
            if error is None:
                done.set_result(result)
            else:
                done.set_exception(error)

        assert self._loop is not None
        self._loop.call_soon_threadsafe(settle)

    def _notify(self, rows: list[RequestRecord]) -> None:
        commit = self.commits

        def deliver() -> None:
            self.notified = commit
            for listener in self.listeners:
                try:
                    listener(rows)
                except Exception:
                    log.exception("a ledger listener failed")

        assert self._loop is not None
        self._loop.call_soon_threadsafe(deliver)

    def _run(self) -> None:
        conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA busy_timeout=5000")
        # FULL: a committed row survives a power cut, not only a killed process.
        conn.execute("PRAGMA synchronous=FULL")
        try:
            while True:
                jobs = [self._jobs.get()]
                while not self._jobs.empty():
                    jobs.append(self._jobs.get())
                if not self._handle(conn, jobs):
                    return
        finally:
            conn.close()

    def _handle(
        self,
        conn: sqlite3.Connection,
        jobs: list[tuple[RequestRecord, asyncio.Future[None]] | _Read | None],
    ) -> bool:
        """Commit runs of rows as groups and answer reads in order; False at the end."""
        group: list[tuple[RequestRecord, asyncio.Future[None]]] = []
        for job in jobs:
            if isinstance(job, tuple):
                group.append(job)
                continue
            self._commit_group(conn, group)
            group = []
            if job is None:
                return False
            try:
                self._reply(job.done, job.query(conn), None)
            except Exception as exc:
                self._reply(job.done, None, exc)
        self._commit_group(conn, group)
        return True

    def _commit_group(
        self, conn: sqlite3.Connection, group: list[tuple[RequestRecord, asyncio.Future[None]]]
    ) -> None:
        if not group:
            return
        try:
            self._commit(conn, [row for row, _ in group])
        except Exception:
            if len(group) > 1:
                # One bad row must not cost the others theirs: write them one by one.
                for job in group:
                    self._commit_group(conn, [job])
                return
            row, done = group[0]
            log.exception("could not write the ledger row of request %s", row.id)
            self._reply(done, None, LedgerError(f"could not write request {row.id}"))
            return
        self._notify([row for row, _ in group])
        for _, done in group:
            self._reply(done, None, None)

    def _commit(self, conn: sqlite3.Connection, rows: list[RequestRecord]) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany(_INSERT, [astuple(row) for row in rows])
            conn.executemany(_USAGE_UPSERT, [usage_values(row) for row in rows])
            counts = latency_counts(rows)
            conn.executemany(_LATENCY_UPSERT, [(*key, count) for key, count in counts.items()])
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        self.commits += 1

    async def recent(self, limit: int = 100, key_id: str | None = None) -> list[RequestRecord]:
        where, args = ("WHERE key_id = ?", (key_id, limit)) if key_id else ("", (limit,))
        query = f"SELECT {_COLUMNS} FROM requests {where} ORDER BY started_at DESC LIMIT ?"  # noqa: S608

        def run(conn: sqlite3.Connection) -> list[RequestRecord]:
            return [RequestRecord(*row) for row in conn.execute(query, args)]

        return await self.read(run)


class LedgerError(Exception):
    """A row could not be written."""
