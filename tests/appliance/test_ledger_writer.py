"""The ledger's group commits on the event loop: never blocking it on a lock, one commit for
the rows finished together, and (durability "power") an fsync before `record` returns."""

from __future__ import annotations

import asyncio
import os
import pathlib
import sqlite3
import time

import pytest

from appliance.state import ledger as ledger_module
from appliance.state.database import open_database
from appliance.state.ledger import Ledger, RequestRecord


def row(number: int, cost: int = 7) -> RequestRecord:
    now = time.time()
    return RequestRecord(
        id=f"req-{number}",
        key_id="k1",
        key_name="alice",
        endpoint="chat",
        route_model="tiny",
        model="tiny",
        backend="cpu",
        prompt_tokens=3,
        completion_tokens=4,
        status="ok",
        http_status=200,
        error_code=None,
        latency_ms=12.5,
        ttft_ms=2.0,
        started_at=now,
        ended_at=now,
        cost_pusd=cost,
    )


def stored(path: pathlib.Path) -> list[str]:
    with sqlite3.connect(path) as conn:
        return [r[0] for r in conn.execute("SELECT id FROM requests ORDER BY id")]


@pytest.fixture
async def path(tmp_path: pathlib.Path) -> pathlib.Path:
    database = await open_database(tmp_path / "state.db")  # the schema, in WAL mode
    await database.close()
    return tmp_path / "state.db"


async def test_rows_finished_together_share_one_commit(path: pathlib.Path) -> None:
    ledger = Ledger(path)
    ledger.start()
    await asyncio.gather(*(ledger.record(row(n)) for n in range(50)))
    assert ledger.commits == 1
    await ledger.record(row(50))
    assert ledger.commits == 2
    await ledger.close()
    assert stored(path) == sorted(f"req-{n}" for n in range(51))


async def test_a_held_write_lock_delays_the_rows_but_never_the_event_loop(
    path: pathlib.Path,
) -> None:
    """Another connection (another process, the management API) holds the write lock: the
    commit is tried again later while the loop goes on, and lands once the lock is free."""
    ledger = Ledger(path)
    ledger.start()
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    recording = asyncio.ensure_future(ledger.record(row(1)))
    ticks = 0
    started = time.monotonic()
    while time.monotonic() - started < 0.3:  # the loop keeps turning meanwhile
        await asyncio.sleep(0.01)
        ticks += 1
    assert not recording.done()
    assert ticks >= 10
    other.execute("COMMIT")
    other.close()
    await asyncio.wait_for(recording, 5)
    assert stored(path) == ["req-1"]
    await ledger.close()


async def test_a_read_comes_after_the_rows_recorded_before_it(path: pathlib.Path) -> None:
    ledger = Ledger(path)
    ledger.start()
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # the rows must wait for the lock...
    recording = asyncio.ensure_future(ledger.record(row(1, cost=40)))
    await asyncio.sleep(0)
    asyncio.get_running_loop().call_later(0.1, lambda: other.execute("COMMIT"))

    def spent(conn: sqlite3.Connection) -> int:
        return int(conn.execute("SELECT SUM(cost_pusd) FROM requests").fetchone()[0] or 0)

    assert await ledger.read(spent) == 40  # ...and the read waits for them
    await recording
    other.close()
    await ledger.close()


async def test_power_durability_answers_only_after_the_log_is_on_disk(
    path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced_after: list[int] = []  # the commit count at each fsync of the log
    ledger = Ledger(path, durability="power")
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        assert os.readlink(f"/proc/self/fd/{fd}").endswith("state.db-wal")
        synced_after.append(ledger.commits)
        real_fsync(fd)

    monkeypatch.setattr(ledger_module.os, "fsync", fsync)
    ledger.start()
    for number in range(3):
        await ledger.record(row(number))
        assert synced_after and synced_after[-1] == ledger.commits
    await asyncio.gather(*(ledger.record(row(n)) for n in range(3, 20)))
    assert synced_after[-1] == ledger.commits
    await ledger.close()
    assert len(stored(path)) == 20


async def test_process_durability_does_not_wait_for_the_disk(
    path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    monkeypatch.setattr(ledger_module.os, "fsync", lambda fd: calls.append(fd))
    ledger = Ledger(path)
    ledger.start()
    await ledger.record(row(1))
    await ledger.close()
    assert calls == []
    assert stored(path) == ["req-1"]
