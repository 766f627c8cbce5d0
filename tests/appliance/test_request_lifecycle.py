"""Every request settles exactly once, on real server processes: disconnects, budgets under
concurrency, and a server killed while streams run."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import socket
import sqlite3
import time
import urllib.parse
from collections.abc import AsyncIterator
from typing import Any

import httpx
from conftest import ALICE, BOB, RunningServer

HELLO = [{"role": "user", "content": "go on"}]


def rows(server: RunningServer, where: str = "1=1") -> list[sqlite3.Row]:
    with sqlite3.connect(server.database) as db:
        db.row_factory = sqlite3.Row
        return list(db.execute(f"SELECT * FROM requests WHERE {where} ORDER BY started_at"))


def wait_for_rows(server: RunningServer, where: str, timeout: float = 15) -> list[sqlite3.Row]:
    deadline = time.monotonic() + timeout
    while True:
        found = rows(server, where)
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def send_and_hang_up(server: RunningServer, body: dict[str, Any], key: str, wait: float) -> float:
    """POST `body` on a raw connection, read nothing, close it after `wait` seconds;
    the time it was closed (epoch seconds)."""
    url = urllib.parse.urlsplit(server.base_url)
    payload = json.dumps(body).encode()
    head = (
        f"POST {url.path}/chat/completions HTTP/1.1\r\nHost: {url.netloc}\r\n"
        f"Authorization: Bearer {key}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\n\r\n"
    ).encode()
    with socket.create_connection((url.hostname, url.port)) as conn:
        conn.sendall(head + payload)
        time.sleep(wait)
    return time.time()


def test_a_client_that_hangs_up_stops_a_non_streamed_request(server: RunningServer) -> None:
    """The request stops generating when the client goes away (it would run to 480 tokens,
    the model never ends on its own), is billed for what it generated, and frees the
    model's only slot for the next request."""
    since = time.time()
    closed = send_and_hang_up(
        server, {"model": "endless", "messages": HELLO, "max_tokens": 480}, BOB, wait=1.0
    )
    where = f"key_name = 'bob' AND model = 'endless' AND started_at >= {since}"
    found = wait_for_rows(server, where)
    assert len(found) == 1
    (row,) = found
    assert row["status"] == "cancelled" and row["http_status"] == 499
    assert 0 < row["completion_tokens"] < 480
    assert row["prompt_tokens"] > 0  # billed: it generated tokens
    print(f"stopped {1000 * (row['ended_at'] - closed):.0f} ms after the client hung up")
    reply = httpx.post(
        f"{server.base_url}/chat/completions",
        headers={"Authorization": f"Bearer {BOB}"},
        json={"model": "endless", "messages": HELLO, "max_tokens": 3},
        timeout=30,
    )
    assert reply.status_code == 200 and reply.json()["usage"]["completion_tokens"] == 3
    line = next(x for x in server.log().splitlines() if f"id={row['id']}" in x)
    assert "status=cancelled" in line and "http=499" in line


BUDGET_KEY = "sk-capped-test-0123456789"


def test_a_client_that_hangs_up_halfway_through_its_body_leaves_a_cancelled_row(
    server: RunningServer,
) -> None:
    """Half a body, then the connection closes: the request is settled as cancelled by its
    client (499, nothing billed) and the server goes on serving."""
    url = urllib.parse.urlsplit(server.base_url)
    since = time.time()
    head = (
        f"POST {url.path}/chat/completions HTTP/1.1\r\nHost: {url.netloc}\r\n"
        f"Authorization: Bearer {BOB}\r\nContent-Type: application/json\r\n"
        "Content-Length: 1000\r\n\r\n"
    ).encode()
    with socket.create_connection((url.hostname, url.port)) as conn:
        conn.sendall(head + b'{"model": "endless", "mess')
        time.sleep(0.3)
    found = wait_for_rows(server, f"key_name = 'bob' AND started_at >= {since}")
    assert [(r["status"], r["http_status"], r["completion_tokens"]) for r in found] == [
        ("cancelled", 499, 0)
    ]
    reply = httpx.post(
        f"{server.base_url}/chat/completions",
        headers={"Authorization": f"Bearer {BOB}"},
        json={"model": "endless", "messages": HELLO, "max_tokens": 2},
        timeout=30,
    )
    assert reply.status_code == 200


def test_the_paths_answered_straight_and_through_litestar_answer_alike(
    server: RunningServer,
) -> None:
    """`/v1/chat/completions` is answered by its lane before Litestar; the same route
    spelled with a trailing slash goes through Litestar to the same lane: the same
    answer, headers and errors either way."""
    headers = {"Authorization": f"Bearer {BOB}"}
    body = {"model": "endless", "messages": HELLO, "max_tokens": 2, "seed": 3}
    answers = [
        httpx.post(f"{server.base_url}/chat/completions{end}", headers=headers, json=body)
        for end in ("", "/")
    ]
    assert [a.status_code for a in answers] == [200, 200]
    assert answers[0].json()["choices"] == answers[1].json()["choices"]
    names = [{k for k in a.headers if k.startswith("x-")} for a in answers]
    assert names[0] == names[1] and "x-request-id" in names[0]
    assert answers[0].headers["content-type"] == answers[1].headers["content-type"]
    refused = [
        httpx.post(f"{server.base_url}/chat/completions{end}", json=body) for end in ("", "/")
    ]
    assert [r.status_code for r in refused] == [401, 401]
    assert refused[0].json() == refused[1].json()


def test_concurrent_requests_never_spend_past_the_budget(launch) -> None:  # type: ignore[no-untyped-def]
    # Each request may cost up to ~(10 prompt x 0.10 + 40 completion x 0.40) / 1M USD,
    # about 17 micro-USD: a budget of 60 lets three or so run at once.
    budget_usd = "0.00006"
    server = launch(
        keys=[f"{{name: capped, secret: {BUDGET_KEY}, budget: {{usd: '{budget_usd}'}}}}"]
    )
    headers = {"Authorization": f"Bearer {BUDGET_KEY}"}
    body = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 40}

    async def wave(client: httpx.AsyncClient) -> list[httpx.Response]:
        url = f"{server.base_url}/chat/completions"
        return list(
            await asyncio.gather(*(client.post(url, json=body, headers=headers) for _ in range(20)))
        )

    async def scenario() -> list[list[httpx.Response]]:
        async with httpx.AsyncClient(timeout=60) as client:
            return [await wave(client) for _ in range(4)]  # until the budget is spent

    waves = asyncio.run(scenario())
    answered = [r for replies in waves for r in replies if r.status_code == 200]
    refused = [r for replies in waves for r in replies if r.status_code != 200]
    assert answered and refused
    for reply in refused:
        assert reply.status_code == 429, reply.text
        assert reply.json()["error"]["code"] == "insufficient_quota"
        assert reply.headers["x-should-retry"] == "false"
    with sqlite3.connect(server.database) as db:
        (spent,) = db.execute(
            "SELECT COALESCE(SUM(cost_pusd), 0) FROM requests WHERE key_name = 'capped'"
        ).fetchone()
    assert 0 < spent <= int(float(budget_usd) * 1e12)
    # The answer names what is left and the parameter to lower.
    error = refused[0].json()["error"]
    assert "budget" in error["message"]


def test_every_stream_a_client_saw_finish_survives_kill_9(launch) -> None:  # type: ignore[no-untyped-def]
    server = launch()
    folder = server.folder
    finished: list[str] = []
    enough = asyncio.Event()

    async def stream(client: httpx.AsyncClient, number: int) -> None:
        body = {
            "model": "tiny",
            "messages": [{"role": "user", "content": f"stream {number}"}],
            "max_tokens": 4 + number % 40,
            "stream": True,
        }
        try:
            async with client.stream(
                "POST",
                f"{server.base_url}/chat/completions",
                json=body,
                headers={"Authorization": f"Bearer {BOB}"},
            ) as response:
                if response.status_code != 200:
                    return
                async for line in response.aiter_lines():
                    if line == "data: [DONE]":
                        finished.append(response.headers["x-request-id"])
                        if len(finished) == 16:
                            enough.set()
        except httpx.HTTPError:
            pass  # cut off by the kill

    async def scenario() -> None:
        limits = httpx.Limits(max_connections=64)
        async with httpx.AsyncClient(timeout=60, limits=limits) as client:
            tasks = [asyncio.create_task(stream(client, n)) for n in range(64)]
            await enough.wait()
            server.process.send_signal(signal.SIGKILL)
            await asyncio.gather(*tasks)

    asyncio.run(scenario())
    assert server.stop() == -signal.SIGKILL
    assert len(finished) >= 16
    again = launch(folder=folder)  # the same database, opened after the kill
    with sqlite3.connect(again.database) as db:
        stored = dict(db.execute("SELECT id, status FROM requests").fetchall())
    missing = [request_id for request_id in finished if request_id not in stored]
    assert not missing
    assert {stored[request_id] for request_id in finished} == {"ok"}
    reply = httpx.get(f"{again.base_url}/models", headers={"Authorization": f"Bearer {ALICE}"})
    assert reply.status_code == 200


def test_stopping_the_server_settles_every_request_under_way(launch) -> None:  # type: ignore[no-untyped-def]
    """SIGTERM while a stream generates and another request waits for the model's only
    slot: when the grace period ends both are cut short with a clean answer (a 503 in the
    envelope; mid-stream an error event and [DONE]), each has exactly one ledger row (the
    stream billed for the tokens it made), and the server shuts down without a traceback."""
    server = launch(server={"shutdown_grace_seconds": 1})
    headers = {"Authorization": f"Bearer {BOB}"}
    url = f"{server.base_url}/chat/completions"
    body = {"model": "endless", "messages": HELLO, "max_tokens": 480}
    seen: dict[str, Any] = {"tokens": 0}

    async def stream(client: httpx.AsyncClient, generating: asyncio.Event) -> None:
        async with client.stream(
            "POST", url, json={**body, "stream": True}, headers=headers
        ) as response:
            seen["stream"] = response.headers["x-request-id"]
            lines = [line async for line in _counted(response.aiter_lines(), seen, generating)]
        seen["stream_end"] = lines[-2:]

    async def queued(client: httpx.AsyncClient) -> None:
        seen["queued"] = await client.post(url, json=body, headers=headers)

    async def scenario() -> None:
        async with httpx.AsyncClient(timeout=60) as client:
            generating = asyncio.Event()
            streaming = asyncio.create_task(stream(client, generating))
            await asyncio.wait_for(generating.wait(), 30)
            waiting = asyncio.create_task(queued(client))
            await asyncio.sleep(0.2)  # admitted, waiting for the slot
            server.process.send_signal(signal.SIGTERM)
            await asyncio.gather(streaming, waiting)

    since = time.time()
    asyncio.run(scenario())
    # uvicorn re-raises SIGTERM once its shutdown is complete.
    assert server.process.wait(timeout=30) == -signal.SIGTERM
    last, done = seen["stream_end"]
    assert done == "data: [DONE]"
    # The stream is cut short when the grace period ends, unless a fast CPU made its 480
    # tokens by then; the request queued behind it is cut short either way.
    cut = "error" in json.loads(last.removeprefix("data: "))
    if cut:
        assert json.loads(last.removeprefix("data: "))["error"]["code"] == "server_stopping"
    refused: httpx.Response = seen["queued"]
    assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
    assert refused.json()["error"]["code"] == "server_stopping"

    found = rows(server, f"model = 'endless' AND started_at >= {since - 1}")
    assert len(found) == 2, [dict(r) for r in found]  # one row each, nothing lost
    by_id = {row["id"]: row for row in found}
    streamed = by_id[seen["stream"]]
    assert streamed["prompt_tokens"] > 0
    if cut:  # billed for what it made: at least what the client saw, never the whole 480
        assert (streamed["status"], streamed["http_status"]) == ("cancelled", 503)
        assert seen["tokens"] <= streamed["completion_tokens"] < 480
    else:
        assert (streamed["status"], streamed["completion_tokens"]) == ("ok", 480)
    waited = by_id[refused.headers["x-request-id"]]
    assert (waited["status"], waited["http_status"]) == ("cancelled", 503)
    log = server.log()
    assert "Traceback" not in log and "Application shutdown complete" in log
    for row in found:
        assert f"id={row['id']}" in log  # its request log line


async def _counted(
    lines: AsyncIterator[str], seen: dict[str, Any], generating: asyncio.Event
) -> AsyncIterator[str]:
    """The stream's lines, counting those that carry text into seen["tokens"]."""
    async for line in lines:
        if re.search(r'"content":"[^"]', line):  # a token's text (the first chunk has none)
            seen["tokens"] += 1
            generating.set()
        if line:
            yield line
