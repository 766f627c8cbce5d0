"""The query parameters the analytics and billing endpoints share, documented once."""

from __future__ import annotations

from typing import Annotated

from litestar.params import QueryParameter

from appliance.analytics.window import Timeframe
from appliance.state.usage_totals import GroupBy

TimeframeParam = Annotated[
    Timeframe, QueryParameter(description="The window that ends now: 1h, 24h, 7d or 30d")
]
GroupByParam = Annotated[
    GroupBy, QueryParameter(description="One row per key (by name), model, or UTC day")
]
KeyParam = Annotated[str | None, QueryParameter(description="Only this key (name or id)")]
ModelParam = Annotated[str | None, QueryParameter(description="Only this model (id or alias)")]
MonthParam = Annotated[
    str | None, QueryParameter(description="YYYY-MM (UTC); the current month if omitted")
]
LimitParam = Annotated[int | None, QueryParameter(description="Items per page, 1-1000 (50)")]
OffsetParam = Annotated[int | None, QueryParameter(description="Items to skip (0)")]
