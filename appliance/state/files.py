"""/v1/files: the bytes on disk under server.files_dir, one row per file in SQLite.

A file belongs to the key that uploaded it (a batch's results to the batch's key): a key
sees only its own, the admin sees every file. An upload is written to `<id>.part` while it
streams in and hashed on the way, then renamed and recorded, so a file that is listed is
whole.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pathlib
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass

from appliance.openai.batch_protocol import FileObject
from appliance.state.database import Database

_COLUMNS = "id, key_id, filename, purpose, bytes, sha256, created_at, expires_at"


def new_file_id() -> str:
    return "file-" + secrets.token_hex(12)


class FileTooLarge(Exception):
    """An upload went over server.max_file_bytes."""


@dataclass(frozen=True)
class StoredFile:
    key_id: str
    file: FileObject


class FileWriter:
    """One upload streaming to disk: `write` its chunks, then `FileStore.commit` it (or
    `discard` it). The size cap is checked on every chunk."""

    def __init__(self, folder: pathlib.Path, limit: int) -> None:
        self.id = new_file_id()
        self.limit = limit
        self.size = 0
        self._hash = hashlib.sha256()
        self.path = folder / self.id
        self._part = folder / f"{self.id}.part"
        folder.mkdir(parents=True, exist_ok=True)
        self._out = self._part.open("wb")

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.limit:
            raise FileTooLarge(self.limit)
        self._hash.update(chunk)
        self._out.write(chunk)

    def close(self) -> str:
        """Flush and keep the bytes; the SHA-256 of the content, hex."""
        self._out.flush()
        os.fsync(self._out.fileno())
        self._out.close()
        self._part.replace(self.path)
        return self._hash.hexdigest()

    def discard(self) -> None:
        self._out.close()
        with contextlib.suppress(FileNotFoundError):
            self._part.unlink()


class FileStore:
    def __init__(self, db: Database, folder: pathlib.Path, max_bytes: int) -> None:
        self._db = db
        self.folder = folder
        self.max_bytes = max_bytes

    def writer(self) -> FileWriter:
        return FileWriter(self.folder, self.max_bytes)

    def path(self, file_id: str) -> pathlib.Path:
        return self.folder / file_id

    async def commit(
        self, writer: FileWriter, key_id: str, filename: str, purpose: str
    ) -> FileObject:
        """Keep an upload that streamed in whole."""
        digest = writer.close()
        return await self.add(writer.id, key_id, filename, purpose, writer.size, digest)

    async def add(
        self, file_id: str, key_id: str, filename: str, purpose: str, size: int, sha256: str
    ) -> FileObject:
        created = int(time.time())
        async with self._db.transaction() as conn:
            await conn.execute(
                f"INSERT OR REPLACE INTO files ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, NULL)",  # noqa: S608
                (file_id, key_id, filename, purpose, size, sha256, created),
            )
        return FileObject(
            id=file_id,
            bytes=size,
            created_at=created,
            filename=filename,
            purpose=purpose,  # type: ignore[arg-type]
            sha256=sha256,
        )

    def write_lines(self, file_id: str, lines: Iterable[bytes]) -> tuple[int, str]:
        """Write a file the server makes (a batch's results); its size and SHA-256."""
        self.folder.mkdir(parents=True, exist_ok=True)
        digest, size = hashlib.sha256(), 0
        part = self.folder / f"{file_id}.part"
        with part.open("wb") as out:
            for line in lines:
                out.write(line)
                digest.update(line)
                size += len(line)
            out.flush()
            os.fsync(out.fileno())
        part.replace(self.path(file_id))
        return size, digest.hexdigest()

    async def get(self, file_id: str, key_id: str | None) -> StoredFile | None:
        """The file, if `key_id` owns it (None: the admin, who sees every file)."""
        where, args = (
            ("id = ?", (file_id,))
            if key_id is None
            else ("id = ? AND key_id = ?", (file_id, key_id))
        )
        async with self._db.reader.execute(
            f"SELECT {_COLUMNS} FROM files WHERE {where}",  # noqa: S608
            args,
        ) as cursor:
            row = await cursor.fetchone()
        return None if row is None else _stored(tuple(row))

    async def page(
        self, key_id: str | None, purpose: str | None, after: str | None, limit: int, order: str
    ) -> tuple[list[FileObject], bool]:
        """A page of files, newest first (`order` desc) or oldest first; and whether more follow."""
        clauses: list[str] = []
        args: list[object] = []
        if key_id is not None:
            clauses.append("key_id = ?")
            args.append(key_id)
        if purpose is not None:
            clauses.append("purpose = ?")
            args.append(purpose)
        if after is not None:
            anchor = await self.get(after, key_id)
            if anchor is not None:
                sign = "<" if order == "desc" else ">"
                clauses.append(f"(created_at, id) {sign} (?, ?)")
                args += [anchor.file.created_at, anchor.file.id]
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        direction = "DESC" if order == "desc" else "ASC"
        query = (
            f"SELECT {_COLUMNS} FROM files {where} "  # noqa: S608
            f"ORDER BY created_at {direction}, id {direction} LIMIT ?"
        )
        async with self._db.reader.execute(query, (*args, limit + 1)) as cursor:
            rows = [_stored(tuple(row)).file async for row in cursor]
        return rows[:limit], len(rows) > limit

    async def delete(self, file_id: str, key_id: str | None) -> bool:
        stored = await self.get(file_id, key_id)
        if stored is None:
            return False
        async with self._db.transaction() as conn:
            await conn.execute("DELETE FROM files WHERE id = ?", (file_id,))
        with contextlib.suppress(FileNotFoundError):
            self.path(file_id).unlink()
        return True


def _stored(row: tuple[object, ...]) -> StoredFile:
    file_id, key_id, filename, purpose, size, sha256, created, expires = row
    return StoredFile(
        key_id=str(key_id),
        file=FileObject(
            id=str(file_id),
            bytes=int(str(size)),
            created_at=int(str(created)),
            expires_at=None if expires is None else int(str(expires)),
            filename=str(filename),
            purpose=str(purpose),  # type: ignore[arg-type]
            sha256=str(sha256),
        ),
    )
