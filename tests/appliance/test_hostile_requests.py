"""Requests real clients and attackers send: each gets an answer, the server lives on.

Through a real `radiance up` on the tiny demo model (batching engine) and the endless one
(one request at a time), with httpx and the official SDK.
"""

from __future__ import annotations

import json
import pathlib
import urllib.parse
from collections.abc import Iterator
from typing import Any

import httpx
import llama_cpp
import numpy as np
import openai
import pytest
from conftest import ADMIN, ALICE, RunningServer
from test_openai_errors import chat, error_of, post


@pytest.fixture(scope="module")
def vocab(models_dir: pathlib.Path) -> Iterator[llama_cpp.Llama]:
    """The demo model's tokenizer, read from the same file the server serves."""
    llama = llama_cpp.Llama(str(models_dir / "tiny.gguf"), vocab_only=True, verbose=False)
    yield llama
    llama.close()


def alive(server: RunningServer) -> None:
    assert server.process.poll() is None, server.log()
    answer = post(server, "/chat/completions", chat())
    assert answer.status_code == 200, answer.text


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/completions", {"model": "tiny", "prompt": [999999], "max_tokens": 1}, "prompt"),
        ("/completions", {"model": "tiny", "prompt": [-1], "max_tokens": 1}, "prompt"),
        ("/completions", {"model": "endless", "prompt": [70000], "max_tokens": 1}, "prompt"),
        ("/completions", {"model": "tiny", "prompt": [[1, 2], [3, 2**40]]}, "prompt[1]"),
        ("/embeddings", {"model": "tiny", "input": [[-1]]}, "input"),
        ("/embeddings", {"model": "tiny", "input": [[15339, 1917]]}, "input"),
        ("/embeddings", {"model": "tiny", "input": [[5], [6, 999999]]}, "input[1]"),
    ],
)
def test_token_ids_outside_the_vocabulary_are_a_400(
    server: RunningServer, path: str, body: dict[str, Any], param: str
) -> None:
    error = error_of(post(server, path, body), 400)
    assert error["param"] == param
    assert error["code"] == "invalid_token_id"
    alive(server)


def test_token_ids_are_embedded_as_given(server: RunningServer, vocab: llama_cpp.Llama) -> None:
    client = openai.OpenAI(base_url=server.base_url, api_key=ALICE, max_retries=0)
    text = "the quick brown fox"
    tokens = vocab.tokenize(text.encode(), add_bos=True)
    by_text = client.embeddings.create(model="tiny", input=text)
    by_ids = client.embeddings.create(model="tiny", input=[tokens])
    assert np.allclose(by_text.data[0].embedding, by_ids.data[0].embedding, atol=1e-5)
    assert by_ids.usage.prompt_tokens == len(tokens)
    # The same text spelled one byte a token is another sequence, and is embedded as one.
    spelled = [tokens[0]] + [vocab.tokenize(bytes([b]), add_bos=False)[0] for b in text.encode()]
    assert len(spelled) > len(tokens)
    by_bytes = client.embeddings.create(model="tiny", input=[spelled])
    assert by_bytes.usage.prompt_tokens == len(spelled)
    assert not np.allclose(by_bytes.data[0].embedding, by_text.data[0].embedding, atol=1e-3)


SCHEMA = {
    "type": "object",
    "properties": {
        "note": {"type": "string", "maxLength": 12},
        "tag": {"type": "string", "pattern": "^.{1,6}$"},
        "count": {"type": "integer"},
    },
    "required": ["note", "tag", "count"],
    "additionalProperties": False,
}


def _structured(model: str, seed: int, stream: bool) -> dict[str, Any]:
    return {
        "model": model,
        "messages": [{"role": "user", "content": "A note as JSON, please."}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "n", "schema": SCHEMA}},
        "temperature": 1.2,
        "seed": seed,
        "max_tokens": 300,
        "stream": stream,
    }


@pytest.mark.parametrize(("model", "count"), [("tiny", 20), ("endless", 4)])
def test_json_schema_replies_are_strict_json(server: RunningServer, model: str, count: int) -> None:
    client = openai.OpenAI(base_url=server.base_url, api_key=ALICE, max_retries=0)
    texts = []
    for seed in range(count):
        reply = client.chat.completions.create(**_structured(model, seed, stream=False))
        assert reply.choices[0].finish_reason == "stop", reply.choices[0].message.content
        texts.append(reply.choices[0].message.content or "")
    streamed = client.chat.completions.create(**_structured(model, 0, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices) == texts[0]
    for text in texts:
        value = json.loads(text)  # strict: a raw control character in a string fails
        assert set(value) == {"note", "tag", "count"}, text
        assert len(value["note"]) <= 12 and 1 <= len(value["tag"]) <= 6
        assert isinstance(value["count"], int)


def test_json_object_replies_are_strict_json(server: RunningServer) -> None:
    client = openai.OpenAI(base_url=server.base_url, api_key=ALICE, max_retries=0)
    finished = 0
    for seed in range(10):
        reply = client.chat.completions.create(
            model="tiny",
            messages=[{"role": "user", "content": "JSON!"}],
            response_format={"type": "json_object"},
            seed=seed,
            max_tokens=200,
        )
        if reply.choices[0].finish_reason == "stop":
            finished += 1
            assert isinstance(json.loads(reply.choices[0].message.content or ""), dict)
    assert finished >= 5


TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "lookup",
            "parameters": {
                "type": "object",
                "properties": {"q": {"type": "string", "maxLength": 10}},
                "required": ["q"],
            },
        },
    }
]


@pytest.mark.parametrize(
    "choice", ["required", {"type": "function", "function": {"name": "lookup"}}]
)
def test_forced_tool_calls_carry_json_arguments(server: RunningServer, choice: Any) -> None:
    client = openai.OpenAI(base_url=server.base_url, api_key=ALICE, max_retries=0)
    for seed in range(6):
        reply = client.chat.completions.create(
            model="tiny",
            messages=[{"role": "user", "content": "look it up"}],
            tools=TOOLS,  # type: ignore[arg-type]
            tool_choice=choice,
            temperature=1.2,
            seed=seed,
            max_tokens=300,
        )
        message = reply.choices[0].message
        assert message.content is None and message.tool_calls, reply
        for call in message.tool_calls:
            assert call.function.name == "lookup"  # type: ignore[union-attr]
            assert isinstance(json.loads(call.function.arguments)["q"], str)  # type: ignore[union-attr]
        expected = "tool_calls" if choice == "required" else "stop"
        assert reply.choices[0].finish_reason == expected


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(
    "choice", ["required", {"type": "function", "function": {"name": "lookup"}}]
)
def test_a_forced_call_cut_short_says_length(
    server: RunningServer, choice: Any, stream: bool
) -> None:
    body = {
        "model": "tiny",
        "messages": [{"role": "user", "content": "look it up"}],
        "tools": TOOLS,
        "tool_choice": choice,
        "max_tokens": 3,
        "stream": stream,
    }
    if not stream:
        reply = post(server, "/chat/completions", body).json()
        message = reply["choices"][0]["message"]
        assert message["content"] is None and "tool_calls" not in message
        assert reply["choices"][0]["finish_reason"] == "length"
        return
    with httpx.stream(
        "POST",
        f"{server.base_url}/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {ALICE}"},
    ) as response:
        events = [
            json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: {")
        ]
    deltas = [e["choices"][0] for e in events]
    assert not any(d["delta"].get("tool_calls") or d["delta"].get("content") for d in deltas)
    assert deltas[-1]["finish_reason"] == "length"


def _greedy(server: RunningServer, model: str, **fields: Any) -> dict[str, Any]:
    body = {
        "model": model,
        "prompt": "Once upon a time",
        "max_tokens": 6,
        "temperature": 0,
        "logprobs": 1,
        **fields,
    }
    answer = post(server, "/completions", body)
    assert answer.status_code == 200, answer.text
    choice: dict[str, Any] = answer.json()["choices"][0]
    return choice


@pytest.mark.parametrize("model", ["tiny", "endless"])
def test_logit_bias_bans_and_forces_tokens(
    server: RunningServer, vocab: llama_cpp.Llama, model: str
) -> None:
    plain = _greedy(server, model)
    first = plain["logprobs"]["tokens"][0]
    first_id = vocab.tokenize(first.encode(), add_bos=False, special=True)
    assert len(first_id) == 1, first
    banned = _greedy(server, model, logit_bias={str(first_id[0]): -100})
    assert banned["logprobs"]["tokens"][0] != first
    forced_id = vocab.tokenize(b"Z", add_bos=False)[0]
    forced = _greedy(server, model, logit_bias={str(forced_id): 100})
    assert forced["text"] == "Z" * 6


@pytest.mark.parametrize("bias", [{"abc": 1}, {"-1": 1}, {"999999": 1}, {"5": 101}, {"5": "x"}])
def test_bad_logit_bias_is_a_400(server: RunningServer, bias: dict[str, Any]) -> None:
    error = error_of(post(server, "/chat/completions", chat(logit_bias=bias)), 400)
    assert error["param"].startswith("logit_bias"), error


def test_logit_bias_on_a_model_that_does_not_declare_it(server: RunningServer) -> None:
    error = error_of(
        post(server, "/chat/completions", chat(model="plain", logit_bias={"5": 1})), 400
    )
    assert error["param"] == "logit_bias" and error["code"] == "unsupported_parameter"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("top_k", 5),
        ("prediction", {"type": "content", "content": "x"}),
        ("functions", [{"name": "f"}]),
        ("audio", {"voice": "alloy", "format": "wav"}),
        ("modalities", ["text", "audio"]),
    ],
)
def test_fields_that_would_change_the_output_are_refused(
    server: RunningServer, field: str, value: Any
) -> None:
    error = error_of(post(server, "/chat/completions", chat(**{field: value})), 400)
    assert error["param"] == field and error["code"] == "unsupported_parameter"


def test_fields_that_change_nothing_are_accepted(server: RunningServer) -> None:
    fields = {
        "user": "u-1",
        "metadata": {"team": "a"},
        "store": False,
        "service_tier": "auto",
        "prompt_cache_key": "k",
        "safety_identifier": "s",
        "modalities": ["text"],
        "reasoning_effort": None,
        "stream": None,
    }
    assert post(server, "/chat/completions", chat(**fields)).status_code == 200


def test_template_fields_are_honoured_on_llamacpp(server: RunningServer) -> None:
    assert "tiny (aliases: spark; tool format: hermes)" in server.ready_line
    fields = {"reasoning_effort": "high", "chat_template_kwargs": {"enable_thinking": False}}
    assert post(server, "/chat/completions", chat(**fields)).status_code == 200
    error = error_of(post(server, "/chat/completions", chat(reasoning_effort="extreme")), 400)
    assert error["param"] == "reasoning_effort"
    kwargs = {"messages": "x"}  # the template's own variables are not the client's
    error = error_of(post(server, "/chat/completions", chat(chat_template_kwargs=kwargs)), 400)
    assert error["param"] == "chat_template_kwargs"
    assert (
        post(server, "/embeddings", {"model": "tiny", "input": "x", "user": "u"}).status_code == 200
    )


@pytest.mark.parametrize("model", ["模型", "a\r\nx-injected: 1", " spaced ", "ümlaut"])
def test_model_names_any_client_may_send(server: RunningServer, model: str) -> None:
    answer = post(server, "/chat/completions", chat(model=model))
    error = error_of(answer, 404)
    assert error["code"] == "model_not_found"
    assert "x-injected" not in answer.headers
    assert urllib.parse.unquote(answer.headers["x-route-model"]) == model


def test_deep_json_is_a_400(server: RunningServer) -> None:
    deep = b'{"model": "tiny", "messages": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    for path in ("/chat/completions", "/embeddings"):
        assert error_of(post(server, path, deep), 413)["code"] == "request_too_large"
    error = error_of(
        post(server, "/chat/completions", b'{"model": ' + b"[" * 5000 + b"]" * 5000 + b"}"), 400
    )
    assert error["code"] == "invalid_json"
    for path in ("/chat/completions", "/models/tiny/completions"):
        nested = b'{"prompt": "x", "model": ' + b"[" * 5000 + b"]" * 5000 + b"}"
        assert error_of(post(server, path, nested), 400)["code"] == "invalid_json"
    alive(server)


def _deep_schema(levels: int) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(levels):
        schema = {"type": "object", "properties": {"a": schema}}
    return schema


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/chat/completions", chat(model="m" * 257), "model"),
        ("/chat/completions", chat(messages=[{"role": "user", "content": "x"}] * 2049), "messages"),
        ("/chat/completions", chat(tools=TOOLS * 129), "tools"),
        (
            "/chat/completions",
            chat(
                response_format={"type": "json_schema", "json_schema": {"schema": _deep_schema(40)}}
            ),
            "response_format.json_schema.schema",
        ),
        (
            "/chat/completions",
            chat(
                tools=[
                    {"type": "function", "function": {"name": "f", "parameters": _deep_schema(40)}}
                ],
                tool_choice="required",
            ),
            "tools[0].function.parameters",
        ),
        ("/embeddings", {"model": "tiny", "input": ["x"] * 2049}, "input"),
        ("/chat/completions", chat(stop="x" * 1025), "stop"),
        ("/chat/completions", chat(stop=["a", "x" * 1025]), "stop[1]"),
        ("/completions", {"model": "tiny", "prompt": ["x"] * 16, "n": 16}, "n"),
        (
            "/chat/completions",
            chat(messages=[{"role": "robot", "content": "x"}]),
            "messages[0].role",
        ),
    ],
)
def test_bounds_before_any_work(
    server: RunningServer, path: str, body: dict[str, Any], param: str
) -> None:
    error = error_of(post(server, path, body, timeout=30), 400)
    assert error["param"] == param, error


def test_huge_requests_are_refused_cheaply(launch: Any) -> None:
    big = launch(body=8 * 1024 * 1024)
    answer = post(big, "/chat/completions", chat(model="x" * 4_000_000), timeout=30)
    error = error_of(answer, 400)
    assert error["param"] == "model" and len(answer.text) < 2000
    assert "x" * 300 not in big.log()
    many = {"model": "tiny", "input": [[5] * 147] * 2048}  # 301,056 tokens
    error = error_of(post(big, "/embeddings", many, timeout=60), 400)
    assert error["param"] == "input" and "300000" in error["message"]
    alive(big)


@pytest.mark.parametrize("seed", [-1, 2**63 - 1, -(2**63)])
def test_any_64_bit_seed_is_served(server: RunningServer, seed: int) -> None:
    assert post(server, "/chat/completions", chat(seed=seed)).status_code == 200
    assert post(server, "/chat/completions", chat(model="endless", seed=seed)).status_code == 200


def test_a_chunked_body_over_the_limit_is_a_413(server: RunningServer) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"model": "tiny", "messages": [{"role": "user", "content": "'
        for _ in range(100):
            yield b"x" * 1024  # past the test server's 64 KiB, with no content-length
        yield b'"}]}'

    answer = httpx.post(
        f"{server.base_url}/chat/completions",
        content=chunks(),
        headers={"Authorization": f"Bearer {ALICE}", "content-type": "application/json"},
    )
    assert error_of(answer, 413)["code"] == "request_too_large"
    alive(server)


@pytest.mark.parametrize("path", ["/webhooks", "/api-keys", "/deployments", "/analytics/live"])
def test_huge_page_offsets_are_a_400(server: RunningServer, path: str) -> None:
    query = "since" if path.endswith("live") else "offset"
    answer = httpx.get(
        f"{server.base_url}{path}?{query}={2**70}",
        headers={"Authorization": f"Bearer {ADMIN}"},
    )
    assert answer.status_code == 400, answer.text
