"""The llama.cpp engine as the server sees it: a GGUF file run in this process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import msgspec
from msgspec import Meta

from backends.base import Engine
from backends.plugin import (
    EngineConfig,
    EnginePlugin,
    Issue,
    ModelFields,
    PositiveInt,
    ReplicaPlan,
    resolve_path,
)


class LlamaCppBackend(EngineConfig, frozen=True, tag="llamacpp"):
    threads: PositiveInt = 2
    max_queue: PositiveInt = 64
    batch_size: PositiveInt = 512
    # Requests decoded together per model (continuous batching); 1 = one at a time.
    # Each slot holds its own context_length of KV cache.
    parallel: PositiveInt = 4
    # Layers offloaded to a GPU when llama-cpp-python is built with CUDA or Metal
    # (-1 = all); 0 keeps everything on the CPU.
    gpu_layers: Annotated[int, Meta(ge=-1)] = 0


class LlamaCppPlugin(EnginePlugin):
    name = "llamacpp"
    label = "llama.cpp"
    config = LlamaCppBackend
    source_kind = "a GGUF file"
    hub_source = "file"
    source_suffix = ".gguf"
    model_fields = ("tool_parser", "adapter")
    parses_answers = True

    def check_local_source(self, source: str, base_dir: Path) -> Iterator[Issue]:
        """A readable file that starts with the bytes `GGUF`."""
        demo = f"create a demo model with `radiance demo-model {source}` or point"
        hint = f"{demo} source: at a real GGUF file" if source.endswith(".gguf") else None
        yield from _check_gguf("source", resolve_path(base_dir, source), hint)

    def check_adapter(self, adapter: str, base_dir: Path) -> Iterator[Issue]:
        """A GGUF LoRA file (a PEFT folder must be converted first)."""
        file = resolve_path(base_dir, adapter)
        if file.is_dir():
            hint = "a fine-tune's GGUF LoRA is its adapter.gguf; a PEFT folder is for vLLM"
            yield Issue("adapter", f"adapter `{file}` is a folder, not a GGUF LoRA file", hint)
            return
        yield from _check_gguf("adapter", file, "point adapter: at a GGUF LoRA file")

    def chat_template(self, model: ModelFields, base_dir: Path) -> str | None:
        """The GGUF's `tokenizer.chat_template`, read from its header."""
        if model.source is None or "://" in model.source:
            return None
        try:
            from gguf import GGUFReader

            field = GGUFReader(resolve_path(base_dir, model.source)).fields.get(
                "tokenizer.chat_template"
            )
            if field is None or not field.data:
                return None
            return bytes(field.parts[field.data[0]]).decode("utf-8", errors="replace")
        except (OSError, ValueError, IndexError, KeyError):
            return None  # not readable here; the engine reads it when it loads

    def build(self, backend: Any, plan: ReplicaPlan) -> Engine:
        from backends.llamacpp.engine import LlamaCppEngine, LlamaCppSettings

        model = plan.model
        return LlamaCppEngine(
            LlamaCppSettings(
                model_id=model.id,
                path=plan.fetched or resolve_path(plan.base_dir, model.source or ""),
                context_length=model.context_length,
                embeddings=model.embeddings,
                adapter=None
                if model.adapter is None
                else resolve_path(plan.base_dir, model.adapter),
                # threads, batch_size, max_queue, gpu_layers, parallel: as the backend says
                **msgspec.structs.asdict(backend),
            )
        )


def _check_gguf(field: str, file: Path, missing_hint: str | None) -> Iterator[Issue]:
    """A readable file that starts with the bytes `GGUF`."""
    if file.is_dir():
        yield Issue(field, f"{field} `{file}` is a folder, not a GGUF file")
        return
    try:
        with file.open("rb") as handle:
            magic = handle.read(4)
    except FileNotFoundError:
        yield Issue(field, f"{field} `{file}` does not exist", missing_hint)
        return
    except OSError as error:
        yield Issue(field, f"{field} `{file}` cannot be read: {error.strerror}")
        return
    if magic != b"GGUF":
        hint = "a GGUF file starts with the bytes `GGUF`"
        yield Issue(field, f"{field} `{file}` is not a GGUF file", hint)
