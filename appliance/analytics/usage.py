"""Usage and cost totals over a window, grouped by key, model or UTC day.

Whole hours come from ``usage_hourly``, the partial edge hours from ``requests`` (see
``window``); one statement reads both, so the totals are exact and consistent. Costs are
summed as integer picodollars and rendered once, with ``usd``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import aiosqlite
import msgspec

from appliance.accounting.money import usd
from appliance.analytics.window import Window, utc_date

GroupBy = Literal["key", "model", "day"]


@dataclass(frozen=True)
class Filters:
    """Optional narrowing: one key (by id) and/or one model (by id)."""

    key_id: str | None = None
    model: str | None = None

    def sql(self) -> tuple[str, tuple[str, ...]]:
        clauses, args = [], []
        if self.key_id is not None:
            clauses.append(" AND key_id = ?")
            args.append(self.key_id)
        if self.model is not None:
            clauses.append(" AND model = ?")
            args.append(self.model)
        return "".join(clauses), tuple(args)


NO_FILTERS = Filters()


class UsageRow(msgspec.Struct, kw_only=True):
    """Usage of one group; only the field named by `group_by` is set, the others are null."""

    key: str | None = None
    model: str | None = None
    day: str | None = None
    requests: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class CostRow(msgspec.Struct, kw_only=True):
    """Cost of one group, in USD as an exact decimal string."""

    key: str | None = None
    model: str | None = None
    day: str | None = None
    requests: int
    prompt_tokens: int
    completion_tokens: int
    cost: str


@dataclass(frozen=True)
class Totals:
    group: str | None  # key name, model id or UTC date; None for requests with no key/model
    requests: int
    prompt_tokens: int
    completion_tokens: int
    cost_pusd: int

    def labels(self, group_by: GroupBy) -> tuple[str | None, str | None, str | None]:
        """(key, model, day) with only the grouped one set."""
        return (
            self.group if group_by == "key" else None,
            self.group if group_by == "model" else None,
            self.group if group_by == "day" else None,
        )

    def usage(self, group_by: GroupBy) -> UsageRow:
        key, model, day = self.labels(group_by)
        return UsageRow(
            key=key,
            model=model,
            day=day,
            requests=self.requests,
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            total_tokens=self.prompt_tokens + self.completion_tokens,
        )

    def cost(self, group_by: GroupBy) -> CostRow:
        key, model, day = self.labels(group_by)
        return CostRow(
            key=key,
            model=model,
            day=day,
            requests=self.requests,
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            cost=usd(self.cost_pusd),
        )


def union_sql(
    window: Window, filters: Filters, rollup_columns: str, raw_columns: str
) -> tuple[str, list[object]]:
    """One SELECT over the rollup hours and both raw edges.

    Each part is aggregated on its own (``GROUP BY grp``, so both column lists start with
    a ``grp`` column and name the rest as the caller's outer query reads them); the
    caller sums the few rows the parts return.
    """
    where, filter_args = filters.sql()
    first, end = window.whole_hours
    head, tail = window.edges
    # The column lists are ours (constants of the callers), never input.
    raw = f"SELECT {raw_columns} FROM requests WHERE started_at >= ?"  # noqa: S608
    raw += f" AND started_at < ?{where} GROUP BY grp"
    sql = f"SELECT {rollup_columns} FROM usage_hourly WHERE hour >= ?"  # noqa: S608
    sql += f" AND hour < ?{where} GROUP BY grp UNION ALL {raw} UNION ALL {raw}"
    args: list[object] = [first, end, *filter_args]
    args += [head.start, head.end, *filter_args, tail.start, tail.end, *filter_args]
    return sql, args


# The group of a row in each table (the rollups keep '' where a row has NULL).
_ROLLUP_GROUP: dict[str, str] = {"key": "key_id", "model": "model", "day": "hour / 24"}
_RAW_GROUP: dict[str, str] = {
    "key": "COALESCE(key_id, '')",
    "model": "COALESCE(model, '')",
    "day": "CAST(started_at / 86400 AS INTEGER)",
}


async def totals(
    conn: aiosqlite.Connection, window: Window, group_by: GroupBy, filters: Filters = NO_FILTERS
) -> list[Totals]:
    """Totals per group over the window, ordered by group (days oldest first)."""
    rollup = (
        f"{_ROLLUP_GROUP[group_by]} AS grp, MAX(key_name) AS key_name, SUM(requests) AS requests, "
        "SUM(prompt_tokens) AS prompt_tokens, SUM(completion_tokens) AS completion_tokens, "
        "SUM(cost_pusd) AS cost_pusd"
    )
    raw = (
        f"{_RAW_GROUP[group_by]} AS grp, MAX(key_name), COUNT(*), SUM(prompt_tokens), "
        "SUM(completion_tokens), SUM(cost_pusd)"
    )
    parts, args = union_sql(window, filters, rollup, raw)
    query = (
        "SELECT grp, MAX(key_name), SUM(requests), SUM(prompt_tokens), "  # noqa: S608
        f"SUM(completion_tokens), SUM(cost_pusd) FROM ({parts}) GROUP BY grp"
    )
    async with conn.execute(query, args) as cursor:
        rows = await cursor.fetchall()
    found = [
        Totals(_label(group_by, group_value, key_name), int(n), int(p), int(c), int(cost))
        for group_value, key_name, n, p, c, cost in rows
    ]
    return sorted(found, key=lambda t: (t.group is None, t.group or ""))


def _label(group_by: GroupBy, value: object, key_name: object) -> str | None:
    if group_by == "day":
        return utc_date(int(str(value)))
    if value == "":
        return None  # a request that failed before it had a key or a model
    return str(key_name) if group_by == "key" else str(value)


async def raw_totals(
    conn: aiosqlite.Connection, window: Window, group_by: GroupBy, filters: Filters = NO_FILTERS
) -> list[Totals]:
    """The same as `totals`, from the raw rows only: a reference for tests and the benchmark."""
    where, args = filters.sql()
    group = {"key": "key", "model": "model", "day": "day"}[group_by]
    query = (
        f"SELECT {group}, MAX(key_name), COUNT(*), SUM(prompt_tokens), "  # noqa: S608
        "SUM(completion_tokens), SUM(cost_pusd) FROM (SELECT COALESCE(key_id, '') AS key, "
        "key_name, COALESCE(model, '') AS model, CAST(started_at / 86400 AS INTEGER) AS day, "
        "prompt_tokens, completion_tokens, cost_pusd FROM requests "
        f"WHERE started_at >= ? AND started_at < ?{where}) GROUP BY {group}"
    )
    async with conn.execute(query, (window.start, window.end, *args)) as cursor:
        rows = await cursor.fetchall()
    found = [
        Totals(_label(group_by, group_value, key_name), int(n), int(p), int(c), int(cost))
        for group_value, key_name, n, p, c, cost in rows
    ]
    return sorted(found, key=lambda t: (t.group is None, t.group or ""))
