"""GET /v1/usage: any key's own usage, in the same rows as the admin's analytics."""

from __future__ import annotations

import aiosqlite
from litestar import Controller, get
from litestar.di import NamedDependency

from appliance.analytics.usage import Filters, UsageRow
from appliance.management.analytics_routes import model_filter, recent_totals
from appliance.management.query_params import (
    GroupByParam,
    LimitParam,
    ModelParam,
    OffsetParam,
    TimeframeParam,
)
from appliance.management.typed_envelope import USER_ERRORS, Page
from appliance.registry import ModelRegistry
from appliance.state.keys import ApiKey


class OwnUsageController(Controller):
    path = "/usage"
    tags = ("analytics",)

    @get("/", summary="The calling key's own usage over a timeframe", responses=USER_ERRORS)
    async def own_usage(
        self,
        caller: NamedDependency[ApiKey],
        models: NamedDependency[ModelRegistry],
        reader: NamedDependency[aiosqlite.Connection],
        timeframe: TimeframeParam = "24h",
        group_by: GroupByParam = "model",
        model: ModelParam = None,
        limit: LimitParam = None,
        offset: OffsetParam = None,
    ) -> Page[UsageRow]:
        filters = Filters(caller.id, model_filter(models, model))
        found = await recent_totals(reader, timeframe, group_by, filters)
        return Page.of(
            [t.usage(group_by) for t in found], limit, offset, f"Your usage over {timeframe}"
        )
