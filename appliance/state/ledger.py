"""The ledger: one row per inference request, however it ended, with its exact cost.

Rows are committed in groups on the event loop: every row recorded while the loop was
busy joins the next commit, and ``record`` returns once its row is in the database's
write-ahead log, where a killed process cannot lose it (``durability="power"``: on disk,
where a power cut cannot either). The same transaction folds each row
into the hourly rollups (``usage_hourly``, ``latency_hourly``) that analytics read, so
rollups and rows never disagree.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import operator
import os
import pathlib
import sqlite3
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Literal, TypeVar

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
        return generation_of(self.completion_tokens, self.latency_ms, self.ttft_ms)


def generation_of(
    completion: int, latency_ms: float, ttft_ms: float | None
) -> tuple[int, float] | None:
    """A request's decoding after its first token: (tokens, ms), from two tokens on."""
    if ttft_ms is None or completion < 2:
        return None
    return completion - 1, max(latency_ms - ttft_ms, 0.001)


def tokens_per_second(completion: int, latency_ms: float, ttft_ms: float | None) -> float | None:
    """The decode speed a row records (`tokens_per_s`), from `generation_of`."""
    decoded = generation_of(completion, latency_ms, ttft_ms)
    return None if decoded is None else round(decoded[0] / (decoded[1] / 1000), 3)


_COLUMNS = ", ".join(f.name for f in fields(RequestRecord))
# A row's values in column order (dataclasses.astuple deep-copies: ten times slower).
_values = operator.attrgetter(*(f.name for f in fields(RequestRecord)))
_PLACEHOLDERS = ", ".join("?" for _ in fields(RequestRecord))
# Column names come from the dataclass, never from input.
_INSERT = f"INSERT INTO requests ({_COLUMNS}) VALUES ({_PLACEHOLDERS})"  # noqa: S608
_USAGE_UPSERT = """
INSERT INTO usage_hourly (hour, key_id, key_name, model, prompt_price, completion_price,
    requests, ok, errors, cancelled, rate_limited, prompt_tokens, completion_tokens, cost_pusd,
    gen_tokens, gen_ms)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (hour, key_id, model, prompt_price, completion_price) DO UPDATE SET
    key_name = excluded.key_name,
    requests = requests + excluded.requests,
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


def usage_increments(rows: list[RequestRecord]) -> list[tuple[object, ...]]:
    """The rows' sums per hourly usage row (hour, key, model, prices): one upsert each."""
    sums: dict[tuple[object, ...], list[object]] = {}
    for row in rows:
        slot = (
            row.hour,
            row.key_id or "",
            row.model or "",
            row.prompt_price,
            row.completion_price,
        )
        generation = row.generation or (0, 0.0)
        figures = (
            1,
            *(int(row.status == status) for status in STATUSES),
            row.prompt_tokens,
            row.completion_tokens,
            row.cost_pusd,
            *generation,
        )
        total = sums.get(slot)
        if total is None:
            sums[slot] = [row.key_name or "", *figures]
        else:
            total[0] = row.key_name or ""
            total[1:] = [a + b for a, b in zip(total[1:], figures, strict=True)]  # type: ignore[operator]
    return [(h, k, name, m, pp, cp, *rest) for (h, k, m, pp, cp), (name, *rest) in sums.items()]


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
Durability = Literal["process", "power"]

# A commit refused because another connection holds the write lock (or this one's
# snapshot is stale) is tried again after these many seconds, doubling, on the loop.
_RETRY_FIRST, _RETRY_MOST = 0.001, 0.05
# Seconds between checkpoints of the write-ahead log into the database file.
CHECKPOINT_INTERVAL = 1.0


class Ledger:
    """Writes rows in group commits on the event loop; ``start``, then ``close``.

    Every row recorded while the loop runs other work joins the next commit, which runs
    on the loop itself at its next turn: with ``synchronous=NORMAL`` a commit only appends
    to the write-ahead log (tens of microseconds for a group), so no thread, no hop and no
    wait for the GIL sits between a finished request and its response. The commit never
    waits on a lock: when another connection holds the write lock the group is tried again
    a moment later while the loop goes on. Checkpoints (which do wait for the disk) run on
    a thread. With ``durability="power"`` a group's ``record`` calls also wait for an
    fsync of the log, on a thread, shared by every group committed meanwhile.
    """

    def __init__(self, path: pathlib.Path, durability: Durability = "process") -> None:
        self._path = path
        self.durability = durability
        self._loop: asyncio.AbstractEventLoop | None = None
        self._conn: sqlite3.Connection | None = None
        self._pending: list[tuple[RequestRecord, asyncio.Future[None]]] = []
        self._flush_at: asyncio.Handle | None = None
        self._retry = _RETRY_FIRST
        self._unsynced: list[asyncio.Future[None]] = []
        self._syncing: asyncio.Task[None] | None = None
        self._log_fd: int | None = None
        self._checkpoints: asyncio.Task[None] | None = None
        self._checkpointed = 0  # the commit count at the last checkpoint
        self.commits = 0  # groups committed so far
        self.notified = 0  # the commit whose listeners are being (or were last) called
        # Called on the event loop with each group of rows once it is committed.
        self.listeners: list[Listener] = []

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA busy_timeout=0")  # the loop never waits on a lock
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA wal_autocheckpoint=0")  # checkpoints run on a thread
        self._conn = conn
        self._checkpoints = asyncio.create_task(self._checkpoint_now_and_then())

    async def close(self) -> None:
        """Write what is pending, then stop."""
        if self._conn is None:
            return
        while self._pending:
            await asyncio.gather(*(done for _, done in self._pending), return_exceptions=True)
        if self._syncing is not None:
            await self._syncing
        if self._checkpoints is not None:
            self._checkpoints.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._checkpoints
        if self._log_fd is not None:
            os.close(self._log_fd)
            self._log_fd = None
        self._conn.close()
        self._conn = None

    async def record(self, row: RequestRecord) -> None:
        """Store the row; it is committed when this returns (and on disk, durability
        "power"). A caller cancelled meanwhile does not take the row back."""
        if self._loop is None or self._conn is None:
            raise RuntimeError("the ledger is not started")
        done: asyncio.Future[None] = self._loop.create_future()
        self._pending.append((row, done))
        if self._flush_at is None:
            self._flush_at = self._loop.call_soon(self._flush)
        await done

    async def read(self, query: Callable[[sqlite3.Connection], T]) -> T:
        """Run `query` on the ledger's connection, after every row recorded before it
        is committed (and before any recorded after it). Keep it short: it runs on the
        event loop."""
        if self._conn is None:
            raise RuntimeError("the ledger is not started")
        while self._pending:  # a commit refused by a lock is waiting to be tried again
            await asyncio.gather(*(done for _, done in self._pending), return_exceptions=True)
        delay = _RETRY_FIRST
        while True:
            try:
                return query(self._conn)
            except sqlite3.OperationalError as exc:
                if not _locked(exc):
                    raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, _RETRY_MOST)

    def _flush(self) -> None:
        """Commit every pending row as one group (one by one if the group fails)."""
        self._flush_at = None
        group, self._pending = self._pending, []
        if not group:
            return
        assert self._conn is not None and self._loop is not None
        try:
            self._commit(self._conn, [row for row, _ in group])
        except sqlite3.OperationalError as exc:
            if _locked(exc):
                self._pending[:0] = group  # first in line when the lock is free
                self._flush_at = self._loop.call_later(self._retry, self._flush)
                self._retry = min(self._retry * 2, _RETRY_MOST)
                return
            self._commit_apart(group)
            return
        except Exception:
            self._commit_apart(group)
            return
        self._retry = _RETRY_FIRST
        self._committed(group)

    def _commit_apart(self, group: list[tuple[RequestRecord, asyncio.Future[None]]]) -> None:
        """One bad row must not cost the others theirs: write them one by one."""
        assert self._conn is not None
        for row, done in group:
            try:
                self._commit(self._conn, [row])
            except Exception:
                log.exception("could not write the ledger row of request %s", row.id)
                _settle(done, LedgerError(f"could not write request {row.id}"))
            else:
                self._committed([(row, done)])

    def _committed(self, group: list[tuple[RequestRecord, asyncio.Future[None]]]) -> None:
        self.notified = self.commits
        rows = [row for row, _ in group]
        for listener in self.listeners:
            try:
                listener(rows)
            except Exception:
                log.exception("a ledger listener failed")
        if self.durability == "process":
            for _, done in group:
                _settle(done, None)
            return
        self._unsynced += [done for _, done in group]
        if self._syncing is None:
            assert self._loop is not None
            self._syncing = self._loop.create_task(self._sync())

    async def _sync(self) -> None:
        """fsync the write-ahead log for the groups committed so far, then answer them."""
        try:
            while self._unsynced:
                waiting, self._unsynced = self._unsynced, []
                error: BaseException | None = None
                try:
                    if self._log_fd is None:
                        self._log_fd = os.open(f"{self._path}-wal", os.O_RDONLY)
                    await asyncio.to_thread(os.fsync, self._log_fd)
                except Exception as exc:
                    log.error("could not flush the ledger to disk: %s", exc)
                    error = LedgerError(f"could not flush the ledger to disk: {exc}")
                for done in waiting:
                    _settle(done, error)
        finally:
            self._syncing = None

    def _commit(self, conn: sqlite3.Connection, rows: list[RequestRecord]) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany(_INSERT, [_values(row) for row in rows])
            conn.executemany(_USAGE_UPSERT, usage_increments(rows))
            counts = latency_counts(rows)
            conn.executemany(_LATENCY_UPSERT, [(*key, count) for key, count in counts.items()])
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        self.commits += 1

    async def _checkpoint_now_and_then(self) -> None:
        """Copy the write-ahead log into the database file, on a thread, when it grew."""
        while True:
            await asyncio.sleep(CHECKPOINT_INTERVAL)
            if self.commits == self._checkpointed:
                continue
            self._checkpointed = self.commits
            try:
                await asyncio.to_thread(_checkpoint, self._path)
            except sqlite3.Error as exc:
                log.warning("could not checkpoint the database: %s", exc)

    async def recent(self, limit: int = 100, key_id: str | None = None) -> list[RequestRecord]:
        where, args = ("WHERE key_id = ?", (key_id, limit)) if key_id else ("", (limit,))
        query = f"SELECT {_COLUMNS} FROM requests {where} ORDER BY started_at DESC LIMIT ?"  # noqa: S608

        def run(conn: sqlite3.Connection) -> list[RequestRecord]:
            return [RequestRecord(*row) for row in conn.execute(query, args)]

        return await self.read(run)


def _checkpoint(path: pathlib.Path) -> None:
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute("PRAGMA busy_timeout=1000")
        conn.execute("PRAGMA wal_checkpoint(PASSIVE)")


def _locked(exc: sqlite3.OperationalError) -> bool:
    """SQLITE_BUSY or SQLITE_LOCKED, with any extended code (a stale snapshot included)."""
    primary = getattr(exc, "sqlite_errorcode", 0) & 0xFF
    return primary in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


def _settle(done: asyncio.Future[None], error: BaseException | None) -> None:
    if done.done():
        return  # the caller was cancelled; the row is stored all the same
    if error is None:
        done.set_result(None)
    else:
        done.set_exception(error)


class LedgerError(Exception):
    """A row could not be written."""
