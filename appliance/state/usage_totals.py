"""Requests, tokens and cost over a time window, per key, model or UTC day.

``usage_hourly`` sums every ledger row by the UTC hour its request started in. A window is
read in three parts: its whole hours ``[first, end)`` from the rollup, and the partial hour
at each edge (``[start, end)`` in epoch seconds) from the ``requests`` rows themselves. One
statement reads the three, so the totals are exact and consistent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import aiosqlite

GroupBy = Literal["key", "model", "day"]
Hours = tuple[int, int]  # [first, end) in epoch hours
Edge = tuple[float, float]  # [start, end) in epoch seconds


@dataclass(frozen=True)
class GroupTotals:
    """One group's totals. `group` is the key id, the model id ('' where a request had
    none) or the epoch day (UTC); `key_name` is the key's name, where it had one."""

    group: str | int
    key_name: str | None
    requests: int
    prompt_tokens: int
    completion_tokens: int
    cost_pusd: int


def narrowing(key_id: str | None, model: str | None) -> tuple[str, tuple[str, ...]]:
    """The ``AND`` clauses that keep one key and/or one model, and their arguments."""
    clauses, args = [], []
    if key_id is not None:
        clauses.append(" AND key_id = ?")
        args.append(key_id)
    if model is not None:
        clauses.append(" AND model = ?")
        args.append(model)
    return "".join(clauses), tuple(args)


def union_sql(
    hours: Hours,
    edges: tuple[Edge, Edge],
    where: tuple[str, tuple[str, ...]],
    rollup_columns: str,
    raw_columns: str,
) -> tuple[str, list[object]]:
    """One SELECT over the rollup hours and both raw edges, narrowed by `where`.

    Each part is aggregated on its own (``GROUP BY grp``, so both column lists start with
    a ``grp`` column and name the rest as the caller's outer query reads them); the
    caller sums the few rows the parts return.
    """
    clauses, filter_args = where
    (head_start, head_end), (tail_start, tail_end) = edges
    # The column lists are ours (constants of the callers), never input.
    raw = f"SELECT {raw_columns} FROM requests WHERE started_at >= ?"  # noqa: S608
    raw += f" AND started_at < ?{clauses} GROUP BY grp"
    sql = f"SELECT {rollup_columns} FROM usage_hourly WHERE hour >= ?"  # noqa: S608
    sql += f" AND hour < ?{clauses} GROUP BY grp UNION ALL {raw} UNION ALL {raw}"
    args: list[object] = [*hours, *filter_args]
    args += [head_start, head_end, *filter_args, tail_start, tail_end, *filter_args]
    return sql, args


# The group of a row in each table (the rollups keep '' where a row has NULL).
_ROLLUP_GROUP: dict[str, str] = {"key": "key_id", "model": "model", "day": "hour / 24"}
_RAW_GROUP: dict[str, str] = {
    "key": "COALESCE(key_id, '')",
    "model": "COALESCE(model, '')",
    "day": "CAST(started_at / 86400 AS INTEGER)",
}


async def window_totals(
    conn: aiosqlite.Connection,
    hours: Hours,
    edges: tuple[Edge, Edge],
    group_by: GroupBy,
    *,
    key_id: str | None = None,
    model: str | None = None,
) -> list[GroupTotals]:
    """Totals per group over the whole `hours` and the partial `edges`, in no order."""
    rollup = (
        f"{_ROLLUP_GROUP[group_by]} AS grp, MAX(key_name) AS key_name, SUM(requests) AS requests, "
        "SUM(prompt_tokens) AS prompt_tokens, SUM(completion_tokens) AS completion_tokens, "
        "SUM(cost_pusd) AS cost_pusd"
    )
    raw = (
        f"{_RAW_GROUP[group_by]} AS grp, MAX(key_name), COUNT(*), SUM(prompt_tokens), "
        "SUM(completion_tokens), SUM(cost_pusd)"
    )
    parts, args = union_sql(hours, edges, narrowing(key_id, model), rollup, raw)
    query = (
        "SELECT grp, MAX(key_name), SUM(requests), SUM(prompt_tokens), "  # noqa: S608
        f"SUM(completion_tokens), SUM(cost_pusd) FROM ({parts}) GROUP BY grp"
    )
    return await _group_totals(conn, query, args)


async def raw_window_totals(
    conn: aiosqlite.Connection,
    span: Edge,
    group_by: GroupBy,
    *,
    key_id: str | None = None,
    model: str | None = None,
) -> list[GroupTotals]:
    """The same as `window_totals` over `span`, from the raw rows only: a reference for
    tests and the benchmark."""
    clauses, args = narrowing(key_id, model)
    group = {"key": "key", "model": "model", "day": "day"}[group_by]
    query = (
        f"SELECT {group}, MAX(key_name), COUNT(*), SUM(prompt_tokens), "  # noqa: S608
        "SUM(completion_tokens), SUM(cost_pusd) FROM (SELECT COALESCE(key_id, '') AS key, "
        "key_name, COALESCE(model, '') AS model, CAST(started_at / 86400 AS INTEGER) AS day, "
        "prompt_tokens, completion_tokens, cost_pusd FROM requests "
        f"WHERE started_at >= ? AND started_at < ?{clauses}) GROUP BY {group}"
    )
    return await _group_totals(conn, query, [*span, *args])


async def _group_totals(
    conn: aiosqlite.Connection, query: str, args: Sequence[object]
) -> list[GroupTotals]:
    async with conn.execute(query, args) as cursor:
        rows = await cursor.fetchall()
    return [
        GroupTotals(group, key_name, int(n), int(prompt), int(completion), int(cost))
        for group, key_name, n, prompt, completion, cost in rows
    ]
