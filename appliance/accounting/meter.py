"""The accounting a request passes through: its key's policy, admission, and billing."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from appliance.accounting.limits import Admission, Limiter, Policy, QuotaExceeded
from appliance.accounting.money import picodollars, usd
from appliance.accounting.spending import Spending, period_end, period_start
from appliance.config import Config
from appliance.errors import Forbidden
from appliance.live import LiveStats
from appliance.metrics import Metrics
from appliance.state.keys import ApiKey
from appliance.state.ledger import Ledger

UNLIMITED = Policy()


def policy_for(key: ApiKey, config: Config, model_id: Callable[[str], str | None]) -> Policy:
    """The key's tier narrowed by its own allow-list, budget and expiry.

    `model_id` maps a model id or alias to the id it routes to (None if unknown).
    """
    if key.is_admin:
        return UNLIMITED
    tier = config.tiers.get(key.tier) if key.tier else None
    if key.tier and tier is None:
        raise Forbidden(
            f"This key's tier `{key.tier}` is no longer declared in the server's config.",
            code="tier_not_found",
        )
    allowed: frozenset[str] | None = None
    for names in (tier.models if tier else None, key.models):
        if names is not None:
            ids = frozenset(i for i in map(model_id, names) if i is not None)
            allowed = ids if allowed is None else allowed & ids
    return Policy(
        tier=key.tier,
        rpm=tier.rpm if tier else None,
        tpm=tier.tpm if tier else None,
        concurrency=tier.concurrency if tier else None,
        max_tokens=tier.max_tokens if tier else None,
        models=allowed,
        budget_pusd=picodollars(key.budget_usd) if key.budget_usd else None,
        budget_period=key.budget_period or "month",
        expires_at=key.expires_at,
    )


@dataclass
class Meter:
    """What the serving layer needs to admit, bill and count a request."""

    ledger: Ledger
    limiter: Limiter
    spending: Spending
    metrics: Metrics
    live: LiveStats = field(default_factory=LiveStats)

    async def admit(self, key: ApiKey, policy: Policy, tokens: int) -> Admission | None:
        """Check the budget and the rate limits; None for a key without limits."""
        if key.is_admin:
            return None
        if policy.budget_pusd is not None:
            now = time.time()
            start = period_start(policy.budget_period, now)
            spent = await self.spending.spent(key.id, start)
            if spent >= policy.budget_pusd:
                resets = time.strftime(
                    "%Y-%m-%d %H:%M UTC", time.gmtime(period_end(policy.budget_period, now))
                )
                raise QuotaExceeded(
                    f"You exceeded your budget of {usd(policy.budget_pusd)} USD per "
                    f"{policy.budget_period} (spent {usd(spent)} USD). It resets at {resets}."
                )
        return self.limiter.admit(key.id, policy, tokens)
