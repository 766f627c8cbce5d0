"""Requests and the slots that decode them: one llama.cpp sequence per slot.

A slot is in one of three states (llama.cpp's server names them ``slot_state``)::

    IDLE --assign--> PROCESSING_PROMPT --first token--> GENERATING
      ^                     |                               |
      +------- vacate ------+----------- vacate ------------+

An idle slot holds no request; while processing its prompt it is given prompt chunks,
unless it follows another slot processing the same prompt (a sibling choice of ``n``): then
it waits, is given a copy of that slot's sequence when the prompt is done, and samples its
first token from the same logits; while generating it is given one token per decode step.
Any state but IDLE ends in IDLE when the request finishes, is cancelled or fails.

A slot remembers which tokens its sequence holds in the KV cache, also after its request
ends, so that the next request sharing a prefix with them (a common system prompt, the
earlier turns of a conversation) evaluates only the rest of its prompt.

A slot lends the longest common prefix of its cache and the new prompt, token by token as
llama-server does, all but the prompt's last token (its logits are needed). The reused
keys and values were computed in another batch than a cold run would use, which may
differ in the last bits (see scheduler.py); the tests hold greedy and seeded text the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from backends.base import Delta, FinishReason, SamplingParams, TokenLogprob
from backends.llamacpp.sampling import SlotSampler
from backends.llamacpp.text import StopTextAssembler

# Posted to a request's consumer after its last delta (or error): the slot is free.
RELEASED = object()


class Outbox:
    """What the scheduler thread sends to event loops, handed over once per step: one
    wake-up per loop and step rather than one per token."""

    def __init__(self) -> None:
        self._items: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Queue[object], object]]]
        self._items = {}

    def put(
        self, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[object], item: object
    ) -> None:
        self._items.setdefault(loop, []).append((queue, item))

    def flush(self) -> None:
        items, self._items = self._items, {}
        for loop, pairs in items.items():
            # A loop that has closed has no one left to read its requests' deltas.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_deliver, pairs)


def _deliver(pairs: list[tuple[asyncio.Queue[object], object]]) -> None:
    for queue, item in pairs:
        queue.put_nowait(item)


@dataclass
class Request:
    """One generate() call, from the moment it is queued until its slot is released."""

    prompt: tuple[int, ...]
    params: SamplingParams
    sampler: SlotSampler
    outbox: Outbox
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[object]
    cancelled: threading.Event = field(default_factory=threading.Event)
    assembler: StopTextAssembler = field(init=False)
    generated: int = 0
    started: float = 0.0

    def __post_init__(self) -> None:
        self.assembler = StopTextAssembler(self.params.stop)

    def post(self, item: object) -> None:
        self.outbox.put(self.loop, self.queue, item)

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


class SlotState(enum.Enum):
    IDLE = "idle"
    PROCESSING_PROMPT = "processing_prompt"
    GENERATING = "generating"


# The moves a slot may make; anything else is a bug in the scheduler.
_MOVES = {
    SlotState.IDLE: frozenset({SlotState.PROCESSING_PROMPT}),
    SlotState.PROCESSING_PROMPT: frozenset({SlotState.GENERATING, SlotState.IDLE}),
    SlotState.GENERATING: frozenset({SlotState.IDLE}),
}


class SlotStateError(RuntimeError):
    """The scheduler asked a slot for a move its state does not allow."""


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
    state: SlotState = SlotState.IDLE
    # The slot evaluating this slot's prompt for it, and the slots this one evaluates for.
    leader: Slot | None = None
    followers: list[Slot] = field(default_factory=list)

    def _move(self, to: SlotState) -> None:
        if to not in _MOVES[self.state]:
            raise SlotStateError(f"slot {self.seq_id}: {self.state.value} cannot become {to.value}")
        self.state = to

    def reusable(self, prompt: Sequence[int]) -> int:
        """How many prompt tokens this slot's cache holds: the longest common prefix, as
        llama-server reuses, but never the last prompt token (its logits are needed)."""
        return min(common_prefix(self.cached, prompt), len(prompt) - 1)

    def assign(self, request: Request, reuse: int) -> None:
        """Give the idle slot to ``request``, keeping the first ``reuse`` cached tokens."""
        self._move(SlotState.PROCESSING_PROMPT)
        del self.cached[reuse:]
        self.pending = list(request.prompt[reuse:])
        self.request = request
        request.started = time.perf_counter()

    def follow(self, request: Request, leader: Slot) -> None:
        """Give the idle slot to ``request``, whose prompt ``leader`` is evaluating; the
        slot's own sequence must already be gone from the KV cache."""
        self._move(SlotState.PROCESSING_PROMPT)
        self.clear()
        self.request = request
        self.leader = leader
        leader.followers.append(self)
        request.started = time.perf_counter()

    def copy_of(self, leader: Slot) -> None:
        """The leader's prompt is done and its sequence copied into this slot's."""
        self.cached = list(leader.cached)
        self.leader = None

    def unlink(self) -> None:
        """Leave the prompt sharing: stop following, and hand this slot's followers to the
        first of them, which evaluates the prompt itself from now on."""
        if self.leader is not None:
            self.leader.followers.remove(self)
            self.leader = None
        followers, self.followers = self.followers, []
        if followers:
            heir, *rest = followers
            heir.leader = None
            heir.pending = list(heir.request.prompt) if heir.request else []
            heir.followers = rest
            for follower in rest:
                follower.leader = heir

    def take(self, count: int) -> tuple[int, list[int]]:
        """The position and up to ``count`` pending tokens to evaluate now (cached from here)."""
        start = len(self.cached)
        chunk = self.pending[:count]
        del self.pending[:count]
        self.cached.extend(chunk)
        return start, chunk

    def take_prompt_chunk(self, size: int) -> tuple[int, list[int]]:
        """The next prompt chunk: up to the next multiple of ``size``."""
        return self.take(size - len(self.cached) % size)

    def continue_with(self, token: int) -> None:
        """Queue a sampled token for the next decode step (the slot is generating)."""
        if self.state is SlotState.PROCESSING_PROMPT:
            self._move(SlotState.GENERATING)
        self.pending.append(token)

    def clear(self) -> None:
        """Forget the cache (its sequence was removed from the KV cache)."""
        self.cached.clear()
        self.pending.clear()

    def vacate(self) -> Request:
        """End the slot's request: the slot is idle, its cache kept for the next one."""
        request, self.request = self.request, None
        if request is None:
            raise SlotStateError(f"slot {self.seq_id} has no request to end")
        self._move(SlotState.IDLE)
        self.pending.clear()
        return request
