"""API keys: stored as SHA-256 hashes with a short display prefix, never as plaintext.

Keys declared in radiance.yaml are synced at start (source ``config``); a key removed
from the file is revoked. Lookups go through an in-memory map from hash to key, and the
final comparison uses ``hmac.compare_digest`` so it takes the same time however many
characters match.
"""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import aiosqlite

from appliance.config import KeyConfig


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def display_prefix(secret: str) -> str:
    """The first few characters, enough to tell keys apart and too few to guess the rest."""
    return secret[: min(8, len(secret) // 4)]


@dataclass(frozen=True)
class ApiKey:
    id: str
    name: str
    prefix: str
    secret_hash: str
    tier: str | None
    source: str
    created_at: float
    revoked_at: float | None = None


class KeyStore:
    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db
        self._by_hash: dict[str, ApiKey] = {}

    async def sync_declared(self, declared: Sequence[KeyConfig]) -> None:
        """Make the stored config keys match radiance.yaml, then reload the cache."""
        now = time.time()
        names = {key.name for key in declared}
        await self._db.execute("BEGIN")
        try:
            for key in declared:
                await self._db.execute(
                    """
                    INSERT INTO api_keys (id, name, prefix, secret_hash, tier, source, created_at)
                    VALUES (?, ?, ?, ?, ?, 'config', ?)
                    ON CONFLICT (name) DO UPDATE SET
                        prefix = excluded.prefix, secret_hash = excluded.secret_hash,
                        tier = excluded.tier, source = 'config', revoked_at = NULL
                    """,
                    (
                        f"key_{uuid.uuid4().hex[:16]}",
                        key.name,
                        display_prefix(key.secret),
                        hash_secret(key.secret),
                        key.tier,
                        now,
                    ),
                )
            async with self._db.execute(
                "SELECT name FROM api_keys WHERE source = 'config' AND revoked_at IS NULL"
            ) as cursor:
                stale = [row[0] async for row in cursor if row[0] not in names]
            for name in stale:
                await self._db.execute(
                    "UPDATE api_keys SET revoked_at = ? WHERE name = ?", (now, name)
                )
            await self._db.execute("COMMIT")
        except Exception:
            await self._db.execute("ROLLBACK")
            raise
        await self.reload()

    async def reload(self) -> None:
        async with self._db.execute(
            "SELECT id, name, prefix, secret_hash, tier, source, created_at, revoked_at "
            "FROM api_keys WHERE revoked_at IS NULL"
        ) as cursor:
            keys = [ApiKey(*row) async for row in cursor]
        self._by_hash = {key.secret_hash: key for key in keys}

    async def all(self) -> list[ApiKey]:
        async with self._db.execute(
            "SELECT id, name, prefix, secret_hash, tier, source, created_at, revoked_at "
            "FROM api_keys ORDER BY created_at, name"
        ) as cursor:
            return [ApiKey(*row) async for row in cursor]

    def authenticate(self, secret: str) -> ApiKey | None:
        digest = hash_secret(secret)
        key = self._by_hash.get(digest)
        if key is None or not hmac.compare_digest(key.secret_hash, digest):
            return None
        return key
