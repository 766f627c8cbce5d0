"""What each key has spent in its budget period, and holds for requests in flight.

A key's total for a period is read once from the hourly rollups (periods start on a
UTC hour, so the rollups hold it exactly), then every committed ledger row adds to it.
The read runs on the ledger's writer, in order with its commits, and notes how many
commits it saw; rows committed while the read's answer travels back are added to the
total only if their commit came after the read, so no row is counted twice or missed.

A hold is the most an admitted request may still cost; admission compares spend plus
holds with the budget, and the hold goes once the request's row is committed.
"""

from __future__ import annotations

import asyncio
import datetime
import sqlite3
from collections.abc import Callable

from appliance.state.key_usage import spent_since
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
        self._loads: dict[tuple[str, int], asyncio.Task[int]] = {}
        # While a period's total is read: the rows committed meanwhile (commit, pusd).
        self._late: dict[tuple[str, int], list[tuple[int, int]]] = {}
        self._holds: dict[tuple[str, int], int] = {}  # (key id, start hour) -> pusd held

    async def spent(self, key_id: str, start_hour: int) -> int:
        """Picodollars the key has spent since `start_hour`."""
        periods = self._totals.get(key_id, {})
        if start_hour in periods:
            return periods[start_hour]
        slot = (key_id, start_hour)
        load = self._loads.get(slot)
        if load is None:  # one read per period, shared by every request that asks
            load = asyncio.ensure_future(self._load(key_id, start_hour))
            self._loads[slot] = load
            load.add_done_callback(lambda _: self._loads.pop(slot, None))
        # Shielded: a client that goes away does not cancel the others' read.
        return await asyncio.shield(load)

    async def _load(self, key_id: str, start_hour: int) -> int:
        slot = (key_id, start_hour)
        ledger = self._ledger

        def total(conn: sqlite3.Connection) -> tuple[int, int]:
            return spent_since(conn, key_id, start_hour), ledger.commits  # on the writer's thread

        self._late[slot] = []
        try:
            value, seen = await ledger.read(total)
            late = self._late[slot]
        finally:
            del self._late[slot]
        value += sum(cost for commit, cost in late if commit > seen)
        periods = self._totals.setdefault(key_id, {})
        for old in [s for s in periods if s < start_hour]:
            del periods[old]  # older periods of this key are over
        periods[start_hour] = value
        return value

    def held(self, key_id: str, start_hour: int) -> int:
        """Picodollars reserved by the key's requests in flight in this period."""
        return self._holds.get((key_id, start_hour), 0)

    def hold(self, key_id: str, start_hour: int, pusd: int) -> Callable[[], None]:
        """Reserve `pusd` of the period's budget; call the answer once to let it go."""
        slot = (key_id, start_hour)
        self._holds[slot] = self._holds.get(slot, 0) + pusd
        released = False

        def release() -> None:
            nonlocal released
            if released:
                return
            released = True
            left = self._holds.get(slot, 0) - pusd
            if left > 0:
                self._holds[slot] = left
            else:
                self._holds.pop(slot, None)

        return release

    def committed(self, rows: list[RequestRecord]) -> None:
        """Ledger listener: add the cost of newly committed rows to the open totals."""
        commit = self._ledger.notified
        for row in rows:
            if row.key_id is None or not row.cost_pusd:
                continue
            for start, total in self._totals.get(row.key_id, {}).items():
                if row.hour >= start:
                    self._totals[row.key_id][start] = total + row.cost_pusd
            for (key_id, start), late in self._late.items():
                if key_id == row.key_id and row.hour >= start:
                    late.append((commit, row.cost_pusd))
