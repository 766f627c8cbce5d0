"""API keys: stored as SHA-256 hashes with a short display prefix, never as plaintext.

Keys declared in radiance.yaml are synced at start (source ``config``); a key removed
from the file is revoked. Keys made through the API or the CLI (source ``api``) live
only in the database. Lookups go through an in-memory map from hash to key, and the
final comparison uses ``hmac.compare_digest`` so it takes the same time however many
characters match. Another process (the `radiance keys` CLI) may change the table:
``refresh`` notices through a counter that only writes to the keys move, and reloads.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aiosqlite

from appliance.config import KeyConfig
from appliance.state.database import Database

SECRET_PREFIX = "rad-"  # noqa: S105 (a marker, not a secret)
_COLUMNS = (
    "id, name, prefix, secret_hash, tier, source, created_at, revoked_at, "
    "models, budget_usd, budget_period, expires_at"
)


class KeyNotFound(LookupError):
    pass


class KeyNameTaken(ValueError):
    pass


class KeyDeclared(ValueError):
    """A key from radiance.yaml: change it there, not through the API."""


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def display_prefix(secret: str) -> str:
    """The first few characters, enough to tell keys apart and too few to guess the rest."""
    return secret[: min(8, len(secret) // 4)]


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


@dataclass(frozen=True)
class ApiKey:
    id: str
    name: str
    prefix: str
    secret_hash: str
    tier: str | None
    source: str  # config, api, or admin (the server's admin key)
    created_at: float
    revoked_at: float | None = None
    models: tuple[str, ...] | None = None
    budget_usd: str | None = None
    budget_period: str | None = None
    expires_at: float | None = None

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> ApiKey:
        values = list(row)
        values[8] = None if values[8] is None else tuple(json.loads(values[8]))
        return cls(*values)

    @property
    def is_admin(self) -> bool:
        return self.source == "admin"

    def status(self, now: float) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"


@dataclass(frozen=True)
class KeyChanges:
    """Fields an admin may set on an API key; None leaves a field as it is."""

    tier: str | None = None
    models: tuple[str, ...] | None = None
    budget_usd: str | None = None
    budget_period: str | None = None
    expires_at: float | None = None
    # Explicitly cleared fields (JSON null in a PUT).
    cleared: frozenset[str] = frozenset()


def _models_json(models: Sequence[str] | None) -> str | None:
    return None if models is None else json.dumps(list(models))


class KeyStore:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._by_hash: dict[str, ApiKey] = {}
        self._by_id: dict[str, ApiKey] = {}
        self._revoked: set[str] = set()  # hashes of revoked keys, for a clear 401
        self._version: int | None = None
        self._changes = -1

    async def sync_declared(self, declared: Sequence[KeyConfig]) -> None:
        """Make the stored config keys match radiance.yaml, then reload the cache."""
        now = time.time()
        names = {key.name for key in declared}
        async with self._db.transaction() as conn:
            for key in declared:
                budget = key.budget
                await conn.execute(
                    """
                    INSERT INTO api_keys (id, name, prefix, secret_hash, tier, source, created_at,
                                          models, budget_usd, budget_period, expires_at)
                    VALUES (?, ?, ?, ?, ?, 'config', ?, ?, ?, ?, ?)
                    ON CONFLICT (name) DO UPDATE SET
                        prefix = excluded.prefix, secret_hash = excluded.secret_hash,
                        tier = excluded.tier, source = 'config', revoked_at = NULL,
                        models = excluded.models, budget_usd = excluded.budget_usd,
                        budget_period = excluded.budget_period, expires_at = excluded.expires_at
                    """,
                    (
                        f"key_{uuid.uuid4().hex[:16]}",
                        key.name,
                        display_prefix(key.secret),
                        hash_secret(key.secret),
                        key.tier,
                        now,
                        _models_json(key.models),
                        budget.usd if budget else None,
                        budget.period if budget else None,
                        key.expires_at.timestamp() if key.expires_at else None,
                    ),
                )
            async with conn.execute(
                "SELECT name FROM api_keys WHERE source = 'config' AND revoked_at IS NULL"
            ) as cursor:
                stale = [row[0] async for row in cursor if row[0] not in names]
            for name in stale:
                await conn.execute("UPDATE api_keys SET revoked_at = ? WHERE name = ?", (now, name))
        await self.reload()

    async def reload(self) -> None:
        async with self._db.conn.execute(f"SELECT {_COLUMNS} FROM api_keys") as cursor:  # noqa: S608
            keys = [ApiKey.from_row(row) async for row in cursor]
        self._by_hash = {key.secret_hash: key for key in keys if key.revoked_at is None}
        self._revoked = {key.secret_hash for key in keys if key.revoked_at is not None}
        self._by_id = {key.id: key for key in keys}
        self._version = await self._db.data_version()
        self._changes = await self._key_changes()

    async def _key_changes(self) -> int:
        async with self._db.conn.execute("SELECT n FROM key_changes") as cursor:
            row = await cursor.fetchone()
        return int(row[0]) if row else 0

    async def refresh(self) -> bool:
        """Reload if another process changed the keys since the last load.

        SQLite's data_version says that another connection wrote to the file (the ledger
        does, all the time); the key_changes counter says whether it wrote to the keys."""
        version = await self._db.data_version()
        if version == self._version:
            return False
        self._version = version
        if await self._key_changes() == self._changes:
            return False
        await self.reload()
        return True

    async def all(self) -> list[ApiKey]:
        query = f"SELECT {_COLUMNS} FROM api_keys ORDER BY created_at, name"  # noqa: S608
        async with self._db.conn.execute(query) as cursor:
            return [ApiKey.from_row(row) async for row in cursor]

    async def get(self, key_id: str) -> ApiKey:
        query = f"SELECT {_COLUMNS} FROM api_keys WHERE id = ? OR name = ?"  # noqa: S608
        async with self._db.conn.execute(query, (key_id, key_id)) as cursor:
            row = await cursor.fetchone()
        if row is None:
            raise KeyNotFound(key_id)
        return ApiKey.from_row(row)

    async def create(
        self,
        name: str,
        *,
        tier: str | None,
        models: Sequence[str] | None = None,
        budget_usd: str | None = None,
        budget_period: str | None = None,
        expires_at: float | None = None,
    ) -> tuple[ApiKey, str]:
        """A new API key and its secret; the secret is not kept anywhere."""
        secret = new_secret()
        key_id = f"key_{uuid.uuid4().hex[:16]}"
        try:
            async with self._db.transaction() as conn:
                await conn.execute(
                    """
                    INSERT INTO api_keys (id, name, prefix, secret_hash, tier, source, created_at,
                                          models, budget_usd, budget_period, expires_at)
                    VALUES (?, ?, ?, ?, ?, 'api', ?, ?, ?, ?, ?)
                    """,
                    (
                        key_id,
                        name,
                        display_prefix(secret),
                        hash_secret(secret),
                        tier,
                        time.time(),
                        _models_json(models),
                        budget_usd,
                        budget_period if budget_usd else None,
                        expires_at,
                    ),
                )
        except aiosqlite.IntegrityError as exc:
            raise KeyNameTaken(name) from exc
        await self.reload()
        return await self.get(key_id), secret

    async def update(self, key_id: str, changes: KeyChanges) -> ApiKey:
        key = await self.get(key_id)
        if key.source == "config":
            raise KeyDeclared(key.name)
        values = {
            "tier": changes.tier,
            "models": _models_json(changes.models),
            "budget_usd": changes.budget_usd,
            "budget_period": changes.budget_period,
            "expires_at": changes.expires_at,
        }
        sets = {col: v for col, v in values.items() if v is not None or col in changes.cleared}
        if "budget_usd" in changes.cleared:
            sets["budget_period"] = None
        if sets:
            assignments = ", ".join(f"{column} = ?" for column in sets)
            async with self._db.transaction() as conn:
                await conn.execute(
                    f"UPDATE api_keys SET {assignments} WHERE id = ?",  # noqa: S608
                    (*sets.values(), key.id),
                )
            await self.reload()
        return await self.get(key.id)

    async def revoke(self, key_id: str) -> ApiKey:
        key = await self.get(key_id)
        if key.source == "config":
            raise KeyDeclared(key.name)
        if key.revoked_at is None:
            async with self._db.transaction() as conn:
                await conn.execute(
                    "UPDATE api_keys SET revoked_at = ? WHERE id = ?", (time.time(), key.id)
                )
            await self.reload()
        return await self.get(key.id)

    def cached(self, key_id: str) -> ApiKey | None:
        """The key with this id as of the last load, without a query."""
        return self._by_id.get(key_id)

    def authenticate(self, secret: str) -> ApiKey | None:
        digest = hash_secret(secret)
        key = self._by_hash.get(digest)
        if key is None or not hmac.compare_digest(key.secret_hash, digest):
            return None
        return key

    def was_revoked(self, secret: str) -> bool:
        return hash_secret(secret) in self._revoked
