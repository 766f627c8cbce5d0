"""Embeddings of token sequences with a llama.cpp context made with ``embedding=True``.

The engine makes this second context (``Embedder``) on the first embeddings request and
uses it from its loading thread, never from the generating one.

llama-cpp-python's ``Llama.embed`` takes text and tokenizes it again; a client that sends
token ids (LangChain does by default) must have exactly those ids embedded. This is the
same batching and mean pooling over the ids as given: sequences are packed into one
decode while they fit the batch and the context's sequence count.
"""

from __future__ import annotations

import pathlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import llama_cpp

EMBEDDING_CONTEXT = 8192  # the most tokens one embedding input may have


class Embedder:
    """A model's embedding context, created on first use; one thread at a time."""

    def __init__(
        self,
        path: pathlib.Path,
        context_length: int,
        threads: int,
        adapter: pathlib.Path | None = None,
    ) -> None:
        self._path = path
        self._adapter = adapter  # a GGUF LoRA: embeddings of the fine-tuned model
        self._size = min(context_length, EMBEDDING_CONTEXT)
        self._threads = threads
        self._llama: llama_cpp.Llama | None = None

    def embed(self, inputs: Sequence[Sequence[int]]) -> list[list[float]]:
        import llama_cpp

        if self._llama is None:
            self._llama = llama_cpp.Llama(
                model_path=str(self._path),
                n_ctx=self._size,
                n_batch=self._size,
                n_ubatch=self._size,
                n_threads=self._threads,
                n_threads_batch=self._threads,
                embedding=True,
                pooling_type=llama_cpp.LLAMA_POOLING_TYPE_MEAN,
                lora_path=None if self._adapter is None else str(self._adapter),
                verbose=False,
            )
        return embed_tokens(self._llama, inputs)

    def close(self) -> None:
        llama, self._llama = self._llama, None
        if llama is not None:
            llama.close()


def embed_tokens(llama: llama_cpp.Llama, inputs: Sequence[Sequence[int]]) -> list[list[float]]:
    """One L2-normalized, mean-pooled vector per token sequence (each fits the batch)."""
    import llama_cpp

    n_embd = llama.n_embd()
    n_batch = llama.n_batch
    n_seq_max = llama.context_params.n_seq_max
    vectors: list[list[float]] = []
    # llama-cpp-python's own helpers over the batch and context (untyped there).
    batch: Any = llama._batch
    ctx: Any = llama._ctx
    owner: Any = llama

    def decode(count: int) -> None:
        ctx.kv_cache_clear()
        ctx.decode(batch)
        batch.reset()
        for seq in range(count):
            pointer = llama_cpp.llama_get_embeddings_seq(ctx.ctx, seq)
            vector = np.array(pointer[:n_embd], dtype=np.float64)
            norm = float(np.linalg.norm(vector))
            vectors.append((vector / norm if norm else vector).tolist())

    batch.reset()
    in_batch = tokens_in_batch = 0
    for tokens in inputs:
        if len(tokens) > n_batch:
            raise ValueError(f"an input has {len(tokens)} tokens; at most {n_batch} fit")
        if in_batch and (tokens_in_batch + len(tokens) > n_batch or in_batch >= n_seq_max):
            decode(in_batch)
            in_batch = tokens_in_batch = 0
        batch.add_sequence(list(tokens), in_batch, True)
        in_batch += 1
        tokens_in_batch += len(tokens)
    if in_batch:
        decode(in_batch)
    ctx.kv_cache_clear()
    owner.reset()
    return vectors
