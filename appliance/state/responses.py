"""Stored /v1/responses: each key reads, continues and deletes only its own.

A row holds the response object as sent and the input items of its request (without the
conversation it continued: that lives in the rows `previous_response_id` points at). Rows
are kept until `expires_at`; an expired row reads as absent and is deleted by a later
write.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import msgspec

from appliance.openai.responses_protocol import Response, StoredItem
from appliance.state.database import Database

# How often, at most, a write also deletes the rows that have expired.
_SWEEP_SECONDS = 60.0
# Responses a conversation may chain through `previous_response_id`.
MAX_CHAIN = 256


@dataclass(frozen=True)
class StoredResponse:
    response: Response
    input_items: list[StoredItem]


class ConversationTooLong(Exception):
    """A chain of `previous_response_id` longer than MAX_CHAIN."""


class ResponseStore:
    def __init__(self, db: Database, retention_seconds: float) -> None:
        self._db = db
        self._retention = retention_seconds
        self._swept = 0.0

    async def add(self, key_id: str, response: Response, input_items: list[StoredItem]) -> None:
        now = time.time()
        async with self._db.transaction() as conn:
            if now - self._swept >= _SWEEP_SECONDS:
                self._swept = now
                await conn.execute("DELETE FROM responses WHERE expires_at <= ?", (now,))
            await conn.execute(
                "INSERT OR REPLACE INTO responses (id, key_id, previous_response_id, "
                "created_at, expires_at, input_items, response) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    response.id,
                    key_id,
                    response.previous_response_id,
                    now,
                    now + self._retention,
                    msgspec.json.encode(input_items).decode(),
                    msgspec.json.encode(response).decode(),
                ),
            )

    async def get(self, key_id: str, response_id: str) -> StoredResponse | None:
        async with self._db.reader.execute(
            "SELECT input_items, response FROM responses "
            "WHERE id = ? AND key_id = ? AND expires_at > ?",
            (response_id, key_id, time.time()),
        ) as cursor:
            row = await cursor.fetchone()
        if row is None:
            return None
        return StoredResponse(
            response=msgspec.json.decode(str(row[1]), type=Response),
            input_items=msgspec.json.decode(str(row[0]), type=list[StoredItem]),
        )

    async def conversation(self, key_id: str, last_id: str) -> list[StoredResponse] | None:
        """The responses of a conversation up to `last_id`, oldest first; None if any of
        them is missing (deleted, expired or another key's)."""
        chain: list[StoredResponse] = []
        next_id: str | None = last_id
        while next_id is not None:
            if len(chain) == MAX_CHAIN:
                raise ConversationTooLong(last_id)
            stored = await self.get(key_id, next_id)
            if stored is None:
                return None
            chain.append(stored)
            next_id = stored.response.previous_response_id
        chain.reverse()
        return chain

    async def delete(self, key_id: str, response_id: str) -> bool:
        async with self._db.transaction() as conn:
            cursor = await conn.execute(
                "DELETE FROM responses WHERE id = ? AND key_id = ? AND expires_at > ?",
                (response_id, key_id, time.time()),
            )
            return cursor.rowcount > 0
