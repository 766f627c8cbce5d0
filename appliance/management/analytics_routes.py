"""GET /v1/analytics/{usage,costs,performance}: admin views over the ledger."""

from __future__ import annotations

import time

import aiosqlite
from litestar import Controller, get
from litestar.di import NamedDependency, Provide

from appliance.analytics.performance import ModelPerformance, performance
from appliance.analytics.usage import (
    CostRow,
    FilterKeyNotFound,
    Filters,
    Totals,
    UsageRow,
    totals,
)
from appliance.analytics.window import Timeframe, Window
from appliance.auth import ADMIN_KEY_ID
from appliance.management.query_params import (
    GroupByParam,
    KeyParam,
    LimitParam,
    ModelParam,
    OffsetParam,
    TimeframeParam,
)
from appliance.management.typed_envelope import ADMIN_ERRORS, NOT_FOUND, Item, Page
from appliance.registry import ModelRegistry
from appliance.runtime import model_id
from appliance.state.keys import KeyNotFound, KeyStore
from appliance.state.usage_totals import GroupBy

ERRORS = {**ADMIN_ERRORS, 404: NOT_FOUND}


def model_filter(models: ModelRegistry, model: str | None) -> str | None:
    """`model` by id or alias; a name no model has is kept, and matches no row."""
    return None if model is None else model_id(models, model) or model


async def filters_for(
    keys: NamedDependency[KeyStore],
    models: NamedDependency[ModelRegistry],
    key: KeyParam = None,
    model: ModelParam = None,
) -> Filters:
    """The `filters` of every view here, from the `key` and `model` query parameters: `key`
    by name or id (FilterKeyNotFound if unknown), `model` by id or alias."""
    key_id = None
    if key is not None:
        try:
            key_id = (await keys.get(key)).id
        except KeyNotFound:
            if key != ADMIN_KEY_ID:
                raise FilterKeyNotFound(key) from None
            key_id = ADMIN_KEY_ID
    return Filters(key_id, model_filter(models, model))


async def recent_totals(
    reader: aiosqlite.Connection, timeframe: Timeframe, group_by: GroupBy, filters: Filters
) -> list[Totals]:
    """Totals per group over the timeframe that ends now."""
    return await totals(reader, Window.last(timeframe, time.time()), group_by, filters)


class AnalyticsController(Controller):
    path = "/analytics"
    tags = ("analytics",)
    # Litestar reads it as a class attribute.
    dependencies = {"filters": Provide(filters_for)}  # noqa: RUF012

    @get(
        "/usage",
        summary="Requests and tokens over a timeframe, per key, model or day",
        responses=ERRORS,
    )
    async def usage(
        self,
        reader: NamedDependency[aiosqlite.Connection],
        filters: NamedDependency[Filters],
        timeframe: TimeframeParam = "24h",
        group_by: GroupByParam = "model",
        limit: LimitParam = None,
        offset: OffsetParam = None,
    ) -> Page[UsageRow]:
        found = await recent_totals(reader, timeframe, group_by, filters)
        return Page.of([t.usage(group_by) for t in found], limit, offset, f"Usage over {timeframe}")

    @get("/costs", summary="Cost in USD over a timeframe, per key, model or day", responses=ERRORS)
    async def costs(
        self,
        reader: NamedDependency[aiosqlite.Connection],
        filters: NamedDependency[Filters],
        timeframe: TimeframeParam = "24h",
        group_by: GroupByParam = "model",
        limit: LimitParam = None,
        offset: OffsetParam = None,
    ) -> Page[CostRow]:
        found = await recent_totals(reader, timeframe, group_by, filters)
        return Page.of([t.cost(group_by) for t in found], limit, offset, f"Costs over {timeframe}")

    @get(
        "/performance",
        summary="Per model: p50/p95 latency and time to first token, tokens/s, error rate",
        responses=ERRORS,
    )
    async def performance(
        self,
        reader: NamedDependency[aiosqlite.Connection],
        filters: NamedDependency[Filters],
        timeframe: TimeframeParam = "24h",
    ) -> Item[list[ModelPerformance]]:
        window = Window.last(timeframe, time.time())
        found = await performance(reader, window, filters)
        return Item(found, f"Performance over {timeframe}")
