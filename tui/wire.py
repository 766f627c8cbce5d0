"""What the console reads from the server: the server's own wire Structs, one definition.

`appliance.management.wire` imports only msgspec, so the console stays a pure HTTP
client; the Structs ignore fields they do not know, so a newer server does not break it.
"""

from __future__ import annotations

from appliance.management.wire import (
    BatchRow,
    CreatedKey,
    Deployment,
    FineTuningJobView,
    KeyInfo,
    LastMinute,
    LiveSnapshot,
    ModelLive,
    Pricing,
    RecentRequest,
    Tier,
    Totals,
)

__all__ = [
    "BatchRow",
    "CreatedKey",
    "Deployment",
    "FineTuningJobView",
    "KeyInfo",
    "LastMinute",
    "LiveSnapshot",
    "ModelLive",
    "Pricing",
    "RecentRequest",
    "Tier",
    "Totals",
]
