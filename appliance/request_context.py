"""One inference request's lifecycle, from admission to its single ledger row and log line.

A `RequestContext` is entered as an async context manager around the whole request. It
owns what the request holds and records: the admission (rate limits, the budget's
reservation), the replica lease, the tokens counted, the ledger row, the metrics, the
live figures and the log line. However the request ends (an answer, a client error, an
engine error, a bug, the client going away, the server stopping), its exit settles the
request exactly once. A streamed answer is handed to `stream()`, which then owns the
settling: at the end of the stream, at an error event, or when the response is closed
whether or not a byte was sent.
"""

from __future__ import annotations

import logging
import time
import urllib.parse
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from types import TracebackType

import anyio
import msgspec

from appliance.accounting.limits import Admission, Policy
from appliance.accounting.meter import Meter
from appliance.accounting.money import UnitPrices, usd
from appliance.errors import (
    ApiError,
    Forbidden,
    InternalError,
    ModelNotFound,
    ServiceUnavailable,
    envelope,
)
from appliance.registry import ServedModel
from appliance.state.keys import ApiKey
from appliance.state.ledger import RequestRecord, tokens_per_second

log = logging.getLogger("radiance.requests")
FREE = UnitPrices("0", "0")
DONE = b"data: [DONE]\n\n"
# How long closing an upstream or an engine's generator may hold up a settled request.
CLOSE_SECONDS = 5.0


_LOGGED_MESSAGE = 300  # characters of an error message in the request's log line


# Where a request's id is kept in its ASGI scope's state.
REQUEST_ID = "radiance.request_id"


def new_request_id() -> str:
    return uuid.uuid4().hex[:24]


def header_safe(text: str) -> str:
    """Client-chosen text as a header value: printable ASCII, the rest percent-encoded
    (a header holds no CR/LF, no leading space and nothing outside Latin-1)."""
    return urllib.parse.quote(text, safe="!#$&'()*+,/:;=?@[]~")


@dataclass(eq=False)  # one object per request: hashed by identity
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
    # The most prompt tokens the request may turn out to have, when `prompt_tokens` is an
    # estimate (a proxy engine's upstream counts them): the budget reserves for this many.
    prompt_bound: int | None = None
    admission: Admission | None = None
    admitted: bool = False
    error: ApiError | None = None  # what the client is answered, when the request failed
    disconnected: bool = False  # the client went away before the answer
    streaming: bool = False  # a stream owns the settling from here on
    started: float = field(default_factory=time.time)
    _clock: float = field(default_factory=time.perf_counter)
    first_token: float | None = None
    finished: bool = False
    # Called once when the request ends, however it ends (a replica's lease).
    releases: list[Callable[[], None]] = field(default_factory=list)
    # The /v1/batches job this request is a line of: billed at the batch price, not
    # counted against rpm/tpm/concurrency, marked so in the ledger.
    batch: str | None = None

    def use_model(self, served: ServedModel) -> None:
        """Route to `served`, if the key may use it; its prices now apply."""
        if served.hidden_from(self.key.id, self.key.is_admin):
            raise ModelNotFound(
                f"The model `{self.route_model}` does not exist or this key may not use it.",
                param="model",
            )
        allowed = self.policy.models
        if allowed is not None and served.id not in allowed and served.parent not in allowed:
            raise Forbidden(
                f"This API key may not use the model `{self.route_model}`.",
                param="model",
                code="model_not_allowed",
            )
        self.model, self.backend = served.id, served.backend_name
        self.deployment = served.id
        self.prices = UnitPrices.of(served.config.pricing, batch=self.batch is not None)

    async def admit(self, completion_tokens: int) -> None:
        """Pass the budget and rate limits, charging the prompt plus `completion_tokens`
        (the most it may generate, all choices together) and reserving their cost."""
        prompt_bound = max(self.prompt_tokens, self.prompt_bound or 0)
        self.admission = await self.meter.admit(
            self.key,
            self.policy,
            self.prompt_tokens + completion_tokens,
            self.prices.cost(prompt_bound, completion_tokens),
            self.prices.cost(self.prompt_tokens, 1),
            rate_limited=self.batch is None,
        )
        self.admitted = True

    # -- the lifecycle -----------------------------------------------------------------

    async def __aenter__(self) -> RequestContext:
        self.meter.open_requests.add(self)
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool:
        """Settle the request, unless a stream took it over; API errors and bugs are
        kept in `error` (the answer), anything else (cancellation) goes on up."""
        if exc is None:
            if self.disconnected:
                await self.finish("cancelled", 499)
            elif not self.streaming:
                await self.finish()
            return False
        if isinstance(exc, ApiError):
            self.error = exc
            await self.fail(exc)
            return True
        if isinstance(exc, Exception):
            log.error("request %s failed in the server", self.id, exc_info=exc)
            self.error = InternalError("the server failed to handle this request")
            await self.fail(self.error)
            return True
        await self.cancelled()  # the server stops
        return False

    def stream(
        self,
        events: AsyncIterator[bytes],
        close: Callable[[], Awaitable[None]] | None = None,
    ) -> SettledStream:
        """Hand the settling to a streamed answer made of `events` (SSE bytes without
        `[DONE]`); `close` lets go of what the events come from, after the ledger row."""
        self.streaming = True
        return SettledStream(self, events, close)

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
        if not self.key.is_admin and self.batch is None:
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
        latency_ms = round(latency_ms, 3)
        ttft_ms = None if ttft_ms is None else round(ttft_ms, 3)
        return RequestRecord(
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
            latency_ms=latency_ms,
            ttft_ms=ttft_ms,
            started_at=self.started,
            ended_at=time.time(),
            prompt_price=self.prices.prompt,
            completion_price=self.prices.completion,
            cost_pusd=self.prices.cost(prompt, completion),
            tokens_per_s=tokens_per_second(completion, latency_ms, ttft_ms),
            batch_id=self.batch,
        )

    async def finish(
        self, status: str = "ok", http_status: int = 200, error: ApiError | None = None
    ) -> None:
        """Write the ledger row and the log line, once, even if the caller is being cancelled."""
        if self.finished:
            return
        self.finished = True
        self.meter.open_requests.discard(self)
        self.release()
        row = self._record(status, http_status, error)
        if self.admission is not None:
            self.admission.settle(row.prompt_tokens + row.completion_tokens)
        with anyio.CancelScope(shield=True):
            try:
                await self.meter.ledger.record(row)
            except Exception:
                log.exception("could not write the ledger row of request %s", self.id)
            finally:
                # The row's cost is in the budget's totals now: let go of the reservation.
                if self.admission is not None:
                    self.admission.release_hold()
        self.meter.metrics.observe(row)
        self.meter.live.finished(row, generated_live=self.completion_tokens)
        if not log.isEnabledFor(logging.INFO):
            return
        log.info(
            "request id=%s key=%s endpoint=%s model=%s route=%s prompt_tokens=%d "
            "completion_tokens=%d cost_usd=%s latency_ms=%.1f ttft_ms=%s status=%s http=%d%s%s%s",
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
            f" batch={self.batch}" if self.batch else "",
            f" error={error.code}: {_bounded(error.message)}" if error else "",
        )

    def release(self) -> None:
        """Let go of what the request held (its replica), once."""
        releases, self.releases = self.releases, []
        for release in releases:
            release()

    async def cancelled(self) -> None:
        """Settle a request cut short: by its client (499), or by the server stopping."""
        if self.meter.stopping and not self.disconnected:
            await self.finish("cancelled", 503, server_stopping())
        else:
            await self.finish("cancelled", 499)

    async def fail(self, error: ApiError) -> None:
        status = "rate_limited" if error.status == 429 else "error"
        await self.finish(status, error.status, error)


def _bounded(message: str) -> str:
    message = message.replace("\n", " ").replace("\r", " ")
    return message if len(message) <= _LOGGED_MESSAGE else message[:_LOGGED_MESSAGE] + "…"


class SettledStream:
    """A streamed answer that settles its request once, however it ends.

    The events end with `[DONE]` after the ledger row is written; an API error or a bug
    after the first byte becomes an error event; a response closed early (the client went
    away, or the server stops), even before the first event, leaves a `cancelled` row
    with the tokens generated until then. Only then is the source closed.
    """

    def __init__(
        self,
        ctx: RequestContext,
        events: AsyncIterator[bytes],
        close: Callable[[], Awaitable[None]] | None,
    ) -> None:
        self._ctx = ctx
        self._events = events
        self._close = close
        self._closed = False
        self._body = self._run()

    def __aiter__(self) -> SettledStream:
        return self

    def __anext__(self) -> Awaitable[bytes]:
        return self._body.__anext__()

    async def aclose(self) -> None:
        """End the stream: settle the request (cancelled, if it had not ended), then close
        the events and their source."""
        with anyio.CancelScope(shield=True):
            await self._ctx.cancelled()
            await self._body.aclose()
            await self._release()

    async def _run(self) -> AsyncGenerator[bytes, None]:
        ctx = self._ctx
        try:
            async for event in self._events:
                yield event
            await ctx.finish()
            yield DONE
        except ApiError as exc:
            await ctx.fail(exc)
            yield error_event(exc)
        except Exception:
            log.exception("request %s failed in the server mid-stream", ctx.id)
            error = InternalError("the server failed while streaming this answer")
            await ctx.fail(error)
            yield error_event(error)
        finally:
            with anyio.CancelScope(shield=True):
                await ctx.cancelled()  # a no-op when the stream ended above
                await self._release()

    async def _release(self) -> None:
        if self._closed:
            return
        self._closed = True
        with anyio.move_on_after(CLOSE_SECONDS):
            try:
                closer = getattr(self._events, "aclose", None)
                if closer is not None:
                    await closer()
                if self._close is not None:
                    await self._close()
            except Exception:
                log.exception("closing the stream of request %s failed", self._ctx.id)


def server_stopping() -> ApiError:
    """What a request still running when the server's grace period ends is answered."""
    return ServiceUnavailable(
        "the server is shutting down; retry the request", retry_after=1, code="server_stopping"
    )


def error_event(error: ApiError) -> bytes:
    """An error after the stream began: one error event, then the end of the stream."""
    return b"data: " + msgspec.json.encode(envelope(error)) + b"\n\n" + DONE
