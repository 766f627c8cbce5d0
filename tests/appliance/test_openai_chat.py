"""Chat completions through the official OpenAI SDK against a real `radiance up`."""

from __future__ import annotations

import json

import openai
import pytest
from conftest import ALICE, RunningServer


@pytest.fixture
def client(server: RunningServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key=ALICE, max_retries=0)


def ask(client: openai.OpenAI, **options: object) -> object:
    base: dict[str, object] = {
        "model": "tiny",
        "messages": [{"role": "user", "content": "Say something."}],
        "max_tokens": 24,
    }
    base.update(options)
    return client.chat.completions.create(**base)  # type: ignore[call-overload]


def test_chat_answers_with_exact_usage_and_headers(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="spark",
        messages=[
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": [{"type": "text", "text": "Hello"}]},
        ],
        max_tokens=12,
        temperature=0,
    )
    reply = raw.parse()
    assert reply.model == "tiny"
    assert raw.headers["x-route-model"] == "spark"
    assert raw.headers["x-model-used"] == "tiny"
    assert raw.headers["x-backend"] == "cpu"
    assert reply.id == f"chatcmpl-{raw.headers['x-request-id']}"
    choice = reply.choices[0]
    assert choice.message.role == "assistant"
    assert isinstance(choice.message.content, str)
    assert choice.finish_reason in ("stop", "length")
    assert reply.usage is not None
    assert 1 <= reply.usage.completion_tokens <= 12
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens


def test_max_tokens_caps_completion_tokens(client: openai.OpenAI) -> None:
    reply = ask(client, model="endless", max_tokens=7)
    assert reply.usage.completion_tokens == 7  # type: ignore[attr-defined]
    assert reply.choices[0].finish_reason == "length"  # type: ignore[attr-defined]
    capped = ask(client, model="endless", max_completion_tokens=5)
    assert capped.usage.completion_tokens == 5  # type: ignore[attr-defined]


def test_seed_repeats_and_n_gives_distinct_choices(client: openai.OpenAI) -> None:
    first = ask(client, model="endless", seed=42, temperature=1.0, max_tokens=16)
    again = ask(client, model="endless", seed=42, temperature=1.0, max_tokens=16)
    assert first.choices[0].message.content == again.choices[0].message.content  # type: ignore[attr-defined]
    several = ask(client, model="endless", seed=7, n=3, max_tokens=16)
    texts = [c.message.content for c in several.choices]  # type: ignore[attr-defined]
    assert [c.index for c in several.choices] == [0, 1, 2]  # type: ignore[attr-defined]
    assert len(set(texts)) == 3
    assert several.usage.completion_tokens == 48  # type: ignore[attr-defined]


def test_stop_string_ends_the_answer_before_it(client: openai.OpenAI) -> None:
    free = ask(client, model="endless", seed=3, max_tokens=40, temperature=0)
    text = free.choices[0].message.content  # type: ignore[attr-defined]
    stop = text[10:13]
    stopped = ask(client, model="endless", seed=3, max_tokens=40, temperature=0, stop=[stop])
    cut = stopped.choices[0].message.content  # type: ignore[attr-defined]
    assert cut == text[: text.index(stop)]
    assert stopped.choices[0].finish_reason == "stop"  # type: ignore[attr-defined]


def test_logprobs_with_top_alternatives(client: openai.OpenAI) -> None:
    reply = ask(client, model="endless", max_tokens=5, logprobs=True, top_logprobs=3)
    entries = reply.choices[0].logprobs.content  # type: ignore[attr-defined]
    assert len(entries) == 5
    assert "".join(e.token for e in entries) == reply.choices[0].message.content  # type: ignore[attr-defined]
    for entry in entries:
        assert entry.logprob <= 0
        assert len(entry.top_logprobs) == 3
        assert entry.top_logprobs[0].logprob >= entry.top_logprobs[-1].logprob
        assert bytes(entry.bytes).decode(errors="replace") == entry.token


def test_penalties_are_accepted_and_change_sampling(client: openai.OpenAI) -> None:
    base = ask(client, model="endless", seed=5, temperature=0, max_tokens=30)
    penalised = ask(
        client,
        model="endless",
        seed=5,
        temperature=0,
        max_tokens=30,
        frequency_penalty=2.0,
        presence_penalty=2.0,
        extra_body={"repetition_penalty": 1.8},
    )
    assert base.choices[0].message.content != penalised.choices[0].message.content  # type: ignore[attr-defined]


def test_stream_with_usage_matches_the_whole_answer(client: openai.OpenAI) -> None:
    # Greedy: the second request reuses the first one's cached prompt, and logits that
    # differ in the last bits can turn a seeded draw on some CPUs.
    stream = client.chat.completions.create(
        model="endless",
        messages=[{"role": "user", "content": "Stream please"}],
        max_tokens=10,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(c.usage is None for c in chunks[:-1])
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 10
    assert chunks[-2].choices[0].finish_reason == "length"
    text = "".join(c.choices[0].delta.content or "" for c in chunks[:-1])
    whole = ask(
        client,
        model="endless",
        max_tokens=10,
        temperature=0,
        messages=[{"role": "user", "content": "Stream please"}],
    )
    assert text == whole.choices[0].message.content  # type: ignore[attr-defined]


def test_stream_without_usage_has_no_usage_chunk(client: openai.OpenAI) -> None:
    chunks = list(ask(client, model="endless", max_tokens=4, stream=True, n=2))  # type: ignore[call-overload]
    assert all(c.choices for c in chunks)
    finishes = [c.choices[0].index for c in chunks if c.choices[0].finish_reason]
    assert finishes == [0, 1]


def test_json_schema_really_constrains_the_output(client: openai.OpenAI) -> None:
    schema = {
        "type": "object",
        "properties": {
            "ok": {"type": "boolean"},
            "colour": {"enum": ["red", "green", "blue"]},
            "count": {"type": "integer"},
        },
        "required": ["ok", "colour", "count"],
        "additionalProperties": False,
    }
    for seed in range(2):
        reply = ask(
            client,
            seed=seed,
            max_tokens=120,
            response_format={"type": "json_schema", "json_schema": {"name": "t", "schema": schema}},
        )
        value = json.loads(reply.choices[0].message.content)  # type: ignore[attr-defined]
        assert set(value) == {"ok", "colour", "count"}
        assert isinstance(value["ok"], bool) and value["colour"] in ("red", "green", "blue")
        assert isinstance(value["count"], int)


def test_json_object_gives_a_json_object(client: openai.OpenAI) -> None:
    reply = ask(client, seed=1, max_tokens=60, response_format={"type": "json_object"})
    if reply.choices[0].finish_reason == "stop":  # type: ignore[attr-defined]
        assert isinstance(json.loads(reply.choices[0].message.content), dict)  # type: ignore[attr-defined]
    else:
        assert reply.choices[0].message.content.lstrip().startswith("{")  # type: ignore[attr-defined]


WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"enum": ["Paris", "Rome"]}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}
TIME = {
    "type": "function",
    "function": {
        "name": "get_time",
        "parameters": {
            "type": "object",
            "properties": {"zone": {"enum": ["UTC", "CET"]}},
            "required": ["zone"],
            "additionalProperties": False,
        },
    },
}


def test_named_tool_choice_returns_that_call(client: openai.OpenAI) -> None:
    reply = ask(
        client,
        tools=[WEATHER, TIME],
        max_tokens=60,
        tool_choice={"type": "function", "function": {"name": "get_time"}},
    )
    message = reply.choices[0].message  # type: ignore[attr-defined]
    assert message.content is None
    (call,) = message.tool_calls
    assert call.function.name == "get_time"
    assert json.loads(call.function.arguments)["zone"] in ("UTC", "CET")


def test_required_tool_choice_calls_declared_tools(client: openai.OpenAI) -> None:
    reply = ask(
        client,
        tools=[WEATHER, TIME],
        tool_choice="required",
        max_tokens=120,
        parallel_tool_calls=False,
    )
    choice = reply.choices[0]  # type: ignore[attr-defined]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls
    assert call.function.name in ("get_weather", "get_time")
    assert call.id.startswith("call_")
    json.loads(call.function.arguments)


def test_tool_round_trip_and_none_choice(client: openai.OpenAI) -> None:
    messages = [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny, 21C"},
    ]
    reply = ask(client, messages=messages, tools=[WEATHER], tool_choice="none", max_tokens=8)
    assert reply.choices[0].message.tool_calls is None  # type: ignore[attr-defined]
    assert reply.usage.prompt_tokens > 30  # type: ignore[attr-defined]


def test_streamed_forced_tool_call(client: openai.OpenAI) -> None:
    chunks = list(
        ask(
            client,
            tools=[WEATHER],
            stream=True,
            max_tokens=60,
            tool_choice={"type": "function", "function": {"name": "get_weather"}},
        )
    )  # type: ignore[call-overload]
    calls = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert len(calls) == 1 and calls[0].function.name == "get_weather"
    assert json.loads(calls[0].function.arguments)["city"] in ("Paris", "Rome")


def test_answers_carry_refusal_null_as_openai_does(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="tiny",
        messages=[{"role": "user", "content": "Hi"}],
        max_tokens=3,
        logprobs=True,
        temperature=0,  # sampled, the random model may end before its third token
    )
    choice = json.loads(raw.content)["choices"][0]
    assert "refusal" in choice["message"] and choice["message"]["refusal"] is None
    assert choice["logprobs"]["refusal"] is None and len(choice["logprobs"]["content"]) == 3
