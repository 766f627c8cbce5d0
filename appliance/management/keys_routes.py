"""/v1/api-keys: list, create (the secret is shown once), read, change and revoke keys."""

from __future__ import annotations

import datetime
import time
from typing import Annotated, Any, Literal

import msgspec
from litestar import Controller, Response, delete, get, post, put
from litestar.params import FromPath, FromQuery, QueryParameter

from appliance.accounting.money import is_budget, usd
from appliance.accounting.spending import period_start
from appliance.management.envelope import (
    AnyRequest,
    ManagementError,
    decode_body,
    invalid,
    ok,
    page_params,
    paged,
    require_admin,
)
from appliance.management.key_view import key_json
from appliance.openapi_docs import body
from appliance.runtime import Runtime
from appliance.state.keys import KeyChanges, KeyDeclared, KeyNameTaken, KeyNotFound

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


def _check_tier(runtime: Runtime, tier: str | None) -> None:
    tiers = runtime.loaded.config.tiers
    if tier is not None and tier not in tiers:
        raise invalid(
            f"tier `{tier}` is not declared in radiance.yaml", field="tier", tiers=sorted(tiers)
        )


def _check_models(runtime: Runtime, models: list[str] | None) -> tuple[str, ...] | None:
    if models is None:
        return None
    unknown = [name for name in models if runtime.model_id(name) is None]
    if unknown:
        known = sorted(served.id for served in runtime.models)
        raise invalid(f"unknown models: {', '.join(unknown)}", field="models", models=known)
    return tuple(models)


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


def _not_found(key_id: str) -> ManagementError:
    return ManagementError(404, "KEY_NOT_FOUND", f"no API key `{key_id}`", {"id": key_id})


def _declared(name: str) -> ManagementError:
    return ManagementError(
        409,
        "KEY_DECLARED_IN_CONFIG",
        f"key `{name}` is declared in radiance.yaml; change or remove it there and restart",
        {"name": name},
    )


async def _this_month(runtime: Runtime) -> dict[str, dict[str, Any]]:
    """Requests and cost of every key in the current UTC month, from the hourly rollups."""
    start = period_start("month", time.time())
    async with runtime.db.reader.execute(
        "SELECT key_id, SUM(requests), SUM(cost_pusd) FROM usage_hourly "
        "WHERE hour >= ? GROUP BY key_id",
        (start,),
    ) as cursor:
        rows = await cursor.fetchall()
    return {row[0]: {"requests": row[1], "cost": usd(row[2])} for row in rows}


async def _last_used(runtime: Runtime, key_id: str) -> float | None:
    async with runtime.db.reader.execute(
        "SELECT MAX(started_at) FROM requests WHERE key_id = ?", (key_id,)
    ) as cursor:
        row = await cursor.fetchone()
    return None if row is None else row[0]


class ApiKeysController(Controller):
    path = "/api-keys"
    tags = ["keys"]  # noqa: RUF012 (Litestar reads it as a class attribute)
    opt = {"envelope": "management"}  # noqa: RUF012

    @get("/", summary="List API keys (config and API keys, active and revoked); no secrets")
    async def list_keys(
        self,
        request: AnyRequest,
        limit: Annotated[int | None, QueryParameter(ge=1, le=1000)] = None,
        offset: Annotated[int | None, QueryParameter(ge=0, le=2**62)] = None,
        status: FromQuery[Literal["active", "revoked", "expired"] | None] = None,
    ) -> Response[bytes]:
        require_admin(request)
        runtime = Runtime.of(request)
        limit, offset = page_params(limit, offset)
        now = time.time()
        keys = [k for k in await runtime.keys.all() if status is None or k.status(now) == status]
        window = keys[offset : offset + limit]
        month = await _this_month(runtime)
        empty = {"requests": 0, "cost": usd(0)}
        items = [
            {**key_json(k, await _last_used(runtime, k.id)), "this_month": month.get(k.id, empty)}
            for k in window
        ]
        return paged(items, len(keys), limit, offset, f"{len(keys)} API keys")

    @post(
        "/",
        status_code=201,
        summary="Create an API key; the secret is in data.key, once",
        operation_class=body(CreateKeyBody),
    )
    async def create_key(self, request: AnyRequest) -> Response[bytes]:
        require_admin(request)
        runtime = Runtime.of(request)
        body = decode_body(await request.body(), CreateKeyBody)
        _check_tier(runtime, body.tier)
        models = _check_models(runtime, body.models)
        _check_budget(body.budget)
        try:
            key, secret = await runtime.keys.create(
                body.name,
                tier=body.tier,
                models=models,
                budget_usd=body.budget.usd if body.budget else None,
                budget_period=body.budget.period if body.budget else None,
                expires_at=_expiry(body.expires_at),
            )
        except KeyNameTaken:
            raise ManagementError(
                409, "KEY_NAME_TAKEN", f"a key named `{body.name}` exists", {"name": body.name}
            ) from None
        await runtime.events.publish("key.created", {"key": key_json(key)})
        data = {**key_json(key), "key": secret}
        return ok(data, "API key created; store the key now, it is not shown again", 201)

    @get("/{key_id:str}", summary="One API key by id or name")
    async def get_key(self, request: AnyRequest, key_id: FromPath[str]) -> Response[bytes]:
        require_admin(request)
        runtime = Runtime.of(request)
        try:
            key = await runtime.keys.get(key_id)
        except KeyNotFound:
            raise _not_found(key_id) from None
        return ok(key_json(key, await _last_used(runtime, key.id)), "API key")

    @put(
        "/{key_id:str}",
        summary="Change a key's tier, allow-list, budget or expiry",
        operation_class=body(UpdateKeyBody),
    )
    async def update_key(self, request: AnyRequest, key_id: FromPath[str]) -> Response[bytes]:
        require_admin(request)
        runtime = Runtime.of(request)
        body = decode_body(await request.body(), UpdateKeyBody)
        cleared = frozenset(
            name for name in ("tier", "models", "expires_at") if getattr(body, name) is None
        ) | (frozenset({"budget_usd"}) if body.budget is None else frozenset())
        tier = body.tier if isinstance(body.tier, str) else None
        _check_tier(runtime, tier)
        models = _check_models(runtime, body.models if isinstance(body.models, list) else None)
        budget = body.budget if isinstance(body.budget, BudgetBody) else None
        _check_budget(budget)
        expires = body.expires_at if isinstance(body.expires_at, datetime.datetime) else None
        changes = KeyChanges(
            tier=tier,
            models=models,
            budget_usd=budget.usd if budget else None,
            budget_period=budget.period if budget else None,
            expires_at=_expiry(expires),
            cleared=cleared,
        )
        try:
            key = await runtime.keys.update(key_id, changes)
        except KeyNotFound:
            raise _not_found(key_id) from None
        except KeyDeclared as exc:
            raise _declared(str(exc)) from None
        return ok(key_json(key, await _last_used(runtime, key.id)), "API key updated")

    @delete("/{key_id:str}", status_code=200, summary="Revoke a key at once")
    async def revoke_key(self, request: AnyRequest, key_id: FromPath[str]) -> Response[bytes]:
        require_admin(request)
        runtime = Runtime.of(request)
        try:
            was_active = (await runtime.keys.get(key_id)).revoked_at is None
            key = await runtime.keys.revoke(key_id)
        except KeyNotFound:
            raise _not_found(key_id) from None
        except KeyDeclared as exc:
            raise _declared(str(exc)) from None
        if was_active:
            await runtime.events.publish("key.revoked", {"key": key_json(key)})
        return ok(key_json(key), "API key revoked")
