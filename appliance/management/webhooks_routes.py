"""/v1/webhooks: register receivers for events, list and remove them, read the delivery log."""

from __future__ import annotations

import datetime
import json
import urllib.parse
from typing import Annotated, Any, Literal

import httpx
import msgspec
from litestar import Controller, Request, Response, delete, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, QueryParameter

from appliance.management.envelope import ok, page_params, paged
from appliance.management.errors import invalid
from appliance.openai.decoding import decode_body
from appliance.openapi_docs import body
from appliance.state.webhooks import EVENTS, Delivery, Webhook, WebhookStore


class CreateWebhookBody(msgspec.Struct, forbid_unknown_fields=True):
    """A receiver URL and the events it wants; the answer carries the signing secret once."""

    url: Annotated[str, msgspec.Meta(max_length=2048)]
    events: list[str]
    description: Annotated[str, msgspec.Meta(max_length=500)] | None = None


def _iso(moment: float | None) -> str | None:
    if moment is None:
        return None
    return datetime.datetime.fromtimestamp(moment, datetime.UTC).isoformat()


def webhook_json(hook: Webhook) -> dict[str, Any]:
    """A webhook as the API shows it: never its secret."""
    return {
        "id": hook.id,
        "url": hook.url,
        "events": list(hook.events),
        "description": hook.description,
        "created_at": _iso(hook.created_at),
    }


def delivery_json(delivery: Delivery) -> dict[str, Any]:
    return {
        "id": delivery.id,
        "event_id": delivery.event_id,
        "event": delivery.event,
        "status": delivery.status,
        "attempts": delivery.attempts,
        "last_status": delivery.last_status,
        "last_error": delivery.last_error,
        "created_at": _iso(delivery.created_at),
        "last_attempt_at": _iso(delivery.last_attempt_at),
        "next_attempt_at": _iso(delivery.next_attempt_at) if delivery.status == "pending" else None,
        "delivered_at": _iso(delivery.delivered_at),
        "payload": json.loads(delivery.payload),
    }


def _check(request: CreateWebhookBody) -> None:
    url = urllib.parse.urlsplit(request.url)
    if url.scheme not in ("http", "https") or not url.hostname:
        raise invalid("url must be an http:// or https:// URL with a host", field="url")
    try:
        url.port  # noqa: B018 - raises on a port that is not a number in 0-65535
        httpx.URL(request.url)
    except (ValueError, httpx.InvalidURL) as exc:
        raise invalid(f"url is not a valid URL: {exc}", field="url") from None
    if not request.events:
        raise invalid("events must name at least one event", field="events", known=list(EVENTS))
    unknown = [name for name in request.events if name not in EVENTS]
    if unknown:
        raise invalid(f"unknown events: {', '.join(unknown)}", field="events", known=list(EVENTS))
    if len(set(request.events)) != len(request.events):
        raise invalid("events lists an event twice", field="events")


class WebhooksController(Controller):
    path = "/webhooks"
    tags = ["webhooks"]  # noqa: RUF012 (Litestar reads it as a class attribute)

    @post(
        "/",
        status_code=201,
        summary="Register a webhook; the signing secret is in data.secret, once",
        operation_class=body(CreateWebhookBody),
    )
    async def create_webhook(
        self, request: Request[Any, Any, Any], webhooks: NamedDependency[WebhookStore]
    ) -> Response[bytes]:
        wanted = decode_body(await request.body(), CreateWebhookBody)
        _check(wanted)
        hook = await webhooks.create(wanted.url, wanted.events, wanted.description)
        data = {**webhook_json(hook), "secret": hook.secret}
        message = (
            "Webhook created; store the secret now (it signs every delivery), it is not shown again"
        )
        return ok(data, message, 201)

    @get("/", summary="List webhooks (never their secrets)")
    async def list_webhooks(
        self,
        webhooks: NamedDependency[WebhookStore],
        limit: Annotated[int | None, QueryParameter(ge=1, le=1000)] = None,
        offset: Annotated[int | None, QueryParameter(ge=0, le=2**62)] = None,
    ) -> Response[bytes]:
        limit, offset = page_params(limit, offset)
        hooks, total = await webhooks.page(limit, offset)
        return paged([webhook_json(h) for h in hooks], total, limit, offset, f"{total} webhooks")

    @get("/{webhook_id:str}", summary="One webhook")
    async def get_webhook(
        self, webhooks: NamedDependency[WebhookStore], webhook_id: FromPath[str]
    ) -> Response[bytes]:
        hook = await webhooks.get(webhook_id)
        return ok(webhook_json(hook), "Webhook")

    @delete("/{webhook_id:str}", status_code=200, summary="Remove a webhook and its log")
    async def delete_webhook(
        self, webhooks: NamedDependency[WebhookStore], webhook_id: FromPath[str]
    ) -> Response[bytes]:
        hook = await webhooks.delete(webhook_id)
        return ok(webhook_json(hook), "Webhook deleted; its pending deliveries are dropped")

    @get(
        "/{webhook_id:str}/deliveries",
        summary="The webhook's delivery log, newest first: status, attempts, last error",
    )
    async def list_deliveries(
        self,
        webhooks: NamedDependency[WebhookStore],
        webhook_id: FromPath[str],
        limit: Annotated[int | None, QueryParameter(ge=1, le=1000)] = None,
        offset: Annotated[int | None, QueryParameter(ge=0, le=2**62)] = None,
        status: FromQuery[Literal["pending", "delivered", "failed"] | None] = None,
    ) -> Response[bytes]:
        limit, offset = page_params(limit, offset)
        await webhooks.get(webhook_id)  # 404 for an unknown webhook
        rows, total = await webhooks.deliveries(webhook_id, limit, offset, status)
        items = [delivery_json(row) for row in rows]
        return paged(items, total, limit, offset, f"{total} deliveries")
