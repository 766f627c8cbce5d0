"""/v1/analytics/live: one small snapshot a console polls every second."""

from __future__ import annotations

import time
from typing import Annotated

import msgspec
from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.params import QueryParameter

from appliance.accounting.meter import Meter
from appliance.management.typed_envelope import ADMIN_ERRORS, Item
from appliance.management.wire import LastMinute, LiveSnapshot, ModelLive, Pricing, Totals
from appliance.registry import ModelRegistry, ServedModel


def model_live(served: ServedModel, totals: Totals, last_minute: LastMinute) -> ModelLive:
    """A model's engine state and load (what an admin sees in /v1/models) and its counters."""
    stats = served.engine.stats()
    pricing = served.config.pricing
    return ModelLive(
        id=served.id,
        name=served.config.display_name,
        context_length=served.config.context_length,
        pricing=Pricing(prompt=pricing.prompt, completion=pricing.completion),
        status=served.engine.status.value,
        backend=served.backend_name,
        source=served.config.source,
        load_seconds=stats.load_seconds,
        requests_running=stats.running,
        requests_waiting=stats.waiting,
        error=stats.error,
        engine_stats=stats.extra,
        replicas=int(stats.extra.get("deployment_replicas", 1)),
        download=msgspec.UNSET if served.download is None else served.download.view(),
        totals=totals,
        last_minute=last_minute,
    )


class LiveController(Controller):
    path = "/analytics/live"
    tags = ["analytics"]  # noqa: RUF012 (Litestar reads it as a class attribute)

    @get(
        "/",
        summary="Per model: status, load, token and request counters, last-minute latency; "
        "and the requests that ended after `since`",
        responses=ADMIN_ERRORS,
    )
    async def live(
        self,
        meter: NamedDependency[Meter],
        models: NamedDependency[ModelRegistry],
        since: Annotated[int, QueryParameter(ge=0, le=2**62)] = 0,
        limit: Annotated[int, QueryParameter(ge=1, le=500)] = 100,
    ) -> Item[LiveSnapshot]:
        live = meter.live
        figures = live.models(served.id for served in models)
        found = [model_live(served, *figures[served.id]) for served in models]
        snapshot = LiveSnapshot(
            time=time.time(), sequence=live.sequence, models=found, recent=live.recent(since, limit)
        )
        return Item(snapshot, "live snapshot")
