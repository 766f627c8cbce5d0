"""A GGUF LoRA adapter (a fine-tune) on a llama.cpp model and its context.

The adapter belongs to the model: load it after the model and before the context, and
free it after the context and before the model (``contextlib.ExitStack`` runs its
callbacks last in, first out, so pushing its free between the two does just that).
"""

from __future__ import annotations

import contextlib
import ctypes
import pathlib
from typing import TYPE_CHECKING, Any

from backends.base import EngineError

if TYPE_CHECKING:
    from llama_cpp._internals import LlamaModel


def load_adapter(model: LlamaModel, path: pathlib.Path, stack: contextlib.ExitStack) -> Any:
    """The loaded adapter, its free pushed on ``stack``; EngineError for a bad file."""
    import llama_cpp

    if not path.is_file():
        raise EngineError(f"adapter `{path}` does not exist")
    adapter = llama_cpp.llama_adapter_lora_init(model.model, str(path).encode())
    if not adapter:
        raise EngineError(
            f"adapter `{path}` is not a LoRA for this model (llama.cpp could not load it; "
            "it needs a GGUF LoRA converted for the same base)"
        )
    stack.callback(llama_cpp.llama_adapter_lora_free, adapter)
    return adapter


def apply_adapter(ctx: Any, adapter: Any, path: pathlib.Path) -> None:
    """Set the adapter on the context at scale 1 (EngineError if llama.cpp refuses)."""
    import llama_cpp

    adapters = (llama_cpp.llama_adapter_lora_p_ctypes * 1)(adapter)
    if llama_cpp.llama_set_adapters_lora(ctx, adapters, 1, (ctypes.c_float * 1)(1.0)):
        raise EngineError(f"llama.cpp could not apply the adapter `{path}`")
