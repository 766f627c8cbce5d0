"""What each key has spent in its budget period, kept exact beside the ledger.

A key's total for a period is read once from the hourly rollups (periods start on a
UTC hour, so the rollups hold it exactly), then every committed ledger row adds to it.
The read runs on the ledger's writer, in order with its commits, and the answers come
back in that order too, so no row is counted twice or missed.
"""

from __future__ import annotations

import datetime
import sqlite3

from appliance.state.ledger import Ledger, RequestRecord


def period_start(period: str, now: float) -> int:
    """The first hour (epoch hours, UTC) of the day or month that contains `now`."""
    moment = datetime.datetime.fromtimestamp(now, datetime.UTC)
    start = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "month":
        start = start.replace(day=1)
    return int(start.timestamp() // 3600)


def period_end(period: str, now: float) -> float:
    """When the period that contains `now` ends (epoch seconds)."""
    start = datetime.datetime.fromtimestamp(period_start(period, now) * 3600, datetime.UTC)
    if period == "day":
        end = start + datetime.timedelta(days=1)
    else:
        end = (start + datetime.timedelta(days=32)).replace(day=1)
    return end.timestamp()


class Spending:
    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger
        self._totals: dict[str, dict[int, int]] = {}  # key id -> period start hour -> pusd

    async def spent(self, key_id: str, start_hour: int) -> int:
        """Picodollars the key has spent since `start_hour`."""
        periods = self._totals.get(key_id, {})
        if start_hour in periods:
            return periods[start_hour]

        def total(conn: sqlite3.Connection) -> int:
            row = conn.execute(
                "SELECT COALESCE(SUM(cost_pusd), 0) FROM usage_hourly "
                "WHERE key_id = ? AND hour >= ?",
                (key_id, start_hour),
            ).fetchone()
            return int(row[0]) if row else 0

        value = await self._ledger.read(total)
        periods = self._totals.setdefault(key_id, {})
        # Rows committed after the read were added by `committed` only if the total was
        # already there; a concurrent load that landed first wins.
        if start_hour not in periods:
            for old in [s for s in periods if s < start_hour]:
                del periods[old]  # older periods of this key are over
            periods[start_hour] = value
        return periods[start_hour]

    def committed(self, rows: list[RequestRecord]) -> None:
        """Ledger listener: add the cost of newly committed rows to the open totals."""
        for row in rows:
            if row.key_id is None or not row.cost_pusd:
                continue
            for start, total in self._totals.get(row.key_id, {}).items():
                if row.hour >= start:
                    self._totals[row.key_id][start] = total + row.cost_pusd
