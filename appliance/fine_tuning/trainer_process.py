"""One trainer process (`python -m backends.training.trainer SPEC`), supervised.

The trainer reads its job from a JSON spec and reports on stdout, one JSON object per
line (`validated`, `invalid`, `step`, `checkpoint`, `succeeded`, `failed`). Its stderr goes
to `trainer.log` in the job's folder. It starts with an allow-list of the server's
environment (never its secrets), the thread count it is given and only its GPUs, in a
session of its own so stopping it stops whatever it started.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import pathlib
import signal
import sys
from collections.abc import AsyncIterator, Sequence
from typing import Any

import msgspec

log = logging.getLogger("radiance.fine_tuning")
STOP_SECONDS = 1.5  # from SIGTERM to SIGKILL
_LINE_LIMIT = 1 << 20  # a report line longer than this is not the trainer's
_INHERITED = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "PYTHONPATH", "VIRTUAL_ENV", "HF_HOME")
_SECRET_SUFFIXES = ("_KEY", "_SECRET", "_PASSWORD", "_TOKEN")
_ROOT = str(pathlib.Path(__file__).resolve().parents[2])  # where `backends` imports from


def _write_spec(spec: dict[str, Any], folder: pathlib.Path) -> pathlib.Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / ("validate.json" if spec.get("validate_only") else "spec.json")
    path.write_bytes(msgspec.json.encode(spec))
    return path


def trainer_environment(
    parent: dict[str, str], threads: int, gpus: Sequence[int]
) -> dict[str, str]:
    """The trainer's environment: a few of the server's variables, and its resources."""
    env = {
        name: value
        for name, value in parent.items()
        if name in _INHERITED and not name.endswith(_SECRET_SUFFIXES)
    }
    env |= {
        "OMP_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
        "TOKENIZERS_PARALLELISM": "false",
        # The weights are local: never reach for a hub from a training job.
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "PYTHONUNBUFFERED": "1",
        "CUDA_VISIBLE_DEVICES": ",".join(map(str, gpus)),
    }
    return env


class TrainerProcess:
    """A started trainer: read its `reports`, then `wait`; `stop` ends it."""

    def __init__(self, process: asyncio.subprocess.Process, log_path: pathlib.Path) -> None:
        self.process = process
        self.log_path = log_path
        self.stopping = False

    @classmethod
    async def start(
        cls, spec: dict[str, Any], folder: pathlib.Path, threads: int, gpus: Sequence[int]
    ) -> TrainerProcess:
        spec_path = await asyncio.to_thread(_write_spec, spec, folder)
        log_path = folder / "trainer.log"
        with await asyncio.to_thread(log_path.open, "ab") as stderr:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "backends.training.trainer",
                str(spec_path),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=stderr,
                env=trainer_environment(dict(os.environ), threads, gpus),
                cwd=_ROOT,
                start_new_session=True,
                limit=_LINE_LIMIT,
            )
        return cls(process, log_path)

    async def reports(self) -> AsyncIterator[dict[str, Any]]:
        """The trainer's reports, in order, until it closes its stdout."""
        stream = self.process.stdout
        assert stream is not None
        while True:
            try:
                line = await stream.readline()
            except ValueError:  # a line over the limit: not a report
                continue
            if not line:
                return
            try:
                report = msgspec.json.decode(line)
            except msgspec.DecodeError:
                continue  # a library printed to stdout
            if isinstance(report, dict) and isinstance(report.get("event"), str):
                yield report

    async def validation(self) -> tuple[dict[str, Any] | None, int]:
        """A validation-only run's outcome (`validated`, `invalid` or `failed`, None if it
        told none) and its exit code, once it has ended."""
        outcome = None
        async for report in self.reports():
            if report["event"] in ("validated", "invalid", "failed"):
                outcome = report
        return outcome, await self.wait()

    async def wait(self) -> int:
        return await self.process.wait()

    async def stop(self) -> None:
        """SIGTERM, then SIGKILL after STOP_SECONDS; returns once the process is gone."""
        self.stopping = True
        if self.process.returncode is not None:
            return
        self._signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.process.wait(), STOP_SECONDS)
        except TimeoutError:
            self._signal(signal.SIGKILL)
            await self.process.wait()

    def _signal(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, sig)

    def log_tail(self, lines: int = 5) -> str:
        """The end of the trainer's stderr, for a failure's reason."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.strip().splitlines()[-lines:])[-1000:]


def invalid_reason(errors: list[dict[str, Any]]) -> tuple[str, str]:
    """What an `invalid` report says, in a line naming the file, line and field of its
    first error; and which file (`training_file` or `validation_file`)."""
    first = errors[0] if errors else {}
    which = str(first.get("file") or "training_file")
    where = f"line {first.get('line')}" if first.get("line") else "the file"
    param = f" ({first['param']})" if first.get("param") else ""
    more = f"; {len(errors) - 1} more errors" if len(errors) > 1 else ""
    return f"{which} {where}{param}: {first.get('message', 'invalid')}{more}", which


def step_event(
    report: dict[str, Any], step: int, total: int | None, most: int
) -> tuple[str, dict[str, Any]] | None:
    """The metrics event of a `step` report, for at most `most` steps of a job (evenly
    spread, and the last); None for the steps between."""
    every = max(1, math.ceil((total or most) / most))
    if step % every and step != total:
        return None
    loss = report.get("train_loss")
    shown = "?" if loss is None else f"{float(loss):.4f}"
    data = {
        "step": step,
        "train_loss": loss,
        "train_mean_token_accuracy": report.get("train_mean_token_accuracy"),
        "total_steps": total,
    }
    return f"Step {step}/{total}: training loss={shown}", data
