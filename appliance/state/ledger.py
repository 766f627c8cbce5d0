"""The ledger: one row per inference request, however it ended, with its exact cost.

Rows go through one writer task that commits them in groups: every row waiting when a
commit starts joins it, so a busy server pays one fsync for many requests, and
``record`` returns only once its row is durable. The same transaction folds each row
into the hourly rollups (``usage_hourly``, ``latency_hourly``) that analytics read, so
rollups and rows never disagree.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import astuple, dataclass, fields

from appliance.state.database import Database

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


class Ledger:
    """Writes rows in group commits; ``start`` before use, ``close`` to flush."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._pending: asyncio.Queue[tuple[RequestRecord, asyncio.Future[None]]] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None
        self.commits = 0
        # Called with each group of rows once it is committed.
        self.listeners: list[Callable[[list[RequestRecord]], None]] = []

    def start(self) -> None:
        self._writer = asyncio.create_task(self._write_forever(), name="ledger-writer")

    async def close(self) -> None:
        """Write what is queued, then stop the writer."""
        if self._writer is None:
            return
        await self._pending.join()
        self._writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._writer
        self._writer = None

    async def record(self, row: RequestRecord) -> None:
        """Store the row; it is committed to disk when this returns."""
        if self._writer is None:
            await self._commit([row])
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        await self._pending.put((row, done))
        await done

    async def _write_forever(self) -> None:
        while True:
            batch = [await self._pending.get()]
            while not self._pending.empty():
                batch.append(self._pending.get_nowait())
            try:
                await self._commit([row for row, _ in batch])
            except Exception:
                # One bad row must not cost the others theirs: write them one by one.
                for row, done in batch:
                    await self._commit_alone(row, done)
            else:
                for _, done in batch:
                    if not done.done():
                        done.set_result(None)
            for _ in batch:
                self._pending.task_done()

    async def _commit_alone(self, row: RequestRecord, done: asyncio.Future[None]) -> None:
        try:
            await self._commit([row])
        except Exception as exc:
            log.exception("could not write the ledger row of request %s", row.id)
            if not done.done():
                done.set_exception(exc)
        else:
            if not done.done():
                done.set_result(None)

    async def _commit(self, rows: list[RequestRecord]) -> None:
        async with self._db.lock:
            async with self._db.locked_transaction() as conn:
                await conn.executemany(_INSERT, [astuple(row) for row in rows])
                await conn.executemany(_USAGE_UPSERT, [usage_values(row) for row in rows])
                counts = latency_counts(rows)
                await conn.executemany(
                    _LATENCY_UPSERT, [(*key, count) for key, count in counts.items()]
                )
            self.commits += 1
            # Still under the lock, so a reader that also takes it sees rows and
            # listeners agree: nothing is counted twice or missed.
            for listener in self.listeners:
                listener(rows)

    async def recent(self, limit: int = 100, key_id: str | None = None) -> list[RequestRecord]:
        where, args = ("WHERE key_id = ?", (key_id, limit)) if key_id else ("", (limit,))
        query = f"SELECT {_COLUMNS} FROM requests {where} ORDER BY started_at DESC LIMIT ?"  # noqa: S608
        async with self._db.reader.execute(query, args) as cursor:
            return [RequestRecord(*row) async for row in cursor]
