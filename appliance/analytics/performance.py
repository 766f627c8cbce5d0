"""Per-model performance over a window: latency and time-to-first-token percentiles,
decode speed and error rates.

Percentiles come from the ledger's log histograms (buckets of ratio 1.1, see
``appliance.state.ledger``): the rollup buckets of the whole hours merged with the raw
rows of the edge hours, bucketed the same way (``appliance.state.model_performance`` reads
both). A percentile is reported as the geometric middle of the bucket that holds it, so it
is within 5% of the exact value (for values of 1 ms and more). Counts, error rate and
tokens/s are exact.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import msgspec

from appliance.analytics.usage import NO_FILTERS, Filters
from appliance.analytics.window import Span, Window
from appliance.state.database import Reader
from appliance.state.ledger import bucket_value
from appliance.state.model_performance import Histograms, ModelCounts, histograms, model_counts


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


def _figures(counts: ModelCounts, buckets: Histograms) -> ModelPerformance:
    n = counts.requests
    return ModelPerformance(
        model=counts.model,
        requests=n,
        ok=counts.ok,
        errors=counts.errors,
        cancelled=counts.cancelled,
        rate_limited=counts.rate_limited,
        error_rate=round(counts.errors / n, 6) if n else None,
        rate_limited_rate=round(counts.rate_limited / n, 6) if n else None,
        latency_p50_ms=percentile(buckets.latency, 0.50),
        latency_p95_ms=percentile(buckets.latency, 0.95),
        ttft_p50_ms=percentile(buckets.ttft, 0.50),
        ttft_p95_ms=percentile(buckets.ttft, 0.95),
        tokens_per_s=(
            round(counts.gen_tokens / (counts.gen_ms / 1000), 3) if counts.gen_ms > 0 else None
        ),
    )


async def performance(
    conn: Reader, window: Window, filters: Filters = NO_FILTERS
) -> list[ModelPerformance]:
    """One entry per model that had requests in the window, ordered by model id."""
    key_id, model = filters.key_id, filters.model
    found = await model_counts(conn, window.whole_hours, window.edges, key_id=key_id, model=model)
    # latency_hourly has no key column: with a key filter, every hour is read raw.
    if key_id is None:
        buckets = await histograms(conn, window.whole_hours, window.edges, model=model)
    else:
        raw = [Span(window.start, window.end)]
        buckets = await histograms(conn, (0, 0), raw, key_id=key_id, model=model)
    ordered = sorted(found, key=lambda counts: counts.model)
    return [_figures(counts, buckets[counts.model]) for counts in ordered]
