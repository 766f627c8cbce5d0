"""Datasets in SQLite: a named `fine-tune` file of one key, checked once when it is made.

A dataset is `ready` (its examples counted) or `invalid` (its first errors kept, each with
its line and field), and stays either way, so its owner can read why. One made for a model
is `validating` first, while the model's chat template renders it and its tokens are
counted (`finish` records the outcome; a restart takes up those left `validating`).
Removing a dataset leaves its file in /v1/files.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, cast

import msgspec

from appliance.state.database import Database

DatasetStatus = Literal["validating", "ready", "invalid"]
_COLUMNS = "id, key_id, name, file_id, model, status, examples, tokens, errors, created_at"


class LineError(msgspec.Struct, frozen=True):
    """One problem of a dataset's file: the line (from 1), the field if one is at fault."""

    line: int
    field: str | None
    message: str


@dataclass(frozen=True)
class StoredDataset:
    id: str
    key_id: str
    name: str
    file_id: str
    model: str | None
    status: DatasetStatus
    examples: int | None
    tokens: int | None
    errors: list[LineError]
    created_at: int


def new_dataset_id() -> str:
    return "ds-" + secrets.token_hex(10)


def _dataset(row: Sequence[object]) -> StoredDataset:
    ds_id, key_id, name, file_id, model, status, examples, tokens, errors, created = row
    return StoredDataset(
        id=str(ds_id),
        key_id=str(key_id),
        name=str(name),
        file_id=str(file_id),
        model=None if model is None else str(model),
        status=cast(DatasetStatus, status),
        examples=None if examples is None else int(str(examples)),
        tokens=None if tokens is None else int(str(tokens)),
        errors=[] if errors is None else msgspec.json.decode(str(errors), type=list[LineError]),
        created_at=int(str(created)),
    )


def _owned(key_id: str | None) -> tuple[str, tuple[object, ...]]:
    return ("", ()) if key_id is None else (" AND key_id = ?", (key_id,))


class DatasetStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(
        self,
        key_id: str,
        name: str,
        file_id: str,
        model: str | None,
        examples: int,
        errors: list[LineError],
        validating: bool = False,
    ) -> StoredDataset:
        """A dataset, `invalid` if `errors` has any, else `ready` (or, to be rendered by
        its model's chat template first, `validating`) with `examples`."""
        stored = StoredDataset(
            id=new_dataset_id(),
            key_id=key_id,
            name=name,
            file_id=file_id,
            model=model,
            status="invalid" if errors else "validating" if validating else "ready",
            examples=None if errors else examples,
            tokens=None,  # counted by a job's validation, with the base model's tokenizer
            errors=errors,
            created_at=int(time.time()),
        )
        async with self._db.transaction() as conn:
            await conn.execute(
                f"INSERT INTO datasets ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, NULL, ?, ?)",  # noqa: S608
                (
                    stored.id,
                    key_id,
                    name,
                    file_id,
                    model,
                    stored.status,
                    stored.examples,
                    msgspec.json.encode(errors).decode() if errors else None,
                    stored.created_at,
                ),
            )
        return stored

    async def finish(
        self, dataset_id: str, examples: int | None, tokens: int | None, errors: list[LineError]
    ) -> None:
        """The outcome of a `validating` dataset: `ready` with its counts, or `invalid`."""
        async with self._db.transaction() as conn:
            await conn.execute(
                "UPDATE datasets SET status = ?, examples = ?, tokens = ?, errors = ? "
                "WHERE id = ? AND status = 'validating'",
                (
                    "invalid" if errors else "ready",
                    None if errors else examples,
                    None if errors else tokens,
                    msgspec.json.encode(errors).decode() if errors else None,
                    dataset_id,
                ),
            )

    async def validating(self) -> list[StoredDataset]:
        query = f"SELECT {_COLUMNS} FROM datasets WHERE status = 'validating'"  # noqa: S608
        async with self._db.conn.execute(query) as cursor:
            return [_dataset(tuple(row)) async for row in cursor]

    async def get(self, dataset_id: str, key_id: str | None) -> StoredDataset | None:
        """The dataset; None if there is none, or it is not `key_id`'s (None: any key's)."""
        mine, args = _owned(key_id)
        query = f"SELECT {_COLUMNS} FROM datasets WHERE id = ?{mine}"  # noqa: S608
        async with self._db.reader.execute(query, (dataset_id, *args)) as cursor:
            row = await cursor.fetchone()
        return None if row is None else _dataset(tuple(row))

    async def page(
        self, key_id: str | None, limit: int, offset: int
    ) -> tuple[list[StoredDataset], int]:
        """Newest first, `limit` from `offset`; and how many there are in all."""
        mine, args = _owned(key_id)
        where = f"WHERE 1 = 1{mine}"
        query = (
            f"SELECT {_COLUMNS} FROM datasets {where} "  # noqa: S608
            "ORDER BY created_at DESC, rowid DESC LIMIT ? OFFSET ?"
        )
        async with self._db.reader.execute(query, (*args, limit, offset)) as cursor:
            found = [_dataset(tuple(row)) async for row in cursor]
        count = f"SELECT COUNT(*) FROM datasets {where}"  # noqa: S608
        async with self._db.reader.execute(count, args) as cursor:
            row = await cursor.fetchone()
        return found, int(row[0]) if row else 0

    async def delete(self, dataset_id: str, key_id: str | None) -> StoredDataset | None:
        """Remove the dataset (not its file); what it was, or None if there was none."""
        stored = await self.get(dataset_id, key_id)
        if stored is None:
            return None
        async with self._db.transaction() as conn:
            await conn.execute("DELETE FROM datasets WHERE id = ?", (stored.id,))
        return stored
