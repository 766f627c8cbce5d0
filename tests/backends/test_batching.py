"""The llama.cpp engine on real demo models: several streams in one context, or one slot."""

from __future__ import annotations

import asyncio
import contextlib
import json
import pathlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest

from backends.base import Delta, EngineOverloaded, EngineUnavailable, Prompt, SamplingParams
from backends.llamacpp.engine import LlamaCppEngine, LlamaCppSettings

Start = Callable[..., Awaitable[LlamaCppEngine]]


@dataclass
class Result:
    deltas: list[Delta] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "".join(d.text for d in self.deltas)

    @property
    def tokens(self) -> int:
        return sum(d.tokens for d in self.deltas)

    @property
    def finish(self) -> str | None:
        return self.deltas[-1].finish_reason if self.deltas else None


async def run(engine: LlamaCppEngine, prompt: Prompt, params: SamplingParams) -> Result:
    result = Result()
    async for delta in engine.generate(prompt, params):
        result.deltas.append(delta)
    return result


@pytest.fixture
async def start(models_dir: pathlib.Path) -> AsyncIterator[Start]:
    engines: list[LlamaCppEngine] = []

    async def make(model: str = "tiny", **options: int) -> LlamaCppEngine:
        settings = {"context_length": 512, "parallel": 4, **options}
        engine = LlamaCppEngine(LlamaCppSettings(model, models_dir / f"{model}.gguf", **settings))
        await engine.start()
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        await engine.stop()


async def until_waiting(engine: LlamaCppEngine) -> None:
    """Let the event loop run until the engine has queued a request."""
    for _ in range(3000):
        if engine.stats().waiting:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("no request is waiting")


def chat(engine: LlamaCppEngine, text: str, system: str | None = None) -> Prompt:
    messages = [{"role": "system", "content": system}] if system else []
    return engine.render_chat([*messages, {"role": "user", "content": text}], None)


MIXED = [
    SamplingParams(max_tokens=40, temperature=0.0),
    SamplingParams(max_tokens=40, temperature=0.7, seed=1),
    SamplingParams(max_tokens=40, temperature=1.0, top_p=0.9, seed=2),
    SamplingParams(max_tokens=40, temperature=1.3, seed=3, presence_penalty=0.6),
    SamplingParams(max_tokens=40, temperature=0.9, seed=4, frequency_penalty=0.5),
    SamplingParams(max_tokens=40, temperature=1.0, seed=5, repetition_penalty=1.2),
]


async def test_concurrent_streams_match_the_same_requests_one_by_one(start: Start) -> None:
    engine = await start()
    prompts = [chat(engine, f"question number {i}") for i in range(len(MIXED))]
    alone = [await run(engine, p, q) for p, q in zip(prompts, MIXED, strict=True)]
    steps = engine.stats().extra["decode_steps"]
    together = await asyncio.gather(
        *[run(engine, p, q) for p, q in zip(prompts, MIXED, strict=True)]
    )
    # Greedy output is the same token for token; a seeded draw near a boundary may take
    # another token on some CPUs (a batch's float sums differ in the last bits), so the
    # sampled ones must mostly, not all, match.
    assert together[0].text == alone[0].text and together[0].finish == alone[0].finish
    same = sum(t.text == a.text for t, a in zip(together[1:], alone[1:], strict=True))
    assert same >= (len(MIXED) - 1) // 2, [r.text for r in together]
    assert len({r.text for r in alone}) == len(alone)  # the parameters do make a difference
    # Six streams on four slots took far fewer steps than tokens: they were decoded together.
    assert engine.stats().extra["decode_steps"] - steps < sum(r.tokens for r in alone) * 0.6


async def test_greedy_output_matches_the_one_slot_engine_token_for_token(start: Start) -> None:
    batching = await start()
    serial = await start(parallel=1)
    assert batching.stats().extra["slots"] == 4 and serial.stats().extra["slots"] == 1
    greedy = SamplingParams(max_tokens=60, temperature=0, logprobs=True)
    prompts = [chat(batching, text) for text in ("Hello!", "Write a poem about tea.", "2+2?")]
    ours = await asyncio.gather(*[run(batching, prompt, greedy) for prompt in prompts])
    for prompt, mine in zip(prompts, ours, strict=True):
        theirs = await run(serial, prompt, greedy)
        assert [lp.token for d in mine.deltas for lp in d.logprobs] == [
            lp.token for d in theirs.deltas for lp in d.logprobs
        ]
        assert mine.text == theirs.text and mine.finish == theirs.finish


async def test_max_tokens_exact_and_finish_reasons(start: Start) -> None:
    engine = await start("endless")
    results = await asyncio.gather(
        *[run(engine, chat(engine, "go"), SamplingParams(max_tokens=n, seed=n)) for n in (1, 7, 33)]
    )
    assert [r.tokens for r in results] == [1, 7, 33]
    assert [r.finish for r in results] == ["length"] * 3
    tiny = await start()
    ended = await run(tiny, chat(tiny, "Hello!"), SamplingParams(max_tokens=300, temperature=0))
    assert ended.finish == "stop" and ended.tokens < 300


async def test_a_request_joins_while_others_are_decoding(start: Start) -> None:
    engine = await start("endless", parallel=3)
    long = SamplingParams(max_tokens=120, seed=1)
    first = engine.generate(chat(engine, "one"), long)
    second = engine.generate(chat(engine, "two"), long)
    made = [0, 0]
    for _ in range(10):
        made[0] += (await anext(first)).tokens
        made[1] += (await anext(second)).tokens
    late = await run(engine, chat(engine, "three"), SamplingParams(max_tokens=5, seed=3))
    assert late.tokens == 5
    # The late request ran to its end while both early streams were still going.
    assert engine.stats().running == 2
    async for delta in first:
        made[0] += delta.tokens
    async for delta in second:
        made[1] += delta.tokens
    assert made == [120, 120]


async def test_a_cancelled_stream_frees_its_slot_for_a_waiting_request(start: Start) -> None:
    engine = await start("endless", parallel=2)
    forever = SamplingParams(max_tokens=480, seed=1)
    streams = [engine.generate(chat(engine, f"s{i}"), forever) for i in range(2)]
    for stream in streams:
        await anext(stream)
    waiting = asyncio.create_task(run(engine, chat(engine, "w"), SamplingParams(max_tokens=4)))
    await until_waiting(engine)
    assert engine.stats().running == 2
    await streams[0].aclose()  # type: ignore[attr-defined]
    result = await waiting
    assert result.tokens == 4 and result.finish == "length"
    # The other stream, started with the cancelled one, is still mid-way: the waiting
    # request did not wait for a stream to end.
    assert engine.stats().running == 1
    produced = 0
    async for delta in streams[1]:
        produced += delta.tokens
        if produced == 20:
            break
    await streams[1].aclose()  # type: ignore[attr-defined]


async def test_a_long_prompt_is_prefilled_in_chunks_while_others_decode(start: Start) -> None:
    engine = await start("endless", parallel=2, batch_size=16)
    running = engine.generate(chat(engine, "short"), SamplingParams(max_tokens=400, seed=1))
    await anext(running)
    long_prompt = chat(engine, " ".join(f"word{i}" for i in range(80)))
    assert 300 < len(long_prompt.tokens) < 500
    produced = 0

    async def keep_reading() -> None:
        nonlocal produced
        async for delta in running:
            produced += delta.tokens

    reader = asyncio.create_task(keep_reading())
    late = engine.generate(long_prompt, SamplingParams(max_tokens=3, seed=2))
    await anext(late)
    during_prefill = produced
    reader.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await reader
    await late.aclose()  # type: ignore[attr-defined]
    # 15 prompt tokens per step next to the running stream's one: ~20 steps of prefill,
    # and the running stream got a token out of each of them.
    assert during_prefill >= len(long_prompt.tokens) // 16 - 3


async def test_json_schema_and_plain_requests_in_one_batch(start: Start) -> None:
    engine = await start()
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"],
    }
    requests = [
        SamplingParams(max_tokens=400, temperature=0.3, seed=i, json_schema=schema if i % 2 else {})
        for i in range(4)
    ] + [SamplingParams(max_tokens=30, temperature=0.8, seed=9)]
    prompt = chat(engine, "Describe a user as JSON.")
    alone = [await run(engine, prompt, q) for q in requests]
    together = await asyncio.gather(*[run(engine, prompt, q) for q in requests])
    assert [r.text for r in together] == [r.text for r in alone]
    for result, params in zip(together[:4], requests[:4], strict=True):
        assert result.finish == "stop", result.text
        value = json.loads(result.text)  # strict: no raw control characters in strings
        assert isinstance(value, dict)
        if params.json_schema:
            assert isinstance(value["name"], str) and isinstance(value["age"], int)


async def test_logprobs_of_the_raw_distribution(start: Start) -> None:
    engine = await start()
    serial = await start(parallel=1)
    params = SamplingParams(max_tokens=12, temperature=0, logprobs=True, top_logprobs=3)
    prompt = chat(engine, "Hello!")
    (ours, _), theirs = (
        await asyncio.gather(
            run(engine, prompt, params),
            run(engine, chat(engine, "other"), SamplingParams(max_tokens=12, seed=4)),
        ),
        await run(serial, prompt, params),
    )
    mine = [lp for d in ours.deltas for lp in d.logprobs]
    reference = [lp for d in theirs.deltas for lp in d.logprobs]
    assert len(mine) == ours.tokens == 12
    for a, b in zip(mine, reference, strict=True):
        assert a.token == b.token == a.top[0].token  # greedy takes the most likely token
        assert a.logprob == pytest.approx(b.logprob, abs=1e-2)
        assert [t.token for t in a.top] == [t.token for t in b.top]
        assert [t.logprob for t in a.top] == sorted((t.logprob for t in a.top), reverse=True)
        assert all(t.logprob <= 0 for t in a.top)


async def test_stop_strings_end_streams_in_a_batch(start: Start) -> None:
    engine = await start("endless")
    prompts = [chat(engine, f"p{i}") for i in range(3)]
    free = [await run(engine, p, SamplingParams(max_tokens=40, temperature=0)) for p in prompts]
    stops = [text[10:13] for text in (r.text for r in free)]
    stopped = await asyncio.gather(
        *[
            run(engine, p, SamplingParams(max_tokens=40, temperature=0, stop=(stop,)))
            for p, stop in zip(prompts, stops, strict=True)
        ]
    )
    for result, full, stop in zip(stopped, free, stops, strict=True):
        assert result.finish == "stop"
        assert result.text == full.text[: full.text.index(stop)]
        assert stop not in result.text


async def test_a_shared_prefix_is_reused_and_gives_a_cold_run_s_output(start: Start) -> None:
    system = "You are a careful assistant. " * 45
    params = SamplingParams(max_tokens=30, temperature=0.8, seed=11)
    warm = await start("endless", parallel=2, context_length=1024)
    first = chat(warm, "first question", system)
    second = chat(warm, "second question", system)
    await run(warm, first, params)
    before = warm.stats().extra
    warm_result = await run(warm, second, params)
    after = warm.stats().extra
    reused = after["prompt_tokens_reused"] - before["prompt_tokens_reused"]
    evaluated = after["prompt_tokens_evaluated"] - before["prompt_tokens_evaluated"]
    shared = len(chat(warm, "", system).tokens) - 8
    # The common prefix (the system prompt and more) was reused, the rest evaluated.
    assert shared >= 512 and shared <= reused < len(second.tokens)
    assert evaluated + reused == len(second.tokens)
    cold = await start("endless", parallel=2, context_length=1024)
    cold_result = await run(cold, second, params)
    assert cold.stats().extra["prompt_tokens_reused"] == 0
    assert warm_result.text == cold_result.text


async def test_the_choices_of_one_prompt_share_its_evaluation(start: Start) -> None:
    """n choices: the prompt is evaluated once, the siblings copy its sequence and decode
    side by side; each choice is what a request of its own seed gives."""
    alone_engine = await start("endless")
    engine = await start("endless")
    prompt = chat(engine, "Tell me about the sea. " * 12)
    choices = [
        SamplingParams(max_tokens=30, temperature=1.0, seed=s, logprobs=True) for s in (7, 8, 9)
    ]
    alone = [await run(alone_engine, prompt, params) for params in choices]

    async def read(deltas: AsyncIterator[Delta]) -> Result:
        return Result([delta async for delta in deltas])

    steps = engine.stats().extra["decode_steps"]
    together = await asyncio.gather(
        *[read(deltas) for deltas in engine.generate_choices(prompt, choices)]
    )
    stats = engine.stats().extra
    assert stats["prompt_tokens_evaluated"] == len(prompt.tokens)
    assert stats["prompt_tokens_shared"] == 2 * len(prompt.tokens)
    assert stats["decode_steps"] - steps < sum(r.tokens for r in together) * 0.6
    assert [r.tokens for r in together] == [30, 30, 30]
    assert len({r.text for r in together}) == 3  # the seeds make a difference
    # The first token comes from the very logits a lone request samples; a later seeded
    # draw may differ in a batch on some CPUs (see the test above), so most must match.
    firsts = [next(lp.token for d in r.deltas for lp in d.logprobs) for r in together]
    assert firsts == [next(lp.token for d in r.deltas for lp in d.logprobs) for r in alone]
    assert sum(t.text == a.text for t, a in zip(together, alone, strict=True)) >= 2


async def test_closing_an_unread_choice_cancels_it(start: Start) -> None:
    engine = await start("endless")
    prompt = chat(engine, "hello")
    params = SamplingParams(max_tokens=400, temperature=0.0)
    first, second = engine.generate_choices(prompt, [params, params])
    assert (await first.__anext__()).tokens == 1
    await second.aclose()  # type: ignore[attr-defined]
    await first.aclose()  # type: ignore[attr-defined]
    for _ in range(500):
        if not engine.stats().running:
            break
        await asyncio.sleep(0.01)
    assert engine.stats().running == 0


async def test_full_queue_is_refused_and_stop_ends_streams(start: Start) -> None:
    engine = await start("endless", parallel=2, max_queue=1)
    forever = SamplingParams(max_tokens=480)
    streams = [engine.generate(chat(engine, f"s{i}"), forever) for i in range(3)]
    for stream in streams[:2]:
        await anext(stream)
    queued = asyncio.create_task(anext(streams[2]))
    await until_waiting(engine)
    prompt = chat(engine, "no room")
    with pytest.raises(EngineOverloaded) as refused:
        await anext(engine.generate(prompt, forever))
    assert refused.value.retry_after >= 1
    await engine.stop()
    with pytest.raises(EngineUnavailable):
        await queued
    with pytest.raises(EngineUnavailable):
        async for _ in streams[0]:
            pass
    with pytest.raises(EngineUnavailable):
        await anext(engine.generate(prompt, forever))


async def test_one_slot_samples_as_llama_cpp_python_s_own_generate(
    start: Start, models_dir: pathlib.Path
) -> None:
    import llama_cpp

    engine = await start(parallel=1)
    cases = [
        ("Write a poem about tea.", SamplingParams(max_tokens=40, temperature=0, logprobs=True)),
        (
            "Hello!",
            SamplingParams(max_tokens=40, temperature=0.8, top_p=0.9, seed=7, logprobs=True),
        ),
        ("2+2?", SamplingParams(max_tokens=40, temperature=1.1, seed=3, logprobs=True)),
    ]
    for text, params in cases:
        prompt = chat(engine, text)
        ours = [lp.bytes for d in (await run(engine, prompt, params)).deltas for lp in d.logprobs]
        llama = llama_cpp.Llama(
            model_path=str(models_dir / "tiny.gguf"), n_ctx=512, n_threads=2, verbose=False
        )
        llama.set_seed(params.seed or 0)
        theirs: list[tuple[int, ...]] = []
        for token in llama.generate(
            prompt.tokens, top_k=0, top_p=params.top_p, min_p=0.0, temp=params.temperature
        ):
            if llama_cpp.llama_vocab_is_eog(llama._model.vocab, token) or len(theirs) == 40:
                break
            theirs.append(tuple(llama.detokenize([token], special=True)))
        llama.close()
        assert ours == theirs, text
