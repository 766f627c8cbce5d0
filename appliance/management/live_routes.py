"""/v1/analytics/live: one small snapshot a console polls every second."""

from __future__ import annotations

import time
from typing import Annotated, Any

from litestar import Controller, Response, get
from litestar.params import QueryParameter

from appliance.management.envelope import AnyRequest, ok, require_admin
from appliance.openai.models import admin_fields
from appliance.runtime import Runtime


class LiveController(Controller):
    path = "/analytics/live"
    tags = ["analytics"]  # noqa: RUF012 (Litestar reads it as a class attribute)
    opt = {"envelope": "management"}  # noqa: RUF012

    @get(
        "/",
        summary="Per model: status, load, token and request counters, last-minute latency; "
        "and the requests that ended after `since`",
    )
    async def live(
        self,
        request: AnyRequest,
        since: Annotated[int, QueryParameter(ge=0, le=2**62)] = 0,
        limit: Annotated[int, QueryParameter(ge=1, le=500)] = 100,
    ) -> Response[bytes]:
        require_admin(request)
        runtime = Runtime.of(request)
        live = runtime.meter.live
        figures = live.models(served.id for served in runtime.models)
        models: list[dict[str, Any]] = []
        for served in runtime.models:
            models.append(
                {
                    "id": served.id,
                    "name": served.config.display_name,
                    "context_length": served.config.context_length,
                    "pricing": {
                        "prompt": served.config.pricing.prompt,
                        "completion": served.config.pricing.completion,
                    },
                    **admin_fields(served),
                    **figures[served.id],
                }
            )
        data = {
            "time": time.time(),
            "models": models,
            "recent": live.recent(since, limit),
            "sequence": live.sequence,
        }
        return ok(data, "live snapshot")
