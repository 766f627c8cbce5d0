"""The training subprocess: ``python -m backends.training.trainer SPEC.json``.

LoRA supervised fine-tuning of a Hugging Face causal LM on a chat fine-tune file. It
prints one JSON object per line on stdout (anything libraries print goes to stderr):

- ``validated``: examples, tokens (the training file through the base's chat template),
  the resolved hyperparameters and total_steps; or ``invalid`` with its errors (each
  ``{"file", "line", "param", "message"}``) and exit code 3.
- ``step`` after each optimizer step: step, total_steps, epoch (1-based), train_loss,
  train_mean_token_accuracy, trained_tokens (cumulative tokens processed).
- ``checkpoint`` at the end of each epoch: step, path, metrics (valid_loss on one batch of
  the validation file, full_valid_loss on all of it; null without one).
- ``succeeded``: adapter (a PEFT folder), gguf (a GGUF LoRA, or null), trained_tokens;
  exit 0. ``failed`` with a message: exit 1. SIGTERM: exit 143 at once, nothing printed.

A run whose output_dir holds checkpoints resumes from the newest: steps, trained tokens
and the data order continue as if it had never stopped. Loss is taken on assistant
messages of weight 1 only. Everything random derives from ``seed``.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import IO, Any

import msgspec

from backends.training.checkpoints import (
    Progress,
    complete_checkpoints,
    latest_checkpoint,
    publish_adapter,
    read_metrics,
    read_progress,
    read_trainer_state,
    write_checkpoint,
)
from backends.training.examples import ExampleError, read_example_file
from backends.training.render import Tokenized, tokenize_all
from backends.training.spec import (
    EXIT_FAILED,
    EXIT_INVALID,
    EXIT_OK,
    EXIT_TERMINATED,
    TrainingSpec,
    read_spec,
)

# The learning rate at learning_rate_multiplier 1 (AdamW, linear decay to zero). LoRA
# takes larger rates than full fine-tuning; this moves the tiny demo model's greedy
# answers within a few epochs on ten examples.
BASE_LEARNING_RATE = 1e-3
# "auto" as OpenAI resolves it: 3 epochs, more for small files (at least ~100 example
# passes, at most 25 epochs); batch size ~0.2% of the examples (1 to 256).
DEFAULT_EPOCHS, MIN_PASSES, MAX_AUTO_EPOCHS = 3, 100, 25
AUTO_MULTIPLIER = 2.0


class Events:
    """JSON lines on the real stdout; the process's fd 1 then points at stderr."""

    def __init__(self) -> None:
        sys.stdout.flush()
        self._out: IO[str] = os.fdopen(os.dup(1), "w", encoding="utf-8")
        os.dup2(2, 1)
        sys.stdout = sys.stderr

    def emit(self, event: str, **fields: Any) -> None:
        self._out.write(json.dumps({"event": event, **fields}) + "\n")
        self._out.flush()


def _terminate(_signum: int, _frame: FrameType | None) -> None:
    os._exit(EXIT_TERMINATED)  # checkpoints are renamed into place whole: nothing to undo


def _follow_parent() -> None:
    """End the trainer when the server that started it is gone (killed: no SIGTERM came),
    so a restarted server never finds an orphan training into the same folder."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.25)
        os._exit(EXIT_TERMINATED)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def resolve_hyperparameters(spec: TrainingSpec, examples: int) -> tuple[int, int, float]:
    """n_epochs, batch_size and learning_rate_multiplier, "auto" resolved."""
    epochs = DEFAULT_EPOCHS
    if spec.n_epochs != "auto":
        epochs = spec.n_epochs
    elif examples * epochs < MIN_PASSES:
        epochs = min(MAX_AUTO_EPOCHS, math.ceil(MIN_PASSES / examples))
    auto_batch = max(1, min(256, round(examples * 0.002)))
    batch = auto_batch if spec.batch_size == "auto" else spec.batch_size
    multiplier = spec.learning_rate_multiplier
    rate = AUTO_MULTIPLIER if multiplier == "auto" else float(multiplier)
    return epochs, min(batch, examples), rate


def _errors(file: str, errors: Sequence[ExampleError]) -> list[dict[str, object]]:
    return [{"file": file} | e.as_dict() for e in errors]


def main(argv: Sequence[str]) -> int:
    signal.signal(signal.SIGTERM, _terminate)
    _follow_parent()
    events = Events()
    if len(argv) != 1:
        events.emit("failed", message="usage: python -m backends.training.trainer SPEC.json")
        return EXIT_FAILED
    try:
        spec = read_spec(argv[0])
    except (OSError, msgspec.DecodeError, msgspec.ValidationError) as exc:
        events.emit("failed", message=f"cannot read the spec {argv[0]}: {exc}")
        return EXIT_FAILED
    try:
        return run(spec, events)
    except Exception as exc:
        events.emit("failed", message=f"{type(exc).__name__}: {exc}")
        return EXIT_FAILED


def run(spec: TrainingSpec, events: Events) -> int:
    train_file = read_example_file(spec.training_file)
    valid_file = read_example_file(spec.validation_file) if spec.validation_file else None
    problems = _errors("training_file", train_file.errors)
    if valid_file is not None:
        problems += _errors("validation_file", valid_file.errors)
    if problems:
        events.emit("invalid", errors=problems[:20])
        return EXIT_INVALID

    import torch
    import transformers

    if spec.device.startswith("cuda"):
        torch.cuda.set_per_process_memory_fraction(spec.gpu_memory_fraction, spec.device)
    torch.set_num_threads(spec.threads)
    with contextlib.suppress(RuntimeError):  # set once per process
        torch.set_num_interop_threads(spec.threads)
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    tokenizer = transformers.AutoTokenizer.from_pretrained(spec.base)
    train, train_errors = tokenize_all(tokenizer, train_file.examples, spec.context_length)
    valid: list[Tokenized] = []
    problems = _errors("training_file", train_errors)
    if valid_file is not None:
        valid, valid_errors = tokenize_all(tokenizer, valid_file.examples, spec.context_length)
        problems += _errors("validation_file", valid_errors)
    if problems:
        events.emit("invalid", errors=problems[:20])
        return EXIT_INVALID

    epochs, batch_size, multiplier = resolve_hyperparameters(spec, len(train))
    steps_per_epoch = math.ceil(len(train) / batch_size)
    total_steps = epochs * steps_per_epoch
    events.emit(
        "validated",
        examples=len(train),
        tokens=sum(len(t.ids) for t in train),
        hyperparameters={
            "n_epochs": epochs,
            "batch_size": batch_size,
            "learning_rate_multiplier": multiplier,
        },
        total_steps=total_steps,
    )
    if spec.validate_only:
        return EXIT_OK

    from backends.training.loop import Loop

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    loop = Loop(spec, pad, BASE_LEARNING_RATE * multiplier, total_steps)
    output = Path(spec.output_dir)
    progress = Progress(0, 0, 0)
    checkpoint = latest_checkpoint(output)
    if checkpoint is not None:
        progress = read_progress(checkpoint)
        loop.resume(checkpoint, read_trainer_state(checkpoint))
        # Told again: the server may have stopped before it heard of the newest ones.
        for done in complete_checkpoints(output):
            step = read_progress(done).step
            events.emit("checkpoint", step=step, path=str(done), metrics=read_metrics(done))
    for epoch in range(progress.epoch, epochs):
        order = list(range(len(train)))
        random.Random(spec.seed * 1_000_003 + epoch).shuffle(order)
        for first in range(0, len(order), batch_size):
            batch = [train[i] for i in order[first : first + batch_size]]
            loss, accuracy = loop.step(batch)
            progress = Progress(
                progress.step + 1, epoch, progress.trained_tokens + sum(len(t.ids) for t in batch)
            )
            events.emit(
                "step",
                step=progress.step,
                total_steps=total_steps,
                epoch=epoch + 1,
                train_loss=loss,
                train_mean_token_accuracy=accuracy,
                trained_tokens=progress.trained_tokens,
            )
        progress = Progress(progress.step, epoch + 1, progress.trained_tokens)
        metrics = {
            "step": progress.step,
            "train_loss": loss,
            "train_mean_token_accuracy": accuracy,
            "valid_loss": None,
            "full_valid_loss": None,
        }
        if valid:
            sample = random.Random(spec.seed + epoch).sample(valid, min(batch_size, len(valid)))
            metrics["valid_loss"] = loop.evaluate(sample, batch_size)
            metrics["full_valid_loss"] = loop.evaluate(valid, batch_size)
        checkpoint = write_checkpoint(output, progress, metrics, loop.model, loop.state())
        events.emit("checkpoint", step=progress.step, path=str(checkpoint), metrics=metrics)

    if checkpoint is None:
        raise RuntimeError("no epoch was trained")
    adapter = publish_adapter(checkpoint, output / "adapter")
    gguf = None
    if spec.gguf_base:
        from backends.training.gguf_lora import write_gguf_lora

        lora = write_gguf_lora(
            adapter, Path(spec.base), Path(spec.gguf_base), output / "adapter.gguf"
        )
        gguf = str(lora)
    events.emit(
        "succeeded", adapter=str(adapter), gguf=gguf, trained_tokens=progress.trained_tokens
    )
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
