"""/v1/batches in SQLite: one row per batch, one per input line.

A line's outcome (`output` or `error`) and its result line are written once, in the same
transaction as the batch's counts, and only while the line has none: so after a crash the
lines without an outcome run again, and each line (each `custom_id`) ends up in exactly
one of the result files, which are built from these rows when the batch ends.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import msgspec

from appliance.openai.batch_protocol import (
    Batch,
    BatchError,
    BatchErrors,
    BatchRequestCounts,
    BatchUsage,
)
from appliance.state.database import Database

_COLUMNS = (
    "id, key_id, endpoint, input_file_id, completion_window, status, metadata, errors, "
    "output_file_id, error_file_id, total, completed, failed, input_tokens, output_tokens, "
    "created_at, expires_at, in_progress_at, finalizing_at, completed_at, failed_at, "
    "expired_at, cancelling_at, cancelled_at"
)
# Statuses the runner still has work in.
ACTIVE = ("validating", "in_progress", "finalizing", "cancelling")
# Each status's timestamp column.
STAMPS = {
    "in_progress": "in_progress_at",
    "finalizing": "finalizing_at",
    "completed": "completed_at",
    "failed": "failed_at",
    "expired": "expired_at",
    "cancelling": "cancelling_at",
    "cancelled": "cancelled_at",
}


@dataclass(frozen=True)
class StoredBatch:
    key_id: str
    batch: Batch


@dataclass(frozen=True)
class PendingLine:
    line: int
    custom_id: str | None
    model: str | None
    body: str


@dataclass(frozen=True)
class LoadedLine:
    """An input line as validation left it: to run (`outcome` None), or already an error."""

    line: int
    custom_id: str | None
    model: str | None
    body: str | None
    outcome: str | None = None
    result: bytes | None = None


def _batch(row: Sequence[object]) -> StoredBatch:
    values = dict(zip([c.strip() for c in _COLUMNS.split(",")], row, strict=True))

    def stamp(name: str) -> int | None:
        value = values[name]
        return None if value is None else int(str(value))

    errors = values["errors"]
    metadata = values["metadata"]
    inputs, outputs = int(str(values["input_tokens"])), int(str(values["output_tokens"]))
    batch = Batch(
        id=str(values["id"]),
        endpoint=str(values["endpoint"]),
        errors=None if errors is None else msgspec.json.decode(str(errors), type=BatchErrors),
        input_file_id=str(values["input_file_id"]),
        completion_window=str(values["completion_window"]),
        status=str(values["status"]),  # type: ignore[arg-type]
        output_file_id=None if values["output_file_id"] is None else str(values["output_file_id"]),
        error_file_id=None if values["error_file_id"] is None else str(values["error_file_id"]),
        created_at=int(str(values["created_at"])),
        expires_at=stamp("expires_at"),
        in_progress_at=stamp("in_progress_at"),
        finalizing_at=stamp("finalizing_at"),
        completed_at=stamp("completed_at"),
        failed_at=stamp("failed_at"),
        expired_at=stamp("expired_at"),
        cancelling_at=stamp("cancelling_at"),
        cancelled_at=stamp("cancelled_at"),
        request_counts=BatchRequestCounts(
            total=int(str(values["total"])),
            completed=int(str(values["completed"])),
            failed=int(str(values["failed"])),
        ),
        usage=BatchUsage(input_tokens=inputs, output_tokens=outputs, total_tokens=inputs + outputs),
        metadata=None
        if metadata is None
        else msgspec.json.decode(str(metadata), type=dict[str, str]),
    )
    return StoredBatch(str(values["key_id"]), batch)


class BatchStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(
        self,
        batch_id: str,
        key_id: str,
        endpoint: str,
        input_file_id: str,
        window: str,
        window_seconds: int,
        metadata: dict[str, str] | None,
    ) -> Batch:
        now = int(time.time())
        async with self._db.transaction() as conn:
            await conn.execute(
                "INSERT INTO batches (id, key_id, endpoint, input_file_id, completion_window, "
                "status, metadata, created_at, expires_at) "
                "VALUES (?, ?, ?, ?, ?, 'validating', ?, ?, ?)",
                (
                    batch_id,
                    key_id,
                    endpoint,
                    input_file_id,
                    window,
                    None if metadata is None else msgspec.json.encode(metadata).decode(),
                    now,
                    now + window_seconds,
                ),
            )
        stored = await self.get(batch_id, None)
        assert stored is not None
        return stored.batch

    async def get(self, batch_id: str, key_id: str | None) -> StoredBatch | None:
        """The batch, if `key_id` owns it (None: any key's)."""
        where, args = "id = ?", [batch_id]
        if key_id is not None:
            where, args = "id = ? AND key_id = ?", [batch_id, key_id]
        async with self._db.conn.execute(
            f"SELECT {_COLUMNS} FROM batches WHERE {where}",  # noqa: S608
            args,
        ) as cursor:
            row = await cursor.fetchone()
        return None if row is None else _batch(tuple(row))

    async def page(
        self, key_id: str | None, after: str | None, limit: int
    ) -> tuple[list[Batch], bool]:
        """A page of batches, newest first, and whether more follow."""
        clauses: list[str] = []
        args: list[object] = []
        if key_id is not None:
            clauses.append("key_id = ?")
            args.append(key_id)
        if after is not None:
            anchor = await self.get(after, key_id)
            if anchor is not None:
                clauses.append("(created_at, id) < (?, ?)")
                args += [anchor.batch.created_at, anchor.batch.id]
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        query = (
            f"SELECT {_COLUMNS} FROM batches {where} "  # noqa: S608
            "ORDER BY created_at DESC, id DESC LIMIT ?"
        )
        async with self._db.reader.execute(query, (*args, limit + 1)) as cursor:
            rows = [_batch(tuple(row)).batch async for row in cursor]
        return rows[:limit], len(rows) > limit

    async def active(self) -> list[StoredBatch]:
        """The batches the runner has work in, oldest first."""
        marks = ", ".join("?" for _ in ACTIVE)
        async with self._db.conn.execute(
            f"SELECT {_COLUMNS} FROM batches WHERE status IN ({marks}) "  # noqa: S608
            "ORDER BY created_at, id",
            ACTIVE,
        ) as cursor:
            return [_batch(tuple(row)) async for row in cursor]

    async def move(self, batch_id: str, status: str, allowed_from: Sequence[str]) -> bool:
        """Set the status (and its timestamp) if the batch is in one of `allowed_from`."""
        marks = ", ".join("?" for _ in allowed_from)
        stamp = STAMPS[status]
        async with self._db.transaction() as conn:
            cursor = await conn.execute(
                f"UPDATE batches SET status = ?, {stamp} = ? "  # noqa: S608
                f"WHERE id = ? AND status IN ({marks})",
                (status, int(time.time()), batch_id, *allowed_from),
            )
            return cursor.rowcount > 0

    async def load(self, batch_id: str, lines: Sequence[LoadedLine]) -> None:
        """Keep the validated input lines and start the batch."""
        failed = sum(1 for line in lines if line.outcome == "error")
        async with self._db.transaction() as conn:
            await conn.execute("DELETE FROM batch_lines WHERE batch_id = ?", (batch_id,))
            await conn.executemany(
                "INSERT INTO batch_lines (batch_id, line, custom_id, model, body, outcome, "
                "result) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        batch_id,
                        line.line,
                        line.custom_id,
                        line.model,
                        line.body,
                        line.outcome,
                        None if line.result is None else line.result.decode(),
                    )
                    for line in lines
                ],
            )
            await conn.execute(
                "UPDATE batches SET status = 'in_progress', in_progress_at = ?, total = ?, "
                "completed = 0, failed = ? WHERE id = ? AND status = 'validating'",
                (int(time.time()), len(lines), failed, batch_id),
            )

    async def fail(self, batch_id: str, errors: list[BatchError]) -> None:
        """The input file cannot run as a batch: `failed` with the reasons."""
        async with self._db.transaction() as conn:
            await conn.execute(
                "UPDATE batches SET status = 'failed', failed_at = ?, errors = ? WHERE id = ?",
                (
                    int(time.time()),
                    msgspec.json.encode(BatchErrors(data=errors)).decode(),
                    batch_id,
                ),
            )

    async def pending(self, batch_id: str, skip: set[int], limit: int) -> list[PendingLine]:
        """Lines without an outcome, in file order, leaving out those in `skip` (running)."""
        async with self._db.conn.execute(
            "SELECT line, custom_id, model, body FROM batch_lines "
            "WHERE batch_id = ? AND outcome IS NULL ORDER BY line LIMIT ?",
            (batch_id, limit + len(skip)),
        ) as cursor:
            rows = [PendingLine(int(r[0]), r[1], r[2], str(r[3])) async for r in cursor]
        return [row for row in rows if row.line not in skip][:limit]

    async def record(
        self,
        batch_id: str,
        line: int,
        outcome: str,
        result: bytes,
        tokens: tuple[int, int],
    ) -> bool:
        """Keep a line's result, once; False if it had one already."""
        counter = "completed" if outcome == "output" else "failed"
        async with self._db.transaction() as conn:
            cursor = await conn.execute(
                "UPDATE batch_lines SET outcome = ?, result = ? "
                "WHERE batch_id = ? AND line = ? AND outcome IS NULL",
                (outcome, result.decode(), batch_id, line),
            )
            if cursor.rowcount == 0:
                return False
            await conn.execute(
                f"UPDATE batches SET {counter} = {counter} + 1, "  # noqa: S608
                "input_tokens = input_tokens + ?, output_tokens = output_tokens + ? WHERE id = ?",
                (*tokens, batch_id),
            )
        return True

    async def results(
        self, batch_id: str
    ) -> AsyncIterator[tuple[int, str | None, str | None, str | None]]:
        """(line, custom_id, outcome, result) of every line, in file order."""
        async with self._db.conn.execute(
            "SELECT line, custom_id, outcome, result FROM batch_lines "
            "WHERE batch_id = ? ORDER BY line",
            (batch_id,),
        ) as cursor:
            async for row in cursor:
                yield int(row[0]), row[1], row[2], row[3]

    async def finish(
        self,
        batch_id: str,
        status: str,
        files: Sequence[tuple[str, str, str, str, int, str]],
        output_file_id: str | None,
        error_file_id: str | None,
    ) -> None:
        """End the batch with its result files (rows: id, key, filename, purpose, size,
        sha256), in one transaction; lines that never ran count as failed."""
        now = int(time.time())
        stamp = STAMPS[status]
        async with self._db.transaction() as conn:
            await conn.executemany(
                "INSERT OR REPLACE INTO files (id, key_id, filename, purpose, bytes, sha256, "
                "created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(*file, now) for file in files],
            )
            await conn.execute(
                f"UPDATE batches SET status = ?, {stamp} = ?, output_file_id = ?, "  # noqa: S608
                "error_file_id = ?, failed = total - completed WHERE id = ?",
                (status, now, output_file_id, error_file_id, batch_id),
            )
