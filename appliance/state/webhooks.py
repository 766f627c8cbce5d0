"""Webhooks and their delivery log in SQLite.

An event becomes one delivery row per webhook subscribed to it, with the exact JSON
body to send, in the same transaction as whatever caused it when the caller holds one.
The sender works from the rows alone, so a delivery queued by another process (the
`radiance keys` CLI) or before a restart is sent all the same.

The signing secret is stored as it is, unlike an API key's: the server must compute an
HMAC with it for every delivery, and a hash cannot sign.
"""

from __future__ import annotations

import json
import secrets
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aiosqlite
import msgspec

from appliance.state.database import Database

EVENTS = (
    "deployment.status_changed",
    "model.failed",
    "key.created",
    "key.revoked",
    "budget.threshold_reached",
    "batch.completed",
    "batch.failed",
    "batch.expired",
    "batch.cancelled",
    "fine_tuning.job.succeeded",
    "fine_tuning.job.failed",
    "fine_tuning.job.cancelled",
)
SECRET_PREFIX = "whsec_"  # noqa: S105 (a marker, not a secret)
_HOOK_COLUMNS = "id, url, events, description, secret, created_at"
_DELIVERY_COLUMNS = (
    "id, webhook_id, event_id, event, payload, status, attempts, last_status, last_error, "
    "created_at, next_attempt_at, last_attempt_at, delivered_at"
)


class WebhookNotFound(LookupError):
    pass


@dataclass(frozen=True)
class Webhook:
    id: str
    url: str
    events: tuple[str, ...]
    description: str | None
    secret: str
    created_at: float

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> Webhook:
        values = list(row)
        values[2] = tuple(json.loads(values[2]))
        return cls(*values)


@dataclass(frozen=True)
class Delivery:
    id: str
    webhook_id: str
    event_id: str
    event: str
    payload: str
    status: str  # pending, delivered or failed
    attempts: int
    last_status: int | None
    last_error: str | None
    created_at: float
    next_attempt_at: float
    last_attempt_at: float | None
    delivered_at: float | None


def event_body(event: str, data: dict[str, Any], now: float) -> tuple[str, str]:
    """A new event's id and the JSON body every subscriber gets."""
    event_id = f"evt_{uuid.uuid4().hex}"
    body = {"id": event_id, "type": event, "created": int(now), "data": data}
    return event_id, msgspec.json.encode(body).decode()


async def enqueue(conn: aiosqlite.Connection, event: str, data: dict[str, Any]) -> int:
    """Queue `event` for every webhook subscribed to it, in the caller's transaction.

    Returns how many deliveries were queued (0 when nobody listens).
    """
    if event not in EVENTS:
        raise ValueError(f"unknown event {event}")
    now = time.time()
    async with conn.execute(f"SELECT {_HOOK_COLUMNS} FROM webhooks") as cursor:  # noqa: S608
        hooks = [Webhook.from_row(row) async for row in cursor]
    targets = [hook for hook in hooks if event in hook.events]
    if not targets:
        return 0
    event_id, payload = event_body(event, data, now)
    await conn.executemany(
        "INSERT INTO webhook_deliveries (id, webhook_id, event_id, event, payload, status, "
        "created_at, next_attempt_at) VALUES (?, ?, ?, ?, ?, 'pending', ?, ?)",
        [(f"dlv_{uuid.uuid4().hex}", h.id, event_id, event, payload, now, now) for h in targets],
    )
    return len(targets)


class WebhookStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(self, url: str, events: Sequence[str], description: str | None) -> Webhook:
        hook = Webhook(
            id=f"wh_{uuid.uuid4().hex[:16]}",
            url=url,
            events=tuple(events),
            description=description,
            secret=SECRET_PREFIX + secrets.token_urlsafe(32),
            created_at=time.time(),
        )
        async with self._db.transaction() as conn:
            await conn.execute(
                f"INSERT INTO webhooks ({_HOOK_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",  # noqa: S608
                (hook.id, url, json.dumps(list(events)), description, hook.secret, hook.created_at),
            )
        return hook

    async def page(self, limit: int, offset: int) -> tuple[list[Webhook], int]:
        query = f"SELECT {_HOOK_COLUMNS} FROM webhooks ORDER BY created_at LIMIT ? OFFSET ?"  # noqa: S608
        async with self._db.reader.execute(query, (limit, offset)) as cursor:
            hooks = [Webhook.from_row(row) async for row in cursor]
        return hooks, await self._count("SELECT COUNT(*) FROM webhooks", ())

    async def get(self, webhook_id: str) -> Webhook:
        query = f"SELECT {_HOOK_COLUMNS} FROM webhooks WHERE id = ?"  # noqa: S608
        async with self._db.conn.execute(query, (webhook_id,)) as cursor:
            row = await cursor.fetchone()
        if row is None:
            raise WebhookNotFound(webhook_id)
        return Webhook.from_row(row)

    async def delete(self, webhook_id: str) -> Webhook:
        """Remove the webhook with its delivery log (pending deliveries are dropped)."""
        hook = await self.get(webhook_id)
        async with self._db.transaction() as conn:
            await conn.execute("DELETE FROM webhook_deliveries WHERE webhook_id = ?", (hook.id,))
            await conn.execute("DELETE FROM webhooks WHERE id = ?", (hook.id,))
        return hook

    async def deliveries(
        self, webhook_id: str, limit: int, offset: int, status: str | None = None
    ) -> tuple[list[Delivery], int]:
        """The webhook's delivery log, newest first."""
        where, args = "webhook_id = ?", [webhook_id]
        if status is not None:
            where, args = where + " AND status = ?", [*args, status]
        query = (
            f"SELECT {_DELIVERY_COLUMNS} FROM webhook_deliveries WHERE {where} "  # noqa: S608
            "ORDER BY created_at DESC, id LIMIT ? OFFSET ?"
        )
        async with self._db.reader.execute(query, (*args, limit, offset)) as cursor:
            rows = [Delivery(*row) async for row in cursor]
        total = await self._count(
            f"SELECT COUNT(*) FROM webhook_deliveries WHERE {where}",  # noqa: S608
            tuple(args),
        )
        return rows, total

    async def due(self, now: float, limit: int) -> list[tuple[Delivery, Webhook]]:
        """Pending deliveries whose time has come, oldest first, with their webhooks."""
        query = (
            f"SELECT {', '.join('d.' + c for c in _DELIVERY_COLUMNS.split(', '))}, "  # noqa: S608
            f"{', '.join('w.' + c for c in _HOOK_COLUMNS.split(', '))} "
            "FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id "
            "WHERE d.status = 'pending' AND d.next_attempt_at <= ? "
            "ORDER BY d.next_attempt_at, d.created_at LIMIT ?"
        )
        width = len(_DELIVERY_COLUMNS.split(", "))
        async with self._db.conn.execute(query, (now, limit)) as cursor:
            rows = await cursor.fetchall()
        return [(Delivery(*row[:width]), Webhook.from_row(row[width:])) for row in rows]

    async def next_due(self) -> float | None:
        """When the earliest pending delivery is due, if any."""
        async with self._db.conn.execute(
            "SELECT MIN(next_attempt_at) FROM webhook_deliveries WHERE status = 'pending'"
        ) as cursor:
            row = await cursor.fetchone()
        return None if row is None or row[0] is None else float(row[0])

    async def attempted(
        self,
        delivery_id: str,
        *,
        status: str,
        http_status: int | None,
        error: str | None,
        next_attempt_at: float,
    ) -> None:
        """Record one attempt: `status` is delivered, failed (given up) or pending."""
        now = time.time()
        async with self._db.transaction() as conn:
            await conn.execute(
                "UPDATE webhook_deliveries SET status = ?, attempts = attempts + 1, "
                "last_status = ?, last_error = ?, last_attempt_at = ?, next_attempt_at = ?, "
                "delivered_at = ? WHERE id = ?",
                (
                    status,
                    http_status,
                    error,
                    now,
                    next_attempt_at,
                    now if status == "delivered" else None,
                    delivery_id,
                ),
            )

    async def _count(self, query: str, args: tuple[object, ...]) -> int:
        async with self._db.reader.execute(query, args) as cursor:
            row = await cursor.fetchone()
        return int(row[0]) if row else 0
