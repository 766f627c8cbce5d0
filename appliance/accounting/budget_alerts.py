"""budget.threshold_reached: told once per key, budget period and threshold.

A ledger listener notes which keys just spent money; a task then compares each key's
total for its period (kept exact by `Spending`) with 80% and 100% of its budget. The
first time a threshold is crossed in a period, a row in `budget_alerts` and the event's
deliveries are written in one transaction, so a restart neither repeats nor loses one.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import time

from appliance.accounting.money import picodollars, usd
from appliance.accounting.spending import Spending, period_start
from appliance.state.budget_alerts import record_alert
from appliance.state.database import Database
from appliance.state.keys import KeyStore
from appliance.state.ledger import RequestRecord
from appliance.state.webhooks import enqueue
from appliance.webhooks.events import EventBus

log = logging.getLogger(__name__)
THRESHOLDS = (80, 100)  # percent of the budget
EVENT = "budget.threshold_reached"


class BudgetAlerts:
    def __init__(self, db: Database, keys: KeyStore, spending: Spending, bus: EventBus) -> None:
        self._db = db
        self._keys = keys
        self._spending = spending
        self._bus = bus
        self._spent_by: asyncio.Queue[str] = asyncio.Queue()
        self._fired: set[tuple[str, int, int]] = set()  # (key id, period start, threshold)
        self._exhausted: set[str] = set()  # keys refused for a budget too small to go on

    def committed(self, rows: list[RequestRecord]) -> None:
        """Ledger listener (after Spending's): which keys spent something."""
        for key_id in {row.key_id for row in rows if row.key_id and row.cost_pusd}:
            assert key_id is not None
            self._spent_by.put_nowait(key_id)

    def exhausted(self, key_id: str) -> None:
        """Meter listener: what is left of the key's budget cannot pay for one more
        request; under a hard cap that is the budget reached (100%)."""
        self._exhausted.add(key_id)
        self._spent_by.put_nowait(key_id)

    async def run(self) -> None:
        while True:
            key_id = await self._spent_by.get()
            try:
                await self.check(key_id, full=key_id in self._exhausted)
                self._exhausted.discard(key_id)
            except Exception:
                log.exception("could not check the budget of key %s", key_id)

    async def check(self, key_id: str, full: bool = False) -> None:
        """Fire the thresholds the key's spend has crossed; `full`: its budget is spent
        as far as requests go (what is left cannot pay for one)."""
        key = self._keys.cached(key_id)
        if key is None or key.budget_usd is None:
            return
        budget = picodollars(key.budget_usd)
        period = key.budget_period or "month"
        start = period_start(period, time.time())
        spent = await self._spending.spent(key.id, start)
        crossed = [
            t
            for t in THRESHOLDS
            if (spent * 100 >= budget * t or full) and (key.id, start, t) not in self._fired
        ]
        if not crossed:
            return
        fired = []
        async with self._db.transaction() as conn:
            for threshold in crossed:
                new = await record_alert(conn, key.id, start, threshold, time.time())
                self._fired.add((key.id, start, threshold))
                if not new:
                    continue  # fired before a restart
                data = {
                    "key": {"id": key.id, "name": key.name},
                    "threshold_percent": threshold,
                    "budget_usd": key.budget_usd,
                    "spent_usd": usd(spent),
                    "period": period,
                    "period_start": datetime.datetime.fromtimestamp(
                        start * 3600, datetime.UTC
                    ).isoformat(),
                }
                await enqueue(conn, EVENT, data)
                fired.append((threshold, data))
        for threshold, data in fired:
            log.warning(
                "key %s reached %d%% of its budget (%s of %s USD per %s)",
                key.name,
                threshold,
                data["spent_usd"],
                key.budget_usd,
                period,
            )
            self._bus.notify(EVENT, data)
