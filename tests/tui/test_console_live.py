"""The console driven through Pilot against a real `radiance up`: keys made and revoked and
deployments scaled and deleted in the UI are checked through the API; a wrong key or a
lost server shows a banner, not a crash."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import httpx
from conftest import ADMIN, ALICE, RunningServer
from fake_api import FakeApi
from textual.pilot import Pilot
from textual.widgets import DataTable, OptionList

from tui.app import ConsoleApp
from tui.client import RadianceClient
from tui.dialogs import ConfirmDialog, CreateKeyDialog, SecretDialog, TierDialog
from tui.widgets import Banner

AS_ADMIN = {"Authorization": f"Bearer {ADMIN}"}


WAIT = 15.0


async def until(pilot: Pilot[None], check: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT
    while not check():
        assert time.monotonic() < deadline, "the console did not get there in time"
        await pilot.pause(0.05)


async def key_named(server: RunningServer, name: str) -> dict[str, object]:
    async with httpx.AsyncClient(headers=AS_ADMIN, timeout=30) as http:
        listed = (await http.get(f"{server.base_url}/api-keys")).json()["data"]
    found: dict[str, object] = next(key for key in listed if key["name"] == name)
    return found


async def chat(server: RunningServer, secret: str) -> int:
    async with httpx.AsyncClient(timeout=60) as http:
        reply = await http.post(
            f"{server.base_url}/chat/completions",
            headers={"Authorization": f"Bearer {secret}"},
            json={
                "model": "tiny",
                "messages": [{"role": "user", "content": "hi"}],
                "max_tokens": 2,
            },
        )
    return reply.status_code


async def test_create_change_and_revoke_a_key_in_the_console(
    launch: Callable[..., RunningServer],
) -> None:
    server = launch()
    app = ConsoleApp(RadianceClient(server.root_url, ADMIN), poll_seconds=0.25)
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: app.state.live is not None)
        models = app.screen.query_one("#models", DataTable)
        await until(pilot, lambda: models.row_count == 3)
        await pilot.press("k")
        await until(pilot, lambda: app.state.keys is not None)
        await pilot.press("n")
        await until(pilot, lambda: isinstance(app.screen, CreateKeyDialog))
        await pilot.press(*"from-console", "tab", "enter", "down", "enter")
        await pilot.click("#create")
        await until(pilot, lambda: isinstance(app.screen, SecretDialog))
        dialog = app.screen
        assert isinstance(dialog, SecretDialog)
        secret = dialog.secret
        await pilot.press("c")
        assert app.clipboard == secret
        made = await key_named(server, "from-console")
        assert made["tier"] == "free" and made["status"] == "active"
        assert await chat(server, secret) == 200
        await pilot.press("escape")

        keys = app.screen.query_one("#keys", DataTable)
        await until(pilot, lambda: str(made["id"]) in {str(k.value) for k in keys.rows})
        keys.move_cursor(row=keys.get_row_index(str(made["id"])))
        await pilot.press("t")
        await until(pilot, lambda: isinstance(app.screen, TierDialog))
        app.screen.query_one(OptionList).highlighted = 0  # (no tier)
        await pilot.press("enter")
        await until(pilot, lambda: not isinstance(app.screen, TierDialog))
        await until(
            pilot, lambda: app.state.keys is not None and _tier(app, "from-console") is None
        )
        assert (await key_named(server, "from-console"))["tier"] is None

        await pilot.press("x")
        await until(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        await pilot.press("y")
        await until(pilot, lambda: _status(app, "from-console") == "revoked")
        assert (await key_named(server, "from-console"))["status"] == "revoked"
        assert await chat(server, secret) == 401

        # A key declared in radiance.yaml cannot be revoked here; the server says why.
        alice = await key_named(server, "alice")
        keys.move_cursor(row=keys.get_row_index(str(alice["id"])))
        await pilot.press("x", "y")
        await until(pilot, lambda: any("radiance.yaml" in n.message for n in app._notifications))
        assert (await key_named(server, "alice"))["status"] == "active"
        assert not app.query(Banner).first().display


async def deployment(server: RunningServer, deployment_id: str) -> httpx.Response:
    async with httpx.AsyncClient(headers=AS_ADMIN, timeout=30) as http:
        return await http.get(f"{server.base_url}/deployments/{deployment_id}")


async def until_served(check: Callable[[], Awaitable[bool]]) -> None:
    """Wait for the server to get there: a deployment's replicas come up in the background."""
    deadline = time.monotonic() + WAIT
    while not await check():
        assert time.monotonic() < deadline, "the server did not get there in time"
        await asyncio.sleep(0.1)


async def test_scale_and_delete_a_deployment_in_the_console(
    launch: Callable[..., RunningServer],
) -> None:
    server = launch()
    async with httpx.AsyncClient(headers=AS_ADMIN, timeout=30) as http:
        made = await http.post(
            f"{server.base_url}/deployments",
            json={"modelId": "tiny", "name": "tiny-two", "configuration": {"replicas": 1}},
        )
    assert made.status_code == 202, made.text

    async def ready_replicas(count: int) -> bool:
        data = (await deployment(server, "tiny-two")).json()["data"]
        return bool(data["status"] == "ready" and data["readyReplicas"] == count)

    await until_served(lambda: ready_replicas(1))
    app = ConsoleApp(RadianceClient(server.root_url, ADMIN), poll_seconds=0.25)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("m")
        table = app.screen.query_one("#deployments", DataTable)
        await until(pilot, lambda: "tiny-two" in {str(key.value) for key in table.rows})
        table.move_cursor(row=table.get_row_index("tiny-two"))
        await pilot.press("plus")
        await until(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        await pilot.press("y")
        await until_served(lambda: ready_replicas(2))
        await until(pilot, lambda: str(table.get_row("tiny-two")[2]) == "2/2")

        table.move_cursor(row=table.get_row_index("tiny-two"))
        await pilot.press("x")
        await until(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        await pilot.press("y")

        async def gone() -> bool:
            return (await deployment(server, "tiny-two")).status_code == 404

        await until_served(gone)
        await until(pilot, lambda: "tiny-two" not in {str(key.value) for key in table.rows})

        # A deployment declared in radiance.yaml cannot be scaled here; the server says why.
        table.move_cursor(row=table.get_row_index("tiny"))
        await pilot.press("plus", "y")
        await until(pilot, lambda: any("radiance.yaml" in n.message for n in app._notifications))
        assert (await deployment(server, "tiny")).json()["data"]["configuration"]["replicas"] == 1
        assert not app.query(Banner).first().display


def _tier(app: ConsoleApp, name: str) -> str | None:
    return next(key.tier for key in app.state.keys or [] if key.name == name)


def _status(app: ConsoleApp, name: str) -> str:
    return next(key.status for key in app.state.keys or [] if key.name == name)


async def test_a_user_key_gets_a_banner_not_a_traceback(server: RunningServer) -> None:
    app = ConsoleApp(RadianceClient(server.root_url, ALICE), poll_seconds=0.25)
    async with app.run_test(size=(80, 24)) as pilot:
        banner = app.screen.query_one(Banner)
        await until(pilot, lambda: banner.display)
        assert app.state.problem is not None and app.state.problem.kind == "forbidden"
        assert "not the admin key" in str(banner.render())


async def test_the_console_reconnects_when_the_server_comes_back() -> None:
    fake = FakeApi(reachable=False)
    client = RadianceClient("http://radiance.test", fake.admin_key, transport=fake.transport())
    app = ConsoleApp(client, poll_seconds=0.1)
    async with app.run_test(size=(80, 24)) as pilot:
        banner = app.screen.query_one(Banner)
        await until(pilot, lambda: banner.display)
        assert "Connection refused" in str(banner.render())
        fake.reachable = True
        await until(pilot, lambda: not banner.display)
        assert app.state.live is not None
