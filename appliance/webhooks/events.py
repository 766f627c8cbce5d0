"""The event bus: what the server publishes for webhooks (and for listeners in-process).

`publish` queues a delivery row per subscribed webhook and wakes the sender. Code that
changes state in a transaction of its own can queue in it with
`appliance.state.webhooks.enqueue` and then call `notify`. Events: see `EVENTS`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from appliance.state.database import Database
from appliance.state.webhooks import EVENTS, enqueue

log = logging.getLogger(__name__)
Listener = Callable[[str, dict[str, Any]], None]

__all__ = ["EVENTS", "EventBus", "publish_once"]


class EventBus:
    def __init__(self, db: Database) -> None:
        self._db = db
        self.wake = asyncio.Event()
        # Called on the event loop with (event, data) after the deliveries are queued.
        self.listeners: list[Listener] = []

    async def publish(self, event: str, data: dict[str, Any]) -> int:
        """Queue `event` for its webhooks; how many deliveries were queued."""
        async with self._db.transaction() as conn:
            queued = await enqueue(conn, event, data)
        self.notify(event, data)
        return queued

    def notify(self, event: str | None = None, data: dict[str, Any] | None = None) -> None:
        """Wake the sender; tell the listeners about `event` if one is given."""
        self.wake.set()
        if event is None:
            return
        for listener in self.listeners:
            try:
                listener(event, data or {})
            except Exception:
                log.exception("an event listener failed on %s", event)


async def publish_once(db: Database, event: str, data: dict[str, Any]) -> int:
    """Queue an event from a process without a bus (the CLI); a server sends it."""
    async with db.transaction() as conn:
        return await enqueue(conn, event, data)
