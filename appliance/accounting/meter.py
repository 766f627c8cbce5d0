"""The accounting a request passes through: its key's policy, admission, and billing."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

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
        batch_lines_in_flight=tier.batch_lines_in_flight if tier else None,
    )


@dataclass
class Meter:
    """What the serving layer needs to admit, bill and count a request."""

    ledger: Ledger
    limiter: Limiter
    spending: Spending
    metrics: Metrics
    live: LiveStats = field(default_factory=LiveStats)

    # The requests under way (their lifecycles); the server settles any left at shutdown.
    open_requests: set[Any] = field(default_factory=set)
    # The server's grace period is over: requests cancelled now are cut short by the
    # server (503), not by their clients (499).
    stopping: bool = False
    # Told the key id when what is left of a budget cannot pay for even one more token.
    budget_exhausted: list[Callable[[str], None]] = field(default_factory=list)

    async def admit(
        self,
        key: ApiKey,
        policy: Policy,
        tokens: int,
        cost_pusd: int = 0,
        least_pusd: int = 0,
        *,
        rate_limited: bool = True,
    ) -> Admission | None:
        """Check the budget and the rate limits; None for a key without limits.

        `tokens` is the most the request may use (prompt + max_tokens x n) and `cost_pusd`
        their cost: a budget is a hard cap, so that cost is reserved against what is left
        of it until the request's real cost is in the ledger. Between the spend read and
        the reservation nothing awaits, so concurrent requests see each other's holds.
        `least_pusd` is the least it can cost (its prompt and one token): a budget with
        less than that left is as good as spent, and the listeners hear of it.
        Without `rate_limited` (a batch line) the request passes the budget only."""
        if key.is_admin:
            return None
        if policy.budget_pusd is None:
            return self._limits(key, policy, tokens, rate_limited)
        now = time.time()
        start = period_start(policy.budget_period, now)
        spent = await self.spending.spent(key.id, start)
        held = self.spending.held(key.id, start)
        resets = time.strftime(
            "%Y-%m-%d %H:%M UTC", time.gmtime(period_end(policy.budget_period, now))
        )
        budget = f"your budget of {usd(policy.budget_pusd)} USD per {policy.budget_period}"
        if spent >= policy.budget_pusd:
            raise QuotaExceeded(
                f"You exceeded {budget} (spent {usd(spent)} USD). It resets at {resets}."
            )
        left = policy.budget_pusd - spent - held
        if cost_pusd > left:
            if policy.budget_pusd - spent < least_pusd:
                for listener in self.budget_exhausted:
                    listener(key.id)
            in_flight = f", {usd(held)} USD held by requests in flight" if held else ""
            raise QuotaExceeded(
                f"This request could cost up to {usd(cost_pusd)} USD (its prompt and "
                f"max_tokens), more than is left of {budget}: {usd(max(left, 0))} USD "
                f"(spent {usd(spent)} USD{in_flight}). Lower max_tokens, or wait until "
                f"{resets}.",
                param="max_tokens",
            )
        admission = self._limits(key, policy, tokens, rate_limited)
        admission.release_hold = self.spending.hold(key.id, start, cost_pusd)
        return admission

    def _limits(self, key: ApiKey, policy: Policy, tokens: int, rate_limited: bool) -> Admission:
        if rate_limited:
            return self.limiter.admit(key.id, policy, tokens)
        return self.limiter.unlimited(tokens)

    async def settle_open(self) -> None:
        """Settle the requests still under way (the server stops): each gets its row."""
        self.stopping = True
        for ctx in list(self.open_requests):
            await ctx.cancelled()
