"""A time window split into what the rollups hold exactly and what only raw rows hold.

``usage_hourly`` and ``latency_hourly`` sum every ledger row by the UTC hour its request
started in (``hour = started_at // 3600``). A window ``[start, end)`` that does not begin
and end on an hour is therefore read in three parts: the whole hours inside it from the
rollups, and the partial hour at each edge from the ``requests`` rows themselves (indexed
by ``started_at``). Every row is counted once, so counts, tokens and costs are exact,
while a 30-day window reads some 720 rollup hours and at most two hours of raw rows.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Literal, NamedTuple

HOUR = 3600
DAY = 86400

Timeframe = Literal["1h", "24h", "7d", "30d"]
TIMEFRAME_SECONDS: dict[str, int] = {"1h": HOUR, "24h": DAY, "7d": 7 * DAY, "30d": 30 * DAY}


class Span(NamedTuple):
    """Seconds since the epoch, ``[start, end)``; empty when start >= end."""

    start: float
    end: float


@dataclass(frozen=True)
class Window:
    """``[start, end)`` in seconds since the epoch (UTC)."""

    start: float
    end: float

    @classmethod
    def last(cls, timeframe: Timeframe, now: float) -> Window:
        """The timeframe that ends now."""
        return cls(now - TIMEFRAME_SECONDS[timeframe], now)

    @classmethod
    def hours(cls, first: int, end: int) -> Window:
        """From the start of hour `first` to the start of hour `end` (epoch hours)."""
        return cls(float(first * HOUR), float(end * HOUR))

    @property
    def whole_hours(self) -> tuple[int, int]:
        """``[first, end)`` in epoch hours: the hours that lie wholly inside the window."""
        first = int(self.start // HOUR)
        if first * HOUR < self.start:
            first += 1
        end = int(self.end // HOUR)
        return (first, end) if first < end else (first, first)

    @property
    def edges(self) -> tuple[Span, Span]:
        """The partial hours before and after the whole ones (either may be empty)."""
        first, end = self.whole_hours
        if first == end:  # no whole hour: the window is all edge
            return Span(self.start, self.end), Span(self.end, self.end)
        return Span(self.start, float(first * HOUR)), Span(float(end * HOUR), self.end)


def utc_date(day: int) -> str:
    """Epoch days (UTC) as ``YYYY-MM-DD``."""
    return (datetime.date(1970, 1, 1) + datetime.timedelta(days=day)).isoformat()


def iso(seconds: float) -> str:
    """Epoch seconds as an ISO 8601 UTC timestamp."""
    moment = datetime.datetime.fromtimestamp(seconds, datetime.UTC)
    return moment.isoformat().replace("+00:00", "Z")
