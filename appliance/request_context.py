"""What one inference request did, from admission to its single ledger row and log line."""

from __future__ import annotations

import dataclasses
import logging
import time
import urllib.parse
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import anyio

from appliance.accounting.limits import Admission, Policy
from appliance.accounting.meter import Meter
from appliance.accounting.money import UnitPrices, usd
from appliance.errors import ApiError, Forbidden
from appliance.registry import ServedModel
from appliance.state.keys import ApiKey
from appliance.state.ledger import RequestRecord

log = logging.getLogger("radiance.requests")
FREE = UnitPrices("0", "0")


_LOGGED_MESSAGE = 300  # characters of an error message in the request's log line


def new_request_id() -> str:
    return uuid.uuid4().hex[:24]


def header_safe(text: str) -> str:
    """Client-chosen text as a header value: printable ASCII, the rest percent-encoded
    (a header holds no CR/LF, no leading space and nothing outside Latin-1)."""
    return urllib.parse.quote(text, safe="!#$&'()*+,/:;=?@[]~")


@dataclass
class RequestContext:
    meter: Meter
    key: ApiKey
    policy: Policy
    endpoint: str
    id: str = field(default_factory=new_request_id)
    route_model: str | None = None
    model: str | None = None
    backend: str | None = None
    deployment: str | None = None  # the deployment that serves (the model's id)
    replica: str | None = None  # its replica that served: an engine, or an upstream URL
    prices: UnitPrices = FREE
    prompt_tokens: int = 0
    completion_tokens: int = 0
    admission: Admission | None = None
    admitted: bool = False
    started: float = field(default_factory=time.time)
    _clock: float = field(default_factory=time.perf_counter)
    first_token: float | None = None
    finished: bool = False
    # Called once when the request ends, however it ends (a replica's lease).
    releases: list[Callable[[], None]] = field(default_factory=list)

    def use_model(self, served: ServedModel) -> None:
        """Route to `served`, if the key may use it; its prices now apply."""
        allowed = self.policy.models
        if allowed is not None and served.id not in allowed and served.parent not in allowed:
            raise Forbidden(
                f"This API key may not use the model `{self.route_model}`.",
                param="model",
                code="model_not_allowed",
            )
        self.model, self.backend = served.id, served.backend_name
        self.deployment = served.id
        self.prices = UnitPrices.of(served.config.pricing)

    async def admit(self, completion_tokens: int) -> None:
        """Pass the budget and rate limits, charging the prompt plus `completion_tokens`."""
        self.admission = await self.meter.admit(
            self.key, self.policy, self.prompt_tokens + completion_tokens
        )
        self.admitted = True

    def headers(self) -> dict[str, str]:
        headers = {"x-request-id": self.id}
        if self.route_model is not None:
            headers["x-route-model"] = header_safe(self.route_model)
        if self.model is not None:
            headers["x-model-used"] = self.model
        if self.backend is not None:
            headers["x-backend"] = self.backend
        if self.deployment is not None:
            headers["x-deployment-id"] = self.deployment
        if self.replica is not None:
            headers["x-replica-id"] = self.replica
        if not self.key.is_admin:
            headers.update(self.meter.limiter.headers(self.key.id, self.policy))
        return headers

    def usage(self) -> dict[str, int]:
        """OpenAI's usage object: exactly the tokens this request read and generated."""
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
        }

    def add_tokens(self, count: int) -> None:
        if count and self.first_token is None:
            self.first_token = time.perf_counter()
        self.completion_tokens += count
        self.meter.live.generated(self.model, count)

    def _record(self, status: str, http_status: int, error: ApiError | None) -> RequestRecord:
        now = time.perf_counter()
        latency_ms = (now - self._clock) * 1000
        ttft_ms = None if self.first_token is None else (self.first_token - self._clock) * 1000
        # Billed: what ran on an engine and answered, or produced tokens before it ended.
        billed = self.admitted and (status == "ok" or self.completion_tokens > 0)
        prompt, completion = (self.prompt_tokens, self.completion_tokens) if billed else (0, 0)
        row = RequestRecord(
            id=self.id,
            key_id=self.key.id,
            key_name=self.key.name,
            endpoint=self.endpoint,
            route_model=self.route_model,
            model=self.model,
            backend=self.backend,
            prompt_tokens=prompt,
            completion_tokens=completion,
            status=status,
            http_status=http_status,
            error_code=error.code if error else None,
            latency_ms=round(latency_ms, 3),
            ttft_ms=None if ttft_ms is None else round(ttft_ms, 3),
            started_at=self.started,
            ended_at=time.time(),
            prompt_price=self.prices.prompt,
            completion_price=self.prices.completion,
            cost_pusd=self.prices.cost(prompt, completion),
        )
        generation = row.generation
        if generation is not None:
            speed = round(generation[0] / (generation[1] / 1000), 3)
            row = dataclasses.replace(row, tokens_per_s=speed)
        return row

    async def finish(
        self, status: str = "ok", http_status: int = 200, error: ApiError | None = None
    ) -> None:
        """Write the ledger row and the log line, once, even if the caller is being cancelled."""
        if self.finished:
            return
        self.finished = True
        self.release()
        row = self._record(status, http_status, error)
        if self.admission is not None:
            self.admission.settle(row.prompt_tokens + row.completion_tokens)
        with anyio.CancelScope(shield=True):
            try:
                await self.meter.ledger.record(row)
            except Exception:
                log.exception("could not write the ledger row of request %s", self.id)
        self.meter.metrics.observe(row)
        self.meter.live.finished(row, generated_live=self.completion_tokens)
        log.info(
            "request id=%s key=%s endpoint=%s model=%s route=%s prompt_tokens=%d "
            "completion_tokens=%d cost_usd=%s latency_ms=%.1f ttft_ms=%s status=%s http=%d%s%s",
            self.id,
            self.key.name,
            self.endpoint,
            self.model,
            None if self.route_model is None else header_safe(self.route_model),
            row.prompt_tokens,
            row.completion_tokens,
            usd(row.cost_pusd),
            row.latency_ms,
            "-" if row.ttft_ms is None else f"{row.ttft_ms:.1f}",
            status,
            http_status,
            f" replica={self.replica}" if self.replica else "",
            f" error={error.code}: {_bounded(error.message)}" if error else "",
        )

    def release(self) -> None:
        """Let go of what the request held (its replica), once."""
        releases, self.releases = self.releases, []
        for release in releases:
            release()

    async def fail(self, error: ApiError) -> None:
        status = "rate_limited" if error.status == 429 else "error"
        await self.finish(status, error.status, error)


def _bounded(message: str) -> str:
    message = message.replace("\n", " ").replace("\r", " ")
    return message if len(message) <= _LOGGED_MESSAGE else message[:_LOGGED_MESSAGE] + "…"
