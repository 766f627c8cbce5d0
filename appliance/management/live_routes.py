"""/v1/analytics/live: one small snapshot a console polls every second."""

from __future__ import annotations

import time
from typing import Annotated, Any

from litestar import Controller, Response, get
from litestar.di import NamedDependency
from litestar.params import QueryParameter

from appliance.accounting.meter import Meter
from appliance.management.envelope import ok
from appliance.openai.models import admin_fields
from appliance.registry import ModelRegistry


class LiveController(Controller):
    path = "/analytics/live"
    tags = ["analytics"]  # noqa: RUF012 (Litestar reads it as a class attribute)

    @get(
        "/",
        summary="Per model: status, load, token and request counters, last-minute latency; "
        "and the requests that ended after `since`",
    )
    async def live(
        self,
        meter: NamedDependency[Meter],
        models: NamedDependency[ModelRegistry],
        since: Annotated[int, QueryParameter(ge=0, le=2**62)] = 0,
        limit: Annotated[int, QueryParameter(ge=1, le=500)] = 100,
    ) -> Response[bytes]:
        live = meter.live
        figures = live.models(served.id for served in models)
        found: list[dict[str, Any]] = []
        for served in models:
            found.append(
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
            "models": found,
            "recent": live.recent(since, limit),
            "sequence": live.sequence,
        }
        return ok(data, "live snapshot")
