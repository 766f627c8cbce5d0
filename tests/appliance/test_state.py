"""The SQLite state: migrations from a blank file, key sync, hashing."""

from __future__ import annotations

import asyncio
import pathlib
import sqlite3

from appliance.config import KeyConfig
from appliance.state.database import MIGRATIONS, open_database
from appliance.state.keys import KeyStore, display_prefix


async def test_migrations_apply_once_from_a_blank_file(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "nested" / "state.db"
    db = await open_database(path)
    await db.close()
    db = await open_database(path)  # a second start applies nothing again
    await db.close()
    with sqlite3.connect(path) as plain:
        applied = [row[0] for row in plain.execute("SELECT name FROM schema_migrations")]
        mode = plain.execute("PRAGMA journal_mode").fetchone()[0]
        tables = {row[0] for row in plain.execute("SELECT name FROM sqlite_master")}
    assert applied == [m.name for m in MIGRATIONS]
    assert mode == "wal"
    assert {"api_keys", "requests", "requests_started_at"} <= tables
    assert {"webhooks", "webhook_deliveries", "budget_alerts"} <= tables


async def test_declared_keys_sync_rotate_and_revoke(tmp_path: pathlib.Path) -> None:
    db = await open_database(tmp_path / "state.db")
    keys = KeyStore(db)
    await keys.sync_declared(
        [
            KeyConfig(name="alice", secret="alice-secret-1"),
            KeyConfig(name="bob", secret="bob-s3cret"),
        ]
    )
    alice = keys.authenticate("alice-secret-1")
    assert alice is not None and alice.name == "alice"
    assert keys.authenticate("alice-secret-2") is None
    # A new secret in the file replaces the old one; a key gone from the file is revoked.
    await keys.sync_declared([KeyConfig(name="alice", secret="alice-secret-2")])
    assert keys.authenticate("alice-secret-1") is None
    rotated = keys.authenticate("alice-secret-2")
    assert rotated is not None and rotated.id == alice.id
    assert keys.authenticate("bob-s3cret") is None
    stored = {k.name: k for k in await keys.all()}
    assert stored["bob"].revoked_at is not None
    assert stored["alice"].prefix == display_prefix("alice-secret-2") == "ali"
    await db.close()


async def test_keys_reload_on_key_writes_only(tmp_path: pathlib.Path) -> None:
    """Another process's ledger rows leave the keys alone; its key writes are picked up."""
    path = tmp_path / "state.db"
    db = await open_database(path)
    keys = KeyStore(db)
    await keys.sync_declared([KeyConfig(name="alice", secret="alice-secret-1")])
    with sqlite3.connect(path) as other:  # what the ledger's writer connection does
        other.execute(
            "INSERT INTO requests (id, endpoint, status, http_status, latency_ms, started_at,"
            " ended_at) VALUES ('r1', 'chat', 'ok', 200, 1.0, 0, 0)"
        )
    assert await keys.refresh() is False
    with sqlite3.connect(path) as other:  # what `radiance keys revoke` does
        other.execute("UPDATE api_keys SET revoked_at = 1 WHERE name = 'alice'")
    assert await keys.refresh() is True
    assert keys.authenticate("alice-secret-1") is None
    assert await keys.refresh() is False
    await db.close()


async def test_a_write_waits_out_a_read_left_open_while_another_process_commits(
    tmp_path: pathlib.Path,
) -> None:
    """A read on the writer connection pins an old snapshot; once another connection (the
    ledger's) commits, SQLite refuses BEGIN IMMEDIATE at once as busy. The transaction is
    started again when the read ends, instead of failing the change it was for."""
    path = tmp_path / "state.db"
    db = await open_database(path)
    try:
        async with db.transaction() as conn:
            await conn.executemany(
                "INSERT INTO key_changes (n) VALUES (?)", [(n,) for n in range(1000, 1010)]
            )
        reading = await db.conn.execute("SELECT n FROM key_changes")
        assert await reading.fetchone() is not None  # the read is under way
        with sqlite3.connect(path) as other:
            other.execute("UPDATE key_changes SET n = n + 1")

        async def finish_reading() -> None:
            await asyncio.sleep(0.05)
            await reading.close()

        ending = asyncio.create_task(finish_reading())
        async with db.transaction() as conn:
            await conn.execute("UPDATE key_changes SET n = 0")
        await ending
        async with db.conn.execute("SELECT SUM(n) FROM key_changes") as cursor:
            assert tuple(await cursor.fetchone() or ()) == (0,)
    finally:
        await db.close()
