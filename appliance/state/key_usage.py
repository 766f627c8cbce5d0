"""What the ledger says about each key: its requests, tokens and cost over a span of hours,
what it used at each price, its last use."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

import aiosqlite


@dataclass(frozen=True)
class KeyTotals:
    name: str = ""  # the key's name as its latest rows recorded it
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_pusd: int = 0  # picodollars


@dataclass(frozen=True)
class PricedUsage:
    """One key's use of one model at one pair of prices (USD per 1M tokens)."""

    key_id: str
    key_name: str
    model: str
    prompt_price: str
    completion_price: str
    requests: int
    prompt_tokens: int
    completion_tokens: int


async def totals_since(
    reader: aiosqlite.Connection, first_hour: int, end_hour: int | None = None
) -> dict[str, KeyTotals]:
    """Totals of every key over the hours ``[first_hour, end_hour)`` (epoch hours; no end:
    up to now), from the hourly rollups."""
    query = (
        "SELECT key_id, MAX(key_name), SUM(requests), SUM(prompt_tokens), "
        "SUM(completion_tokens), SUM(cost_pusd) FROM usage_hourly WHERE hour >= ?"
    )
    args = [first_hour]
    if end_hour is not None:
        query += " AND hour < ?"
        args.append(end_hour)
    async with reader.execute(f"{query} GROUP BY key_id", args) as cursor:
        return {key_id: KeyTotals(*totals) async for key_id, *totals in cursor}


async def priced_usage(
    reader: aiosqlite.Connection, first_hour: int, end_hour: int
) -> list[PricedUsage]:
    """What each key was billed tokens for over the hours ``[first_hour, end_hour)``, per
    model and pair of prices, ordered by key id, model and prices."""
    query = (
        "SELECT key_id, MAX(key_name), model, prompt_price, completion_price, SUM(requests), "
        "SUM(prompt_tokens), SUM(completion_tokens) FROM usage_hourly "
        "WHERE hour >= ? AND hour < ? GROUP BY key_id, model, prompt_price, completion_price "
        "HAVING SUM(prompt_tokens) + SUM(completion_tokens) > 0 "
        "ORDER BY key_id, model, prompt_price, completion_price"
    )
    async with reader.execute(query, (first_hour, end_hour)) as cursor:
        return [PricedUsage(*row) async for row in cursor]


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
