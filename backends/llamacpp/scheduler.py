"""Continuous batching over one llama.cpp context, on one thread of its own.

Each step of the loop:

1. releases the slots whose clients went away, and admits waiting requests (FIFO) into
   idle slots, each into the idle slot whose cache shares the longest prefix with it
   (else the lowest idle slot); a request with the very prompt of a slot still processing
   its prompt (the sibling choices of ``n``, submitted together) follows that slot instead;
2. decodes one token for every generating slot in one batch and samples each with its own
   sampler chain;
3. evaluates prompt chunks of the slots processing their prompts, oldest first, up to
   ``batch_size`` tokens in the step, so a long prompt is spread over several steps while
   the other streams keep going. The next chunk of every prompt that fits rides in step
   2's batch (rows in sequence order), so new requests are evaluated together and do not
   stall the running ones for decodes of their own; what is left of the oldest prompts
   gets calls of its own, within the budget. A slot whose prompt is done samples
   its first token and starts generating; so do its followers, each given a copy of its sequence
   (``llama_memory_seq_cp``) and sampling its first token from the same logits, which is
   exactly what it would have computed itself.

With one slot (``parallel: 1``) this serves one request at a time, the others waiting in
the same FIFO queue.

The context has one sequence per slot with its own ``context_length`` cells (llama.cpp's
non-unified KV cache). Such a cache splits a batch into micro-batches of consecutive
sequence ids with as many tokens each, so a step whose slots have a hole (slot 1 idle
between 0 and 2) costs two graph computations: mixing the new prompt's chunk into the
step fills the hole the finished request left, and its first micro-batch holds one token
of every slot, the rest of the chunk a second one (what llama-server does too).

Determinism: a sequence attends only to its own cells, but llama.cpp's CPU kernels may
round a token differently in another batch shape (on some CPUs the decode of several
sequences differs from one sequence's in the last bits), so a seeded draw near a boundary
can differ between a request alone and in a crowd; greedy text stays the same in the tests
(alone, in a crowd, with a reused prefix, as a sibling choice), and a request alone gives
the same output every time. Before, each prompt chunk was a call of its own, aligned to
multiples of ``PROMPT_CHUNK``, and only whole chunks were reused: a prompt's cache was
exact whatever ran beside it, but every new request stalled the running streams, and a
prompt re-evaluated up to 127 tokens a slot already held. Chunks still end at multiples
of ``PROMPT_CHUNK``.
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
from backends.llamacpp.slots import Outbox, Request, Slot, SlotState

if TYPE_CHECKING:
    import llama_cpp
    from llama_cpp._internals import LlamaModel

log = logging.getLogger(__name__)

# Prompts are evaluated in chunks of this many tokens starting at its multiples (the unit
# of prefix reuse; see slots.py). On CPU, 128-token chunks prefill within ~10% of 512.
PROMPT_CHUNK = 128


def prompt_chunk(batch_size: int) -> int:
    return min(batch_size, PROMPT_CHUNK)


def batch_capacity(slots: int, batch_size: int) -> int:
    """Tokens one llama_decode call may hold: one per slot and up to a chunk per slot."""
    return slots * (1 + prompt_chunk(batch_size))


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
        self._step_tokens = max(batch_size, slots)  # tokens evaluated per step
        self._chunk = prompt_chunk(batch_size)
        # A step's batch: a token per generating slot and prompt chunks.
        self._capacity = batch_capacity(slots, batch_size)
        self._batch = llama_cpp.llama_batch_init(self._capacity, 0, 1)
        self._limit = context_length
        self._max_queue = max_queue
        self._took = took
        self.slots = [Slot(seq_id) for seq_id in range(slots)]
        self.waiting: collections.deque[Request] = collections.deque()
        self.outbox = Outbox()
        # Token facts read through ctypes once, not on every step.
        self._pieces: dict[int, bytes] = {}
        self._end_of_generation: dict[int, bool] = {}
        self._wake = threading.Condition()
        self._stopping = False
        self.prompt_tokens_reused = 0
        self.prompt_tokens_evaluated = 0
        self.prompt_tokens_shared = 0  # prompt tokens a sibling copied instead of evaluating
        self.steps = 0
        self._thread = threading.Thread(target=self._run, name=f"llama-batch-{name}", daemon=True)
        self._thread.start()

    @property
    def running(self) -> int:
        return sum(slot.state is not SlotState.IDLE for slot in self.slots)

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

    def submit_all(self, requests: list[Request]) -> bool:
        """Queue requests together (the choices of one prompt), so that they are admitted
        in one go; False when ``max_queue`` requests already wait."""
        with self._wake:
            if self._stopping:
                raise EngineUnavailable("the model is stopping")
            if len(self.waiting) >= self._max_queue:
                return False
            self.waiting.extend(requests)
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
            self.outbox.flush()
        stopped = EngineUnavailable("the model was stopped")
        for slot in self.slots:
            if slot.state is not SlotState.IDLE:
                slot.vacate().release(stopped)
        with self._wake:
            while self.waiting:
                self.waiting.popleft().release(stopped)
        self.outbox.flush()

    def _release_cancelled(self) -> None:
        for slot in self.slots:
            if slot.request is not None and slot.request.cancelled.is_set():
                self._vacate(slot)

    def _admit(self) -> None:
        """Move waiting requests into idle slots, preferring the slot with most reuse."""
        import llama_cpp

        while True:
            idle = [slot for slot in self.slots if slot.state is SlotState.IDLE]
            with self._wake:
                if not idle or not self.waiting:
                    return
                request = self.waiting.popleft()
            if request.cancelled.is_set():
                request.release()
                continue
            leader = self._leader_for(request)
            if leader is not None:
                slot = min(idle, key=lambda s: s.seq_id)
                llama_cpp.llama_memory_seq_rm(self._memory, slot.seq_id, -1, -1)
                slot.follow(request, leader)
                continue
            # Most reuse first; else the lowest slot. llama.cpp attends over the range of
            # sequences a batch touches, so slots packed low keep each step small.
            slot = max(idle, key=lambda s: (s.reusable(request.prompt), -s.seq_id))
            reuse = slot.reusable(request.prompt)
            if not llama_cpp.llama_memory_seq_rm(self._memory, slot.seq_id, reuse, -1):
                # This memory cannot drop part of a sequence: start the sequence over.
                llama_cpp.llama_memory_seq_rm(self._memory, slot.seq_id, -1, -1)
                slot.clear()
                reuse = 0
            slot.assign(request, reuse)
            self.prompt_tokens_reused += reuse

    def _leader_for(self, request: Request) -> Slot | None:
        """A slot still evaluating exactly this prompt, whose sequence can be shared."""
        for slot in self.slots:
            if (
                slot.state is SlotState.PROCESSING_PROMPT
                and slot.leader is None
                and slot.pending
                and slot.request is not None
                and slot.request.prompt == request.prompt
            ):
                return slot
        return None

    def _step(self) -> None:
        """Decode one token for every generating slot and the next chunk of the prompts
        that fit, in one call; then more of the oldest prompts, in calls of their own, up
        to the budget."""
        budget = self._step_tokens
        generating = [s for s in self.slots if s.state is SlotState.GENERATING]
        prompting = [
            s for s in self.slots if s.state is SlotState.PROCESSING_PROMPT and s.leader is None
        ]
        prompting.sort(key=lambda s: s.request.started if s.request else 0.0)
        progressed = False
        rows = [(slot, *slot.take(1)) for slot in generating]
        mixed: list[Slot] = []
        used = len(rows)
        for slot in prompting:
            # The next chunk of every prompt that fits rides in the step's batch (the
            # oldest one always does).
            if mixed and self._next_chunk(slot) > min(self._capacity, budget) - used:
                break
            rows.append((slot, *slot.take_prompt_chunk(self._chunk)))
            mixed.append(slot)
            used += len(rows[-1][2])
        if rows:
            rows.sort(key=lambda row: row[0].seq_id)
            ends = self._decode(rows)
            if ends is None:
                return
            for slot, end in zip([row[0] for row in rows], ends, strict=True):
                budget -= end[1]
                if slot not in mixed:
                    self._sample(slot, end[0])
                    continue
                self.prompt_tokens_evaluated += end[1]
                if not slot.pending:
                    self._share_prompt(slot, end[0])
                    self._sample(slot, end[0])
            progressed = bool(mixed)
        for slot in prompting:
            # Always move the oldest prompt on, even when decoding used the whole budget.
            while slot.state is SlotState.PROCESSING_PROMPT and (budget > 0 or not progressed):
                start, chunk = slot.take_prompt_chunk(self._chunk)
                if self._decode([(slot, start, chunk)]) is None:
                    return
                self.prompt_tokens_evaluated += len(chunk)
                budget -= len(chunk)
                progressed = True
                if not slot.pending:
                    self._share_prompt(slot, len(chunk) - 1)
                    self._sample(slot, len(chunk) - 1)

    def _next_chunk(self, slot: Slot) -> int:
        """How many tokens the slot's next prompt chunk holds."""
        return min(len(slot.pending), self._chunk - len(slot.cached) % self._chunk)

    def _share_prompt(self, leader: Slot, index: int) -> None:
        """Give the leader's followers its evaluated prompt and their first tokens."""
        import llama_cpp

        followers, leader.followers = leader.followers, []
        for slot in followers:
            # Across streams llama.cpp copies whole sequences, at the next decode.
            llama_cpp.llama_memory_seq_cp(self._memory, leader.seq_id, slot.seq_id, -1, -1)
            slot.copy_of(leader)
            self.prompt_tokens_shared += len(leader.cached)
            self._sample(slot, index)

    def _decode(self, rows: list[tuple[Slot, int, list[int]]]) -> list[tuple[int, int]] | None:
        """Evaluate (slot, first position, tokens) rows in one llama_decode call, with
        logits for the last token of each row that has nothing more pending; each row's
        (output index, tokens), or None when the call failed."""
        import llama_cpp

        batch = self._batch
        n = 0
        ends = []
        for slot, start, tokens in rows:
            for offset, token in enumerate(tokens):
                batch.token[n] = token
                batch.pos[n] = start + offset
                batch.n_seq_id[n] = 1
                batch.seq_id[n][0] = slot.seq_id
                batch.logits[n] = False
                n += 1
            batch.logits[n - 1] = not slot.pending
            ends.append((n - 1, len(tokens)))
        batch.n_tokens = n
        code = llama_cpp.llama_decode(self._ctx, batch)
        self.steps += 1
        if code != 0:
            log.error("llama_decode returned %d for %d tokens", code, n)
            self._fail_running(EngineError(f"llama_decode failed ({code})"))
            return None
        return ends

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
        ends = self._end_of_generation.get(token)
        if ends is None:
            ends = self._end_of_generation[token] = bool(
                llama_cpp.llama_vocab_is_eog(self._model.vocab, token)
            )
        if ends:
            request.finish("stop")
            self._vacate(slot)
            return
        piece = self._pieces.get(token)
        if piece is None:
            # Special tokens stay text (a format's markup: [TOOL_CALLS], <|channel|>);
            # end-of-generation tokens never get here.
            piece = self._pieces[token] = self._model.detokenize([token], special=True)
        text = request.assembler.feed(piece)
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
            slot.continue_with(token)
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
        slot.unlink()
        request = slot.vacate()
        self._took(time.perf_counter() - request.started)
        request.release(error)
