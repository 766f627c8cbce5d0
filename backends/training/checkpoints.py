"""Checkpoints of a training run: one folder per finished epoch, written atomically.

``OUTPUT/checkpoints/step-000012/`` holds the PEFT adapter (adapter_model.safetensors,
adapter_config.json), ``trainer_state.pt`` (optimizer, scheduler and torch RNG states)
and ``state.json`` (step, epoch, trained tokens, metrics). A folder is written under a
dot-name and renamed when complete, so a run killed mid-write leaves no half checkpoint;
the next run resumes from the newest complete one.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Progress:
    step: int  # optimizer steps done
    epoch: int  # epochs done
    trained_tokens: int


def checkpoint_root(output_dir: Path) -> Path:
    return output_dir / "checkpoints"


def latest_checkpoint(output_dir: Path) -> Path | None:
    """The newest complete checkpoint; half-written ones (a killed run's) are removed."""
    root = checkpoint_root(output_dir)
    if not root.is_dir():
        return None
    for stale in root.glob(".step-*"):
        shutil.rmtree(stale, ignore_errors=True)
    done = complete_checkpoints(output_dir)
    return done[-1] if done else None


def complete_checkpoints(output_dir: Path) -> list[Path]:
    """Every complete checkpoint, oldest first."""
    root = checkpoint_root(output_dir)
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.name.startswith("step-") and p.is_dir())


def read_metrics(checkpoint: Path) -> dict[str, Any]:
    metrics: dict[str, Any] = json.loads((checkpoint / "state.json").read_text())["metrics"]
    return metrics


def read_progress(checkpoint: Path) -> Progress:
    state = json.loads((checkpoint / "state.json").read_text())
    return Progress(state["step"], state["epoch"], state["trained_tokens"])


def write_checkpoint(
    output_dir: Path,
    progress: Progress,
    metrics: dict[str, Any],
    model: Any,
    trainer_state: dict[str, Any],
) -> Path:
    """Save the adapter and what resuming needs; returns the checkpoint folder."""
    import torch

    root = checkpoint_root(output_dir)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{progress.step:06d}"
    tmp = root / f".step-{progress.step:06d}.{secrets.token_hex(4)}"
    try:
        model.save_pretrained(str(tmp))
        torch.save(trainer_state, tmp / "trainer_state.pt")
        state = asdict(progress) | {"metrics": metrics}
        (tmp / "state.json").write_text(json.dumps(state, indent=2) + "\n")
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def read_trainer_state(checkpoint: Path) -> dict[str, Any]:
    import torch

    # On the CPU: the optimizer moves its state to its parameters' device when loaded.
    path = checkpoint / "trainer_state.pt"
    state: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
    return state


def publish_adapter(checkpoint: Path, folder: Path) -> Path:
    """Copy a checkpoint's adapter files to ``folder`` (replaced whole)."""
    tmp = folder.with_name(f".{folder.name}.{secrets.token_hex(4)}")
    tmp.mkdir(parents=True)
    try:
        for name in ("adapter_model.safetensors", "adapter_config.json"):
            shutil.copy2(checkpoint / name, tmp / name)
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder
