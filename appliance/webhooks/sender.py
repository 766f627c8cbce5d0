"""The delivery worker: sends pending deliveries, retrying with exponential backoff.

It runs beside the server in the app's lifespan and only ever waits on the network and
on SQLite, so requests never wait for it. Each attempt is signed afresh (a new
timestamp). A 2xx answer delivers; anything else, or no answer within the timeout, is
retried after 1 s, 2 s, 4 s ... (at most `max_backoff`) until `retry_for` has passed
since the event, when the delivery is marked failed. Rows are the only state: a restart
picks up what is pending. A crash between sending and recording means one more
delivery of the same event; receivers deduplicate by `X-Radiance-Event-Id`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import anyio
import httpx

from appliance.state.webhooks import Delivery, Webhook, WebhookStore
from appliance.webhooks.events import EventBus
from appliance.webhooks.signing import SIGNATURE_HEADER, signature_header
from backends.backoff import Backoff

log = logging.getLogger(__name__)
# Deliveries queued by another process (the CLI) are noticed within this time.
POLL_SECONDS = 1.0
BATCH = 32
USER_AGENT = "Radiance-Webhooks/0.1"


@dataclass(frozen=True)
class RetryPolicy:
    timeout: float = 10.0
    retry_for: float = 24 * 3600.0
    first_backoff: float = 1.0
    max_backoff: float = 600.0

    def backoff(self, attempts: int) -> float:
        """The wait after the `attempts`-th failed attempt."""
        return Backoff(first=self.first_backoff, most=self.max_backoff).after(attempts)


class WebhookSender:
    def __init__(self, store: WebhookStore, bus: EventBus, policy: RetryPolicy) -> None:
        self._store = store
        self._bus = bus
        self._policy = policy

    async def run(self) -> None:
        """Send deliveries as they fall due, until cancelled."""
        async with httpx.AsyncClient(timeout=self._policy.timeout) as client:
            while True:
                self._bus.wake.clear()
                try:
                    due = await self._store.due(time.time(), BATCH)
                    if due:
                        async with anyio.create_task_group() as tasks:
                            for delivery, hook in due:
                                tasks.start_soon(self._attempt, client, delivery, hook)
                        continue
                    next_due = await self._store.next_due()
                except Exception:
                    log.exception("the webhook sender failed; retrying")
                    await anyio.sleep(POLL_SECONDS)
                    continue
                wait = POLL_SECONDS if next_due is None else next_due - time.time()
                with anyio.move_on_after(min(max(wait, 0.0), POLL_SECONDS)):
                    await self._bus.wake.wait()

    async def _attempt(self, client: httpx.AsyncClient, delivery: Delivery, hook: Webhook) -> None:
        """One delivery attempt; whatever goes wrong stays with this delivery, so one bad
        receiver never keeps the others' deliveries from going out."""
        try:
            await self._deliver(client, delivery, hook)
        except Exception:
            log.exception("delivery %s to webhook %s failed in the server", delivery.id, hook.id)

    async def _deliver(self, client: httpx.AsyncClient, delivery: Delivery, hook: Webhook) -> None:
        body = delivery.payload.encode()
        headers = {
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            SIGNATURE_HEADER: signature_header(hook.secret, int(time.time()), body),
            "X-Radiance-Event": delivery.event,
            "X-Radiance-Event-Id": delivery.event_id,
            "X-Radiance-Delivery-Id": delivery.id,
        }
        http_status: int | None = None
        permanent = False  # a URL no attempt can reach: no use retrying
        try:
            answer = await client.post(hook.url, content=body, headers=headers)
            http_status = answer.status_code
            error = None if answer.is_success else f"HTTP {answer.status_code}"
        except (httpx.InvalidURL, httpx.UnsupportedProtocol, ValueError, UnicodeError) as exc:
            permanent = True
            error = _reason(exc)
        except httpx.HTTPError as exc:
            error = _reason(exc)
        attempts = delivery.attempts + 1
        now = time.time()
        if error is None:
            status, next_at = "delivered", now
            log.info("delivered %s %s to %s", delivery.event, delivery.event_id, hook.url)
        elif permanent or now - delivery.created_at >= self._policy.retry_for:
            status, next_at = "failed", now
            log.error(
                "gave up delivering %s %s to %s after %d attempts: %s",
                delivery.event,
                delivery.event_id,
                hook.url,
                attempts,
                error,
            )
        else:
            status, next_at = "pending", now + self._policy.backoff(attempts)
            log.warning(
                "delivery %s to %s failed (attempt %d: %s); retrying in %.0f s",
                delivery.id,
                hook.url,
                attempts,
                error,
                next_at - now,
            )
        await self._store.attempted(
            delivery.id,
            status=status,
            http_status=http_status,
            error=error,
            next_attempt_at=next_at,
        )


def _reason(exc: Exception) -> str:
    """Why an attempt failed, bounded, for the delivery's `last_error`."""
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return text if len(text) <= 300 else text[:300] + "…"
