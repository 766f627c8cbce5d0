"""How a key is shown by the API and the CLI: never its secret or its hash."""

from __future__ import annotations

import datetime
import time
from typing import Any

import msgspec

from appliance.management.wire import ApiKeyView, Budget
from appliance.state.keys import ApiKey


def iso(moment: float | None) -> str | None:
    if moment is None:
        return None
    return datetime.datetime.fromtimestamp(moment, datetime.UTC).isoformat()


def key_view(key: ApiKey, last_used: float | None = None) -> ApiKeyView:
    """A key as the API shows it: never its secret or hash."""
    budget = None
    if key.budget_usd is not None:
        budget = Budget(usd=key.budget_usd, period=key.budget_period or "month")
    return ApiKeyView(
        id=key.id,
        name=key.name,
        prefix=key.prefix,
        tier=key.tier,
        models=None if key.models is None else list(key.models),
        budget=budget,
        expires_at=iso(key.expires_at),
        created_at=iso(key.created_at),
        revoked_at=iso(key.revoked_at),
        last_used_at=iso(last_used),
        source=key.source,
        status=key.status(time.time()),
    )


def key_json(key: ApiKey, last_used: float | None = None) -> dict[str, Any]:
    """`key_view` as plain JSON, for webhook events and the CLI."""
    shown: dict[str, Any] = msgspec.to_builtins(key_view(key, last_used))
    return shown
