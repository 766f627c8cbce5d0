"""How the HTTP layer is put together: the admin guard, and one envelope per API for the
errors both APIs share (a bad key, Litestar's own checks, a body that does not decode)."""

from __future__ import annotations

import pathlib
from collections.abc import AsyncIterator

import pytest
from litestar.routes import HTTPRoute
from litestar.testing import AsyncTestClient
from test_webhooks import ADMIN, USER, client_for

from appliance.dependencies import admin_only, metrics_reader

ADMIN_ONLY = (
    "/v1/api-keys",
    "/v1/analytics",
    "/v1/billing",
    "/v1/webhooks",
    "/v1/tiers",
    "/v1/deployments",
)


@pytest.fixture
async def client(tmp_path: pathlib.Path) -> AsyncIterator[AsyncTestClient]:  # type: ignore[type-arg]
    async with client_for(tmp_path) as client:
        yield client


def test_the_admin_guard_covers_exactly_the_admin_routes(tmp_path: pathlib.Path) -> None:
    seen = set()
    for route in client_for(tmp_path).app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        for handler in route.route_handlers:
            if handler.http_methods == {"OPTIONS"}:
                continue  # Litestar's own, answered by every route
            guards = [guard.func for guard in handler.resolve_guards()]  # type: ignore[attr-defined]
            admin = route.path.startswith(ADMIN_ONLY)
            assert (admin_only in guards) == admin, route.path
            assert (metrics_reader in guards) == (route.path == "/metrics"), route.path
            seen.add(route.path.split("/")[2] if admin else route.path)
    assert {"api-keys", "analytics", "billing", "webhooks", "tiers", "deployments"} <= seen
    assert {"/v1/usage", "/v1/chat/completions", "/chat/completions", "/metrics"} <= seen


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def test_a_bad_key_in_each_apis_envelope(client: AsyncTestClient) -> None:  # type: ignore[type-arg]
    openai = await client.get("/v1/models", headers=auth("sk-wrong-key-123"))
    assert openai.status_code == 401 and openai.json()["error"]["code"] == "invalid_api_key"
    for path in ("/v1/usage", "/v1/api-keys"):
        management = await client.get(path, headers=auth("sk-wrong-key-123"))
        assert management.status_code == 401 and management.json()["code"] == "UNAUTHORIZED"
    user = await client.get("/v1/api-keys", headers=auth(USER))
    assert user.status_code == 403 and user.json()["code"] == "FORBIDDEN"
    metrics = await client.get("/metrics", headers=auth(USER))
    assert metrics.status_code == 401 and metrics.json()["error"]["code"] == "invalid_api_key"
    allowed = await client.options("/v1/api-keys")
    assert allowed.status_code == 204 and "POST" in allowed.headers["allow"]


async def test_litestars_own_checks_in_each_apis_envelope(client: AsyncTestClient) -> None:  # type: ignore[type-arg]
    bad_limit = await client.get("/v1/api-keys", params={"limit": "lots"}, headers=auth(ADMIN))
    assert bad_limit.status_code == 400 and bad_limit.json()["code"] == "VALIDATION_ERROR"
    no_route = await client.get("/v1/nowhere", headers=auth(ADMIN))
    assert no_route.status_code == 404 and no_route.json()["error"]["code"] == "not_found"


async def test_a_management_body_that_does_not_decode_names_its_field(
    client: AsyncTestClient,  # type: ignore[type-arg]
) -> None:
    reply = await client.post("/v1/api-keys", json={"name": 5}, headers=auth(ADMIN))
    assert reply.status_code == 400
    assert reply.json()["code"] == "VALIDATION_ERROR"
    assert reply.json()["details"] == {"field": "name"}
    empty = await client.post("/v1/webhooks", content=b"", headers=auth(ADMIN))
    assert empty.status_code == 400 and empty.json()["code"] == "VALIDATION_ERROR"


async def test_domain_errors_map_to_the_management_envelope(client: AsyncTestClient) -> None:  # type: ignore[type-arg]
    for path, code in (
        ("/v1/api-keys/key_nope", "KEY_NOT_FOUND"),
        ("/v1/webhooks/wh_nope", "WEBHOOK_NOT_FOUND"),
        ("/v1/deployments/nope", "DEPLOYMENT_NOT_FOUND"),
    ):
        reply = await client.get(path, headers=auth(ADMIN))
        assert reply.status_code == 404, path
        assert reply.json() == {
            "error": reply.json()["error"],
            "code": code,
            "details": {"id": path.rsplit("/", 1)[1]},
        }
