"""What the server asks of a training run (SPEC.json) and the events the trainer prints.

The server writes a ``TrainingSpec`` as JSON and starts ``python -m
backends.training.trainer SPEC.json``; the trainer prints one JSON object per line on
stdout (see ``trainer.py`` for the events). Exit codes: 0 succeeded, 1 failed, 3 the
training or validation file is invalid; a SIGTERM ends it promptly with code 143.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

Auto = Literal["auto"]
EXIT_OK, EXIT_FAILED, EXIT_INVALID, EXIT_TERMINATED = 0, 1, 3, 143


class TrainingSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    base: str  # absolute path of the base model's Hugging Face folder
    training_file: str
    output_dir: str  # checkpoints, the adapter and its GGUF go here; resumed if present
    gguf_base: str | None = None  # the base GGUF: when set, also write a GGUF LoRA
    validation_file: str | None = None
    n_epochs: Annotated[int, Meta(ge=1, le=50)] | Auto = "auto"
    batch_size: Annotated[int, Meta(ge=1, le=256)] | Auto = "auto"
    learning_rate_multiplier: Annotated[float, Meta(gt=0, le=100)] | Auto = "auto"
    seed: int = 0
    threads: Annotated[int, Meta(ge=1)] = 2
    context_length: Annotated[int, Meta(ge=16)] = 2048
    device: str = "cpu"  # "cpu" or a torch device such as "cuda:0"
    # The share of the GPU's memory the trainer may allocate (it may share it with vLLM).
    gpu_memory_fraction: Annotated[float, Meta(gt=0, le=1)] = 1.0
    validate_only: bool = False


def read_spec(path: str) -> TrainingSpec:
    with open(path, "rb") as handle:
        return msgspec.json.decode(handle.read(), type=TrainingSpec)
