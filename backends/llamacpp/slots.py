"""Requests and the slots that decode them: one llama.cpp sequence per slot.

A slot remembers which tokens its sequence holds in the KV cache, also after its request
ends, so that the next request sharing a prefix with them (a common system prompt, the
earlier turns of a conversation) evaluates only the rest of its prompt.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from backends.base import Delta, FinishReason, SamplingParams, TokenLogprob
from backends.llamacpp.sampling import SlotSampler
from backends.llamacpp.text import StopTextAssembler

# Posted to a request's consumer after its last delta (or error): the slot is free.
RELEASED = object()


@dataclass
class Request:
    """One generate() call, from the moment it is queued until its slot is released."""

    prompt: tuple[int, ...]
    params: SamplingParams
    sampler: SlotSampler
    post: Callable[[object], None]
    cancelled: threading.Event = field(default_factory=threading.Event)
    assembler: StopTextAssembler = field(init=False)
    generated: int = 0
    started: float = 0.0

    def __post_init__(self) -> None:
        self.assembler = StopTextAssembler(self.params.stop)

    def emit(self, text: str, logprobs: tuple[TokenLogprob, ...] = ()) -> None:
        self.generated += 1
        self.post(Delta(text, 1, logprobs))

    def finish(self, reason: FinishReason) -> None:
        self.post(Delta(self.assembler.flush(), 0, finish_reason=reason))

    def release(self, error: BaseException | None = None) -> None:
        if error is not None:
            self.post(error)
        self.sampler.close()
        self.post(RELEASED)


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


@dataclass
class Slot:
    seq_id: int
    # Tokens whose keys and values this sequence holds, in position order.
    cached: list[int] = field(default_factory=list)
    # Tokens still to be evaluated: the rest of the prompt, then each sampled token.
    pending: list[int] = field(default_factory=list)
    request: Request | None = None
    last_used: float = 0.0

    @property
    def free(self) -> bool:
        return self.request is None

    @property
    def prefilling(self) -> bool:
        return self.request is not None and self.request.generated == 0

    def reusable(self, prompt: Sequence[int]) -> int:
        """How many prompt tokens this slot's cache already holds (one is always evaluated,
        so the first token has logits to sample from)."""
        return min(common_prefix(self.cached, prompt), len(prompt) - 1)

    def assign(self, request: Request, reuse: int) -> None:
        """Give the slot to ``request``, keeping the first ``reuse`` cached tokens."""
        del self.cached[reuse:]
        self.pending = list(request.prompt[reuse:])
        self.request = request
        request.started = time.perf_counter()

    def take(self, budget: int) -> list[int]:
        """Up to ``budget`` pending tokens to evaluate now; they count as cached from here."""
        chunk = self.pending[:budget]
        del self.pending[:budget]
        self.cached.extend(chunk)
        return chunk

    def clear(self) -> None:
        """Forget the cache (its sequence was removed from the KV cache)."""
        self.cached.clear()
        self.pending.clear()

    def vacate(self) -> Request:
        request, self.request = self.request, None
        assert request is not None
        self.pending.clear()
        self.last_used = time.perf_counter()
        return request
