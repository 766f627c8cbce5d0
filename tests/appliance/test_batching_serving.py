"""Continuous batching through a real `radiance up` and the official OpenAI SDK."""

from __future__ import annotations

import asyncio
import json
import pathlib
import sqlite3
import textwrap
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import openai
import pytest
from conftest import ADMIN, ALICE, RunningServer, start_server


@pytest.fixture(scope="module")
def batching_server(
    tmp_path_factory: pytest.TempPathFactory, models_dir: pathlib.Path
) -> Iterator[RunningServer]:
    config = textwrap.dedent(
        f"""
        server:
          port: 0
          admin_key: ${{RADIANCE_ADMIN_KEY}}
        backends:
          pair:
            engine: llamacpp
            threads: 2
            parallel: 2
        models:
          - id: tiny
            backend: pair
            source: {models_dir / "tiny.gguf"}
            context_length: 1024
          - id: endless
            backend: pair
            source: {models_dir / "endless.gguf"}
            context_length: 512
        keys:
          - name: alice
            secret: ${{ALICE_KEY}}
        """
    )
    running = start_server(tmp_path_factory.mktemp("batching"), config)
    yield running
    running.stop()


def client_for(server: RunningServer) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=server.base_url, api_key=ALICE, max_retries=0)


async def stream_text(client: openai.AsyncOpenAI, **options: object) -> tuple[str, int]:
    """The streamed content and the completion tokens reported in the usage chunk."""
    stream = await client.chat.completions.create(
        stream=True,
        stream_options={"include_usage": True},
        **options,  # type: ignore[arg-type]
    )
    text, tokens = [], 0
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            text.append(chunk.choices[0].delta.content)
        if chunk.usage is not None:
            tokens = chunk.usage.completion_tokens
    return "".join(text), tokens


async def stream_tokens(client: openai.AsyncOpenAI, **options: object) -> list[tuple[str, float]]:
    """The streamed tokens with their logprobs."""
    stream = await client.chat.completions.create(
        stream=True,
        logprobs=True,
        **options,  # type: ignore[arg-type]
    )
    tokens = []
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].logprobs and chunk.choices[0].logprobs.content:
            tokens += [(t.token, t.logprob) for t in chunk.choices[0].logprobs.content]
    return tokens


def test_concurrent_streams_give_the_text_of_one_by_one_requests(
    batching_server: RunningServer,
) -> None:
    """Greedy text is the same alone and batched; sampled requests see the same
    distributions (a batch's float sums differ in the last bits, so a seeded draw
    near a boundary may take another token on some CPUs: compared up to there)."""

    def request(i: int, temperature: float) -> dict[str, object]:
        return {
            "model": "tiny",
            "messages": [{"role": "user", "content": f"Tell me about item {i}."}],
            "max_tokens": 30,
            "temperature": temperature,
            "seed": 100 + i,
            "top_p": 0.95 if i % 2 else 1.0,
        }

    greedy = [request(i, 0) for i in range(4)]
    sampled = [request(i, t) for i, t in enumerate([0.7, 1.0, 1.2, 0.9])]

    async def scenario() -> tuple[list[tuple[str, int]], ...]:
        client = client_for(batching_server)
        alone = [await stream_text(client, **r) for r in greedy]
        together = await asyncio.gather(*[stream_text(client, **r) for r in greedy])
        sampled_alone = [await stream_tokens(client, **r) for r in sampled]
        sampled_together = await asyncio.gather(*[stream_tokens(client, **r) for r in sampled])
        await client.close()
        return alone, list(together), sampled_alone, list(sampled_together)  # type: ignore[return-value]

    alone, together, sampled_alone, sampled_together = asyncio.run(scenario())
    assert together == alone
    assert all(tokens >= 1 for _, tokens in alone)
    assert len({text for text, _ in alone}) == len(alone)
    for one, batched in zip(sampled_alone, sampled_together, strict=True):
        assert one and batched
        for (token, logprob), (other, other_logprob) in zip(one, batched, strict=True):
            assert abs(logprob - other_logprob) < 0.02
            if token != other:
                break


def test_json_schema_tools_and_logprobs_in_concurrent_requests(
    batching_server: RunningServer,
) -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
        "required": ["city", "days"],
    }
    days = {"type": "object", "properties": {"days": {"type": "integer"}}, "required": ["days"]}
    tool = {"type": "function", "function": {"name": "get_weather", "parameters": days}}
    messages = [{"role": "user", "content": "Weather in Paris?"}]

    async def scenario() -> list[object]:
        client = client_for(batching_server)
        common = {"model": "tiny", "messages": messages, "max_tokens": 200, "temperature": 0.2}
        replies = await asyncio.gather(
            client.chat.completions.create(
                **common,  # type: ignore[arg-type]
                seed=1,
                response_format={
                    "type": "json_schema",
                    "json_schema": {"name": "w", "schema": schema},
                },
            ),
            client.chat.completions.create(
                **common,  # type: ignore[arg-type]
                seed=2,
                tools=[tool],
                tool_choice={"type": "function", "function": {"name": "get_weather"}},
            ),
            client.chat.completions.create(
                **common,  # type: ignore[arg-type]
                seed=3,
                logprobs=True,
                top_logprobs=2,
            ),
        )
        await client.close()
        return list(replies)

    structured, called, scored = asyncio.run(scenario())
    value = json.loads(structured.choices[0].message.content)  # type: ignore[attr-defined]
    assert isinstance(value["city"], str) and isinstance(value["days"], int)
    (call,) = called.choices[0].message.tool_calls  # type: ignore[attr-defined]
    assert call.function.name == "get_weather"
    arguments = json.loads(call.function.arguments)
    assert isinstance(arguments["days"], int)
    entries = scored.choices[0].logprobs.content  # type: ignore[attr-defined]
    assert len(entries) == scored.usage.completion_tokens  # type: ignore[attr-defined]
    assert "".join(e.token for e in entries) == scored.choices[0].message.content  # type: ignore[attr-defined]
    assert all(len(e.top_logprobs) == 2 and e.logprob <= 0 for e in entries)


def test_a_client_that_leaves_frees_its_slot_for_a_waiting_request(
    batching_server: RunningServer,
) -> None:
    headers = {"Authorization": f"Bearer {ALICE}"}
    url = f"{batching_server.base_url}/chat/completions"

    def endless(max_tokens: int, stream: bool) -> dict[str, object]:
        return {
            "model": "endless",
            "messages": [{"role": "user", "content": "go on"}],
            "max_tokens": max_tokens,
            "stream": stream,
        }

    async def first_chunk(lines: AsyncIterator[str]) -> None:
        while not (await anext(lines)).startswith("data: {"):
            pass

    async def scenario() -> tuple[str, list[str], httpx.Response]:
        events: list[str] = []
        async with (
            httpx.AsyncClient(timeout=60) as client,
            client.stream("POST", url, headers=headers, json=endless(480, True)) as kept,
        ):
            kept_lines = kept.aiter_lines()
            await first_chunk(kept_lines)

            async def read_kept() -> None:
                async for line in kept_lines:
                    if line == "data: [DONE]":
                        events.append("kept stream ended")

            reader = asyncio.create_task(read_kept())
            async with client.stream("POST", url, headers=headers, json=endless(480, True)) as left:
                request_id = left.headers["x-request-id"]
                await first_chunk(left.aiter_lines())
                # Both slots are busy, so this request waits for one.
                waiting = asyncio.create_task(
                    client.post(url, headers=headers, json=endless(5, False))
                )
            # The second stream's client went away: the waiting request takes its slot
            # and is answered while the first stream still runs.
            answered = await waiting
            events.append("waiting request answered")
            await reader
        return request_id, events, answered

    request_id, events, answered = asyncio.run(scenario())
    assert answered.status_code == 200
    assert answered.json()["usage"]["completion_tokens"] == 5
    assert events == ["waiting request answered", "kept stream ended"]
    deadline = time.monotonic() + 10
    row = None
    while row is None and time.monotonic() < deadline:
        with sqlite3.connect(batching_server.database) as db:
            row = db.execute(
                "SELECT status, completion_tokens FROM requests WHERE id = ?", (request_id,)
            ).fetchone()
        time.sleep(0.1)
    assert row is not None and row[0] == "cancelled" and 1 <= row[1] < 480


def test_n_choices_are_decoded_together_and_the_prompt_counted_once(
    batching_server: RunningServer,
) -> None:
    async def scenario(client: openai.AsyncOpenAI) -> None:
        ask = {
            "model": "endless",
            "messages": [{"role": "user", "content": "Three takes, please."}],
            "max_tokens": 12,
            "temperature": 0.0,
        }
        one = await client.chat.completions.create(**ask)  # type: ignore[call-overload]
        three = await client.chat.completions.create(n=3, **ask)  # type: ignore[call-overload]
        assert [c.index for c in three.choices] == [0, 1, 2]
        # Greedy: every sibling gives the lone request's text, decoded side by side.
        assert {c.message.content for c in three.choices} == {one.choices[0].message.content}
        assert three.usage.prompt_tokens == one.usage.prompt_tokens
        assert three.usage.completion_tokens == 36

        seeded = {**ask, "temperature": 1.0, "seed": 11, "n": 2, "stream": True}
        stream = await client.chat.completions.create(
            stream_options={"include_usage": True},
            **seeded,  # type: ignore[arg-type]
        )
        texts = ["", ""]
        usage = None
        async for chunk in stream:
            for choice in chunk.choices:
                texts[choice.index] += choice.delta.content or ""
            usage = chunk.usage or usage
        assert all(texts) and texts[0] != texts[1]  # seed + i for choice i
        assert usage is not None and usage.prompt_tokens == one.usage.prompt_tokens
        assert usage.completion_tokens == 24

    async def main() -> None:
        async with client_for(batching_server) as client:
            await scenario(client)

    asyncio.run(main())


def test_completions_n_choices_share_each_prompt_s_evaluation(
    batching_server: RunningServer,
) -> None:
    def shared() -> int:
        view = httpx.get(
            f"{batching_server.base_url}/models/endless",
            headers={"authorization": f"Bearer {ADMIN}"},
        ).json()
        return int(view["engine_stats"]["prompt_tokens_shared"])

    async def scenario(client: openai.AsyncOpenAI) -> None:
        ask = {"model": "endless", "max_tokens": 10, "temperature": 0.0}
        prompts = ["One two three", "Four five six seven"]
        alone = [
            (await client.completions.create(prompt=p, **ask)).choices[0].text  # type: ignore[call-overload]
            for p in prompts
        ]
        many = await client.completions.create(prompt=prompts, n=3, **ask)  # type: ignore[call-overload]
        assert [c.index for c in many.choices] == list(range(6))
        # Prompt p's choices are 3p..3p+2; greedy siblings give the lone request's text.
        assert [c.text for c in many.choices] == [alone[0]] * 3 + [alone[1]] * 3
        assert many.usage is not None and many.usage.completion_tokens == 60
        # Two slots: each prompt is evaluated once and copied to its sibling.
        before = shared()
        pair = await client.completions.create(prompt=prompts, n=2, **ask)  # type: ignore[call-overload]
        assert [c.text for c in pair.choices] == [alone[0]] * 2 + [alone[1]] * 2
        assert pair.usage is not None
        assert shared() - before == pair.usage.prompt_tokens

        stream = await client.completions.create(
            prompt=prompts, n=2, stream=True, **{**ask, "temperature": 1.0, "seed": 3}
        )  # type: ignore[call-overload]
        texts = [""] * 4
        async for chunk in stream:
            for choice in chunk.choices:
                texts[choice.index] += choice.text
        assert all(texts) and texts[0] != texts[1] and texts[2] != texts[3]

    async def main() -> None:
        async with client_for(batching_server) as client:
            await scenario(client)

    asyncio.run(main())
