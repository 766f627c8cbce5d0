"""/v1/api-keys: list, create (the secret is shown once), read, change and revoke keys."""

from __future__ import annotations

import datetime
import time
from typing import Annotated, Any, Literal

import aiosqlite
import msgspec
from litestar import Controller, Request, delete, get, post, put
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, QueryParameter

from appliance.accounting.money import is_budget, usd
from appliance.accounting.spending import period_start
from appliance.config import Config
from appliance.management.errors import invalid
from appliance.management.key_view import key_json, key_view
from appliance.management.typed_envelope import (
    ADMIN_ERRORS,
    KEY_CONFLICT,
    KEY_NOT_FOUND,
    Item,
    Page,
)
from appliance.management.wire import ApiKeyView, CreatedKey, KeyInfo, ThisMonth
from appliance.openai.decoding import decode_body
from appliance.openapi_docs import body
from appliance.registry import ModelRegistry
from appliance.runtime import model_id
from appliance.state.key_usage import KeyTotals, last_used, totals_since
from appliance.state.keys import KeyChanges, KeyStore
from appliance.webhooks.events import EventBus

KeyName = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$")]


class BudgetBody(msgspec.Struct, forbid_unknown_fields=True):
    usd: str
    period: Literal["day", "month"] = "month"


class CreateKeyBody(msgspec.Struct, forbid_unknown_fields=True):
    name: KeyName
    tier: str | None = None
    models: list[str] | None = None
    budget: BudgetBody | None = None
    expires_at: datetime.datetime | None = None


class UpdateKeyBody(msgspec.Struct, forbid_unknown_fields=True):
    """Fields to change; `null` clears a field, a missing field is left alone."""

    tier: str | msgspec.UnsetType | None = msgspec.UNSET
    models: list[str] | msgspec.UnsetType | None = msgspec.UNSET
    budget: BudgetBody | msgspec.UnsetType | None = msgspec.UNSET
    expires_at: datetime.datetime | msgspec.UnsetType | None = msgspec.UNSET


def _check_tier(config: Config, tier: str | None) -> None:
    if tier is not None and tier not in config.tiers:
        raise invalid(
            f"tier `{tier}` is not declared in radiance.yaml",
            field="tier",
            tiers=sorted(config.tiers),
        )


def _check_models(models: ModelRegistry, names: list[str] | None) -> tuple[str, ...] | None:
    if names is None:
        return None
    unknown = [name for name in names if model_id(models, name) is None]
    if unknown:
        known = sorted(served.id for served in models)
        raise invalid(f"unknown models: {', '.join(unknown)}", field="models", models=known)
    return tuple(names)


def _check_budget(budget: BudgetBody | None) -> None:
    if budget is not None and not is_budget(budget.usd):
        raise invalid(
            "budget.usd must be a positive decimal string with at most six decimals",
            field="budget.usd",
        )


def _expiry(moment: datetime.datetime | None) -> float | None:
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    if moment.timestamp() <= time.time():
        raise invalid("expires_at is in the past", field="expires_at")
    return moment.timestamp()


class ApiKeysController(Controller):
    path = "/api-keys"
    tags = ["keys"]  # noqa: RUF012 (Litestar reads it as a class attribute)

    @get(
        "/",
        summary="List API keys (config and API keys, active and revoked); no secrets",
        responses=ADMIN_ERRORS,
    )
    async def list_keys(
        self,
        keys: NamedDependency[KeyStore],
        reader: NamedDependency[aiosqlite.Connection],
        limit: Annotated[int | None, QueryParameter(ge=1, le=1000)] = None,
        offset: Annotated[int | None, QueryParameter(ge=0, le=2**62)] = None,
        status: FromQuery[Literal["active", "revoked", "expired"] | None] = None,
    ) -> Page[KeyInfo]:
        now = time.time()
        found = [k for k in await keys.all() if status is None or k.status(now) == status]
        page = Page.of(found, limit, offset, f"{len(found)} API keys")
        month = await totals_since(reader, period_start("month", now))
        items = []
        for key in page.data:
            spent = month.get(key.id, KeyTotals())
            shown = key_view(key, await last_used(reader, key.id))
            this_month = ThisMonth(requests=spent.requests, cost=usd(spent.cost_pusd))
            items.append(KeyInfo(**msgspec.structs.asdict(shown), this_month=this_month))
        return Page(items, page.message, page.pagination)

    @post(
        "/",
        status_code=201,
        summary="Create an API key; the secret is in data.key, once",
        operation_class=body(CreateKeyBody),
        responses={**ADMIN_ERRORS, 409: KEY_CONFLICT},
    )
    async def create_key(
        self,
        request: Request[Any, Any, Any],
        keys: NamedDependency[KeyStore],
        config: NamedDependency[Config],
        models: NamedDependency[ModelRegistry],
        events: NamedDependency[EventBus],
    ) -> Item[CreatedKey]:
        body = decode_body(await request.body(), CreateKeyBody)
        _check_tier(config, body.tier)
        allowed = _check_models(models, body.models)
        _check_budget(body.budget)
        key, secret = await keys.create(
            body.name,
            tier=body.tier,
            models=allowed,
            budget_usd=body.budget.usd if body.budget else None,
            budget_period=body.budget.period if body.budget else None,
            expires_at=_expiry(body.expires_at),
        )
        await events.publish("key.created", {"key": key_json(key)})
        data = CreatedKey(**msgspec.structs.asdict(key_view(key)), key=secret)
        return Item(data, "API key created; store the key now, it is not shown again")

    @get(
        "/{key_id:str}",
        summary="One API key by id or name",
        responses={**ADMIN_ERRORS, 404: KEY_NOT_FOUND},
    )
    async def get_key(
        self,
        keys: NamedDependency[KeyStore],
        reader: NamedDependency[aiosqlite.Connection],
        key_id: FromPath[str],
    ) -> Item[ApiKeyView]:
        key = await keys.get(key_id)
        return Item(key_view(key, await last_used(reader, key.id)), "API key")

    @put(
        "/{key_id:str}",
        summary="Change a key's tier, allow-list, budget or expiry",
        operation_class=body(UpdateKeyBody),
        responses={**ADMIN_ERRORS, 404: KEY_NOT_FOUND, 409: KEY_CONFLICT},
    )
    async def update_key(
        self,
        request: Request[Any, Any, Any],
        keys: NamedDependency[KeyStore],
        reader: NamedDependency[aiosqlite.Connection],
        config: NamedDependency[Config],
        models: NamedDependency[ModelRegistry],
        key_id: FromPath[str],
    ) -> Item[ApiKeyView]:
        body = decode_body(await request.body(), UpdateKeyBody)
        cleared = frozenset(
            name for name in ("tier", "models", "expires_at") if getattr(body, name) is None
        ) | (frozenset({"budget_usd"}) if body.budget is None else frozenset())
        tier = body.tier if isinstance(body.tier, str) else None
        _check_tier(config, tier)
        allowed = _check_models(models, body.models if isinstance(body.models, list) else None)
        budget = body.budget if isinstance(body.budget, BudgetBody) else None
        _check_budget(budget)
        expires = body.expires_at if isinstance(body.expires_at, datetime.datetime) else None
        changes = KeyChanges(
            tier=tier,
            models=allowed,
            budget_usd=budget.usd if budget else None,
            budget_period=budget.period if budget else None,
            expires_at=_expiry(expires),
            cleared=cleared,
        )
        key = await keys.update(key_id, changes)
        return Item(key_view(key, await last_used(reader, key.id)), "API key updated")

    @delete(
        "/{key_id:str}",
        status_code=200,
        summary="Revoke a key at once",
        responses={**ADMIN_ERRORS, 404: KEY_NOT_FOUND, 409: KEY_CONFLICT},
    )
    async def revoke_key(
        self,
        keys: NamedDependency[KeyStore],
        events: NamedDependency[EventBus],
        key_id: FromPath[str],
    ) -> Item[ApiKeyView]:
        was_active = (await keys.get(key_id)).revoked_at is None
        key = await keys.revoke(key_id)
        if was_active:
            await events.publish("key.revoked", {"key": key_json(key)})
        return Item(key_view(key), "API key revoked")
