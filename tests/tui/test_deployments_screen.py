"""The Models screen's deployments, scaled and deleted through Pilot against the fake API:
what the fake received, what the screen shows after, and a declared one refused once."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from fake_api import ADMIN, FakeApi
from textual.pilot import Pilot
from textual.widgets import DataTable

from tui.app import ConsoleApp
from tui.client import RadianceClient
from tui.dialogs import ConfirmDialog
from tui.widgets import Banner


@pytest.fixture
def fake() -> FakeApi:
    return FakeApi()


@pytest.fixture
async def pilot(fake: FakeApi) -> AsyncIterator[Pilot[None]]:
    client = RadianceClient("http://radiance.test", ADMIN, transport=fake.transport())
    app = ConsoleApp(client, poll_seconds=None)
    async with app.run_test(size=(80, 24)) as pilot:
        await app.poll()
        await pilot.press("m")
        await pilot.app.workers.wait_for_complete()
        yield pilot


def console(pilot: Pilot[None]) -> ConsoleApp:
    assert isinstance(pilot.app, ConsoleApp)
    return pilot.app


async def select(pilot: Pilot[None], deployment_id: str) -> DataTable[object]:
    table: DataTable[object] = pilot.app.screen.query_one("#deployments", DataTable)
    table.move_cursor(row=table.get_row_index(deployment_id))
    await pilot.pause()
    return table


async def answer(pilot: Pilot[None], key: str) -> str:
    """Answer the confirmation dialog up now with `key`; returns its question."""
    dialog = pilot.app.screen
    assert isinstance(dialog, ConfirmDialog)
    question = str(dialog.query_one(".title").render())
    await pilot.press(key)
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()
    return question


def cell(table: DataTable[object], row: str, column: int) -> str:
    return str(table.get_row(row)[column])


def notices(pilot: Pilot[None], text: str) -> list[str]:
    return [n.message for n in pilot.app._notifications if text in n.message]


async def test_the_screen_lists_every_deployment(pilot: Pilot[None]) -> None:
    table: DataTable[object] = pilot.app.screen.query_one("#deployments", DataTable)
    assert [str(key.value) for key in table.rows] == ["tiny", "qwen2.5-0.5b", "llama-8b", "big"]
    assert cell(table, "llama-8b", 1) == "downloading 42%"
    assert cell(table, "qwen2.5-0.5b", 2) == "2/2 auto 1-3"
    assert cell(table, "tiny", 5) == "$0.10/$0.40"
    assert cell(table, "big", 7) == "not enough memory: needs 38.2 GiB, 15.1 GiB free"


async def test_scale_up_after_a_confirmation(pilot: Pilot[None], fake: FakeApi) -> None:
    table = await select(pilot, "qwen2.5-0.5b")
    await pilot.press("plus")
    question = await answer(pilot, "y")
    assert question.startswith("Scale qwen2.5-0.5b from 2 to 3 replicas?")
    assert fake.actions == [("PUT", "qwen2.5-0.5b", {"configuration": {"replicas": 3}})]
    assert cell(table, "qwen2.5-0.5b", 1) == "updating"
    assert cell(table, "qwen2.5-0.5b", 2) == "2/3 auto 1-3"
    assert notices(pilot, "Scaling `qwen2.5-0.5b` to 3 replicas.")


async def test_no_leaves_it_as_it_is(pilot: Pilot[None], fake: FakeApi) -> None:
    await select(pilot, "qwen2.5-0.5b")
    await pilot.press("minus")
    assert (await answer(pilot, "n")).startswith("Scale qwen2.5-0.5b from 2 to 1 replica?")
    assert fake.actions == []


async def test_scaling_stops_at_the_bounds(pilot: Pilot[None], fake: FakeApi) -> None:
    await select(pilot, "tiny")
    await pilot.press("minus")
    await pilot.pause()
    assert not isinstance(pilot.app.screen, ConfirmDialog)
    assert notices(pilot, "`tiny` runs one replica, the fewest")
    fake.deployments["qwen2.5-0.5b"]["configuration"]["replicas"] = 3
    await console(pilot).poll()
    await select(pilot, "qwen2.5-0.5b")
    await pilot.press("plus")
    await pilot.pause()
    assert not isinstance(pilot.app.screen, ConfirmDialog)
    assert notices(pilot, "`qwen2.5-0.5b` autoscales between 1 and 3 replicas")
    assert fake.actions == []


async def test_delete_drains_then_goes(pilot: Pilot[None], fake: FakeApi) -> None:
    table = await select(pilot, "big")
    await pilot.press("x")
    question = await answer(pilot, "y")
    assert question.startswith("Delete deployment `big`?") and "drain" in question
    assert fake.actions == [("DELETE", "big", None)]
    assert cell(table, "big", 1) == "draining"
    await pilot.press("delete")
    await pilot.pause()
    assert not isinstance(pilot.app.screen, ConfirmDialog)  # it is going already
    await console(pilot).poll()
    assert "big" not in {str(key.value) for key in table.rows}


async def test_a_declared_deployment_is_refused_once(pilot: Pilot[None], fake: FakeApi) -> None:
    table = await select(pilot, "tiny")
    await pilot.press("plus")
    assert (await answer(pilot, "y")).startswith("Scale tiny from 1 to 2 replicas?")
    await pilot.press("x")
    await answer(pilot, "y")
    assert fake.actions == [
        ("PUT", "tiny", {"configuration": {"replicas": 2}}),
        ("DELETE", "tiny", None),
    ]
    refusals = notices(pilot, "is declared in radiance.yaml")
    assert len(refusals) == 2  # one for each action, each told once
    assert not pilot.app.screen.query_one(Banner).display
    assert cell(table, "tiny", 1) == "ready" and cell(table, "tiny", 2) == "1/1"
