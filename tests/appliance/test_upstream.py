"""The openai engine: one Radiance front routing to real OpenAI-compatible replicas.

The replicas are real `radiance up` servers on loopback ports serving the tiny GGUF; the
front is another one whose backend is `engine: openai`. Requests go through the official
SDK and raw httpx; billing is checked against both the front's and the replicas' ledgers.
"""

from __future__ import annotations

import json
import pathlib
import signal
import socket
import sqlite3
import textwrap
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openai
import pytest
from conftest import ADMIN, ALICE, BOB, RunningServer, start_server

pytestmark = pytest.mark.slow
FRONT_SECRET = "sk-front-to-replicas-0123"


def replica_config(models_dir: pathlib.Path) -> str:
    return textwrap.dedent(
        f"""
        server: {{host: 127.0.0.1, port: 0, database: radiance.db}}
        backends:
          cpu: {{engine: llamacpp, threads: 1}}
        models:
          - id: tiny
            backend: cpu
            source: {models_dir / "tiny.gguf"}
            context_length: 1024
          - id: endless
            backend: cpu
            source: {models_dir / "endless.gguf"}
            context_length: 512
        keys:
          - {{name: front, secret: {FRONT_SECRET}}}
        """
    )


def front_config(urls: list[str], tiers: str = "free: {rpm: 1000, tpm: 1000000}") -> str:
    return textwrap.dedent(
        f"""
        server:
          host: 127.0.0.1
          port: 0
          database: radiance.db
          admin_key: ${{RADIANCE_ADMIN_KEY}}
        backends:
          edge:
            engine: openai
            urls: {json.dumps(urls)}
            api_key: {FRONT_SECRET}
            health_interval: 0.3
            connect_timeout: 2
        models:
          - id: small
            backend: edge
            upstream_model: tiny
            context_length: 1024
            pricing: {{prompt: "0.10", completion: "0.40"}}
            aliases: [spark]
          - id: slow
            backend: edge
            upstream_model: endless
            context_length: 512
          - id: narrow
            backend: edge
            upstream_model: tiny
            parameters: [temperature, max_tokens]
        tiers:
          {tiers}
          capped: {{max_tokens: 5}}
        keys:
          - {{name: alice, tier: free, secret: "${{ALICE_KEY}}"}}
          - {{name: bob, secret: {BOB}}}
          - {{name: carol, tier: capped, secret: sk-carol-test-0123456}}
        """
    )


def rows(server: RunningServer, where: str = "1=1") -> list[sqlite3.Row]:
    with sqlite3.connect(server.database) as db:
        db.row_factory = sqlite3.Row
        return list(db.execute(f"SELECT * FROM requests WHERE {where} ORDER BY started_at"))


def row_of(server: RunningServer, request_id: str, timeout: float = 10) -> sqlite3.Row:
    """The ledger row of one request (a cancelled one is written a moment later)."""
    deadline = time.monotonic() + timeout
    while True:
        found = rows(server, f"id = '{request_id}'")
        if found or time.monotonic() > deadline:
            assert found, f"no ledger row for {request_id}"
            return found[0]
        time.sleep(0.1)


@pytest.fixture(scope="module")
def replicas(
    tmp_path_factory: pytest.TempPathFactory, models_dir: pathlib.Path
) -> Iterator[list[RunningServer]]:
    started = [
        start_server(tmp_path_factory.mktemp(f"replica{i}"), replica_config(models_dir))
        for i in range(2)
    ]
    yield started
    for running in started:
        running.stop()


@pytest.fixture(scope="module")
def front(
    tmp_path_factory: pytest.TempPathFactory, replicas: list[RunningServer]
) -> Iterator[RunningServer]:
    running = start_server(
        tmp_path_factory.mktemp("front"), front_config([r.base_url for r in replicas])
    )
    yield running
    running.stop()


_SDKS: list[openai.OpenAI] = []  # closed after each test


def client(server: RunningServer, key: str = ALICE) -> openai.OpenAI:
    sdk = openai.OpenAI(base_url=server.base_url, api_key=key, max_retries=0)
    _SDKS.append(sdk)
    return sdk


HELLO = [{"role": "user", "content": "Hello there"}]


def test_chat_through_the_front_is_billed_as_the_replica_counted(
    front: RunningServer, replicas: list[RunningServer]
) -> None:
    raw = client(front).chat.completions.with_raw_response.create(
        model="spark", messages=HELLO, max_tokens=12, seed=3, temperature=0.7
    )
    reply = raw.parse()
    request_id = raw.headers["x-request-id"]
    assert reply.model == "small"
    assert reply.id == f"chatcmpl-{request_id}"
    assert raw.headers["x-replica-id"] in {r.base_url for r in replicas}
    assert raw.headers["x-backend"] == "edge"
    assert "x-ratelimit-remaining-requests" in raw.headers
    assert reply.usage is not None and reply.usage.completion_tokens > 0
    row = row_of(front, request_id)
    assert (row["prompt_tokens"], row["completion_tokens"]) == (
        reply.usage.prompt_tokens,
        reply.usage.completion_tokens,
    )
    assert row["backend"] == "edge" and row["model"] == "small" and row["status"] == "ok"
    # The replica's own ledger saw the same tokens for its key `front`.
    served_by = next(r for r in replicas if r.base_url == raw.headers["x-replica-id"])
    upstream = rows(served_by, "key_name = 'front'")[-1]
    assert upstream["prompt_tokens"] == reply.usage.prompt_tokens
    assert upstream["completion_tokens"] == reply.usage.completion_tokens


@pytest.mark.parametrize("include_usage", [True, False])
def test_streams_are_billed_whether_or_not_the_client_asks_for_usage(
    front: RunningServer, include_usage: bool
) -> None:
    options = {"stream_options": {"include_usage": True}} if include_usage else {}
    with httpx.stream(
        "POST",
        f"{front.base_url}/chat/completions",
        headers={"authorization": f"Bearer {ALICE}"},
        # `slow` never ends on its own, so there are always 10 tokens to bill.
        json={"model": "slow", "messages": HELLO, "max_tokens": 10, "stream": True, **options},
        timeout=60,
    ) as response:
        assert response.status_code == 200
        request_id = response.headers["x-request-id"]
        lines = [line for line in response.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(line[6:]) for line in lines[:-1]]
    assert all(c["model"] == "slow" and c["id"] == f"chatcmpl-{request_id}" for c in chunks)
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    row = row_of(front, request_id)
    assert row["status"] == "ok" and row["completion_tokens"] == 10
    if include_usage:
        *body, last = chunks
        assert last["choices"] == [] and all(c["usage"] is None for c in body)
        assert last["usage"]["completion_tokens"] == row["completion_tokens"]
        assert last["usage"]["prompt_tokens"] == row["prompt_tokens"]
    else:
        assert all("usage" not in c for c in chunks)
    assert text


def test_sdk_stream_n_and_completions(front: RunningServer) -> None:
    sdk = client(front)
    stream = sdk.chat.completions.create(
        model="small",
        messages=HELLO,
        max_tokens=6,
        n=2,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert {c.choices[0].index for c in chunks if c.choices} == {0, 1}
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    done = sdk.completions.create(model="small", prompt="Once upon", max_tokens=5)
    assert done.model == "small" and done.usage is not None
    assert done.usage.completion_tokens <= 5


def test_front_checks_limits_and_parameters_before_forwarding(front: RunningServer) -> None:
    before = len(rows(front))
    with pytest.raises(openai.BadRequestError) as info:
        client(front).chat.completions.create(model="narrow", messages=HELLO, seed=1)
    assert info.value.body["param"] == "seed"  # type: ignore[index]
    assert info.value.body["code"] == "unsupported_parameter"  # type: ignore[index]
    carol = client(front, "sk-carol-test-0123456")
    with pytest.raises(openai.BadRequestError) as info:
        carol.chat.completions.create(model="small", messages=HELLO, max_tokens=50)
    assert info.value.body["code"] == "max_tokens_exceeded"  # type: ignore[index]
    # Without max_tokens the tier's cap is sent upstream, so it holds.
    capped = carol.chat.completions.create(model="small", messages=HELLO)
    assert capped.usage is not None and capped.usage.completion_tokens <= 5
    # More than the context can hold is the client's error, not a rate limit to retry.
    for param, value in (("max_tokens", 2**70), ("max_completion_tokens", 10**9)):
        with pytest.raises(openai.BadRequestError) as info:
            client(front).chat.completions.create(model="narrow", messages=HELLO, **{param: value})
        assert info.value.body["param"] == param  # type: ignore[index]
        assert info.value.body["code"] == "context_length_exceeded"  # type: ignore[index]
    assert len(rows(front)) == before + 5


def test_upstream_errors_pass_through_in_the_openai_envelope(front: RunningServer) -> None:
    response = httpx.post(
        f"{front.base_url}/chat/completions",
        headers={"authorization": f"Bearer {ALICE}"},
        json={"model": "small", "messages": [{"role": "user", "content": "x" * 5000}]},
        timeout=60,
    )
    # The replica's own 400, with its code, reaches the client.
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "context_length_exceeded"
    assert set(error) == {"message", "type", "param", "code"}
    assert "maximum context length" in error["message"]
    row = row_of(front, response.headers["x-request-id"])
    assert (row["status"], row["http_status"], row["prompt_tokens"]) == ("error", 400, 0)


def test_rate_limits_apply_at_the_front(
    tmp_path: pathlib.Path, replicas: list[RunningServer]
) -> None:
    tight = start_server(tmp_path / "tight", front_config([replicas[0].base_url], "free: {rpm: 2}"))
    try:
        sdk = client(tight)
        for _ in range(2):
            sdk.chat.completions.create(model="small", messages=HELLO, max_tokens=2)
        with pytest.raises(openai.RateLimitError):
            sdk.chat.completions.create(model="small", messages=HELLO, max_tokens=2)
    finally:
        tight.stop()


_CLIENTS: list[httpx.Client] = []  # kept alive while their streams are read


@pytest.fixture(autouse=True)
def _close_stream_clients() -> Iterator[None]:
    yield
    while _CLIENTS:
        _CLIENTS.pop().close()
    while _SDKS:
        _SDKS.pop().close()


def _open_stream(server: RunningServer, model: str, max_tokens: int) -> httpx.Response:
    http = httpx.Client(timeout=60)
    _CLIENTS.append(http)
    request = http.build_request(
        "POST",
        f"{server.base_url}/chat/completions",
        headers={"authorization": f"Bearer {ALICE}"},
        json={"model": model, "messages": HELLO, "max_tokens": max_tokens, "stream": True},
    )
    response = http.send(request, stream=True)
    assert response.status_code == 200, response.read()
    return response


def test_least_busy_replica_serves(front: RunningServer, replicas: list[RunningServer]) -> None:
    busy = _open_stream(front, "slow", 400)
    try:
        lines = busy.iter_lines()  # kept: a dropped iterator closes the connection
        _read_tokens(lines, 1)  # generating now
        busy_url = busy.headers["x-replica-id"]
        for _ in range(3):
            raw = client(front).chat.completions.with_raw_response.create(
                model="small", messages=HELLO, max_tokens=3
            )
            assert raw.headers["x-replica-id"] != busy_url
    finally:
        busy.close()
    assert {r.base_url for r in replicas} >= {busy_url}


def _read_tokens(lines: Iterator[str], count: int) -> None:
    """Read a stream until `count` chunks with text have arrived."""
    for line in lines:
        if line.startswith("data: {"):
            chunk = json.loads(line[6:])
            if chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
                count -= 1
                if count == 0:
                    return


def _wait_for(condition: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.2)


def _replica_errors(front: RunningServer) -> str | None:
    model = httpx.get(
        f"{front.base_url}/models/small", headers={"authorization": f"Bearer {ADMIN}"}
    ).json()
    error: str | None = model["error"]
    return error


def test_a_replica_that_dies_is_ejected_and_returns(
    tmp_path: pathlib.Path, models_dir: pathlib.Path
) -> None:
    first = start_server(tmp_path / "a", replica_config(models_dir))
    second = start_server(tmp_path / "b", replica_config(models_dir))
    port = int(first.base_url.rsplit(":", 1)[1].split("/")[0])
    edge = start_server(tmp_path / "front", front_config([first.base_url, second.base_url]))
    try:
        # A stream in flight on the replica that dies ends with an error event, billed
        # for the tokens it received.
        stream = None
        for _ in range(4):
            stream = _open_stream(edge, "slow", 400)
            if stream.headers["x-replica-id"] == first.base_url:
                break
            stream.close()
        assert stream is not None and stream.headers["x-replica-id"] == first.base_url
        lines = stream.iter_lines()
        _read_tokens(lines, 3)
        first.stop(signal.SIGKILL)
        rest = list(lines)
        stream.close()
        assert any('"error"' in line for line in rest)
        row = row_of(edge, stream.headers["x-request-id"])
        assert row["status"] == "error" and row["completion_tokens"] > 0
        # Every request now goes to the survivor, without an error.
        sdk = client(edge)
        for _ in range(4):
            raw = sdk.chat.completions.with_raw_response.create(
                model="small", messages=HELLO, max_tokens=2
            )
            assert raw.headers["x-replica-id"] == second.base_url
        assert first.base_url in (_replica_errors(edge) or "")
        # The replica comes back on its address and is used again.
        first = start_server(tmp_path / "a2", replica_config(models_dir), port=port)
        _wait_for(lambda: _replica_errors(edge) is None)
        seen = set()
        for _ in range(4):
            raw = sdk.chat.completions.with_raw_response.create(
                model="small", messages=HELLO, max_tokens=2
            )
            seen.add(raw.headers["x-replica-id"])
        assert seen == {first.base_url, second.base_url}
        # With every replica gone: 503 with Retry-After at once, never a hang.
        first.stop(signal.SIGKILL)
        second.stop(signal.SIGKILL)
        started = time.monotonic()
        response = httpx.post(
            f"{edge.base_url}/chat/completions",
            headers={"authorization": f"Bearer {ALICE}"},
            json={"model": "small", "messages": HELLO, "max_tokens": 2},
            timeout=30,
        )
        assert time.monotonic() - started < 10
        assert response.status_code == 503
        assert int(response.headers["retry-after"]) >= 1
        assert response.json()["error"]["code"] == "model_unavailable"
    finally:
        for running in (edge, first, second):
            running.stop()


def test_concurrent_requests_spread_over_replicas(
    front: RunningServer, replicas: list[RunningServer]
) -> None:
    seen: list[str] = []

    def one() -> None:
        raw = client(front).chat.completions.with_raw_response.create(
            model="small", messages=HELLO, max_tokens=8
        )
        seen.append(raw.headers["x-replica-id"])

    threads = [threading.Thread(target=one) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert set(seen) == {r.base_url for r in replicas}


def _upstream_rows(replicas: list[RunningServer], since: float) -> list[sqlite3.Row]:
    """The replicas' rows of the endless model's requests since `since`."""
    found: list[sqlite3.Row] = []
    for replica in replicas:
        found += rows(replica, f"model = 'endless' AND started_at >= {since}")
    return found


def test_leaving_a_passthrough_stream_stops_the_upstream_and_bills_what_arrived(
    front: RunningServer, replicas: list[RunningServer]
) -> None:
    since = time.time()
    stream = _open_stream(front, "slow", 400)
    _read_tokens(stream.iter_lines(), 3)
    stream.close()
    row = row_of(front, stream.headers["x-request-id"])
    assert row["status"] == "cancelled" and row["http_status"] == 499
    assert 3 <= row["completion_tokens"] < 400
    _wait_for(lambda: any(r["status"] == "cancelled" for r in _upstream_rows(replicas, since)))
    (upstream,) = _upstream_rows(replicas, since)
    assert upstream["completion_tokens"] < 400  # the upstream stopped generating too


def test_hanging_up_on_a_non_streamed_passthrough_request_stops_the_upstream(
    front: RunningServer, replicas: list[RunningServer]
) -> None:
    since = time.time()
    url = urllib.parse.urlsplit(front.base_url)
    payload = json.dumps({"model": "slow", "messages": HELLO, "max_tokens": 400}).encode()
    head = (
        f"POST {url.path}/chat/completions HTTP/1.1\r\nHost: {url.netloc}\r\n"
        f"Authorization: Bearer {BOB}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\n\r\n"
    ).encode()
    with socket.create_connection((url.hostname, url.port)) as conn:
        conn.sendall(head + payload)
        time.sleep(1.0)
    _wait_for(lambda: bool(rows(front, f"model = 'slow' AND started_at >= {since}")))
    (row,) = rows(front, f"model = 'slow' AND started_at >= {since}")
    assert row["status"] == "cancelled" and row["http_status"] == 499
    _wait_for(lambda: any(r["status"] == "cancelled" for r in _upstream_rows(replicas, since)))
    (upstream,) = _upstream_rows(replicas, since)
    assert 0 < upstream["completion_tokens"] < 400
    # Billed for what the upstream made until the client left (counted as it streamed in).
    assert 0 < row["completion_tokens"] <= upstream["completion_tokens"]
    assert row["prompt_tokens"] > 0


def _without_call_ids(choices: list[Any]) -> list[dict[str, Any]]:
    """The choices as dicts, each tool call's id checked and left out (ids are random)."""
    dumped = [c.model_dump() for c in choices]
    for choice in dumped:
        for call in choice["message"]["tool_calls"] or []:
            assert call.pop("id").startswith("call_")
    return dumped


def test_a_whole_answer_through_the_front_is_the_replicas_own(
    front: RunningServer, replicas: list[RunningServer]
) -> None:
    """A non-streamed request is streamed from the replica and assembled: the client gets
    the body the replica itself answers (greedy, so both runs make the same tokens)."""
    upstream = client(replicas[0], FRONT_SECRET)
    asked = {"messages": HELLO, "max_tokens": 8, "temperature": 0, "n": 2}
    chat = {**asked, "logprobs": True, "top_logprobs": 2}
    mine = client(front).chat.completions.create(model="small", **chat)  # type: ignore[call-overload]
    own = upstream.chat.completions.create(model="tiny", **chat)  # type: ignore[call-overload]
    assert mine.object == "chat.completion" and mine.model == "small"
    assert [c.model_dump() for c in mine.choices] == [c.model_dump() for c in own.choices]
    assert mine.usage == own.usage
    assert mine.choices[0].logprobs is not None and mine.choices[0].logprobs.content

    tool = {
        "type": "function",
        "function": {
            "name": "lookup",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string", "maxLength": 6}},
                "required": ["city"],
            },
        },
    }
    forced = {
        **asked,
        "max_tokens": 60,
        "tools": [tool],
        "tool_choice": {"type": "function", "function": {"name": "lookup"}},
    }
    mine = client(front).chat.completions.create(model="small", **forced)  # type: ignore[call-overload]
    own = upstream.chat.completions.create(model="tiny", **forced)  # type: ignore[call-overload]
    assert _without_call_ids(mine.choices) == _without_call_ids(own.choices)
    assert all(c.message.tool_calls for c in mine.choices)

    text = {"prompt": ["Once upon", "a time"], "max_tokens": 6, "temperature": 0, "logprobs": 2}
    mine_text = client(front).completions.create(model="small", **text)  # type: ignore[call-overload]
    own_text = upstream.completions.create(model="tiny", **text)  # type: ignore[call-overload]
    assert mine_text.object == "text_completion"
    assert [c.model_dump() for c in mine_text.choices] == [c.model_dump() for c in own_text.choices]
    assert mine_text.usage == own_text.usage


WEATHER = {
    "type": "function",
    "name": "get_weather",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string", "maxLength": 12}},
        "required": ["city"],
    },
}


def test_responses_through_the_front_are_billed_as_the_replica_counted(
    front: RunningServer,
) -> None:
    sdk = client(front)
    raw = sdk.responses.with_raw_response.create(
        # Greedy: sampled, the random model may end before its first token.
        model="spark",
        input="Hello there",
        max_output_tokens=12,
        temperature=0,
    )
    response = raw.parse()
    assert response.model == "small" and response.output[0].type == "message"
    assert response.usage is not None and response.usage.output_tokens >= 1
    row = row_of(front, raw.headers["x-request-id"])
    assert row["endpoint"] == "responses" and row["backend"] == "edge"
    assert (row["prompt_tokens"], row["completion_tokens"]) == (
        response.usage.input_tokens,
        response.usage.output_tokens,
    )
    forced = sdk.responses.create(
        model="small",
        input="Weather?",
        tools=[WEATHER],  # type: ignore[list-item]
        tool_choice={"type": "function", "name": "get_weather"},
        max_output_tokens=40,
        previous_response_id=response.id,
    )
    [call] = forced.output
    assert call.type == "function_call" and call.name == "get_weather"
    json.loads(call.arguments)
    events = list(sdk.responses.create(model="small", input="Hi", max_output_tokens=8, stream=True))
    final = events[-1]
    assert final.type in ("response.completed", "response.incomplete")
    usage = final.response.usage  # type: ignore[union-attr]
    assert usage is not None
    streamed = row_of(front, final.response.id.removeprefix("resp_"))  # type: ignore[union-attr]
    assert streamed["completion_tokens"] == usage.output_tokens
    assert sdk.responses.retrieve(final.response.id).output_text == (  # type: ignore[union-attr]
        "".join(e.delta for e in events if e.type == "response.output_text.delta")
    )
