"""The budget alerts already sent: one row per key, budget period and threshold."""

from __future__ import annotations

import aiosqlite


async def record_alert(
    conn: aiosqlite.Connection, key_id: str, period_start: int, threshold: int, fired_at: float
) -> bool:
    """Note that the key crossed `threshold` percent of its budget in the period that starts
    at `period_start` (epoch hours); False if that was noted before."""
    cursor = await conn.execute(
        "INSERT OR IGNORE INTO budget_alerts (key_id, period_start, threshold, fired_at) "
        "VALUES (?, ?, ?, ?)",
        (key_id, period_start, threshold, fired_at),
    )
    return cursor.rowcount == 1
