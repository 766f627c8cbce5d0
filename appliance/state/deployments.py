"""The deployments made through the API, so they come back after a restart.

A row holds what was asked (the model, a new source and its pricing, the configuration as
last changed), not the running state: a restart deploys each row again. Deployments from
radiance.yaml are never stored; the config declares them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import msgspec

from appliance.deployments.spec import Configuration, PricingBody
from appliance.state.database import Database

_COLUMNS = "id, model_id, source, pricing, configuration, created_at, updated_at, adapter, owner"


@dataclass(frozen=True)
class StoredDeployment:
    id: str
    model_id: str
    source: str | None
    pricing: PricingBody | None
    configuration: Configuration
    created_at: float
    updated_at: float
    adapter: str | None = None
    owner: str | None = None  # the key a fine-tuned model belongs to


def _row(row: tuple[object, ...]) -> StoredDeployment:
    pricing = row[3]
    return StoredDeployment(
        id=str(row[0]),
        model_id=str(row[1]),
        source=None if row[2] is None else str(row[2]),
        pricing=None if pricing is None else msgspec.json.decode(str(pricing), type=PricingBody),
        configuration=msgspec.json.decode(str(row[4]), type=Configuration),
        created_at=float(str(row[5])),
        updated_at=float(str(row[6])),
        adapter=None if row[7] is None else str(row[7]),
        owner=None if row[8] is None else str(row[8]),
    )


class DeploymentStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def all(self) -> list[StoredDeployment]:
        async with self._db.conn.execute(
            f"SELECT {_COLUMNS} FROM deployments ORDER BY created_at"  # noqa: S608
        ) as cursor:
            return [_row(tuple(row)) async for row in cursor]

    async def add(
        self,
        id: str,
        model_id: str,
        source: str | None,
        pricing: PricingBody | None,
        configuration: Configuration,
        adapter: str | None = None,
        owner: str | None = None,
    ) -> StoredDeployment:
        now = time.time()
        stored = StoredDeployment(
            id, model_id, source, pricing, configuration, now, now, adapter, owner
        )
        async with self._db.transaction() as conn:
            await conn.execute(
                f"INSERT INTO deployments ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",  # noqa: S608
                (
                    id,
                    model_id,
                    source,
                    None if pricing is None else msgspec.json.encode(pricing).decode(),
                    msgspec.json.encode(configuration).decode(),
                    now,
                    now,
                    adapter,
                    owner,
                ),
            )
        return stored

    async def update(self, id: str, configuration: Configuration) -> None:
        async with self._db.transaction() as conn:
            await conn.execute(
                "UPDATE deployments SET configuration = ?, updated_at = ? WHERE id = ?",
                (msgspec.json.encode(configuration).decode(), time.time(), id),
            )

    async def remove(self, id: str) -> None:
        async with self._db.transaction() as conn:
            await conn.execute("DELETE FROM deployments WHERE id = ?", (id,))
