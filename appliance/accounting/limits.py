"""Per-key rate limits, exact over any 60 s window, for the whole server process.

Each key has a sliding log of its admissions: a request is admitted only if fewer than
``rpm`` admissions fall in the last 60 s, and if the tokens charged in that window plus
its own charge (prompt + the most it may generate) stay within ``tpm``. When it ends,
its charge is settled to the tokens it really used. The log lives in this process's
memory, which is the whole server: Radiance runs one process, so a limit of 100 lets
exactly 100 through, not 100 per worker.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from appliance.errors import ApiError

WINDOW = 60.0


@dataclass(frozen=True)
class Policy:
    """The limits in force for one key: its tier's, narrowed by the key's own."""

    tier: str | None = None
    rpm: int | None = None
    tpm: int | None = None
    concurrency: int | None = None
    max_tokens: int | None = None
    models: frozenset[str] | None = None  # model ids; None allows every model
    budget_pusd: int | None = None
    budget_period: str = "month"
    expires_at: float | None = None
    batch_lines_in_flight: int | None = None  # /v1/batches lines of the key at once


class RateLimited(ApiError):
    """429 in OpenAI's shape; the SDK waits `retry-after-ms` before its own retry."""

    status = 429
    code = "rate_limit_exceeded"

    def __init__(
        self, message: str, *, kind: str, retry_after: float | None, retry: bool = True
    ) -> None:
        headers = {}
        if retry_after is not None:
            headers = {
                "retry-after": str(max(1, math.ceil(retry_after))),
                "retry-after-ms": str(max(1, math.ceil(retry_after * 1000))),
            }
        if not retry:
            headers["x-should-retry"] = "false"
        super().__init__(message, headers=headers)
        self.type = kind


class QuotaExceeded(ApiError):
    status = 429
    type = "insufficient_quota"
    code = "insufficient_quota"

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message, param=param, headers={"x-should-retry": "false"})


def duration(seconds: float) -> str:
    """OpenAI's reset durations: `250ms`, `1s`, `6m0s`, `1h2m3s`."""
    if seconds < 1:
        return f"{max(0, math.ceil(seconds * 1000))}ms"
    whole = math.ceil(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    return f"{minutes}m{secs}s" if minutes else f"{secs}s"


@dataclass
class _Charge:
    at: float
    tokens: int
    expired: bool = False


@dataclass
class _Window:
    requests: deque[float] = field(default_factory=deque)
    charges: deque[_Charge] = field(default_factory=deque)
    tokens: int = 0
    in_flight: int = 0

    def prune(self, now: float) -> None:
        horizon = now - WINDOW
        while self.requests and self.requests[0] <= horizon:
            self.requests.popleft()
        while self.charges and self.charges[0].at <= horizon:
            charge = self.charges.popleft()
            charge.expired = True
            self.tokens -= charge.tokens

    def wait_for_tokens(self, needed: int, limit: int, now: float) -> float:
        """Seconds until `needed` more tokens fit under `limit`."""
        excess = self.tokens + needed - limit
        for charge in self.charges:
            excess -= charge.tokens
            if excess <= 0:
                return charge.at + WINDOW - now
        return WINDOW


@dataclass
class Admission:
    """A request let through; ``settle`` it once with the tokens it really used."""

    window: _Window
    charge: _Charge
    settled: bool = False
    # Let go of the budget's reservation; called once the request's cost is counted.
    release_hold: Callable[[], None] = lambda: None

    def settle(self, tokens: int) -> None:
        if self.settled:
            return
        self.settled = True
        self.window.in_flight -= 1
        if not self.charge.expired:
            self.window.tokens += tokens - self.charge.tokens
        self.charge.tokens = tokens


class Limiter:
    """The sliding windows of every key; ``clock`` is wall time in seconds."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._windows: dict[str, _Window] = {}

    def _window(self, key_id: str) -> _Window:
        window = self._windows.setdefault(key_id, _Window())
        window.prune(self._clock())
        return window

    def admit(self, key_id: str, policy: Policy, tokens: int) -> Admission:
        """Count one request charging `tokens`, or raise RateLimited saying when to retry."""
        now = self._clock()
        window = self._window(key_id)
        if policy.concurrency is not None and window.in_flight >= policy.concurrency:
            raise RateLimited(
                f"Rate limit reached on requests in flight: limit {policy.concurrency}. "
                "Wait for one of your requests to finish.",
                kind="requests",
                retry_after=1.0,
            )
        if policy.rpm is not None and len(window.requests) >= policy.rpm:
            wait = window.requests[0] + WINDOW - now
            raise RateLimited(
                f"Rate limit reached on requests per min (RPM): limit {policy.rpm}, "
                f"used {len(window.requests)}, requested 1. Please try again in {duration(wait)}.",
                kind="requests",
                retry_after=wait,
            )
        if policy.tpm is not None:
            if tokens > policy.tpm:
                raise RateLimited(
                    f"Request too large on tokens per min (TPM): limit {policy.tpm}, requested "
                    f"{tokens} (prompt + max_tokens). Reduce the prompt or max_tokens.",
                    kind="tokens",
                    retry_after=None,
                    retry=False,
                )
            if window.tokens + tokens > policy.tpm:
                wait = window.wait_for_tokens(tokens, policy.tpm, now)
                raise RateLimited(
                    f"Rate limit reached on tokens per min (TPM): limit {policy.tpm}, used "
                    f"{window.tokens}, requested {tokens}. Please try again in {duration(wait)}.",
                    kind="tokens",
                    retry_after=wait,
                )
        charge = _Charge(now, tokens)
        window.requests.append(now)
        window.charges.append(charge)
        window.tokens += tokens
        window.in_flight += 1
        return Admission(window, charge)

    def unlimited(self, tokens: int) -> Admission:
        """An admission outside every window (a batch line: not counted against rpm/tpm)."""
        window = _Window(in_flight=1)
        charge = _Charge(self._clock(), tokens)
        window.charges.append(charge)
        return Admission(window, charge)

    def headers(self, key_id: str, policy: Policy) -> dict[str, str]:
        """The rate-limit headers of a response, as of now."""
        now = self._clock()
        window = self._window(key_id)
        headers = {"x-ratelimit-tier": policy.tier or "unlimited"}
        if policy.rpm is not None:
            remaining = max(0, policy.rpm - len(window.requests))
            clear = window.requests[-1] + WINDOW - now if window.requests else 0.0
            # The seed's headers: the limit, what is left, and when the window is clear.
            headers["x-ratelimit-limit"] = str(policy.rpm)
            headers["x-ratelimit-remaining"] = str(remaining)
            headers["x-ratelimit-reset"] = str(math.ceil(now + clear))
            headers["x-ratelimit-limit-requests"] = str(policy.rpm)
            headers["x-ratelimit-remaining-requests"] = str(remaining)
            headers["x-ratelimit-reset-requests"] = duration(clear)
        if policy.tpm is not None:
            clear = window.charges[-1].at + WINDOW - now if window.charges else 0.0
            headers["x-ratelimit-limit-tokens"] = str(policy.tpm)
            headers["x-ratelimit-remaining-tokens"] = str(max(0, policy.tpm - window.tokens))
            headers["x-ratelimit-reset-tokens"] = duration(clear)
        return headers
