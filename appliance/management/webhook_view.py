"""How a webhook and its delivery log are shown by the API: never the signing secret,
except once, in the answer that creates the webhook."""

from __future__ import annotations

import json
from typing import Any

import msgspec

from appliance.management.key_view import iso
from appliance.state.webhooks import Delivery, Webhook


class WebhookView(msgspec.Struct, frozen=True):
    id: str
    url: str
    events: list[str]
    description: str | None
    created_at: str


class CreatedWebhook(WebhookView, frozen=True):
    """A new webhook with the secret that signs its deliveries, shown this once."""

    secret: str


class DeliveryView(msgspec.Struct, frozen=True):
    """One event sent (or being sent) to a webhook; `payload` is the event's JSON body."""

    id: str
    event_id: str
    event: str
    status: str  # pending | delivered | failed
    attempts: int
    last_status: int | None
    last_error: str | None
    created_at: str
    last_attempt_at: str | None
    next_attempt_at: str | None  # set while pending
    delivered_at: str | None
    payload: dict[str, Any]


def webhook_view(hook: Webhook) -> WebhookView:
    return WebhookView(
        id=hook.id,
        url=hook.url,
        events=list(hook.events),
        description=hook.description,
        created_at=iso(hook.created_at) or "",
    )


def created_webhook(hook: Webhook) -> CreatedWebhook:
    shown = webhook_view(hook)
    return CreatedWebhook(**msgspec.structs.asdict(shown), secret=hook.secret)


def delivery_view(delivery: Delivery) -> DeliveryView:
    pending = delivery.status == "pending"
    return DeliveryView(
        id=delivery.id,
        event_id=delivery.event_id,
        event=delivery.event,
        status=delivery.status,
        attempts=delivery.attempts,
        last_status=delivery.last_status,
        last_error=delivery.last_error,
        created_at=iso(delivery.created_at) or "",
        last_attempt_at=iso(delivery.last_attempt_at),
        next_attempt_at=iso(delivery.next_attempt_at) if pending else None,
        delivered_at=iso(delivery.delivered_at),
        payload=json.loads(delivery.payload),
    )
