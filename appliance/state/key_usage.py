"""What the ledger says about each key: its requests and cost since a moment, its last use."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

import aiosqlite


@dataclass(frozen=True)
class KeyTotals:
    requests: int
    cost_pusd: int  # picodollars


async def totals_since(reader: aiosqlite.Connection, start: float) -> dict[str, KeyTotals]:
    """Requests and cost of every key from `start` on, from the hourly rollups."""
    async with reader.execute(
        "SELECT key_id, SUM(requests), SUM(cost_pusd) FROM usage_hourly "
        "WHERE hour >= ? GROUP BY key_id",
        (start,),
    ) as cursor:
        rows = await cursor.fetchall()
    return {row[0]: KeyTotals(row[1], row[2]) for row in rows}


async def last_used(reader: aiosqlite.Connection, key_id: str) -> float | None:
    """When the key's most recent request started; None if it never made one."""
    async with reader.execute(
        "SELECT MAX(started_at) FROM requests WHERE key_id = ?", (key_id,)
    ) as cursor:
        row = await cursor.fetchone()
    return None if row is None else row[0]


def spent_since(conn: sqlite3.Connection, key_id: str, start_hour: int) -> int:
    """What the key spent (picodollars) from `start_hour` (epoch hours) on, from the hourly
    rollups; on the ledger writer's own connection, in order with its commits."""
    row = conn.execute(
        "SELECT COALESCE(SUM(cost_pusd), 0) FROM usage_hourly WHERE key_id = ? AND hour >= ?",
        (key_id, start_hour),
    ).fetchone()
    return int(row[0]) if row else 0
