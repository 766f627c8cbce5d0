"""Snapshots of every screen at 80x24, against a fake API with fixed data (tests/tui/fake_api.py).

After a deliberate change to the console's look, review and accept new snapshots with
`pytest tests/tui --snapshot-update`.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Sequence

import pytest
from fake_api import ADMIN, FakeApi
from textual.pilot import Pilot

from tui.app import ConsoleApp
from tui.client import RadianceClient

URL = "http://radiance.lan:8000"
Compare = Callable[..., bool]


def console(fake: FakeApi, key: str = ADMIN) -> ConsoleApp:
    client = RadianceClient(URL, key, transport=fake.transport())
    return ConsoleApp(client, poll_seconds=None, zone=datetime.UTC)


def after(polls: int, keys: Sequence[str] = ()) -> Callable[[Pilot[None]], object]:
    async def drive(pilot: Pilot[None]) -> None:
        app = pilot.app
        assert isinstance(app, ConsoleApp)
        for _ in range(polls):
            await app.poll()
        await pilot.pause()
        for key in keys:
            await pilot.press(key)
            await pilot.pause()

    return drive


@pytest.mark.parametrize(
    ("screen", "keys"),
    [
        ("dashboard", []),
        ("keys", ["k"]),
        ("models", ["m"]),
        ("requests", ["r"]),
        ("help", ["question_mark"]),
    ],
)
def test_screen(snap_compare: Compare, screen: str, keys: list[str]) -> None:
    assert snap_compare(console(FakeApi()), run_before=after(40, keys))


def test_dashboard_at_120x36(snap_compare: Compare) -> None:
    assert snap_compare(console(FakeApi()), run_before=after(90), terminal_size=(120, 36))


def test_new_key_dialog(snap_compare: Compare) -> None:
    keys = ["k", "n", *"batch-jobs", "tab", "enter", "down", "enter"]
    assert snap_compare(console(FakeApi()), run_before=after(3, keys))


def test_secret_shown_once(snap_compare: Compare) -> None:
    keys = ["k", "n", *"batch-jobs", "enter"]
    assert snap_compare(console(FakeApi()), run_before=after(3, keys))


def test_revoke_asks_first(snap_compare: Compare) -> None:
    keys = ["k", "down", "down", "x"]
    assert snap_compare(console(FakeApi()), run_before=after(3, keys))


def test_unreachable_banner(snap_compare: Compare) -> None:
    assert snap_compare(console(FakeApi(reachable=False)), run_before=after(1))


def test_wrong_key_banner(snap_compare: Compare) -> None:
    assert snap_compare(console(FakeApi(), key="not-the-admin-key"), run_before=after(1))


def test_scale_asks_first(snap_compare: Compare) -> None:
    keys = ["m", "down", "plus"]  # qwen2.5-0.5b, autoscaled 1-3, from 2 to 3
    assert snap_compare(console(FakeApi()), run_before=after(3, keys))


def test_delete_asks_first(snap_compare: Compare) -> None:
    keys = ["m", "down", "down", "down", "x"]  # big, failed
    assert snap_compare(console(FakeApi()), run_before=after(3, keys))
