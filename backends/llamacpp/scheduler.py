"""Continuous batching over one llama.cpp context, on one thread of its own.

Each step of the loop:

1. releases the slots whose clients went away, and admits waiting requests (FIFO) into
   free slots, each into the free slot whose cache shares the longest prefix with it;
2. builds one batch of at most ``batch_size`` tokens: one token for every decoding slot,
   then prompt chunks of the prefilling slots in the order they were admitted, so a long
   prompt is evaluated over several steps while the other streams keep going;
3. decodes it, and samples every slot that has an output with its own sampler chain.

The context has one sequence per slot with its own ``context_length`` cells (llama.cpp's
non-unified KV cache), so a sequence's tokens never depend on what else is in the batch.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from backends.base import EngineError, EngineUnavailable
from backends.llamacpp.logprobs import token_logprob
from backends.llamacpp.slots import Request, Slot

if TYPE_CHECKING:
    import llama_cpp
    from llama_cpp._internals import LlamaModel

log = logging.getLogger(__name__)


class Scheduler:
    def __init__(
        self,
        model: LlamaModel,
        ctx: llama_cpp.llama_context_p,
        *,
        slots: int,
        batch_size: int,
        context_length: int,
        max_queue: int,
        name: str,
        took: Callable[[float], None],
    ) -> None:
        import llama_cpp

        self._model = model
        self._ctx = ctx
        self._memory = llama_cpp.llama_get_memory(ctx)
        self._n_vocab = model.n_vocab()
        self._capacity = max(batch_size, slots)
        self._batch = llama_cpp.llama_batch_init(self._capacity, 0, 1)
        self._limit = context_length
        self._max_queue = max_queue
        self._took = took
        self.slots = [Slot(seq_id) for seq_id in range(slots)]
        self.waiting: collections.deque[Request] = collections.deque()
        self._wake = threading.Condition()
        self._stopping = False
        self.prompt_tokens_reused = 0
        self.prompt_tokens_evaluated = 0
        self.steps = 0
        self._thread = threading.Thread(target=self._run, name=f"llama-batch-{name}", daemon=True)
        self._thread.start()

    @property
    def running(self) -> int:
        return sum(not slot.free for slot in self.slots)

    def submit(self, request: Request) -> bool:
        """Queue a request; False when ``max_queue`` requests already wait."""
        with self._wake:
            if self._stopping:
                raise EngineUnavailable("the model is stopping")
            if len(self.waiting) >= self._max_queue:
                return False
            self.waiting.append(request)
            self._wake.notify()
        return True

    def cancel(self, request: Request) -> None:
        """Stop a request: its slot is freed before the next decode step."""
        request.cancelled.set()
        with self._wake:
            self._wake.notify()

    def stop(self) -> None:
        """End the loop, fail what is queued or running, and free the batch."""
        import llama_cpp

        with self._wake:
            self._stopping = True
            self._wake.notify()
        self._thread.join()
        llama_cpp.llama_batch_free(self._batch)

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._stopping and not self.waiting and not self.running:
                    self._wake.wait()
                if self._stopping:
                    break
            try:
                self._release_cancelled()
                self._admit()
                if self.running:
                    self._step()
            except Exception as exc:
                log.exception("the batching loop failed")
                self._fail_running(EngineError(f"generation failed: {exc}"))
        stopped = EngineUnavailable("the model was stopped")
        for slot in self.slots:
            if not slot.free:
                slot.vacate().release(stopped)
        with self._wake:
            while self.waiting:
                self.waiting.popleft().release(stopped)

    def _release_cancelled(self) -> None:
        for slot in self.slots:
            if slot.request is not None and slot.request.cancelled.is_set():
                self._vacate(slot)

    def _admit(self) -> None:
        """Move waiting requests into free slots, preferring the slot with most reuse."""
        import llama_cpp

        while True:
            free = [slot for slot in self.slots if slot.free]
            with self._wake:
                if not free or not self.waiting:
                    return
                request = self.waiting.popleft()
            if request.cancelled.is_set():
                request.release()
                continue
            slot = max(free, key=lambda s: (s.reusable(request.prompt), -s.last_used))
            reuse = slot.reusable(request.prompt)
            if not llama_cpp.llama_memory_seq_rm(self._memory, slot.seq_id, reuse, -1):
                # This memory cannot drop part of a sequence: start the sequence over.
                llama_cpp.llama_memory_seq_rm(self._memory, slot.seq_id, -1, -1)
                slot.clear()
                reuse = 0
            slot.assign(request, reuse)
            self.prompt_tokens_reused += reuse

    def _step(self) -> None:
        import llama_cpp

        batch = self._batch
        n = 0
        outputs: list[tuple[Slot, int]] = []
        active = [slot for slot in self.slots if slot.request is not None]
        # Decoding slots first (one token each), then prompts in the order they came.
        active.sort(key=lambda s: (s.prefilling, s.request.started if s.request else 0.0))
        for slot in active:
            prefilling = slot.prefilling
            start = len(slot.cached)
            chunk = slot.take(self._capacity - n)
            if not chunk:
                continue
            if prefilling:
                self.prompt_tokens_evaluated += len(chunk)
            for offset, token in enumerate(chunk):
                batch.token[n] = token
                batch.pos[n] = start + offset
                batch.n_seq_id[n] = 1
                batch.seq_id[n][0] = slot.seq_id
                batch.logits[n] = False
                n += 1
            if not slot.pending:
                batch.logits[n - 1] = True
                outputs.append((slot, n - 1))
        batch.n_tokens = n
        code = llama_cpp.llama_decode(self._ctx, batch)
        self.steps += 1
        if code != 0:
            log.error("llama_decode returned %d with %d tokens in the batch", code, n)
            self._fail_running(EngineError(f"llama_decode failed ({code})"))
            return
        for slot, index in outputs:
            self._sample(slot, index)

    def _sample(self, slot: Slot, index: int) -> None:
        import llama_cpp

        request = slot.request
        assert request is not None
        params = request.params
        logits = None
        if params.logprobs:
            row = llama_cpp.llama_get_logits_ith(self._ctx, index)
            logits = np.ctypeslib.as_array(row, shape=(self._n_vocab,)).copy()
        token = request.sampler.sample(self._ctx, index)
        if llama_cpp.llama_vocab_is_eog(self._model.vocab, token):
            request.finish("stop")
            self._vacate(slot)
            return
        text = request.assembler.feed(self._model.detokenize([token]))
        logprobs = (
            (token_logprob(logits, token, params.top_logprobs, self._piece),)
            if logits is not None
            else ()
        )
        request.emit(text, logprobs)
        if request.assembler.stopped:
            request.finish("stop")
        elif request.generated >= params.max_tokens or len(slot.cached) >= self._limit:
            request.finish("length")
        else:
            slot.pending.append(token)
            return
        self._vacate(slot)

    def _fail_running(self, error: EngineError) -> None:
        """End every running request with ``error`` and drop its sequence from the cache."""
        import llama_cpp

        for slot in self.slots:
            if slot.request is not None:
                llama_cpp.llama_memory_seq_rm(self._memory, slot.seq_id, -1, -1)
                slot.clear()
                self._vacate(slot, error)

    def _piece(self, token: int) -> tuple[str, tuple[int, ...]]:
        raw = self._model.detokenize([token], special=True)
        return raw.decode("utf-8", errors="replace"), tuple(raw)

    def _vacate(self, slot: Slot, error: BaseException | None = None) -> None:
        request = slot.vacate()
        self._took(time.perf_counter() - request.started)
        request.release(error)
