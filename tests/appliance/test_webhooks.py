"""Webhooks through the app (AsyncTestClient) with real receivers on loopback ports."""

from __future__ import annotations

import asyncio
import pathlib
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fake_engine import ScriptedEngine
from litestar.testing import AsyncTestClient
from webhook_receiver import Receiver, serve_receiver

from appliance.app import create_app
from appliance.config import parse_config_text
from appliance.registry import ModelRegistry, ServedModel
from appliance.webhooks.signing import signature_header, verify
from backends.base import EngineError

ADMIN = "unit-admin-key-0123"
USER = "sk-unit-test-key-1"
CONFIG = f"""
server: {{database: state.db, admin_key: {ADMIN}}}
backends: {{cpu: {{engine: llamacpp}}}}
models:
  - {{id: scripted, backend: cpu, source: fake.gguf}}
  - {{id: broken, backend: cpu, source: fake.gguf}}
keys:
  - {{name: unit, secret: {USER}}}
"""
AS_ADMIN = {"Authorization": f"Bearer {ADMIN}"}


class BrokenEngine(ScriptedEngine):
    def __init__(self) -> None:
        super().__init__([])
        self.error: str | None = None

    async def start(self) -> None:
        self.error = "the file is not a model"
        raise EngineError(f"cannot load fake.gguf: {self.error}")


def client_for(folder: pathlib.Path, extra: str = "", broken: bool = False) -> AsyncTestClient:  # type: ignore[type-arg]
    (folder / "fake.gguf").write_bytes(b"GGUF")
    loaded = parse_config_text(CONFIG + extra, "radiance.yaml", folder, {})
    second: ScriptedEngine = BrokenEngine() if broken else ScriptedEngine(["ok"])
    registry = ModelRegistry(
        [
            ServedModel(loaded.config.models[0], "cpu", ScriptedEngine(["hi"])),
            ServedModel(loaded.config.models[1], "cpu", second),
        ]
    )
    return AsyncTestClient(app=create_app(loaded, registry=registry))


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with serve_receiver(Receiver()) as running:
        yield running


async def eventually(check: Callable[[], Any], within: float = 30) -> Any:
    """Poll `check` (sync or async) until it returns something truthy, or fail."""
    deadline = time.monotonic() + within
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        assert time.monotonic() < deadline, "timed out waiting"
        await asyncio.sleep(0.05)


async def register(client: AsyncTestClient, url: str, events: list[str]) -> dict[str, Any]:  # type: ignore[type-arg]
    reply = await client.post("/v1/webhooks", json={"url": url, "events": events}, headers=AS_ADMIN)
    assert reply.status_code == 201, reply.text
    data: dict[str, Any] = reply.json()["data"]
    return data


async def deliveries(client: AsyncTestClient, hook_id: str) -> list[dict[str, Any]]:  # type: ignore[type-arg]
    reply = await client.get(f"/v1/webhooks/{hook_id}/deliveries", headers=AS_ADMIN)
    assert reply.status_code == 200, reply.text
    items: list[dict[str, Any]] = reply.json()["data"]
    return items


async def test_webhook_endpoints_are_admin_only_and_check_their_input(
    tmp_path: pathlib.Path,
) -> None:
    async with client_for(tmp_path) as client:
        body = {"url": "http://127.0.0.1:9/hook", "events": ["key.created"]}
        assert (await client.post("/v1/webhooks", json=body)).status_code == 401
        user = {"Authorization": f"Bearer {USER}"}
        refused = await client.post("/v1/webhooks", json=body, headers=user)
        assert refused.status_code == 403 and refused.json()["code"] == "FORBIDDEN"
        assert (await client.get("/v1/webhooks", headers=user)).status_code == 403
        bad_url = await client.post(
            "/v1/webhooks", json={**body, "url": "ftp://x/y"}, headers=AS_ADMIN
        )
        assert bad_url.status_code == 400 and bad_url.json()["details"]["field"] == "url"
        bad_event = await client.post(
            "/v1/webhooks", json={**body, "events": ["key.made"]}, headers=AS_ADMIN
        )
        assert bad_event.status_code == 400
        assert "key.created" in bad_event.json()["details"]["known"]
        made = await register(client, body["url"], ["key.created", "model.failed"])  # type: ignore[arg-type]
        assert made["secret"].startswith("whsec_") and made["events"] == [
            "key.created",
            "model.failed",
        ]
        listed = (await client.get("/v1/webhooks", headers=AS_ADMIN)).json()
        assert listed["pagination"]["total"] == 1 and "secret" not in listed["data"][0]
        one = await client.get(f"/v1/webhooks/{made['id']}", headers=AS_ADMIN)
        assert one.json()["data"]["url"] == body["url"] and "secret" not in one.json()["data"]
        assert await deliveries(client, made["id"]) == []
        user_log = await client.get(f"/v1/webhooks/{made['id']}/deliveries", headers=user)
        assert user_log.status_code == 403
        gone = await client.delete(f"/v1/webhooks/{made['id']}", headers=AS_ADMIN)
        assert gone.status_code == 200
        missing = await client.get(f"/v1/webhooks/{made['id']}", headers=AS_ADMIN)
        assert missing.status_code == 404 and missing.json()["code"] == "WEBHOOK_NOT_FOUND"


async def test_key_events_are_signed_and_delivered(
    tmp_path: pathlib.Path, receiver: Receiver
) -> None:
    async with client_for(tmp_path) as client:
        hook = await register(client, receiver.url, ["key.created", "key.revoked"])
        made = await client.post("/v1/api-keys", json={"name": "carol"}, headers=AS_ADMIN)
        key_id = made.json()["data"]["id"]
        (created,) = await eventually(lambda: receiver.of_type("key.created"))
        assert created.signed_by(hook["secret"])
        assert not created.signed_by("whsec_someone-else")
        event = created.event
        assert event["data"]["key"]["name"] == "carol" and "key" not in event["data"]["key"]
        assert created.headers["x-radiance-event-id"] == event["id"]
        assert created.headers["x-radiance-event"] == "key.created"
        await client.delete(f"/v1/api-keys/{key_id}", headers=AS_ADMIN)
        (revoked,) = await eventually(lambda: receiver.of_type("key.revoked"))
        assert revoked.signed_by(hook["secret"]) and revoked.event["data"]["key"]["id"] == key_id
        log = await eventually(lambda: _settled(client, hook["id"], 2))
        assert {(d["event"], d["status"], d["attempts"]) for d in log} == {
            ("key.created", "delivered", 1),
            ("key.revoked", "delivered", 1),
        }
        assert all(d["last_status"] == 200 and d["payload"]["type"] == d["event"] for d in log)


async def _settled(client: AsyncTestClient, hook_id: str, count: int) -> list[dict[str, Any]]:  # type: ignore[type-arg]
    """The delivery log once it holds `count` deliveries, none of them pending."""
    log = await deliveries(client, hook_id)
    done = len(log) == count and all(d["status"] != "pending" for d in log)
    return log if done else []


async def test_a_receiver_that_fails_twice_gets_the_third_attempt(
    tmp_path: pathlib.Path, receiver: Receiver
) -> None:
    receiver.fail_first = 2
    async with client_for(tmp_path) as client:
        hook = await register(client, receiver.url, ["key.created"])
        await client.post("/v1/api-keys", json={"name": "dave"}, headers=AS_ADMIN)
        (delivery,) = await eventually(lambda: _settled(client, hook["id"], 1))
    assert delivery["status"] == "delivered" and delivery["attempts"] == 3
    assert delivery["last_status"] == 200 and delivery["last_error"] is None
    assert len(receiver.received) == 3
    assert len({r.headers["x-radiance-event-id"] for r in receiver.received}) == 1
    assert all(r.signed_by(hook["secret"]) for r in receiver.received)


async def test_a_delivery_that_keeps_failing_is_given_up(
    tmp_path: pathlib.Path, receiver: Receiver
) -> None:
    receiver.down = True
    async with client_for(tmp_path, "webhooks: {retry_for_seconds: 2}\n") as client:
        hook = await register(client, receiver.url, ["key.created"])
        await client.post("/v1/api-keys", json={"name": "erin"}, headers=AS_ADMIN)
        (delivery,) = await eventually(lambda: _settled(client, hook["id"], 1))
    assert delivery["status"] == "failed" and delivery["attempts"] >= 2
    assert delivery["last_status"] == 503 and delivery["last_error"] == "HTTP 503"


async def test_a_queued_delivery_is_sent_after_a_restart(
    tmp_path: pathlib.Path, receiver: Receiver
) -> None:
    receiver.down = True
    async with client_for(tmp_path) as client:
        hook = await register(client, receiver.url, ["key.created"])
        await client.post("/v1/api-keys", json={"name": "frank"}, headers=AS_ADMIN)
        await eventually(lambda: receiver.received)
        (pending,) = await deliveries(client, hook["id"])
    assert pending["status"] == "pending" and pending["attempts"] >= 1
    receiver.down = False
    async with client_for(tmp_path) as client:
        (delivery,) = await eventually(lambda: _settled(client, hook["id"], 1))
    assert delivery["status"] == "delivered" and delivery["id"] == pending["id"]
    assert receiver.received[-1].event["data"]["key"]["name"] == "frank"


async def test_a_model_that_cannot_load_is_reported_and_the_others_serve(
    tmp_path: pathlib.Path, receiver: Receiver
) -> None:
    async with client_for(tmp_path) as client:
        await register(client, receiver.url, ["model.failed"])
    async with client_for(tmp_path, broken=True) as client:
        (failed,) = await eventually(lambda: receiver.of_type("model.failed"))
        assert failed.event["data"]["model"] == "broken"
        assert "not a model" in failed.event["data"]["error"]
        user = {"Authorization": f"Bearer {USER}"}
        chat = {"messages": [{"role": "user", "content": "x"}], "max_tokens": 2}
        served = await client.post(
            "/v1/chat/completions", json={**chat, "model": "scripted"}, headers=user
        )
        assert served.status_code == 200
        refused = await client.post(
            "/v1/chat/completions", json={**chat, "model": "broken"}, headers=user
        )
        assert refused.status_code == 503
        assert refused.json()["error"]["code"] == "model_unavailable"


def test_signatures_verify_only_for_the_same_secret_body_and_a_recent_time() -> None:
    body = b'{"type":"key.created"}'
    header = signature_header("whsec_a", 1_700_000_000, body)
    assert verify("whsec_a", header, body, now=1_700_000_100)
    assert not verify("whsec_b", header, body, now=1_700_000_100)
    assert not verify("whsec_a", header, body + b" ", now=1_700_000_100)
    assert not verify("whsec_a", header, body, now=1_700_000_000 + 301)
    assert not verify("whsec_a", "v1=abc", body, now=1_700_000_000)


async def test_a_receiver_with_a_bad_url_fails_alone_and_the_others_are_delivered(
    tmp_path: pathlib.Path, receiver: Receiver
) -> None:
    async with client_for(tmp_path) as client:
        refused = await client.post(
            "/v1/webhooks",
            json={"url": "http://127.0.0.1:abc/", "events": ["key.created"]},
            headers=AS_ADMIN,
        )
        assert refused.status_code == 400, refused.text
        assert "url" in refused.text
        # One stored before the API checked ports (or by hand): the sender meets it.
        webhooks = client.app.state.runtime.webhooks
        bad = await webhooks.create("http://127.0.0.1:abc/", ["key.created"], "broken")
        good = await register(client, receiver.url, ["key.created"])
        for name in ("frank", "grace"):
            await client.post("/v1/api-keys", json={"name": name}, headers=AS_ADMIN)
        delivered = await eventually(lambda: _settled(client, good["id"], 2))
        failed = await eventually(lambda: _settled(client, bad.id, 2))
    assert {d["status"] for d in delivered} == {"delivered"}
    assert len(receiver.of_type("key.created")) == 2
    assert {d["status"] for d in failed} == {"failed"}
    assert all("InvalidURL" in d["last_error"] and d["attempts"] == 1 for d in failed)
