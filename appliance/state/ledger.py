"""One row per inference request, written when the request ends, however it ended."""

from __future__ import annotations

from dataclasses import astuple, dataclass, fields

import aiosqlite


@dataclass(frozen=True)
class RequestRecord:
    id: str
    key_id: str | None
    key_name: str | None
    endpoint: str
    route_model: str | None
    model: str | None
    backend: str | None
    prompt_tokens: int
    completion_tokens: int
    status: str  # ok, error, cancelled
    http_status: int
    error_code: str | None
    latency_ms: float
    ttft_ms: float | None
    started_at: float
    ended_at: float


_COLUMNS = ", ".join(f.name for f in fields(RequestRecord))
_PLACEHOLDERS = ", ".join("?" for _ in fields(RequestRecord))


class Ledger:
    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db

    async def record(self, row: RequestRecord) -> None:
        """Store the row; it is committed when this returns."""
        # Column names come from the dataclass, never from input.
        insert = f"INSERT INTO requests ({_COLUMNS}) VALUES ({_PLACEHOLDERS})"  # noqa: S608
        await self._db.execute(insert, astuple(row))

    async def recent(self, limit: int = 100) -> list[RequestRecord]:
        async with self._db.execute(
            f"SELECT {_COLUMNS} FROM requests ORDER BY started_at DESC LIMIT ?"  # noqa: S608, (limit,)
        ) as cursor:
            return [RequestRecord(*row) async for row in cursor]
