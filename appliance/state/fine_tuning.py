"""Fine-tuning jobs in SQLite: one row per job, its events and its checkpoints.

A job's row is the truth the runner works from: after a restart the jobs left `queued` or
`running` are taken up again (a running one resumes from its last checkpoint). Events are
kept in the order they happened (`seq`); a checkpoint is stored once per step.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import msgspec

from appliance.openai.fine_tuning_protocol import (
    CheckpointMetrics,
    FineTuningJob,
    FineTuningJobCheckpoint,
    FineTuningJobEvent,
    JobError,
    JobMethod,
    JobStatus,
    JobSupervised,
    ResolvedHyperparameters,
)
from appliance.state.database import Database

_COLUMNS = (
    "id, key_id, model, training_file, validation_file, status, suffix, seed, "
    "hyperparameters, metadata, error, fine_tuned_model, trained_tokens, result_files, "
    "step, total_steps, last_loss, created_at, finished_at, estimated_finish"
)
_NAMES = [c.strip() for c in _COLUMNS.split(",")]
# Statuses the runner still has work in.
ACTIVE = ("validating_files", "queued", "running")


@dataclass(frozen=True)
class StoredJob:
    key_id: str
    job: FineTuningJob
    step: int
    total_steps: int | None
    last_loss: float | None


def new_job_id() -> str:
    return "ftjob-" + secrets.token_hex(10)


def _job(row: Sequence[object]) -> StoredJob:
    v = dict(zip(_NAMES, row, strict=True))
    hyper = msgspec.json.decode(str(v["hyperparameters"]), type=ResolvedHyperparameters)
    error = v["error"]
    metadata = v["metadata"]
    job = FineTuningJob(
        id=str(v["id"]),
        created_at=int(str(v["created_at"])),
        error=None if error is None else msgspec.json.decode(str(error), type=JobError),
        fine_tuned_model=None if v["fine_tuned_model"] is None else str(v["fine_tuned_model"]),
        finished_at=None if v["finished_at"] is None else int(str(v["finished_at"])),
        hyperparameters=hyper,
        model=str(v["model"]),
        result_files=msgspec.json.decode(str(v["result_files"]), type=list[str]),
        seed=int(str(v["seed"])),
        status=cast(JobStatus, v["status"]),
        trained_tokens=None if v["trained_tokens"] is None else int(str(v["trained_tokens"])),
        training_file=str(v["training_file"]),
        validation_file=None if v["validation_file"] is None else str(v["validation_file"]),
        estimated_finish=None if v["estimated_finish"] is None else int(str(v["estimated_finish"])),
        metadata=None if metadata is None else msgspec.json.decode(str(metadata)),
        method=JobMethod(supervised=JobSupervised(hyperparameters=hyper)),
        user_provided_suffix=None if v["suffix"] is None else str(v["suffix"]),
    )
    return StoredJob(
        key_id=str(v["key_id"]),
        job=job,
        step=int(str(v["step"])),
        total_steps=None if v["total_steps"] is None else int(str(v["total_steps"])),
        last_loss=None if v["last_loss"] is None else float(str(v["last_loss"])),
    )


def _encode(value: Any) -> str:
    return msgspec.json.encode(value).decode()


class FineTuningStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(
        self,
        key_id: str,
        model: str,
        training_file: str,
        validation_file: str | None,
        suffix: str | None,
        seed: int,
        hyperparameters: ResolvedHyperparameters,
        metadata: dict[str, str] | None,
    ) -> FineTuningJob:
        job_id = new_job_id()
        async with self._db.transaction() as conn:
            await conn.execute(
                "INSERT INTO fine_tuning_jobs (id, key_id, model, training_file, "
                "validation_file, status, suffix, seed, hyperparameters, metadata, created_at) "
                "VALUES (?, ?, ?, ?, ?, 'validating_files', ?, ?, ?, ?, ?)",
                (
                    job_id,
                    key_id,
                    model,
                    training_file,
                    validation_file,
                    suffix,
                    seed,
                    _encode(hyperparameters),
                    None if metadata is None else _encode(metadata),
                    int(time.time()),
                ),
            )
            await self._event(conn, job_id, "info", f"Created fine-tuning job: {job_id}")
        stored = await self.get(job_id, None)
        assert stored is not None
        return stored.job

    async def get(self, job_id: str, key_id: str | None) -> StoredJob | None:
        """The job; None if there is none, or it is not `key_id`'s (None: any key's)."""
        query = f"SELECT {_COLUMNS} FROM fine_tuning_jobs WHERE id = ?"  # noqa: S608
        args: tuple[object, ...] = (job_id,)
        if key_id is not None:
            query += " AND key_id = ?"
            args += (key_id,)
        async with self._db.conn.execute(query, args) as cursor:
            row = await cursor.fetchone()
        return None if row is None else _job(tuple(row))

    async def page(
        self,
        key_id: str | None,
        after: str | None,
        limit: int,
        metadata: dict[str, str] | None = None,
    ) -> tuple[list[StoredJob], bool]:
        """Newest first, `limit` after the job `after`; and whether more follow."""
        where, args = ["1 = 1"], []
        if key_id is not None:
            where.append("key_id = ?")
            args.append(key_id)
        if after is not None:
            where.append(
                "(created_at, id) < (SELECT created_at, id FROM fine_tuning_jobs WHERE id = ?)"
            )
            args.append(after)
        for name, value in (metadata or {}).items():
            where.append("EXISTS (SELECT 1 FROM json_each(metadata) WHERE key = ? AND value = ?)")
            args += [name, value]
        query = (
            f"SELECT {_COLUMNS} FROM fine_tuning_jobs WHERE {' AND '.join(where)} "  # noqa: S608
            "ORDER BY created_at DESC, id DESC LIMIT ?"
        )
        async with self._db.reader.execute(query, (*args, limit + 1)) as cursor:
            rows = [_job(tuple(row)) async for row in cursor]
        return rows[:limit], len(rows) > limit

    async def offset_page(
        self, key_id: str | None, status: str | None, limit: int, offset: int
    ) -> tuple[list[StoredJob], int]:
        """Newest first, `limit` from `offset` (only `status`, if given); and how many
        such jobs there are in all."""
        where, args = ["1 = 1"], []
        if key_id is not None:
            where.append("key_id = ?")
            args.append(key_id)
        if status is not None:
            where.append("status = ?")
            args.append(status)
        condition = " AND ".join(where)
        query = (
            f"SELECT {_COLUMNS} FROM fine_tuning_jobs WHERE {condition} "  # noqa: S608
            "ORDER BY created_at DESC, rowid DESC LIMIT ? OFFSET ?"
        )
        async with self._db.reader.execute(query, (*args, limit, offset)) as cursor:
            rows = [_job(tuple(row)) async for row in cursor]
        count = f"SELECT COUNT(*) FROM fine_tuning_jobs WHERE {condition}"  # noqa: S608
        async with self._db.reader.execute(count, args) as cursor:
            found = await cursor.fetchone()
        return rows, int(found[0]) if found else 0

    async def under_way(self, key_id: str) -> int:
        """How many of the key's jobs are not final."""
        marks = ", ".join("?" for _ in ACTIVE)
        query = f"SELECT COUNT(*) FROM fine_tuning_jobs WHERE key_id = ? AND status IN ({marks})"  # noqa: S608
        async with self._db.conn.execute(query, (key_id, *ACTIVE)) as cursor:
            row = await cursor.fetchone()
        return 0 if row is None else int(row[0])

    async def active(self) -> list[StoredJob]:
        marks = ", ".join("?" for _ in ACTIVE)
        query = (
            f"SELECT {_COLUMNS} FROM fine_tuning_jobs WHERE status IN ({marks}) "  # noqa: S608
            "ORDER BY created_at, id"
        )
        async with self._db.conn.execute(query, ACTIVE) as cursor:
            return [_job(tuple(row)) async for row in cursor]

    async def move(
        self,
        job_id: str,
        status: str,
        message: str,
        *,
        only_from: Sequence[str] = ACTIVE,
        level: str = "info",
        **fields: Any,
    ) -> bool:
        """Set the job's status (and `fields`) with an event saying why, if its status is
        one of `only_from`; whether it moved. A final status stamps `finished_at`."""
        sets = ["status = ?"]
        args: list[object] = [status]
        if status in ("succeeded", "failed", "cancelled"):
            fields.setdefault("finished_at", int(time.time()))
            fields.setdefault("estimated_finish", None)
        for name, value in fields.items():
            if name not in _NAMES:
                raise ValueError(f"no column {name}")
            sets.append(f"{name} = ?")
            args.append(
                _encode(value) if isinstance(value, list | dict | msgspec.Struct) else value
            )
        marks = ", ".join("?" for _ in only_from)
        async with self._db.transaction() as conn:
            cursor = await conn.execute(
                f"UPDATE fine_tuning_jobs SET {', '.join(sets)} "  # noqa: S608
                f"WHERE id = ? AND status IN ({marks})",
                (*args, job_id, *only_from),
            )
            if cursor.rowcount == 0:
                return False
            await self._event(conn, job_id, level, message)
        return True

    async def progress(
        self,
        job_id: str,
        step: int,
        total_steps: int | None,
        loss: float | None,
        trained_tokens: int,
        estimated_finish: int | None,
        event: tuple[str, dict[str, Any]] | None,
    ) -> None:
        """A training step: the job's counters, and its metrics event."""
        async with self._db.transaction() as conn:
            await conn.execute(
                "UPDATE fine_tuning_jobs SET step = ?, total_steps = ?, last_loss = ?, "
                "trained_tokens = ?, estimated_finish = ? WHERE id = ? AND status = 'running'",
                (step, total_steps, loss, trained_tokens, estimated_finish, job_id),
            )
            if event is not None:
                await self._event(conn, job_id, "info", event[0], "metrics", event[1])

    async def note(self, job_id: str, message: str, level: str = "info") -> None:
        async with self._db.transaction() as conn:
            await self._event(conn, job_id, level, message)

    async def _event(
        self,
        conn: Any,
        job_id: str,
        level: str,
        message: str,
        kind: str = "message",
        data: dict[str, Any] | None = None,
    ) -> None:
        await conn.execute(
            "INSERT INTO fine_tuning_events (id, job_id, created_at, level, type, message, "
            "data) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                "ftevent-" + secrets.token_hex(10),
                job_id,
                int(time.time()),
                level,
                kind,
                message,
                None if data is None else _encode(data),
            ),
        )

    async def events(
        self, job_id: str, after: str | None, limit: int
    ) -> tuple[list[FineTuningJobEvent], bool]:
        """Newest first, `limit` after the event `after`; and whether more follow."""
        query = "SELECT id, created_at, level, type, message, data FROM fine_tuning_events "
        query += "WHERE job_id = ?"
        args: list[object] = [job_id]
        if after is not None:
            query += " AND seq < (SELECT seq FROM fine_tuning_events WHERE id = ?)"
            args.append(after)
        query += " ORDER BY seq DESC LIMIT ?"
        async with self._db.reader.execute(query, (*args, limit + 1)) as cursor:
            rows = [
                FineTuningJobEvent(
                    id=str(r[0]),
                    created_at=int(r[1]),
                    level=r[2],
                    type=r[3],
                    message=str(r[4]),
                    data=None if r[5] is None else msgspec.json.decode(str(r[5])),
                )
                async for r in cursor
            ]
        return rows[:limit], len(rows) > limit

    async def metrics(self, job_id: str) -> list[dict[str, Any]]:
        """The data of the job's metrics events, oldest first."""
        query = "SELECT data FROM fine_tuning_events WHERE job_id = ? AND type = 'metrics' "
        async with self._db.reader.execute(query + "ORDER BY seq", (job_id,)) as cursor:
            return [msgspec.json.decode(str(r[0])) async for r in cursor if r[0] is not None]

    async def add_checkpoint(
        self, job_id: str, step: int, metrics: CheckpointMetrics, path: str
    ) -> bool:
        """Store the checkpoint of `step` unless it is stored already; whether it was new."""
        async with self._db.transaction() as conn:
            cursor = await conn.execute(
                "INSERT OR IGNORE INTO fine_tuning_checkpoints (id, job_id, step, created_at, "
                "metrics, path) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    "ftckpt-" + secrets.token_hex(10),
                    job_id,
                    step,
                    int(time.time()),
                    _encode(metrics),
                    path,
                ),
            )
            return cursor.rowcount > 0

    async def checkpoints(
        self, job: FineTuningJob, model_name: str, after: str | None, limit: int
    ) -> tuple[list[FineTuningJobCheckpoint], bool]:
        """Newest first, `limit` after the checkpoint `after`; and whether more follow."""
        query = "SELECT id, step, created_at, metrics FROM fine_tuning_checkpoints "
        query += "WHERE job_id = ?"
        args: list[object] = [job.id]
        if after is not None:
            query += " AND step < (SELECT step FROM fine_tuning_checkpoints WHERE id = ?)"
            args.append(after)
        query += " ORDER BY step DESC LIMIT ?"
        async with self._db.reader.execute(query, (*args, limit + 1)) as cursor:
            rows = [
                FineTuningJobCheckpoint(
                    id=str(r[0]),
                    created_at=int(r[2]),
                    fine_tuned_model_checkpoint=f"{model_name}:ckpt-step-{int(r[1])}",
                    fine_tuning_job_id=job.id,
                    metrics=msgspec.json.decode(str(r[3]), type=CheckpointMetrics),
                    step_number=int(r[1]),
                )
                async for r in cursor
            ]
        return rows[:limit], len(rows) > limit
