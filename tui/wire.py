"""What the server's management API sends, as lenient msgspec Structs (unknown fields ignored)."""

from __future__ import annotations

import msgspec


class Pricing(msgspec.Struct, frozen=True):
    prompt: str = "0"
    completion: str = "0"


class Totals(msgspec.Struct, frozen=True):
    """Counters since the server started."""

    requests: int = 0
    errors: int = 0
    cancelled: int = 0
    rate_limited: int = 0
    prompt_tokens: int = 0
    generated_tokens: int = 0


class LastMinute(msgspec.Struct, frozen=True):
    requests: int = 0
    p50_latency_ms: float | None = None
    p95_latency_ms: float | None = None
    p50_ttft_ms: float | None = None
    p95_ttft_ms: float | None = None
    error_rate: float = 0.0


class ModelLive(msgspec.Struct, frozen=True):
    id: str
    name: str
    status: str
    backend: str = ""
    context_length: int = 0
    pricing: Pricing = Pricing()
    load_seconds: float | None = None
    requests_running: int = 0
    requests_waiting: int = 0
    error: str | None = None
    totals: Totals = Totals()
    last_minute: LastMinute = LastMinute()


class RecentRequest(msgspec.Struct, frozen=True):
    seq: int
    id: str
    time: float
    key: str | None
    model: str | None
    status: str
    endpoint: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_ms: float | None = None
    ttft_ms: float | None = None
    http_status: int | None = None


class LiveSnapshot(msgspec.Struct, frozen=True):
    time: float
    sequence: int
    models: list[ModelLive]
    recent: list[RecentRequest]


class Budget(msgspec.Struct, frozen=True):
    usd: str
    period: str = "month"


class ThisMonth(msgspec.Struct, frozen=True):
    requests: int = 0
    cost: str = "0"


class KeyInfo(msgspec.Struct, frozen=True):
    id: str
    name: str
    prefix: str
    status: str
    source: str
    tier: str | None = None
    models: list[str] | None = None
    budget: Budget | None = None
    expires_at: str | None = None
    created_at: str | None = None
    revoked_at: str | None = None
    last_used_at: str | None = None
    this_month: ThisMonth = ThisMonth()


class CreatedKey(msgspec.Struct, frozen=True):
    """A new key with its secret, which the server shows this once."""

    id: str
    name: str
    prefix: str
    key: str
    tier: str | None = None


class Tier(msgspec.Struct, frozen=True):
    name: str
    rpm: int | None = None
    tpm: int | None = None
    concurrency: int | None = None
    max_tokens: int | None = None
    models: list[str] | None = None
