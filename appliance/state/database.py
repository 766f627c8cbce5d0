"""The SQLite file behind the appliance: one aiosqlite connection, WAL, named migrations.

Migrations (``appliance.state.migrations``) are append-only: each has a name, runs once in
its own transaction and is recorded in ``schema_migrations``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import pathlib
import sqlite3
from collections.abc import AsyncIterator
from typing import TypeAlias

import aiosqlite

from appliance.state.migrations import MIGRATIONS, Migration
from backends.backoff import Backoff

log = logging.getLogger(__name__)
__all__ = ["MIGRATIONS", "Database", "Migration", "Reader", "migrate", "open_database"]
# A transaction SQLite refuses at once as busy is started again, this often and this soon.
_BEGIN_TRIES = 10
_BEGIN_RETRY = Backoff(first=0.01, most=0.5)

# The connection the state layer's read queries take (`Database.reader`); the layers that
# shape what they return name it so, and import no database driver.
Reader: TypeAlias = aiosqlite.Connection


class Database:
    """The state file: a writer connection whose transactions take turns, and a reader.

    One aiosqlite connection runs its statements on one thread, so a long analytics
    query on it would hold up the ledger; reads that may be long go to ``reader``, which
    WAL lets run beside the writer.
    """

    def __init__(self, writer: aiosqlite.Connection, reader: aiosqlite.Connection) -> None:
        self.conn = writer
        self.reader = reader
        # Held by whoever has a transaction open on the writer.
        self.lock = asyncio.Lock()

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """BEGIN IMMEDIATE ... COMMIT on the writer, rolled back if the body raises."""
        async with self.lock, self.locked_transaction() as conn:
            yield conn

    @contextlib.asynccontextmanager
    async def locked_transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """A transaction for a caller that already holds ``lock``."""
        await self._begin()
        try:
            yield self.conn
        except BaseException:
            await self.conn.execute("ROLLBACK")
            raise
        await self.conn.execute("COMMIT")

    async def _begin(self) -> None:
        """BEGIN IMMEDIATE, tried again while SQLite answers busy at once. The busy timeout
        covers a writer that holds the lock; under a stream of ledger commits SQLite can
        also refuse without waiting (the writer's snapshot is older than the last commit),
        and a fresh try succeeds."""
        for attempt in range(1, _BEGIN_TRIES + 1):
            try:
                await self.conn.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                busy = exc.sqlite_errorcode & 0xFF == sqlite3.SQLITE_BUSY
                if not busy or attempt == _BEGIN_TRIES:
                    raise
                log.debug(
                    "the state file is busy (%s); starting the transaction again",
                    exc.sqlite_errorname,
                )
                await asyncio.sleep(_BEGIN_RETRY.after(attempt))

    async def data_version(self) -> int:
        """Changes when another connection (another process) commits to the file."""
        async with self.conn.execute("PRAGMA data_version") as cursor:
            row = await cursor.fetchone()
        return int(row[0]) if row else 0

    async def close(self) -> None:
        await self.reader.close()
        await self.conn.close()


async def _connect(path: pathlib.Path) -> aiosqlite.Connection:
    db = await aiosqlite.connect(path, isolation_level=None)
    db.row_factory = aiosqlite.Row
    await db.execute("PRAGMA busy_timeout=5000")
    return db


async def open_database(path: pathlib.Path) -> Database:
    """Open (creating if needed) the database file and bring its schema up to date."""
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = await _connect(path)
    try:
        await writer.execute("PRAGMA journal_mode=WAL")
        # FULL on this connection (keys, deployments, settings): a committed change
        # survives a power cut. The ledger's own connection sets its durability itself.
        await writer.execute("PRAGMA synchronous=FULL")
        await writer.execute("PRAGMA foreign_keys=ON")
        await migrate(writer)
        reader = await _connect(path)
    except BaseException:
        await writer.close()
        raise
    return Database(writer, reader)


def statements(sql: str) -> list[str]:
    """A script's statements, split where SQLite says one is complete (a trigger's body
    holds semicolons of its own)."""
    found, pending = [], ""
    for part in sql.split(";"):
        pending += part + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \n;"):
                found.append(pending.strip())
            pending = ""
    return found


async def migrate(db: aiosqlite.Connection) -> list[str]:
    """Apply the migrations this file has not seen; return their names."""
    await db.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations "
        "(name TEXT PRIMARY KEY, applied_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP)"
    )
    async with db.execute("SELECT name FROM schema_migrations") as cursor:
        done = {row[0] async for row in cursor}
    applied = []
    for migration in MIGRATIONS:
        if migration.name in done:
            continue
        log.info("applying migration %s", migration.name)
        await db.execute("BEGIN")
        try:
            for statement in statements(migration.sql):
                await db.execute(statement)
            await db.execute("INSERT INTO schema_migrations (name) VALUES (?)", (migration.name,))
            await db.execute("COMMIT")
        except Exception:
            await db.execute("ROLLBACK")
            raise
        applied.append(migration.name)
    return applied
