"""vLLM as the server sees it: a supervised `vllm serve` per replica, from another venv."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import msgspec
from msgspec import Meta

from backends.base import Engine
from backends.plugin import EngineConfig, EnginePlugin, Issue, ReplicaPlan, Seconds, resolve_path
from backends.vllm.adapter import AdapterError, lora_rank, max_lora_rank

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
# A value of vLLM's command line: `--name value`; true is `--name`, false `--no-name`,
# a list gives the flag several values, a mapping is passed as JSON.
ArgValue = str | int | float | bool | list[str | int | float] | dict[str, Any]


class VllmBackend(EngineConfig, frozen=True, tag="vllm"):
    """One supervised `vllm serve` process group per model, on 127.0.0.1 and a free port."""

    # The interpreter of a venv that has vllm; never Radiance's own.
    python: str
    # GPU indices for CUDA_VISIBLE_DEVICES; none set leaves the variable as it is.
    gpus: list[Annotated[int, Meta(ge=0)]] | None = None
    # vLLM's own flags, without the dashes: {gpu_memory_utilization: 0.9, max_num_seqs: 256}.
    args: dict[str, ArgValue] = msgspec.field(default_factory=dict)
    # Extra environment of the vLLM process (HF_HOME, VLLM_CPU_KVCACHE_SPACE, ...).
    env: dict[str, str] = msgspec.field(default_factory=dict)
    # Seconds a start may take before the model is marked failed (and the start retried).
    startup_timeout: Seconds = 1800.0
    # Seconds a request may take, first byte to last.
    timeout: Seconds = 600.0


class VllmPlugin(EnginePlugin):
    name = "vllm"
    label = "vLLM"
    config = VllmBackend
    model_fields = ("tool_parser", "adapter")
    source_kind = "a hub id or a local model folder"
    hub_source = "repository"

    def check_backend(self, backend: Any, base_dir: Path) -> Iterator[Issue]:
        """`python` is another venv's interpreter, and runs."""
        python = resolve_path(base_dir, backend.python)
        own = Path(os.path.abspath(sys.executable))
        if python == own or Path(sys.prefix) in python.parents:
            message = f"`{python}` is Radiance's own interpreter"
            yield Issue("python", message, "make a separate venv with vllm and name its python")
        elif not python.is_file():
            hint = (
                "make a venv with vllm: python3 -m venv /opt/vllm && /opt/vllm/bin/pip install vllm"
            )
            yield Issue("python", f"python `{python}` does not exist", hint)
        elif not os.access(python, os.X_OK):
            yield Issue("python", f"python `{python}` is not executable")

    def local_source(self, source: str, base_dir: Path) -> Path | None:
        """A folder (a path, or a name that is a folder here); else a hub id."""
        local = resolve_path(base_dir, source)
        return local if _is_path(source) or local.is_dir() else None

    def check_local_source(self, source: str, base_dir: Path) -> Iterator[Issue]:
        """A Hugging Face model folder, or a hub id like `org/name`."""
        local = resolve_path(base_dir, source)
        if local.is_dir():
            if not (local / "config.json").is_file():
                message = f"source `{local}` has no config.json"
                yield Issue("source", message, "vLLM loads a Hugging Face model folder")
            return
        if _is_path(source) or local.exists():
            kind = "is not a folder" if local.exists() else "does not exist"
            hint = "vLLM loads a Hugging Face model folder or a hub id like `org/name`"
            yield Issue("source", f"source `{local}` {kind}", hint)
        elif not _HUB_ID.match(source):
            hint = "a hub id looks like `meta-llama/Llama-3.3-70B-Instruct`"
            yield Issue("source", f"source `{source}` is neither a folder nor a hub id", hint)

    def check_adapter(self, adapter: str, base_dir: Path) -> Iterator[Issue]:
        """A PEFT adapter folder: adapter_config.json (with the rank `r`) and the weights."""
        folder = resolve_path(base_dir, adapter)
        hint = "vLLM loads a PEFT LoRA folder: adapter_config.json and the weights"
        if not folder.is_dir():
            kind = "is not a folder" if folder.exists() else "does not exist"
            yield Issue("adapter", f"adapter `{folder}` {kind}", hint)
            return
        try:
            max_lora_rank(lora_rank(folder))
        except AdapterError as error:
            yield Issue("adapter", str(error), hint)

    def gpus(self, backend: Any) -> list[int] | None:
        return list(backend.gpus) if backend.gpus else None

    def build(self, backend: Any, plan: ReplicaPlan) -> Engine:
        from backends.vllm.engine import VllmEngine, VllmSettings

        model = plan.model
        safe_id = re.sub(r"[^A-Za-z0-9._-]", "_", model.id) + (f"-{plan.slot}" if plan.slot else "")
        local = self.local_source(model.source or "", plan.base_dir)
        loads = plan.fetched or local
        gpus = plan.gpus if plan.gpus is not None else backend.gpus
        return VllmEngine(
            VllmSettings(
                model_id=model.id,
                python=str(resolve_path(plan.base_dir, backend.python)),
                model=str(loads) if loads is not None else model.source or "",
                context_length=model.context_length,
                log_path=plan.log_dir / f"vllm-{safe_id}.log",
                args=dict(backend.args),
                gpus=None if gpus is None else tuple(gpus),
                env=dict(backend.env),
                tool_parser=model.tool_parser,
                adapter=str(resolve_path(plan.base_dir, model.adapter)) if model.adapter else None,
                startup_timeout=backend.startup_timeout,
                timeout=backend.timeout,
            )
        )


def _is_path(source: str) -> bool:
    return source.startswith(("/", "./", "../", "~"))
