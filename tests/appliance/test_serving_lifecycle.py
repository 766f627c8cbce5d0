"""Queueing, disconnects, the ledger and key storage, on real server processes."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time

import httpx
import pytest
from conftest import ALICE, BOB, RunningServer


def rows(server: RunningServer, where: str = "1=1") -> list[sqlite3.Row]:
    with sqlite3.connect(server.database) as db:
        db.row_factory = sqlite3.Row
        return list(db.execute(f"SELECT * FROM requests WHERE {where} ORDER BY started_at"))


def endless(max_tokens: int, stream: bool = True) -> dict[str, object]:
    return {
        "model": "endless",
        "messages": [{"role": "user", "content": "go on"}],
        "max_tokens": max_tokens,
        "stream": stream,
    }


def test_keys_are_stored_only_as_hashes(server: RunningServer) -> None:
    data = server.database.read_bytes()
    for path in server.folder.glob("radiance.db*"):
        data += path.read_bytes()
    assert ALICE.encode() not in data and BOB.encode() not in data
    with sqlite3.connect(server.database) as db:
        names = {
            row[0]: row[1]
            for row in db.execute("SELECT name, prefix FROM api_keys WHERE source = 'config'")
        }
    assert set(names) == {"alice", "bob"}
    assert ALICE.startswith(names["alice"]) and len(names["alice"]) < len(ALICE) // 2
    assert ALICE not in server.log() and BOB not in server.log()


def test_every_request_is_logged_and_recorded(server: RunningServer) -> None:
    reply = httpx.post(
        f"{server.base_url}/chat/completions",
        headers={"Authorization": f"Bearer {BOB}"},
        json={"model": "spark", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5},
    )
    request_id = reply.headers["x-request-id"]
    usage = reply.json()["usage"]
    (row,) = rows(server, f"id = '{request_id}'")
    assert row["key_name"] == "bob" and row["route_model"] == "spark" and row["model"] == "tiny"
    assert row["backend"] == "cpu" and row["status"] == "ok" and row["http_status"] == 200
    assert row["prompt_tokens"] == usage["prompt_tokens"]
    assert row["completion_tokens"] == usage["completion_tokens"]
    assert row["latency_ms"] > 0 and row["ttft_ms"] is not None
    line = next(x for x in server.log().splitlines() if f"id={request_id}" in x)
    assert "key=bob" in line and "model=tiny" in line and "status=ok" in line
    bad = httpx.post(
        f"{server.base_url}/chat/completions",
        headers={"Authorization": f"Bearer {BOB}"},
        json={"model": "spark", "messages": [], "max_tokens": 5},
    )
    (row,) = rows(server, f"id = '{bad.headers['x-request-id']}'")
    assert row["status"] == "error" and row["http_status"] == 400


def test_client_disconnect_stops_generation_and_bills_what_was_made(server: RunningServer) -> None:
    with httpx.Client(timeout=30) as client:
        with client.stream(
            "POST",
            f"{server.base_url}/chat/completions",
            headers={"Authorization": f"Bearer {ALICE}"},
            json=endless(400),
        ) as response:
            request_id = response.headers["x-request-id"]
            received = 0
            for line in response.iter_lines():
                if line.startswith("data: {"):
                    received += 1
                if received >= 5:
                    break
        started = time.monotonic()
        # The model is free again at once: a short request is not stuck behind 400 tokens.
        reply = client.post(
            f"{server.base_url}/chat/completions",
            headers={"Authorization": f"Bearer {ALICE}"},
            json=endless(3, stream=False),
        )
        assert reply.status_code == 200
        waited = time.monotonic() - started
    deadline = time.monotonic() + 10
    while not rows(server, f"id = '{request_id}'") and time.monotonic() < deadline:
        time.sleep(0.1)
    (row,) = rows(server, f"id = '{request_id}'")
    assert row["status"] == "cancelled"
    assert 4 <= row["completion_tokens"] < 400
    assert waited < 30


def test_full_queue_answers_503_with_retry_after(launch) -> None:  # type: ignore[no-untyped-def]
    server = launch(max_queue=1)
    headers = {"Authorization": f"Bearer {ALICE}"}

    async def scenario() -> tuple[httpx.Response, httpx.Response, int]:
        async with httpx.AsyncClient(timeout=60) as client:
            # A stream that has sent its first token holds the model's only worker.
            async with client.stream(
                "POST", f"{server.base_url}/chat/completions", headers=headers, json=endless(480)
            ) as running:
                lines = running.aiter_lines()
                while not (await anext(lines)).startswith("data: {"):
                    pass
                waiting = asyncio.create_task(
                    client.post(
                        f"{server.base_url}/chat/completions",
                        headers=headers,
                        json=endless(5, stream=False),
                    )
                )
                await asyncio.sleep(0.2)
                refused = await client.post(
                    f"{server.base_url}/chat/completions",
                    headers=headers,
                    json=endless(5, stream=False),
                )
                running_status = running.status_code
            # Leaving the stream frees the worker for the request that waited.
            return refused, await waiting, running_status

    refused, waiting, running_status = asyncio.run(scenario())
    assert refused.status_code == 503
    assert refused.json()["error"]["code"] == "overloaded"
    assert float(refused.headers["retry-after"]) >= 1
    assert int(refused.headers["retry-after-ms"]) >= 1
    assert running_status == 200
    assert waiting.status_code == 200
    assert waiting.json()["usage"]["completion_tokens"] == 5


def test_concurrent_requests_to_one_model_all_succeed(server: RunningServer) -> None:
    async def scenario() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=60) as client:
            return await asyncio.gather(
                *[
                    client.post(
                        f"{server.base_url}/chat/completions",
                        headers={"Authorization": f"Bearer {ALICE}"},
                        json={
                            "model": "tiny",
                            "messages": [{"role": "user", "content": f"q{i}"}],
                            "max_tokens": 20,
                            "stream": i % 2 == 0,
                        },
                    )
                    for i in range(6)
                ]
            )

    for reply in asyncio.run(scenario()):
        assert reply.status_code == 200
        if reply.headers["content-type"].startswith("text/event-stream"):
            assert reply.text.rstrip().endswith("data: [DONE]")
        else:
            assert json.loads(reply.text)["choices"]


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_server_shuts_down_cleanly(launch, sig: str) -> None:  # type: ignore[no-untyped-def]
    import signal

    server = launch()
    number = getattr(signal, sig)
    # uvicorn finishes its graceful shutdown, then re-raises the signal it caught.
    assert server.stop(number) in (0, -number)
    log = server.log()
    assert "Application shutdown complete" in log
    assert "Traceback" not in log
