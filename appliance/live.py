"""Live figures for the console: counters that move as tokens are made, and recent requests.

Tokens are counted as each is generated (not when the request ends), so a rate computed
from two snapshots a second apart shows a long stream as the steady flow it is. Latency
percentiles cover the last minute; the recent-request tail is numbered so a poller can ask
only for what is new. All in memory; the ledger stays the record.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from appliance.management.wire import LastMinute, RecentRequest, Totals
from appliance.state.ledger import RequestRecord

WINDOW_SECONDS = 60.0
RECENT = 500


def percentile(values: list[float], share: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


@dataclass
class _ModelFigures:
    requests: int = 0
    errors: int = 0
    cancelled: int = 0
    rate_limited: int = 0
    prompt_tokens: int = 0
    generated_tokens: int = 0
    # (ended at, status, latency ms, ttft ms) of the last minute.
    window: deque[tuple[float, str, float, float | None]] = field(default_factory=deque)

    def prune(self, now: float) -> None:
        while self.window and self.window[0][0] < now - WINDOW_SECONDS:
            self.window.popleft()

    def snapshot(self, now: float) -> tuple[Totals, LastMinute]:
        self.prune(now)
        latencies = [lat for _, status, lat, _ in self.window if status == "ok"]
        ttfts = [t for _, _, _, t in self.window if t is not None]
        errors = sum(1 for _, status, _, _ in self.window if status == "error")
        count = len(self.window)
        totals = Totals(
            requests=self.requests,
            errors=self.errors,
            cancelled=self.cancelled,
            rate_limited=self.rate_limited,
            prompt_tokens=self.prompt_tokens,
            generated_tokens=self.generated_tokens,
        )
        last_minute = LastMinute(
            requests=count,
            p50_latency_ms=percentile(latencies, 0.5),
            p95_latency_ms=percentile(latencies, 0.95),
            p50_ttft_ms=percentile(ttfts, 0.5),
            p95_ttft_ms=percentile(ttfts, 0.95),
            error_rate=errors / count if count else 0.0,
        )
        return totals, last_minute


class LiveStats:
    def __init__(self) -> None:
        self._models: dict[str, _ModelFigures] = {}
        self._recent: deque[RecentRequest] = deque(maxlen=RECENT)
        self._sequence = 0

    def _figures(self, model: str) -> _ModelFigures:
        figures = self._models.get(model)
        if figures is None:  # not setdefault: that builds one per call
            figures = self._models[model] = _ModelFigures()
        return figures

    def generated(self, model: str | None, tokens: int) -> None:
        """Tokens as the engine makes them."""
        if model is not None and tokens:
            self._figures(model).generated_tokens += tokens

    def finished(self, row: RequestRecord, generated_live: int) -> None:
        """A request ended; `generated_live` of its tokens were already counted."""
        now = time.time()
        if row.model is not None:
            figures = self._figures(row.model)
            figures.requests += 1
            figures.errors += row.status == "error"
            figures.cancelled += row.status == "cancelled"
            figures.rate_limited += row.status == "rate_limited"
            figures.prompt_tokens += row.prompt_tokens
            # Unbilled rows record 0 tokens; the live count keeps what was really made.
            figures.generated_tokens += max(0, row.completion_tokens - generated_live)
            figures.window.append((now, row.status, row.latency_ms, row.ttft_ms))
            figures.prune(now)
        self._sequence += 1
        self._recent.append(
            RecentRequest(
                seq=self._sequence,
                id=row.id,
                time=row.ended_at,
                key=row.key_name,
                model=row.model or row.route_model,
                endpoint=row.endpoint,
                prompt_tokens=row.prompt_tokens,
                completion_tokens=row.completion_tokens,
                latency_ms=row.latency_ms,
                ttft_ms=row.ttft_ms,
                status=row.status,
                http_status=row.http_status,
            )
        )

    def models(self, ids: Iterable[str]) -> dict[str, tuple[Totals, LastMinute]]:
        """Each model's counters since start and its last minute."""
        now = time.time()
        return {model: self._figures(model).snapshot(now) for model in ids}

    def recent(self, since: int = 0, limit: int = 100) -> list[RecentRequest]:
        """Requests numbered above `since`, oldest first, at most `limit` (the newest)."""
        items = [item for item in self._recent if item.seq > since]
        return items[-limit:]

    @property
    def sequence(self) -> int:
        return self._sequence
