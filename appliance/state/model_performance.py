"""What the ledger says about each model's speed and failures over a time window.

Counts and generation time come from ``usage_hourly`` and the raw edge rows (see
``usage_totals``); the latency and time-to-first-token histograms from ``latency_hourly``
and the raw rows, bucketed as the ledger buckets them (``ledger.latency_bucket``).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

import aiosqlite

from appliance.state.ledger import latency_bucket
from appliance.state.usage_totals import Edge, Hours, narrowing, union_sql


@dataclass(frozen=True)
class ModelCounts:
    """One model's requests by how they ended, and the tokens generated after the first
    token with the milliseconds they took."""

    model: str
    requests: int
    ok: int
    errors: int
    cancelled: int
    rate_limited: int
    gen_tokens: int
    gen_ms: float


@dataclass
class Histograms:
    """Bucket counts: latency of successful requests, time to first token of any."""

    latency: Counter[int] = field(default_factory=Counter)
    ttft: Counter[int] = field(default_factory=Counter)


_ROLLUP_COLUMNS = (
    "model AS grp, SUM(requests) AS requests, SUM(ok) AS ok, SUM(errors) AS errors, "
    "SUM(cancelled) AS cancelled, SUM(rate_limited) AS rate_limited, "
    "SUM(gen_tokens) AS gen_tokens, SUM(gen_ms) AS gen_ms"
)
# RequestRecord.generation, in SQL: tokens after the first and the ms they took.
_RAW_COLUMNS = (
    "COALESCE(model, '') AS grp, COUNT(*), SUM(status = 'ok'), SUM(status = 'error'), "
    "SUM(status = 'cancelled'), SUM(status = 'rate_limited'), "
    "SUM(CASE WHEN ttft_ms IS NOT NULL AND completion_tokens >= 2 THEN completion_tokens - 1 "
    "ELSE 0 END), "
    "SUM(CASE WHEN ttft_ms IS NOT NULL AND completion_tokens >= 2 "
    "THEN MAX(latency_ms - ttft_ms, 0.001) ELSE 0 END)"
)


async def model_counts(
    conn: aiosqlite.Connection,
    hours: Hours,
    edges: tuple[Edge, Edge],
    *,
    key_id: str | None = None,
    model: str | None = None,
) -> list[ModelCounts]:
    """One entry per model that had requests in the whole `hours` and the `edges`."""
    where = narrowing(key_id, model)
    parts, args = union_sql(hours, edges, where, _ROLLUP_COLUMNS, _RAW_COLUMNS)
    query = (
        "SELECT grp, SUM(requests), SUM(ok), SUM(errors), SUM(cancelled), "  # noqa: S608
        f"SUM(rate_limited), SUM(gen_tokens), SUM(gen_ms) FROM ({parts}) "
        "WHERE grp != '' GROUP BY grp"
    )
    async with conn.execute(query, args) as cursor:
        return [ModelCounts(*row) async for row in cursor]


async def histograms(
    conn: aiosqlite.Connection,
    hours: Hours,
    spans: Iterable[Edge],
    *,
    key_id: str | None = None,
    model: str | None = None,
) -> defaultdict[str, Histograms]:
    """Per model, the rollup buckets of the whole `hours` and the raw rows of `spans`.

    ``latency_hourly`` has no key column: to narrow to a key, read every hour raw (pass
    empty `hours` and one span over the window)."""
    found: defaultdict[str, Histograms] = defaultdict(Histograms)
    model_where = " AND model = ?" if model is not None else ""
    model_args = (model,) if model is not None else ()
    rollup = (
        "SELECT model, kind, bucket, SUM(count) FROM latency_hourly "  # noqa: S608
        f"WHERE hour >= ? AND hour < ?{model_where} GROUP BY model, kind, bucket"
    )
    async with conn.execute(rollup, (*hours, *model_args)) as cursor:
        async for name, kind, bucket, count in cursor:
            histogram = found[name].latency if kind == "latency" else found[name].ttft
            histogram[bucket] += count
    clauses, args = narrowing(key_id, model)
    raw = (
        "SELECT model, status, latency_ms, ttft_ms FROM requests "  # noqa: S608
        f"WHERE started_at >= ? AND started_at < ? AND model IS NOT NULL{clauses}"
    )
    for span in spans:
        async with conn.execute(raw, (*span, *args)) as cursor:
            # As the ledger's latency_counts: latency of successes, ttft of any request.
            async for name, status, latency_ms, ttft_ms in cursor:
                if status == "ok":
                    found[name].latency[latency_bucket(latency_ms)] += 1
                if ttft_ms is not None:
                    found[name].ttft[latency_bucket(ttft_ms)] += 1
    return found
