"""A slot's states: idle, processing its prompt, generating, and back to idle."""

from __future__ import annotations

import asyncio
import pathlib
from collections.abc import Iterator
from typing import Any

import pytest

from backends.base import SamplingParams
from backends.llamacpp.sampling import SlotSampler
from backends.llamacpp.slots import Outbox, Request, Slot, SlotState, SlotStateError


@pytest.fixture(scope="module")
def model(models_dir: pathlib.Path) -> Iterator[Any]:
    import llama_cpp
    from llama_cpp._internals import LlamaModel

    params = llama_cpp.llama_model_default_params()
    loaded = LlamaModel(path_model=str(models_dir / "tiny.gguf"), params=params, verbose=False)
    yield loaded
    loaded.close()


def request(model: Any, prompt: tuple[int, ...]) -> Request:
    params = SamplingParams(max_tokens=4, temperature=0)
    loop = asyncio.new_event_loop()
    loop.close()  # nothing is delivered in these tests
    return Request(
        prompt, params, SlotSampler(model, params, None), Outbox(), loop, asyncio.Queue()
    )


def test_a_slot_goes_from_idle_through_its_prompt_to_generating_and_back(model: Any) -> None:
    slot = Slot(0)
    assert slot.state is SlotState.IDLE and slot.request is None
    first = request(model, (1, 2, 3, 4, 5))
    slot.assign(first, 0)
    assert slot.state is SlotState.PROCESSING_PROMPT
    assert slot.take_prompt_chunk(4) == (0, [1, 2, 3, 4])
    assert slot.take_prompt_chunk(4) == (4, [5]) and not slot.pending
    slot.continue_with(9)
    assert slot.state is SlotState.GENERATING
    slot.continue_with(10)  # generating goes on
    assert slot.state is SlotState.GENERATING and slot.pending == [9, 10]
    assert slot.vacate() is first
    assert slot.state is SlotState.IDLE and not slot.pending
    # The cache outlives the request: a prompt sharing a prefix with it reuses it, all but
    # the prompt's last token (its logits are needed).
    assert slot.cached == [1, 2, 3, 4, 5] and slot.reusable((1, 2, 3, 4, 5, 8)) == 5
    assert slot.reusable((1, 2, 3, 7, 8)) == 3 and slot.reusable((1, 2, 3)) == 2
    first.sampler.close()


def test_moves_the_states_do_not_allow_are_refused(model: Any) -> None:
    slot = Slot(1)
    with pytest.raises(SlotStateError):
        slot.vacate()  # an idle slot has no request to end
    busy = request(model, (1, 2, 3))
    slot.assign(busy, 0)
    other = request(model, (4, 5, 6))
    with pytest.raises(SlotStateError):
        slot.assign(other, 0)  # a busy slot takes no second request
    assert slot.request is busy and slot.pending == [1, 2, 3]
    # A request cancelled while its prompt is processed ends straight from that state.
    assert slot.vacate() is busy and slot.state is SlotState.IDLE
    busy.sampler.close()
    other.sampler.close()


def test_followers_wait_for_their_leader_and_one_takes_over_if_it_leaves(model: Any) -> None:
    leader, first, second = Slot(0), Slot(1), Slot(2)
    prompt = (1, 2, 3, 4, 5)
    leader.assign(request(model, prompt), 0)
    first.follow(request(model, prompt), leader)
    second.follow(request(model, prompt), leader)
    assert first.state is SlotState.PROCESSING_PROMPT and not first.pending
    assert leader.followers == [first, second] and second.leader is leader
    # The leader is cancelled before its prompt is done: the first follower evaluates it.
    leader.unlink()
    leader.vacate()
    assert first.leader is None and first.pending == list(prompt)
    assert first.followers == [second] and second.leader is first
    first.take_prompt_chunk(128)
    second.copy_of(first)
    assert second.cached == list(prompt) and second.leader is None
    for slot in (first, second):
        slot.continue_with(9)
        assert slot.state is SlotState.GENERATING
