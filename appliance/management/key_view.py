"""How a key is shown by the API and the CLI: never its secret or its hash."""

from __future__ import annotations

import datetime
import time
from typing import Any

from appliance.state.keys import ApiKey


def _iso(moment: float | None) -> str | None:
    if moment is None:
        return None
    return datetime.datetime.fromtimestamp(moment, datetime.UTC).isoformat()


def key_json(key: ApiKey, last_used: float | None = None) -> dict[str, Any]:
    """A key as the API shows it: never its secret or hash."""
    budget = None
    if key.budget_usd is not None:
        budget = {"usd": key.budget_usd, "period": key.budget_period or "month"}
    return {
        "id": key.id,
        "name": key.name,
        "prefix": key.prefix,
        "tier": key.tier,
        "models": None if key.models is None else list(key.models),
        "budget": budget,
        "expires_at": _iso(key.expires_at),
        "created_at": _iso(key.created_at),
        "revoked_at": _iso(key.revoked_at),
        "last_used_at": _iso(last_used),
        "source": key.source,
        "status": key.status(time.time()),
    }
