"""The requests screen shows the running batches with their counts (a fake API)."""

from __future__ import annotations

import datetime

from fake_api import ADMIN, FakeApi
from textual.widgets import Static

from tui.app import ConsoleApp
from tui.client import RadianceClient


def batch(batch_id: str, status: str, total: int, completed: int, failed: int) -> dict[str, object]:
    return {
        "id": batch_id,
        "object": "batch",
        "status": status,
        "endpoint": "/v1/chat/completions",
        "created_at": 1_700_000_000,
        "request_counts": {"total": total, "completed": completed, "failed": failed},
    }


async def test_running_batches_are_listed_above_the_requests() -> None:
    fake = FakeApi()
    fake.batches = [
        batch("batch_running", "in_progress", 40, 12, 2),
        batch("batch_done", "completed", 5, 5, 0),
    ]
    client = RadianceClient("http://radiance.lan:8000", ADMIN, transport=fake.transport())
    app = ConsoleApp(client, poll_seconds=None, zone=datetime.UTC)
    async with app.run_test() as pilot:
        await pilot.press("r")
        await app.poll()
        await pilot.pause()
        panel = app.screen.query_one("#batches", Static)
        assert panel.display
        text = str(panel.render())
        assert "batch_running  in_progress  14/40 done, 2 failed" in text
        assert "batch_done" not in text
        fake.batches = [batch("batch_running", "completed", 40, 38, 2)]
        await app.poll()
        await pilot.pause()
        assert not panel.display
