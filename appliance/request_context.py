"""What one inference request did, from admission to its single ledger row and log line."""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field

import anyio

from appliance.errors import ApiError
from appliance.state.keys import ApiKey
from appliance.state.ledger import Ledger, RequestRecord

log = logging.getLogger("radiance.requests")


def new_request_id() -> str:
    return uuid.uuid4().hex[:24]


@dataclass
class RequestContext:
    ledger: Ledger
    key: ApiKey
    endpoint: str
    id: str = field(default_factory=new_request_id)
    route_model: str | None = None
    model: str | None = None
    backend: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    started: float = field(default_factory=time.time)
    _clock: float = field(default_factory=time.perf_counter)
    first_token: float | None = None
    finished: bool = False

    def headers(self) -> dict[str, str]:
        headers = {"x-request-id": self.id}
        if self.route_model is not None:
            headers["x-route-model"] = self.route_model
        if self.model is not None:
            headers["x-model-used"] = self.model
        if self.backend is not None:
            headers["x-backend"] = self.backend
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

    async def finish(
        self, status: str = "ok", http_status: int = 200, error: ApiError | None = None
    ) -> None:
        """Write the ledger row and the log line, once, even if the caller is being cancelled."""
        if self.finished:
            return
        self.finished = True
        now = time.perf_counter()
        latency_ms = (now - self._clock) * 1000
        ttft_ms = None if self.first_token is None else (self.first_token - self._clock) * 1000
        row = RequestRecord(
            id=self.id,
            key_id=self.key.id,
            key_name=self.key.name,
            endpoint=self.endpoint,
            route_model=self.route_model,
            model=self.model,
            backend=self.backend,
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            status=status,
            http_status=http_status,
            error_code=error.code if error else None,
            latency_ms=round(latency_ms, 3),
            ttft_ms=None if ttft_ms is None else round(ttft_ms, 3),
            started_at=self.started,
            ended_at=time.time(),
        )
        with anyio.CancelScope(shield=True):
            try:
                await self.ledger.record(row)
            except Exception:
                log.exception("could not write the ledger row of request %s", self.id)
        log.info(
            "request id=%s key=%s endpoint=%s model=%s route=%s prompt_tokens=%d "
            "completion_tokens=%d latency_ms=%.1f ttft_ms=%s status=%s http=%d%s",
            self.id,
            self.key.name,
            self.endpoint,
            self.model,
            self.route_model,
            self.prompt_tokens,
            self.completion_tokens,
            latency_ms,
            "-" if ttft_ms is None else f"{ttft_ms:.1f}",
            status,
            http_status,
            f" error={error.code}: {error.message}" if error else "",
        )

    async def fail(self, error: ApiError) -> None:
        await self.finish("error", error.status, error)
