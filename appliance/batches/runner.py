"""The batch runner: one task of the app's lifespan that moves every batch along.

Each step it looks at the batches with work left (in SQLite, so a restart picks them up
where they stopped): it reads the input file of a `validating` one; for an `in_progress`
one it starts lines while there is spare capacity (`ReplicaSet.spare_lease`: a line never
takes the last free slot of a model, so interactive requests keep theirs), at most
`server.batch_lines_in_flight` over the server and the tier's `batch_lines_in_flight` per
key; once every line has an outcome it writes the result files from SQLite and completes
the batch. A `cancelling` batch stops its running lines and ends `cancelled`; one past
its `expires_at` ends `expired`. The lines that never ran are written to the error file
(`batch_cancelled`, `batch_expired`), so every line appears once in the results.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import msgspec
from anyio.abc import TaskGroup

from appliance.accounting.limits import Policy
from appliance.accounting.meter import Meter
from appliance.batches.validation import read_input
from appliance.errors import ApiError, Unauthorized
from appliance.openai.batch_lines import BatchCaller, LineResult, result_line, serve_line
from appliance.openai.batch_protocol import BatchError, LineError
from appliance.registry import ModelRegistry
from appliance.request_context import new_request_id
from appliance.state.batches import BatchStore, PendingLine, StoredBatch
from appliance.state.files import FileStore
from appliance.state.keys import ApiKey
from appliance.state.responses import ResponseStore
from appliance.webhooks.events import EventBus
from backends.replicas import Lease, ReplicaSet

log = logging.getLogger("radiance.batches")
IDLE_SECONDS = 1.0  # between steps when no line is running
BUSY_SECONDS = 0.25  # between steps while lines run (a line that ends wakes it at once)
RETRY_SECONDS = 1.0  # before a line that met "not now" (503) runs again
PROGRESS_SECONDS = 5.0  # how often a running batch's progress is logged


@dataclass
class _Running:
    key_id: str
    scopes: dict[int, anyio.CancelScope] = field(default_factory=dict)
    not_before: dict[int, float] = field(default_factory=dict)
    logged: float = 0.0


@dataclass
class BatchRunner:
    store: BatchStore
    files: FileStore
    meter: Meter
    models: ModelRegistry
    responses: ResponseStore
    events: EventBus
    key_of: Callable[[str], ApiKey | None]
    policy_of: Callable[[ApiKey], Policy]
    max_in_flight: int
    wake: anyio.Event = field(default_factory=anyio.Event)
    _running: dict[str, _Running] = field(default_factory=dict)

    def poke(self) -> None:
        """A batch was created or cancelled: look at once."""
        self.wake.set()

    def in_flight(self, key_id: str | None = None) -> int:
        return sum(
            len(r.scopes) for r in self._running.values() if key_id is None or r.key_id == key_id
        )

    async def run(self) -> None:
        async with anyio.create_task_group() as tasks:
            while True:
                try:
                    await self.step(tasks)
                except Exception:
                    log.exception("the batch runner failed a step")
                with anyio.move_on_after(BUSY_SECONDS if self._running else IDLE_SECONDS):
                    await self.wake.wait()
                self.wake = anyio.Event()

    async def step(self, tasks: TaskGroup) -> None:
        for stored in await self.store.active():
            batch = stored.batch
            running = self._running.setdefault(batch.id, _Running(stored.key_id))
            if batch.status == "validating":
                await self._validate(stored)
            elif batch.status == "in_progress":
                if batch.expires_at is not None and time.time() >= batch.expires_at:
                    await self._stop(stored, running, "expired")
                else:
                    await self._progress(stored, running, tasks)
            elif batch.status == "finalizing":
                await self._end(stored, "completed")
            elif batch.status == "cancelling":
                await self._stop(stored, running, "cancelled")

    async def _validate(self, stored: StoredBatch) -> None:
        batch = stored.batch
        path = self.files.path(batch.input_file_id)
        try:
            read = await anyio.to_thread.run_sync(read_input, path, batch.endpoint)
        except OSError:
            errors = [BatchError(code="file_not_found", message="the input file is gone")]
            read = None
        if read is None or read.errors:
            await self.store.fail(batch.id, errors if read is None else read.errors)
            self._running.pop(batch.id, None)
            await self._announce(batch.id, "failed")
            return
        await self.store.load(batch.id, read.lines)
        log.info("batch %s: %d lines to run on %s", batch.id, len(read.lines), batch.endpoint)

    async def _progress(self, stored: StoredBatch, running: _Running, tasks: TaskGroup) -> None:
        batch = stored.batch
        counts = batch.request_counts
        now = time.monotonic()
        if now - running.logged >= PROGRESS_SECONDS:
            running.logged = now
            log.info(
                "batch %s: %d/%d lines done (%d failed), %d running",
                batch.id,
                counts.completed + counts.failed,
                counts.total,
                counts.failed,
                len(running.scopes),
            )
        if counts.completed + counts.failed >= counts.total and not running.scopes:
            if await self.store.move(batch.id, "finalizing", ["in_progress"]):
                await self._end(stored, "completed")
            return
        key = self.key_of(stored.key_id)
        try:
            policy = None if key is None else self.policy_of(key)
        except ApiError:  # the key's tier is gone from the config
            policy = None
        if key is None or policy is None:
            await self._refuse(stored)
            return
        room = self.max_in_flight - self.in_flight()
        if policy.batch_lines_in_flight is not None:
            room = min(room, policy.batch_lines_in_flight - self.in_flight(stored.key_id))
        if room <= 0:
            return
        skip = set(running.scopes) | {
            line for line, at in running.not_before.items() if at > time.time()
        }
        caller = BatchCaller(key, policy, self.meter, self.models, self.responses)
        blocked: set[str | None] = set()
        for line in await self.store.pending(batch.id, skip, room):
            if line.model in blocked:
                continue
            leased, lease = self._spare(line.model)
            if not leased:
                blocked.add(line.model)
                continue
            scope = anyio.CancelScope()
            running.scopes[line.line] = scope
            tasks.start_soon(self._line, batch.id, batch.endpoint, caller, line, lease, scope)

    def _spare(self, model: str | None) -> tuple[bool, Lease[Any] | None]:
        """Whether a line for `model` may start now, and the lease it runs on. A line whose
        model does not resolve starts at once (its error needs no engine)."""
        try:
            served = self.models.resolve(model or "")
        except ApiError:
            return True, None
        engine = served.engine
        if isinstance(engine, ReplicaSet):
            lease = engine.spare_lease()
            return lease is not None, lease
        stats = engine.stats()
        busy = stats.running + stats.waiting
        parallel = max(1, engine.capabilities.parallel)
        return (busy == 0 if parallel == 1 else busy + 2 <= parallel), None

    async def _line(
        self,
        batch_id: str,
        endpoint: str,
        caller: BatchCaller,
        line: PendingLine,
        lease: Lease[Any] | None,
        scope: anyio.CancelScope,
    ) -> None:
        running = self._running.get(batch_id)
        result: LineResult | None = None
        try:
            with scope:
                result = await serve_line(
                    caller, batch_id, endpoint, line.custom_id, line.body.encode(), lease
                )
        except Exception:
            log.exception("batch %s: line %d failed in the server", batch_id, line.line)
        finally:
            if lease is not None:
                lease.release()
            if running is not None:
                running.scopes.pop(line.line, None)
        if result is None:
            return
        if result.retry:
            if running is not None:
                running.not_before[line.line] = time.time() + RETRY_SECONDS
            return
        with anyio.CancelScope(shield=True):
            await self.store.record(batch_id, line.line, result.outcome, result.line, result.tokens)
        self.poke()

    async def _refuse(self, stored: StoredBatch) -> None:
        """The batch's key is gone (revoked, expired, its tier removed): its lines fail."""
        error = Unauthorized("The batch's API key is no longer valid.", code="invalid_api_key")
        for line in await self.store.pending(stored.batch.id, set(), 1000):
            text = result_line(
                new_request_id(),
                line.custom_id,
                error=LineError(code=error.code, message=error.message),
            )
            await self.store.record(stored.batch.id, line.line, "error", text, (0, 0))

    async def _stop(self, stored: StoredBatch, running: _Running, status: str) -> None:
        """Cancel the running lines; once none runs, end the batch as `status`."""
        for scope in running.scopes.values():
            scope.cancel()
        if not running.scopes:
            await self._end(stored, status)

    async def _end(self, stored: StoredBatch, status: str) -> None:
        batch = stored.batch
        unfinished = {"expired": "batch_expired", "cancelled": "batch_cancelled"}.get(status)
        output: list[bytes] = []
        errors: list[bytes] = []
        async for _, custom_id, outcome, result in self.store.results(batch.id):
            if outcome == "output" and result is not None:
                output.append(result.encode())
            elif outcome == "error" and result is not None:
                errors.append(result.encode())
            else:
                message = f"the batch was {status} before this request ran"
                errors.append(
                    result_line(
                        new_request_id(),
                        custom_id,
                        error=LineError(code=unfinished or "batch_failed", message=message),
                    )
                )
        stem = batch.id.removeprefix("batch_")
        rows: list[tuple[str, str, str, str, int, str]] = []
        ids: dict[str, str | None] = {"output": None, "error": None}
        for kind, lines in (("output", output), ("error", errors)):
            if not lines:
                continue
            file_id = f"file-{stem}{kind[:3]}"
            size, digest = await anyio.to_thread.run_sync(self.files.write_lines, file_id, lines)
            rows.append(
                (file_id, stored.key_id, f"{batch.id}_{kind}.jsonl", "batch_output", size, digest)
            )
            ids[kind] = file_id
        await self.store.finish(batch.id, status, rows, ids["output"], ids["error"])
        self._running.pop(batch.id, None)
        log.info(
            "batch %s %s: %d lines in the output file, %d in the error file",
            batch.id,
            status,
            len(output),
            len(errors),
        )
        await self._announce(batch.id, status)

    async def _announce(self, batch_id: str, status: str) -> None:
        stored = await self.store.get(batch_id, None)
        if stored is None:
            return
        data = {"key_id": stored.key_id, "batch": msgspec.to_builtins(stored.batch)}
        try:
            await self.events.publish(f"batch.{status}", data)
        except Exception:
            log.exception("could not publish batch.%s for %s", status, batch_id)
