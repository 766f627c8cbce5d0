"""Per-model performance over a window: latency and time-to-first-token percentiles,
decode speed and error rates.

Percentiles come from the ledger's log histograms (buckets of ratio 1.1, see
``appliance.state.ledger``): the rollup buckets of the whole hours merged with the raw
rows of the edge hours, bucketed the same way. A percentile is reported as the geometric
middle of the bucket that holds it, so it is within 5% of the exact value (for values of
1 ms and more). Counts, error rate and tokens/s are exact.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field

import aiosqlite
import msgspec

from appliance.analytics.usage import NO_FILTERS, Filters, union_sql
from appliance.analytics.window import Span, Window
from appliance.state.ledger import bucket_value, latency_bucket


class ModelPerformance(msgspec.Struct, kw_only=True):
    """One model's figures over the window; null where there was nothing to measure."""

    model: str
    requests: int
    ok: int
    errors: int  # requests that ended in an error other than a rate limit (4xx or 5xx)
    cancelled: int
    rate_limited: int  # refused by a rate limit or budget (429): not a server fault
    error_rate: float | None  # errors / requests
    rate_limited_rate: float | None  # rate_limited / requests
    latency_p50_ms: float | None  # successful requests, from start to last byte
    latency_p95_ms: float | None
    ttft_p50_ms: float | None  # time to first token, any request that produced one
    ttft_p95_ms: float | None
    tokens_per_s: float | None  # tokens after the first / the time they took, all requests


def percentile(histogram: Mapping[int, int], q: float) -> float | None:
    """The nearest-rank `q` percentile (0 < q <= 1) of a bucket histogram, in ms."""
    total = sum(histogram.values())
    if total == 0:
        return None
    rank = max(1, math.ceil(q * total))
    seen = 0
    for bucket in sorted(histogram):
        seen += histogram[bucket]
        if seen >= rank:
            return round(bucket_value(bucket), 3)
    raise AssertionError("unreachable: ranks never exceed the total")


@dataclass
class _Counts:
    requests: int = 0
    ok: int = 0
    errors: int = 0
    cancelled: int = 0
    rate_limited: int = 0
    gen_tokens: int = 0
    gen_ms: float = 0.0
    latency: Counter[int] = field(default_factory=Counter)
    ttft: Counter[int] = field(default_factory=Counter)

    def result(self, model: str) -> ModelPerformance:
        n = self.requests
        return ModelPerformance(
            model=model,
            requests=n,
            ok=self.ok,
            errors=self.errors,
            cancelled=self.cancelled,
            rate_limited=self.rate_limited,
            error_rate=round(self.errors / n, 6) if n else None,
            rate_limited_rate=round(self.rate_limited / n, 6) if n else None,
            latency_p50_ms=percentile(self.latency, 0.50),
            latency_p95_ms=percentile(self.latency, 0.95),
            ttft_p50_ms=percentile(self.ttft, 0.50),
            ttft_p95_ms=percentile(self.ttft, 0.95),
            tokens_per_s=(
                round(self.gen_tokens / (self.gen_ms / 1000), 3) if self.gen_ms > 0 else None
            ),
        )


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


async def performance(
    conn: aiosqlite.Connection, window: Window, filters: Filters = NO_FILTERS
) -> list[ModelPerformance]:
    """One entry per model that had requests in the window, ordered by model id."""
    counts: defaultdict[str, _Counts] = defaultdict(_Counts)
    parts, args = union_sql(window, filters, _ROLLUP_COLUMNS, _RAW_COLUMNS)
    query = (
        "SELECT grp, SUM(requests), SUM(ok), SUM(errors), SUM(cancelled), "  # noqa: S608
        f"SUM(rate_limited), SUM(gen_tokens), SUM(gen_ms) FROM ({parts}) "
        "WHERE grp != '' GROUP BY grp"
    )
    async with conn.execute(query, args) as cursor:
        async for model, n, ok, errors, cancelled, limited, gen_tokens, gen_ms in cursor:
            counts[model] = _Counts(n, ok, errors, cancelled, limited, gen_tokens, gen_ms)
    await _add_histograms(conn, window, filters, counts)
    return [counts[model].result(model) for model in sorted(counts)]


async def _add_histograms(
    conn: aiosqlite.Connection,
    window: Window,
    filters: Filters,
    counts: defaultdict[str, _Counts],
) -> None:
    # latency_hourly has no key column: with a key filter, every hour is read raw.
    first, end = window.whole_hours if filters.key_id is None else (0, 0)
    edges: tuple[Span, ...] = (
        window.edges if filters.key_id is None else (Span(window.start, window.end),)
    )
    model_where = " AND model = ?" if filters.model is not None else ""
    model_args = (filters.model,) if filters.model is not None else ()
    rollup = (
        "SELECT model, kind, bucket, SUM(count) FROM latency_hourly "  # noqa: S608
        f"WHERE hour >= ? AND hour < ?{model_where} GROUP BY model, kind, bucket"
    )
    async with conn.execute(rollup, (first, end, *model_args)) as cursor:
        async for model, kind, bucket, count in cursor:
            if model in counts:
                histogram = counts[model].latency if kind == "latency" else counts[model].ttft
                histogram[bucket] += count
    where, args = filters.sql()
    raw = (
        "SELECT model, status, latency_ms, ttft_ms FROM requests "  # noqa: S608
        f"WHERE started_at >= ? AND started_at < ? AND model IS NOT NULL{where}"
    )
    for span in edges:
        async with conn.execute(raw, (span.start, span.end, *args)) as cursor:
            # As the ledger's latency_counts: latency of successes, ttft of any request.
            async for model, status, latency_ms, ttft_ms in cursor:
                if status == "ok":
                    counts[model].latency[latency_bucket(latency_ms)] += 1
                if ttft_ms is not None:
                    counts[model].ttft[latency_bucket(ttft_ms)] += 1
