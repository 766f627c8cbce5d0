"""Usage and cost totals over a window, grouped by key, model or UTC day.

Whole hours come from ``usage_hourly``, the partial edge hours from ``requests`` (see
``window``); ``appliance.state.usage_totals`` reads both in one statement, so the totals are
exact and consistent. Costs are summed as integer picodollars and rendered once, with ``usd``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypedDict

import msgspec

from appliance.accounting.money import usd
from appliance.analytics.window import Window, utc_date
from appliance.state.database import Reader
from appliance.state.keys import KeyNotFound
from appliance.state.usage_totals import GroupBy, GroupTotals, raw_window_totals, window_totals


class FilterKeyNotFound(KeyNotFound):
    """A `key` filter that names no API key, by name or by id."""


@dataclass(frozen=True)
class Filters:
    """Optional narrowing: one key (by id) and/or one model (by id)."""

    key_id: str | None = None
    model: str | None = None


NO_FILTERS = Filters()


class _GroupRow(msgspec.Struct, kw_only=True):
    key: str | None = None
    model: str | None = None
    day: str | None = None
    requests: int
    prompt_tokens: int
    completion_tokens: int


class _GroupFields(TypedDict):
    key: str | None
    model: str | None
    day: str | None
    requests: int
    prompt_tokens: int
    completion_tokens: int


class UsageRow(_GroupRow, kw_only=True):
    """Usage of one group; only the field named by `group_by` is set, the others are null."""

    total_tokens: int


class CostRow(_GroupRow, kw_only=True):
    """Cost of one group, in USD as an exact decimal string."""

    cost: str


@dataclass(frozen=True)
class Totals:
    group: str | None  # key name, model id or UTC date; None for requests with no key/model
    requests: int
    prompt_tokens: int
    completion_tokens: int
    cost_pusd: int

    @classmethod
    def of(cls, group_by: GroupBy, found: GroupTotals) -> Totals:
        return cls(
            _label(group_by, found.group, found.key_name),
            found.requests,
            found.prompt_tokens,
            found.completion_tokens,
            found.cost_pusd,
        )

    def fields(self, group_by: GroupBy) -> _GroupFields:
        """What a usage and a cost row share; only the grouped label is set."""
        return _GroupFields(
            key=self.group if group_by == "key" else None,
            model=self.group if group_by == "model" else None,
            day=self.group if group_by == "day" else None,
            requests=self.requests,
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
        )

    def usage(self, group_by: GroupBy) -> UsageRow:
        total_tokens = self.prompt_tokens + self.completion_tokens
        return UsageRow(**self.fields(group_by), total_tokens=total_tokens)

    def cost(self, group_by: GroupBy) -> CostRow:
        return CostRow(**self.fields(group_by), cost=usd(self.cost_pusd))


async def totals(
    conn: Reader, window: Window, group_by: GroupBy, filters: Filters = NO_FILTERS
) -> list[Totals]:
    """Totals per group over the window, ordered by group (days oldest first)."""
    found = await window_totals(
        conn,
        window.whole_hours,
        window.edges,
        group_by,
        key_id=filters.key_id,
        model=filters.model,
    )
    return _ordered(group_by, found)


async def raw_totals(
    conn: Reader, window: Window, group_by: GroupBy, filters: Filters = NO_FILTERS
) -> list[Totals]:
    """The same as `totals`, from the raw rows only: a reference for tests and the benchmark."""
    span = (window.start, window.end)
    found = await raw_window_totals(
        conn, span, group_by, key_id=filters.key_id, model=filters.model
    )
    return _ordered(group_by, found)


def _ordered(group_by: GroupBy, found: list[GroupTotals]) -> list[Totals]:
    labelled = [Totals.of(group_by, row) for row in found]
    return sorted(labelled, key=lambda t: (t.group is None, t.group or ""))


def _label(group_by: GroupBy, value: str | int, key_name: str | None) -> str | None:
    if group_by == "day":
        return utc_date(int(value))
    if value == "":
        return None  # a request that failed before it had a key or a model
    return str(key_name) if group_by == "key" else str(value)
