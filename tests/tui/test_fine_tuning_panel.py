"""The requests screen shows the fine-tuning jobs under way with their step and loss (a
fake API); with none under way it shows nothing."""

from __future__ import annotations

import datetime

from fake_api import ADMIN, FakeApi
from textual.widgets import Static

from tui.app import ConsoleApp
from tui.client import RadianceClient


def job(
    job_id: str, status: str, step: int = 0, total: int | None = None, loss: float | None = None
) -> dict[str, object]:
    return {
        "id": job_id,
        "model": "tiny",
        "status": status,
        "trainingFile": "file-abc",
        "fineTunedModel": None,
        "hyperparameters": {"nEpochs": 3, "batchSize": "auto", "learningRateMultiplier": "auto"},
        "step": step,
        "totalSteps": total,
        "lastLoss": loss,
        "createdAt": "2026-01-01T00:00:00+00:00",
    }


async def test_jobs_under_way_are_listed_above_the_requests() -> None:
    fake = FakeApi()
    fake.fine_tuning = [
        job("ftjob-running", "running", 12, 40, 1.23456),
        job("ftjob-queued", "queued"),
        job("ftjob-done", "succeeded", 40, 40, 0.5),
    ]
    client = RadianceClient("http://radiance.lan:8000", ADMIN, transport=fake.transport())
    app = ConsoleApp(client, poll_seconds=None, zone=datetime.UTC)
    async with app.run_test() as pilot:
        await pilot.press("r")
        await app.poll()
        await pilot.pause()
        panel = app.screen.query_one("#fine-tuning", Static)
        assert panel.display
        text = str(panel.render())
        assert "ftjob-running  running  tiny  step 12/40  loss 1.2346" in text
        assert "ftjob-queued  queued  tiny  step 0/–  loss –" in text
        assert "ftjob-done" not in text
        fake.fine_tuning = [job("ftjob-running", "cancelled", 13, 40, 1.2)]
        await app.poll()
        await pilot.pause()
        assert not panel.display
