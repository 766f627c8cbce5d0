"""The ledger bills exactly what clients were told, survives kill -9, and keeps API keys."""

from __future__ import annotations

import signal
import sqlite3
import time
from decimal import Decimal

import httpx
import openai
from conftest import ADMIN, ALICE, BOB, RunningServer, config_text, start_server

PROMPT_PRICE, COMPLETION_PRICE = Decimal("0.10"), Decimal("0.40")  # tiny's pricing


def ledger(server: RunningServer, where: str = "1=1") -> list[sqlite3.Row]:
    with sqlite3.connect(server.database) as db:
        db.row_factory = sqlite3.Row
        return list(db.execute(f"SELECT * FROM requests WHERE {where} ORDER BY started_at"))


def cost_of(prompt: int, completion: int) -> Decimal:
    return (prompt * PROMPT_PRICE + completion * COMPLETION_PRICE) / 1_000_000


def test_ledger_totals_equal_what_clients_were_told(launch) -> None:  # type: ignore[no-untyped-def]
    server = launch()
    client = openai.OpenAI(base_url=server.base_url, api_key=BOB, max_retries=0)
    told = {"prompt": 0, "completion": 0}
    messages = [{"role": "user", "content": "tell me"}]

    def add(usage: object) -> None:
        told["prompt"] += usage.prompt_tokens  # type: ignore[attr-defined]
        told["completion"] += getattr(usage, "completion_tokens", 0)

    add(client.chat.completions.create(model="tiny", messages=messages, max_tokens=12).usage)
    add(
        client.chat.completions.create(
            model="spark", messages=messages, max_tokens=6, n=3, seed=4
        ).usage
    )
    stream = client.chat.completions.create(
        model="tiny",
        messages=messages,
        max_tokens=9,
        stream=True,
        stream_options={"include_usage": True},
    )
    add(list(stream)[-1].usage)
    add(client.completions.create(model="tiny", prompt=["a", "b c"], max_tokens=5).usage)
    add(client.embeddings.create(model="tiny", input=["one", "two three"]).usage)
    # A stream that did not ask for usage is billed all the same.
    quiet = list(
        client.chat.completions.create(model="tiny", messages=messages, max_tokens=7, stream=True)
    )
    assert quiet[-1].usage is None
    (quiet_row,) = ledger(server, f"id = '{quiet[0].id.removeprefix('chatcmpl-')}'")
    assert quiet_row["status"] == "ok" and 1 <= quiet_row["completion_tokens"] <= 7
    told["prompt"] += quiet_row["prompt_tokens"]
    told["completion"] += quiet_row["completion_tokens"]
    # A refused request is recorded but bills nothing.
    refused = httpx.post(
        f"{server.base_url}/chat/completions",
        headers={"Authorization": f"Bearer {BOB}"},
        json={"model": "tiny", "messages": messages, "max_tokens": 5000},
    )
    assert refused.status_code == 400

    rows = ledger(server, "key_name = 'bob'")
    assert len(rows) == 7
    assert sum(r["prompt_tokens"] for r in rows) == told["prompt"]
    assert sum(r["completion_tokens"] for r in rows) == told["completion"]
    for row in rows:
        assert row["prompt_price"] == "0.10" and row["completion_price"] == "0.40"
        exact = cost_of(row["prompt_tokens"], row["completion_tokens"])
        assert Decimal(row["cost_pusd"]) / 10**12 == exact
    total = sum(Decimal(r["cost_pusd"]) for r in rows) / 10**12
    assert total == cost_of(told["prompt"], told["completion"])
    assert rows[-1]["status"] == "error" and rows[-1]["cost_pusd"] == 0


def test_abandoned_stream_is_billed_for_generated_tokens(launch) -> None:  # type: ignore[no-untyped-def]
    server = launch()
    with (
        httpx.Client(timeout=30) as client,
        client.stream(
            "POST",
            f"{server.base_url}/chat/completions",
            headers={"Authorization": f"Bearer {ALICE}"},
            json={
                "model": "endless",
                "messages": [{"role": "user", "content": "go"}],
                "max_tokens": 400,
                "stream": True,
            },
        ) as response,
    ):
        request_id = response.headers["x-request-id"]
        received = 0
        for line in response.iter_lines():
            received += line.startswith("data: {")
            if received >= 6:
                break
    deadline = time.monotonic() + 20
    while not ledger(server, f"id = '{request_id}'") and time.monotonic() < deadline:
        time.sleep(0.05)
    (row,) = ledger(server, f"id = '{request_id}'")
    assert row["status"] == "cancelled" and row["http_status"] == 499
    # Six events were read: the role chunk and at least five tokens.
    assert 5 <= row["completion_tokens"] < 400 and row["prompt_tokens"] > 0
    assert row["cost_pusd"] == 0  # endless is free; the tokens are what is billed
    # The limiter was settled to the same count.
    headers = {"Authorization": f"Bearer {ALICE}"}
    reply = httpx.post(
        f"{server.base_url}/chat/completions",
        headers=headers,
        json={"model": "endless", "messages": [{"role": "user", "content": "x"}], "max_tokens": 1},
    )
    used = row["prompt_tokens"] + row["completion_tokens"] + reply.json()["usage"]["total_tokens"]
    assert int(reply.headers["x-ratelimit-remaining-tokens"]) == 1_000_000 - used


def test_kill_9_loses_no_completed_request_and_restart_keeps_keys(
    launch, models_dir, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "durable"
    first = start_server(folder, config_text(models_dir))
    made = httpx.post(
        f"{first.base_url}/api-keys",
        headers={"Authorization": f"Bearer {ADMIN}"},
        json={"name": "grace", "tier": "free"},
    ).json()["data"]
    client = openai.OpenAI(base_url=first.base_url, api_key=made["key"], max_retries=0)
    ids = []
    for index in range(6):
        if index % 2:
            chunks = list(
                client.chat.completions.create(
                    model="tiny",
                    messages=[{"role": "user", "content": f"q{index}"}],
                    max_tokens=8,
                    stream=True,
                )
            )
            ids.append(chunks[0].id)
        else:
            reply = client.chat.completions.create(
                model="tiny", messages=[{"role": "user", "content": f"q{index}"}], max_tokens=8
            )
            ids.append(reply.id)
    first.process.send_signal(signal.SIGKILL)
    first.process.wait()
    first.stop()
    stored = {row["id"] for row in ledger(first, "key_name = 'grace'")}
    assert stored == {i.removeprefix("chatcmpl-") for i in ids}

    second = start_server(folder, config_text(models_dir))
    try:
        again = openai.OpenAI(base_url=second.base_url, api_key=made["key"], max_retries=0)
        reply = again.chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": "back"}], max_tokens=3
        )
        assert reply.choices[0].message.content is not None
        keys = httpx.get(
            f"{second.base_url}/api-keys", headers={"Authorization": f"Bearer {ADMIN}"}
        ).json()["data"]
        assert "grace" in {k["name"] for k in keys}
    finally:
        second.stop()
    assert len(ledger(second, "key_name = 'grace'")) == 7


def test_metrics_are_prometheus_text_labelled_by_model(server: RunningServer) -> None:
    client = openai.OpenAI(base_url=server.base_url, api_key=ALICE, max_retries=0)
    client.chat.completions.create(
        model="spark", messages=[{"role": "user", "content": "m"}], max_tokens=3
    )
    admin = {"Authorization": f"Bearer {ADMIN}"}
    text = httpx.get(f"{server.root_url}/metrics", headers=admin).text
    assert 'radiance:requests_total{model_name="tiny",status="ok"}' in text
    assert 'radiance:generation_tokens_total{model_name="tiny"}' in text
    assert "radiance:e2e_request_latency_seconds_bucket" in text
    assert "radiance:time_to_first_token_seconds_count" in text
    assert 'radiance:num_requests_running{model_name="endless"} 0.0' in text
    assert 'radiance:num_requests_waiting{model_name="tiny"} 0.0' in text
    assert "alice" not in text and ALICE not in text


def test_live_snapshot_counts_tokens_and_tails_requests(server: RunningServer) -> None:
    headers = {"Authorization": f"Bearer {ADMIN}"}
    before = httpx.get(f"{server.base_url}/analytics/live", headers=headers).json()["data"]
    client = openai.OpenAI(base_url=server.base_url, api_key=ALICE, max_retries=0)
    reply = client.chat.completions.create(
        model="spark", messages=[{"role": "user", "content": "live"}], max_tokens=5
    )
    after = httpx.get(
        f"{server.base_url}/analytics/live",
        headers=headers,
        params={"since": before["sequence"]},
    ).json()["data"]
    tiny = {m["id"]: m for m in after["models"]}["tiny"]
    old = {m["id"]: m for m in before["models"]}["tiny"]
    assert tiny["status"] == "ready" and tiny["backend"] == "cpu"
    generated = tiny["totals"]["generated_tokens"] - old["totals"]["generated_tokens"]
    assert generated == reply.usage.completion_tokens  # type: ignore[union-attr]
    assert tiny["last_minute"]["requests"] >= 1
    assert tiny["last_minute"]["p50_latency_ms"] > 0
    (row,) = after["recent"]
    assert row["key"] == "alice" and row["model"] == "tiny" and row["status"] == "ok"
    assert row["id"] == reply.id.removeprefix("chatcmpl-")
    user = httpx.get(
        f"{server.base_url}/analytics/live", headers={"Authorization": f"Bearer {ALICE}"}
    )
    assert user.status_code == 403
