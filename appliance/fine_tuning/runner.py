"""The fine-tuning runner: one task of the app's lifespan that moves every job along.

A `validating_files` job gets a trainer run that only validates its files against the base
model's chat template and context length (and, with a budget, what training will cost);
a `queued` one starts training when fewer than `training.jobs_at_once` train; a `running`
one without a trainer (the server restarted) resumes from its last checkpoint. Reports
become events, checkpoints and the job's counters. When training succeeds the adapter is
deployed as the model `ft:<base>:<suffix>:<job id>` and the job succeeds once it serves.
Whatever the ending, the trained tokens are billed once, to the job's key, in the ledger.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import pathlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import msgspec

from appliance.config import LoadedConfig
from appliance.deployments.manager import DeploymentManager
from appliance.errors import ApiError
from appliance.fine_tuning.bases import TrainingBase, gguf_file, local_weights, training_base
from appliance.fine_tuning.billing import TrainingBill
from appliance.fine_tuning.delivery import deploy_adapter, results_file
from appliance.fine_tuning.trainer_process import TrainerProcess, invalid_reason, step_event
from appliance.openai.fine_tuning_protocol import CheckpointMetrics, FineTuningJob, JobError
from appliance.state.files import FileStore
from appliance.state.fine_tuning import ACTIVE, FineTuningStore, StoredJob
from appliance.webhooks.events import EventBus

log = logging.getLogger("radiance.fine_tuning")
IDLE_SECONDS = 1.0
STEP_EVENTS = 200  # at most this many step events per job (evenly spread), besides the last


def model_name(job: FineTuningJob) -> str:
    """The fine-tuned model's name: ft:<base>:<suffix>:<job id>."""
    return f"ft:{job.model}:{job.user_provided_suffix or ''}:{job.id}"


@dataclass
class FineTuningRunner:
    store: FineTuningStore
    files: FileStore
    loaded: LoadedConfig
    deployments: DeploymentManager
    bill: TrainingBill
    events: EventBus
    jobs_dir: pathlib.Path
    # Bounds the processes that check files against a tokenizer (shared with datasets).
    checks: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(2))
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    _training: set[str] = field(default_factory=set)
    _trainers: dict[str, TrainerProcess] = field(default_factory=dict)
    # Told the key id of a job that became final (the console and tests watch this).
    on_final: list[Callable[[str], None]] = field(default_factory=list)

    def poke(self) -> None:
        self.wake.set()

    def training(self, job_id: str) -> bool:
        return job_id in self._trainers

    async def run(self) -> None:
        try:
            while True:
                try:
                    await self.step()
                except Exception:
                    log.exception("the fine-tuning runner failed a step")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), IDLE_SECONDS)
                self.wake.clear()
        finally:
            with anyio.CancelScope(shield=True):
                await self.close()

    async def close(self) -> None:
        """The server stops: end every trainer; their jobs resume at the next start."""
        for job_id, trainer in list(self._trainers.items()):
            log.info("fine-tuning job %s: stopping its trainer (the server stops)", job_id)
            await trainer.stop()
        for task in self._tasks.values():
            task.cancel()

    async def step(self) -> None:
        settings = self.loaded.config.training
        for stored in await self.store.active():
            job = stored.job
            if job.id in self._tasks:
                continue
            if job.status == "validating_files":
                self._spawn(job.id, self._validate(stored))
            elif job.status == "running" or (
                job.status == "queued" and len(self._training) < settings.jobs_at_once
            ):
                self._training.add(job.id)
                self._spawn(job.id, self._train(stored))

    def _spawn(self, job_id: str, work: Any) -> None:
        async def guarded() -> None:
            try:
                await work
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.exception("fine-tuning job %s failed in the server", job_id)
                await self._fail(job_id, "internal_error", f"internal error: {exc}")
            finally:
                self._tasks.pop(job_id, None)
                self._training.discard(job_id)
                self.wake.set()

        self._tasks[job_id] = asyncio.create_task(guarded(), name=f"fine-tuning-{job_id}")

    # -- validation --------------------------------------------------------------------

    def _spec(self, stored: StoredJob, base: TrainingBase, weights: pathlib.Path) -> dict[str, Any]:
        job, settings = stored.job, self.loaded.config.training
        hyper = job.hyperparameters
        validation = job.validation_file
        return {
            "base": str(weights),
            "gguf_base": None,
            "training_file": str(self.files.path(job.training_file)),
            "validation_file": None if validation is None else str(self.files.path(validation)),
            "output_dir": str(self.jobs_dir / job.id),
            "n_epochs": hyper.n_epochs,
            "batch_size": hyper.batch_size,
            "learning_rate_multiplier": hyper.learning_rate_multiplier,
            "seed": job.seed,
            "threads": settings.threads,
            "context_length": base.model.context_length,
            "device": "cuda:0" if settings.gpus else "cpu",
            "gpu_memory_fraction": settings.gpu_memory_fraction,
            "validate_only": False,
        }

    async def _prepare(self, stored: StoredJob) -> tuple[TrainingBase, pathlib.Path] | None:
        job = stored.job
        try:
            base = training_base(self.loaded, job.model)
            weights = await local_weights(self.loaded, base)
        except ApiError as exc:
            await self._fail(job.id, "model_not_available", exc.message, "model")
            return None
        except Exception as exc:  # a hub download that failed
            await self._fail(job.id, "model_not_available", f"no weights to train: {exc}")
            return None
        if not (weights / "config.json").is_file():
            await self._fail(
                job.id,
                "model_not_available",
                f"the base model's weights are not in {weights} (no config.json there)",
                "model",
            )
            return None
        return base, weights

    async def _validate(self, stored: StoredJob) -> None:
        job = stored.job
        prepared = await self._prepare(stored)
        if prepared is None:
            return
        spec = self._spec(stored, *prepared) | {"validate_only": True}
        folder = self.jobs_dir / job.id
        async with self.checks:
            await self._check(stored, spec, folder)

    async def _check(self, stored: StoredJob, spec: dict[str, Any], folder: pathlib.Path) -> None:
        job = stored.job
        current = await self.store.get(job.id, None)
        if current is None or current.job.status != "validating_files":
            return  # cancelled while it waited its turn
        trainer = await TrainerProcess.start(spec, folder, self.loaded.config.training.threads, [])
        self._trainers[job.id] = trainer
        try:
            outcome, code = await trainer.validation()
        finally:
            self._trainers.pop(job.id, None)
        if trainer.stopping:
            return
        if outcome is None or outcome["event"] == "failed":
            reason = (outcome or {}).get("message") or trainer.log_tail() or f"exit code {code}"
            await self._fail(job.id, "invalid_training_file", f"validation failed: {reason}")
            return
        if outcome["event"] == "invalid":
            await self._invalid(job, outcome.get("errors") or [])
            return
        await self._validated(stored, outcome)

    async def _invalid(self, job: FineTuningJob, errors: list[dict[str, Any]]) -> None:
        message, which = invalid_reason(errors)
        await self._fail(job.id, "invalid_training_file", message, which)

    async def _validated(self, stored: StoredJob, report: dict[str, Any]) -> None:
        job = stored.job
        hyper = report.get("hyperparameters") or {}
        resolved = msgspec.structs.replace(
            job.hyperparameters,
            n_epochs=int(hyper.get("n_epochs", 1)),
            batch_size=int(hyper.get("batch_size", 1)),
            learning_rate_multiplier=float(hyper.get("learning_rate_multiplier", 1.0)),
        )
        tokens = int(report.get("tokens", 0)) * int(resolved.n_epochs)
        refused = await self.bill.refuses(job.id, stored.key_id, job.model, tokens)
        if refused is not None:
            await self._fail(job.id, "budget_exceeded", refused)
            return
        examples = int(report.get("examples", 0))
        await self.store.move(
            job.id,
            "queued",
            f"Files validated: {examples} examples, {report.get('tokens', 0)} tokens; "
            f"{tokens} tokens to train over {resolved.n_epochs} epochs",
            only_from=("validating_files",),
            hyperparameters=resolved,
            total_steps=report.get("total_steps"),
        )
        self.wake.set()

    # -- training ----------------------------------------------------------------------

    async def _train(self, stored: StoredJob) -> None:
        job = stored.job
        prepared = await self._prepare(stored)
        if prepared is None:
            return
        base, weights = prepared
        resumed = job.status == "running"
        if resumed:
            await self.store.note(job.id, "Training resumes from the last checkpoint")
        elif not await self.store.move(
            job.id, "running", "Fine-tuning job started", only_from=("queued",)
        ):
            return
        downloaded = None
        with contextlib.suppress(LookupError):
            downloaded = self.deployments.get(base.model.id).path
        spec = self._spec(stored, base, weights)
        gguf = gguf_file(self.loaded, base, downloaded)
        spec["gguf_base"] = None if gguf is None else str(gguf)
        settings = self.loaded.config.training
        started = time.time()
        log.info("fine-tuning job %s: training %s (%s)", job.id, job.model, weights)
        trainer = await TrainerProcess.start(
            spec, self.jobs_dir / job.id, settings.threads, settings.gpus
        )
        self._trainers[job.id] = trainer
        outcome: dict[str, Any] | None = None
        try:
            async for report in trainer.reports():
                kind = report["event"]
                if kind == "step":
                    await self._stepped(job, report, started)
                elif kind == "checkpoint":
                    await self._checkpoint(job, report)
                elif kind in ("succeeded", "failed", "invalid"):
                    outcome = report
            code = await trainer.wait()
        finally:
            self._trainers.pop(job.id, None)
        if trainer.stopping:
            return  # cancelled, or the server stops (the job resumes at the next start)
        if outcome is not None and outcome["event"] == "succeeded":
            await self._succeed(stored, base, outcome)
            return
        if outcome is not None and outcome["event"] == "invalid":
            await self._invalid(job, outcome.get("errors") or [])
            return
        reason = (outcome or {}).get("message") or trainer.log_tail() or f"exit code {code}"
        await self._fail(job.id, "training_failed", f"training failed: {reason}")

    async def _stepped(self, job: FineTuningJob, report: dict[str, Any], started: float) -> None:
        step, total = int(report.get("step", 0)), report.get("total_steps")
        total = total if isinstance(total, int) else None
        finish = (
            None
            if total is None or step <= 0
            else int(started + (time.time() - started) * total / step)
        )
        loss, tokens = report.get("train_loss"), int(report.get("trained_tokens", 0))
        event = step_event(report, step, total, STEP_EVENTS)
        await self.store.progress(job.id, step, total, loss, tokens, finish, event)

    async def _checkpoint(self, job: FineTuningJob, report: dict[str, Any]) -> None:
        metrics = msgspec.convert(report.get("metrics") or {}, CheckpointMetrics)
        step = int(report.get("step", 0))
        if await self.store.add_checkpoint(job.id, step, metrics, str(report.get("path", ""))):
            await self.store.note(job.id, f"Checkpoint created at step {step}")

    async def _succeed(
        self, stored: StoredJob, base: TrainingBase, outcome: dict[str, Any]
    ) -> None:
        job = stored.job
        name = model_name(job)
        adapter = outcome.get("gguf") if base.engine == "llamacpp" else outcome.get("adapter")
        trained = int(outcome.get("trained_tokens") or 0)
        if not adapter:
            await self._fail(
                job.id, "training_failed", "the trainer wrote no adapter", bill=trained
            )
            return
        await self.store.note(job.id, f"Deploying the fine-tuned model {name}")
        problem = await deploy_adapter(
            self.deployments, name, base.model.id, str(adapter), stored.key_id
        )
        if problem is not None:
            await self._fail(
                job.id, "deployment_failed", f"{name} could not be served: {problem}", bill=trained
            )
            return
        results = [await results_file(self.store, self.files, stored)]
        await self.bill.charge(stored, trained, "ok")
        moved = await self.store.move(
            job.id,
            "succeeded",
            f"The job has successfully completed: {name} is ready",
            fine_tuned_model=name,
            trained_tokens=trained,
            result_files=results,
        )
        if not moved:  # cancelled while its model came up: the model goes too
            with contextlib.suppress(LookupError):
                await self.deployments.delete(name)
            return
        log.info("fine-tuning job %s succeeded: %s (%d tokens)", job.id, name, trained)
        await self._announce(job.id, "succeeded")

    # -- endings -----------------------------------------------------------------------

    async def cancel(self, job_id: str) -> bool:
        """Cancel a job not yet final; its trainer is gone when this returns."""
        moved = await self.store.move(job_id, "cancelled", "Fine-tuning job cancelled")
        if not moved:
            return False
        trainer = self._trainers.get(job_id)
        if trainer is not None:
            await trainer.stop()
        stored = await self.store.get(job_id, None)
        if stored is not None:
            await self.bill.charge(stored, stored.job.trained_tokens or 0, "cancelled")
        await self._announce(job_id, "cancelled")
        return True

    async def _fail(
        self,
        job_id: str,
        code: str,
        message: str,
        param: str | None = None,
        bill: int | None = None,
    ) -> None:
        error = JobError(code=code, message=message[:2000], param=param)
        moved = await self.store.move(
            job_id,
            "failed",
            f"Fine-tuning job failed: {message[:2000]}",
            level="error",
            error=error,
        )
        if not moved:
            return
        log.warning("fine-tuning job %s failed: %s", job_id, message[:500])
        stored = await self.store.get(job_id, None)
        if stored is not None:
            trained = bill if bill is not None else stored.job.trained_tokens or 0
            await self.bill.charge(stored, trained, "error")
        await self._announce(job_id, "failed")

    async def _announce(self, job_id: str, status: str) -> None:
        stored = await self.store.get(job_id, None)
        if stored is None:
            return
        data = {"key_id": stored.key_id, "job": msgspec.to_builtins(stored.job)}
        try:
            await self.events.publish(f"fine_tuning.job.{status}", data)
        except Exception:
            log.exception("could not publish fine_tuning.job.%s for %s", status, job_id)
        for listener in self.on_final:
            listener(stored.key_id)


__all__ = ["ACTIVE", "FineTuningRunner", "model_name"]
