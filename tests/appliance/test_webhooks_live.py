"""Webhooks of a real `radiance up` process: events from the CLI and from spending."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openai
import pytest
from conftest import ADMIN, ALICE, RunningServer
from test_cli import radiance
from webhook_receiver import Received, Receiver, serve_receiver

AS_ADMIN = {"Authorization": f"Bearer {ADMIN}"}


def eventually(check: Callable[[], Any], within: float = 30) -> Any:
    deadline = time.monotonic() + within
    while not (result := check()):
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)
    return result


@pytest.fixture
def hooked(server: RunningServer) -> Iterator[tuple[Receiver, dict[str, Any]]]:
    """A receiver registered for every event on the shared server; removed afterwards."""
    with serve_receiver(Receiver()) as receiver:
        events = ["key.created", "key.revoked", "budget.threshold_reached"]
        reply = httpx.post(
            f"{server.base_url}/webhooks",
            json={"url": receiver.url, "events": events, "description": "test"},
            headers=AS_ADMIN,
        )
        assert reply.status_code == 201, reply.text
        hook = reply.json()["data"]
        try:
            yield receiver, hook
        finally:
            httpx.delete(f"{server.base_url}/webhooks/{hook['id']}", headers=AS_ADMIN)


def named(receiver: Receiver, event: str, name: str) -> list[Received]:
    return [r for r in receiver.of_type(event) if r.event["data"]["key"]["name"] == name]


def test_a_key_made_with_the_cli_is_announced_by_the_running_server(
    server: RunningServer, hooked: tuple[Receiver, dict[str, Any]]
) -> None:
    receiver, hook = hooked
    config = str(server.folder / "radiance.yaml")
    env = {"RADIANCE_ADMIN_KEY": ADMIN, "ALICE_KEY": ALICE}
    made = radiance("keys", "create", "--config", config, "--name", "cli-hook", env=env)
    assert made.returncode == 0, made.stderr
    (created,) = eventually(lambda: named(receiver, "key.created", "cli-hook"))
    assert created.signed_by(hook["secret"])
    revoked = radiance("keys", "revoke", "cli-hook", "--config", config, env=env)
    assert revoked.returncode == 0, revoked.stderr
    (gone,) = eventually(lambda: named(receiver, "key.revoked", "cli-hook"))
    assert gone.event["data"]["key"]["status"] == "revoked"


def test_budget_thresholds_are_announced_once_each(
    server: RunningServer, hooked: tuple[Receiver, dict[str, Any]]
) -> None:
    receiver, hook = hooked
    made = httpx.post(
        f"{server.base_url}/api-keys",
        json={"name": "thrifty", "budget": {"usd": "0.00001", "period": "day"}},
        headers=AS_ADMIN,
    ).json()["data"]
    client = openai.OpenAI(base_url=server.base_url, api_key=made["key"], max_retries=0)
    refusal: openai.RateLimitError | None = None
    # Each request may cost about a third of the budget, then as little as one token can:
    # the budget is a hard cap, so the last refusal is what is left not paying for one.
    for max_tokens in (5, 1):
        refusal = None
        for _ in range(40):
            try:
                client.chat.completions.create(
                    model="tiny",
                    messages=[{"role": "user", "content": "hi"}],
                    max_tokens=max_tokens,
                )
            except openai.RateLimitError as exc:
                refusal = exc
                break
        assert refusal is not None and refusal.code == "insufficient_quota"
    alerts = eventually(lambda: len(named(receiver, "budget.threshold_reached", "thrifty")) >= 2)
    assert alerts

    def settled() -> bool:
        log = httpx.get(
            f"{server.base_url}/webhooks/{hook['id']}/deliveries",
            params={"status": "pending"},
            headers=AS_ADMIN,
        ).json()
        return bool(log["pagination"]["total"] == 0)

    eventually(settled)
    events = [r.event for r in named(receiver, "budget.threshold_reached", "thrifty")]
    assert sorted(e["data"]["threshold_percent"] for e in events) == [80, 100]
    assert all(e["data"]["budget_usd"] == "0.00001" for e in events)
    assert all(r.signed_by(hook["secret"]) for r in receiver.received)
    with sqlite3.connect(server.database) as db:
        stored = db.execute(
            "SELECT threshold FROM budget_alerts WHERE key_id = ? ORDER BY threshold",
            (made["id"],),
        ).fetchall()
    assert stored == [(80,), (100,)]
