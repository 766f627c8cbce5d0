"""/v1/webhooks: register receivers for events, list and remove them, read the delivery log."""

from __future__ import annotations

import urllib.parse
from typing import Annotated, Any, Literal

import httpx
import msgspec
from litestar import Controller, Request, delete, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, QueryParameter

from appliance.management.envelope import page_params
from appliance.management.errors import invalid
from appliance.management.typed_envelope import ADMIN_ERRORS, WEBHOOK_NOT_FOUND, Item, Page
from appliance.management.webhook_view import (
    CreatedWebhook,
    DeliveryView,
    WebhookView,
    created_webhook,
    delivery_view,
    webhook_view,
)
from appliance.openai.decoding import decode_body
from appliance.openapi_docs import body
from appliance.state.webhooks import EVENTS, WebhookStore


class CreateWebhookBody(msgspec.Struct, forbid_unknown_fields=True):
    """A receiver URL and the events it wants; the answer carries the signing secret once."""

    url: Annotated[str, msgspec.Meta(max_length=2048)]
    events: list[str]
    description: Annotated[str, msgspec.Meta(max_length=500)] | None = None


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


ONE = {**ADMIN_ERRORS, 404: WEBHOOK_NOT_FOUND}


class WebhooksController(Controller):
    path = "/webhooks"
    tags = ["webhooks"]  # noqa: RUF012 (Litestar reads it as a class attribute)

    @post(
        "/",
        status_code=201,
        summary="Register a webhook; the signing secret is in data.secret, once",
        operation_class=body(CreateWebhookBody),
        responses=ADMIN_ERRORS,
    )
    async def create_webhook(
        self, request: Request[Any, Any, Any], webhooks: NamedDependency[WebhookStore]
    ) -> Item[CreatedWebhook]:
        wanted = decode_body(await request.body(), CreateWebhookBody)
        _check(wanted)
        hook = await webhooks.create(wanted.url, wanted.events, wanted.description)
        message = (
            "Webhook created; store the secret now (it signs every delivery), it is not shown again"
        )
        return Item(created_webhook(hook), message)

    @get("/", summary="List webhooks (never their secrets)", responses=ADMIN_ERRORS)
    async def list_webhooks(
        self,
        webhooks: NamedDependency[WebhookStore],
        limit: Annotated[int | None, QueryParameter(ge=1, le=1000)] = None,
        offset: Annotated[int | None, QueryParameter(ge=0, le=2**62)] = None,
    ) -> Page[WebhookView]:
        limit, offset = page_params(limit, offset)
        hooks, total = await webhooks.page(limit, offset)
        items = [webhook_view(h) for h in hooks]
        return Page.cut(items, total, limit, offset, f"{total} webhooks")

    @get("/{webhook_id:str}", summary="One webhook", responses=ONE)
    async def get_webhook(
        self, webhooks: NamedDependency[WebhookStore], webhook_id: FromPath[str]
    ) -> Item[WebhookView]:
        hook = await webhooks.get(webhook_id)
        return Item(webhook_view(hook), "Webhook")

    @delete(
        "/{webhook_id:str}", status_code=200, summary="Remove a webhook and its log", responses=ONE
    )
    async def delete_webhook(
        self, webhooks: NamedDependency[WebhookStore], webhook_id: FromPath[str]
    ) -> Item[WebhookView]:
        hook = await webhooks.delete(webhook_id)
        return Item(webhook_view(hook), "Webhook deleted; its pending deliveries are dropped")

    @get(
        "/{webhook_id:str}/deliveries",
        summary="The webhook's delivery log, newest first: status, attempts, last error",
        responses=ONE,
    )
    async def list_deliveries(
        self,
        webhooks: NamedDependency[WebhookStore],
        webhook_id: FromPath[str],
        limit: Annotated[int | None, QueryParameter(ge=1, le=1000)] = None,
        offset: Annotated[int | None, QueryParameter(ge=0, le=2**62)] = None,
        status: FromQuery[Literal["pending", "delivered", "failed"] | None] = None,
    ) -> Page[DeliveryView]:
        limit, offset = page_params(limit, offset)
        await webhooks.get(webhook_id)  # 404 for an unknown webhook
        rows, total = await webhooks.deliveries(webhook_id, limit, offset, status)
        items = [delivery_view(row) for row in rows]
        return Page.cut(items, total, limit, offset, f"{total} deliveries")
