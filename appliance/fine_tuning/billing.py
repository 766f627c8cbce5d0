"""What training costs: trained tokens at the base model's `pricing.training`, one ledger row
per job (its id is the job's, so a job is billed once however often its ending is told),
under the model name `<base>:fine-tuning` in analytics and statements.

A key with a budget must have room for the whole job (its tokens times its epochs) when its
files are validated; that much is held against the budget until the job is billed.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from appliance.accounting.limits import Policy, QuotaExceeded
from appliance.accounting.meter import Meter
from appliance.accounting.money import price_micros
from appliance.config import LoadedConfig
from appliance.state.fine_tuning import StoredJob
from appliance.state.keys import ApiKey
from appliance.state.ledger import Ledger, RequestRecord

log = logging.getLogger("radiance.fine_tuning")
ENDPOINT = "/v1/fine_tuning/jobs"
_HTTP = {"ok": 200, "error": 500, "cancelled": 499}


@dataclass
class TrainingBill:
    ledger: Ledger
    meter: Meter
    loaded: LoadedConfig
    key_of: Callable[[str], ApiKey | None]
    policy_of: Callable[[ApiKey], Policy]
    _holds: dict[str, Callable[[], None]] = field(default_factory=dict)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def price(self, model_id: str) -> str:
        model = next((m for m in self.loaded.config.models if m.id == model_id), None)
        return "0" if model is None else model.pricing.training

    async def refuses(self, job_id: str, key_id: str, model_id: str, tokens: int) -> str | None:
        """Why the key cannot pay for `tokens` of training, or None (then it is held)."""
        key = self.key_of(key_id)
        if key is None:
            return "the key that made the job is revoked, expired or gone"
        cost = tokens * price_micros(self.price(model_id))
        try:
            admission = await self.meter.admit(
                key, self.policy_of(key), 0, cost, cost, rate_limited=False
            )
        except QuotaExceeded as exc:
            return exc.message
        if admission is not None:
            admission.settle(0)
            self._holds[job_id] = admission.release_hold
        return None

    async def charge(self, stored: StoredJob, tokens: int, status: str) -> None:
        """The job's ledger row, unless it has one already."""
        job = stored.job
        release = self._holds.pop(job.id, None)
        try:
            if tokens <= 0:
                return
            async with self._lock:
                await self._record(stored, tokens, status)
        finally:
            if release is not None:
                release()

    async def _record(self, stored: StoredJob, tokens: int, status: str) -> None:
        job = stored.job

        def billed(conn: sqlite3.Connection) -> bool:
            return (
                conn.execute("SELECT 1 FROM requests WHERE id = ?", (job.id,)).fetchone()
                is not None
            )

        if await self.ledger.read(billed):
            return
        price = self.price(job.model)
        key = self.key_of(stored.key_id)
        model = next((m for m in self.loaded.config.models if m.id == job.model), None)
        now = time.time()
        row = RequestRecord(
            id=job.id,
            key_id=stored.key_id,
            key_name=None if key is None else key.name,
            endpoint=ENDPOINT,
            route_model=job.model,
            # Its own name in analytics and statements, so a job's hours never count
            # among the model's request latencies.
            model=f"{job.model}:fine-tuning",
            backend=None if model is None else model.backend,
            prompt_tokens=tokens,
            completion_tokens=0,
            status=status,
            http_status=_HTTP.get(status, 200),
            error_code=None if status == "ok" else f"fine_tuning_{status}",
            latency_ms=max(now - job.created_at, 0.0) * 1000,
            ttft_ms=None,
            started_at=float(job.created_at),
            ended_at=now,
            prompt_price=price,
            completion_price="0",
            cost_pusd=tokens * price_micros(price),
        )
        await self.ledger.record(row)
        log.info(
            "fine-tuning job %s billed: key=%s model=%s trained_tokens=%d status=%s",
            job.id,
            row.key_name,
            job.model,
            tokens,
            status,
        )
