"""GET /v1/usage: any key's own usage, in the same rows as the admin's analytics."""

from __future__ import annotations

import time

import aiosqlite
from litestar import Controller, get
from litestar.di import NamedDependency

from appliance.analytics.usage import Filters, UsageRow, totals
from appliance.analytics.window import Window
from appliance.management.query_params import (
    GroupByParam,
    LimitParam,
    ModelParam,
    OffsetParam,
    TimeframeParam,
)
from appliance.management.typed_envelope import USER_ERRORS, Page
from appliance.registry import ModelRegistry
from appliance.runtime import model_id
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
        model_named = None if model is None else model_id(models, model) or model
        window = Window.last(timeframe, time.time())
        found = await totals(reader, window, group_by, Filters(caller.id, model_named))
        return Page.of(
            [t.usage(group_by) for t in found], limit, offset, f"Your usage over {timeframe}"
        )
