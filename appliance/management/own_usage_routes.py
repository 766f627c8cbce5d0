"""GET /v1/usage: any key's own usage, in the same rows as the admin's analytics."""

from __future__ import annotations

import time

from litestar import Controller, get

from appliance.analytics.usage import Filters, UsageRow, totals
from appliance.analytics.window import Window
from appliance.management.envelope import AnyRequest, caller
from appliance.management.query_params import (
    GroupByParam,
    LimitParam,
    ModelParam,
    OffsetParam,
    TimeframeParam,
)
from appliance.management.typed_envelope import USER_ERRORS, Page
from appliance.runtime import Runtime


class OwnUsageController(Controller):
    path = "/usage"
    tags = ("analytics",)
    opt = {"envelope": "management"}  # noqa: RUF012 (Litestar copies it per route)

    @get("/", summary="The calling key's own usage over a timeframe", responses=USER_ERRORS)
    async def own_usage(
        self,
        request: AnyRequest,
        timeframe: TimeframeParam = "24h",
        group_by: GroupByParam = "model",
        model: ModelParam = None,
        limit: LimitParam = None,
        offset: OffsetParam = None,
    ) -> Page[UsageRow]:
        key = caller(request)
        runtime = Runtime.of(request)
        model_id = None if model is None else runtime.model_id(model) or model
        window = Window.last(timeframe, time.time())
        found = await totals(runtime.db.reader, window, group_by, Filters(key.id, model_id))
        return Page.of(
            [t.usage(group_by) for t in found], limit, offset, f"Your usage over {timeframe}"
        )
