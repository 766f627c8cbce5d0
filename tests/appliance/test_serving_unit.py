"""The serving layer with a scripted engine, through Litestar's AsyncTestClient.

These cover what a random-weight model cannot show on demand: tool calls parsed from text
under tool_choice=auto, and an engine failing in the middle of a stream.
"""

from __future__ import annotations

import json
import pathlib
import sqlite3
from collections.abc import AsyncIterator

import pytest
from fake_engine import ScriptedEngine
from litestar.testing import AsyncTestClient

from appliance.app import create_app
from appliance.config import parse_config_text
from appliance.registry import ModelRegistry, ServedModel

KEY = "sk-unit-test-key-1"
CONFIG = f"""
server: {{database: state.db, admin_key: unit-admin-key-0123}}
backends: {{cpu: {{engine: llamacpp}}}}
models:
  - {{id: scripted, backend: cpu, source: fake.gguf, context_length: 64,
     pricing: {{prompt: "1.5", completion: "2.25"}}}}
keys:
  - {{name: unit, secret: {KEY}}}
"""
CALL = '<tool_call>\n{"name": "lookup", "arguments": {"q": "radiance"}}\n</tool_call>'
TOOLS = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]


def client_for(tmp_path: pathlib.Path, engine: ScriptedEngine) -> AsyncTestClient:  # type: ignore[type-arg]
    (tmp_path / "fake.gguf").write_bytes(b"GGUF")
    loaded = parse_config_text(CONFIG, "radiance.yaml", tmp_path, {})
    registry = ModelRegistry([ServedModel(loaded.config.models[0], "cpu", engine)])
    return AsyncTestClient(app=create_app(loaded, registry=registry))


@pytest.fixture
async def auto_tools(tmp_path: pathlib.Path) -> AsyncIterator[AsyncTestClient]:  # type: ignore[type-arg]
    pieces = ["<tool", "_call>", CALL.removeprefix("<tool_call>")]
    async with client_for(tmp_path, ScriptedEngine(pieces)) as client:
        yield client


def chat(**fields: object) -> dict[str, object]:
    return {"model": "scripted", "messages": [{"role": "user", "content": "hi"}], **fields}


async def test_auto_tool_call_is_parsed_from_text(auto_tools: AsyncTestClient) -> None:  # type: ignore[type-arg]
    reply = await auto_tools.post(
        "/v1/chat/completions", json=chat(tools=TOOLS), headers={"Authorization": f"Bearer {KEY}"}
    )
    choice = reply.json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    (call,) = choice["message"]["tool_calls"]
    assert call["function"]["name"] == "lookup"
    assert json.loads(call["function"]["arguments"]) == {"q": "radiance"}


async def test_auto_tool_call_in_a_stream(auto_tools: AsyncTestClient) -> None:  # type: ignore[type-arg]
    reply = await auto_tools.post(
        "/v1/chat/completions",
        json=chat(tools=TOOLS, stream=True),
        headers={"Authorization": f"Bearer {KEY}"},
    )
    events = [
        json.loads(line[6:]) for line in reply.text.splitlines() if line.startswith("data: {")
    ]
    deltas = [e["choices"][0]["delta"] for e in events]
    assert not any(d.get("content") for d in deltas)
    calls = [c for d in deltas for c in d.get("tool_calls", [])]
    assert calls[0]["function"]["name"] == "lookup" and calls[0]["index"] == 0
    assert events[-1]["choices"][0]["finish_reason"] == "tool_calls"


async def test_plain_text_under_auto_streams_as_content(tmp_path: pathlib.Path) -> None:
    async with client_for(tmp_path, ScriptedEngine(["<to", "ast> is", " bread"])) as client:
        reply = await client.post(
            "/v1/chat/completions",
            json=chat(tools=TOOLS, stream=True),
            headers={"Authorization": f"Bearer {KEY}"},
        )
    events = [
        json.loads(line[6:]) for line in reply.text.splitlines() if line.startswith("data: {")
    ]
    text = "".join(e["choices"][0]["delta"].get("content") or "" for e in events)
    assert text == "<toast> is bread"


async def test_engine_failure_mid_stream_ends_with_an_error_event(tmp_path: pathlib.Path) -> None:
    engine = ScriptedEngine(["a", "b", "c", "d"], fail_after=2)
    async with client_for(tmp_path, engine) as client:
        reply = await client.post(
            "/v1/chat/completions",
            json=chat(stream=True),
            headers={"Authorization": f"Bearer {KEY}"},
        )
    assert reply.status_code == 200
    lines = [line for line in reply.text.splitlines() if line.startswith("data: ")]
    error = json.loads(lines[-2][6:])["error"]
    assert error["code"] == "internal_error" and "fell over" in error["message"]
    assert lines[-1] == "data: [DONE]"
    # The two tokens made before the failure are billed, with the prompt.
    with sqlite3.connect(tmp_path / "state.db") as db:
        status, prompt, completion, cost = db.execute(
            "SELECT status, prompt_tokens, completion_tokens, cost_pusd FROM requests"
        ).fetchone()
    assert status == "error" and completion == 2 and prompt > 0
    assert cost == prompt * 1_500_000 + completion * 2_250_000


async def test_engine_failure_before_output_is_a_500_envelope(tmp_path: pathlib.Path) -> None:
    async with client_for(tmp_path, ScriptedEngine(["a"], fail_after=0)) as client:
        reply = await client.post(
            "/v1/chat/completions", json=chat(), headers={"Authorization": f"Bearer {KEY}"}
        )
    assert reply.status_code == 500
    assert reply.json()["error"]["type"] == "server_error"
    with sqlite3.connect(tmp_path / "state.db") as db:
        row = db.execute("SELECT status, prompt_tokens, cost_pusd FROM requests").fetchone()
    assert row == ("error", 0, 0)  # nothing was produced, nothing is billed


async def test_default_budget_is_the_rest_of_the_context(tmp_path: pathlib.Path) -> None:
    engine = ScriptedEngine(["x"] * 100)
    async with client_for(tmp_path, engine) as client:
        reply = await client.post(
            "/v1/chat/completions", json=chat(), headers={"Authorization": f"Bearer {KEY}"}
        )
    usage = reply.json()["usage"]
    assert engine.seen[0].max_tokens == 64 - usage["prompt_tokens"]
    assert usage["completion_tokens"] == engine.seen[0].max_tokens


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("stage", ["render", "first", "middle", "end"])
async def test_a_bug_anywhere_settles_the_request_once(
    tmp_path: pathlib.Path, stage: str, stream: bool
) -> None:
    """A failure of our own code: a 500 (or an error event) in the envelope, one ledger row
    billing what was made, and the key's only concurrency slot free for the next request."""
    config = CONFIG.replace("secret: " + KEY + "}", "secret: " + KEY + ", tier: one}")
    config += "tiers: {one: {concurrency: 1}}\n"
    (tmp_path / "fake.gguf").write_bytes(b"GGUF")
    loaded = parse_config_text(config, "radiance.yaml", tmp_path, {})
    engine = ScriptedEngine(["a", "b", "c"], bug_at=stage)
    registry = ModelRegistry([ServedModel(loaded.config.models[0], "cpu", engine)])
    headers = {"Authorization": f"Bearer {KEY}"}
    async with AsyncTestClient(app=create_app(loaded, registry=registry)) as client:
        for _ in range(3):
            reply = await client.post(
                "/v1/chat/completions", json=chat(stream=stream), headers=headers
            )
            if reply.status_code == 200:  # the stream had begun: an error event ends it
                events = [line[6:] for line in reply.text.splitlines() if line.startswith("data: ")]
                assert json.loads(events[-2])["error"]["code"] == "internal_error"
                assert events[-1] == "[DONE]"
            else:
                assert reply.status_code == 500, reply.text
                assert reply.json()["error"]["code"] == "internal_error"
        meter = client.app.state.runtime.meter
        assert not meter.open_requests  # every request settled, none left in flight
        engine.bug_at = None
        assert (
            await client.post("/v1/chat/completions", json=chat(), headers=headers)
        ).status_code == 200
    with sqlite3.connect(tmp_path / "state.db") as db:
        rows = db.execute("SELECT status, http_status, completion_tokens FROM requests").fetchall()
    assert len(rows) == 4
    made = {"render": 0, "first": 0, "middle": 1, "end": 3}[stage]
    assert rows[:3] == [("error", 500, made)] * 3
    assert rows[3][0] == "ok"
