"""The SQLite file behind the appliance: one aiosqlite connection, WAL, named migrations.

Migrations are append-only: each has a name, runs once in its own transaction and is
recorded in ``schema_migrations``. Never edit one that has shipped; add the next.
"""

from __future__ import annotations

import logging
import pathlib
from collections.abc import Sequence
from dataclasses import dataclass

import aiosqlite

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Migration:
    name: str
    sql: str


MIGRATIONS: Sequence[Migration] = (
    Migration(
        "0001_keys_and_requests",
        """
        CREATE TABLE api_keys (
            id          TEXT PRIMARY KEY,
            name        TEXT NOT NULL UNIQUE,
            prefix      TEXT NOT NULL,
            secret_hash TEXT NOT NULL UNIQUE,
            tier        TEXT,
            source      TEXT NOT NULL CHECK (source IN ('config', 'api')),
            created_at  REAL NOT NULL,
            revoked_at  REAL
        );
        CREATE TABLE requests (
            id                TEXT PRIMARY KEY,
            key_id            TEXT,
            key_name          TEXT,
            endpoint          TEXT NOT NULL,
            route_model       TEXT,
            model             TEXT,
            backend           TEXT,
            prompt_tokens     INTEGER NOT NULL DEFAULT 0,
            completion_tokens INTEGER NOT NULL DEFAULT 0,
            status            TEXT NOT NULL,
            http_status       INTEGER NOT NULL,
            error_code        TEXT,
            latency_ms        REAL NOT NULL,
            ttft_ms           REAL,
            started_at        REAL NOT NULL,
            ended_at          REAL NOT NULL
        );
        CREATE INDEX requests_started_at ON requests (started_at);
        CREATE INDEX requests_key_started ON requests (key_id, started_at);
        CREATE INDEX requests_model_started ON requests (model, started_at);
        """,
    ),
)


async def open_database(path: pathlib.Path) -> aiosqlite.Connection:
    """Open (creating if needed) the database file and bring its schema up to date."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = await aiosqlite.connect(path, isolation_level=None)
    db.row_factory = aiosqlite.Row
    await db.execute("PRAGMA journal_mode=WAL")
    await db.execute("PRAGMA synchronous=NORMAL")
    await db.execute("PRAGMA foreign_keys=ON")
    await db.execute("PRAGMA busy_timeout=5000")
    await migrate(db)
    return db


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
            for statement in migration.sql.split(";"):
                if statement.strip():
                    await db.execute(statement)
            await db.execute("INSERT INTO schema_migrations (name) VALUES (?)", (migration.name,))
            await db.execute("COMMIT")
        except Exception:
            await db.execute("ROLLBACK")
            raise
        applied.append(migration.name)
    return applied
