"""Tiers and key limits on a real server: rpm, tpm, concurrency, caps, allow-lists, expiry."""

from __future__ import annotations

import asyncio
import pathlib
import sqlite3
import time
from collections.abc import Iterator

import httpx
import openai
import pytest
from conftest import ADMIN, RunningServer, config_text, start_server

TIERS = """
tiers:
  free: {rpm: 1000, tpm: 1000000}
  tight: {rpm: 3}
  tokens: {tpm: 400}
  single: {concurrency: 1}
  capped: {max_tokens: 8, models: [tiny, endless]}
"""
KEYS = {
    "tight": "tight-key-0000001",
    "tokens": "token-key-0000001",
    "single": "single-key-000001",
    "capped": "capped-key-000001",
    "narrow": "narrow-key-000001",
    "old": "expired-key-00001",
}
KEY_LINES = [
    f"{{name: tight, secret: {KEYS['tight']}, tier: tight}}",
    f"{{name: tokens, secret: {KEYS['tokens']}, tier: tokens}}",
    f"{{name: single, secret: {KEYS['single']}, tier: single}}",
    f"{{name: capped, secret: {KEYS['capped']}, tier: capped}}",
    f"{{name: narrow, secret: {KEYS['narrow']}, tier: free, models: [plain]}}",
    f"{{name: old, secret: {KEYS['old']}, tier: free, expires_at: '2020-01-01T00:00:00Z'}}",
]


@pytest.fixture(scope="module")
def limited(
    tmp_path_factory: pytest.TempPathFactory, models_dir: pathlib.Path
) -> Iterator[RunningServer]:
    config = config_text(models_dir, tiers=TIERS, keys=KEY_LINES)
    running = start_server(tmp_path_factory.mktemp("limited"), config)
    yield running
    running.stop()


def rows_of(server: RunningServer, where: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(server.database) as db:
        return list(db.execute(f"SELECT status FROM requests WHERE {where}"))


def chat(server: RunningServer, key: str, model: str = "tiny", **extra: object) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    return httpx.post(
        f"{server.base_url}/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        json={**body, **extra},
        timeout=60,
    )


def test_rpm_counts_down_then_answers_429_with_retry_after(limited: RunningServer) -> None:
    replies = [chat(limited, KEYS["tight"]) for _ in range(3)]
    assert [r.status_code for r in replies] == [200, 200, 200]
    assert [r.headers["x-ratelimit-remaining-requests"] for r in replies] == ["2", "1", "0"]
    assert [r.headers["X-RateLimit-Remaining"] for r in replies] == ["2", "1", "0"]
    first = replies[0].headers
    assert first["X-RateLimit-Limit"] == first["x-ratelimit-limit-requests"] == "3"
    assert first["X-RateLimit-Tier"] == "tight"
    assert int(first["X-RateLimit-Reset"]) >= time.time()
    assert first["x-ratelimit-reset-requests"].endswith("s")
    refused = chat(limited, KEYS["tight"])
    assert refused.status_code == 429
    error = refused.json()["error"]
    assert error["code"] == "rate_limit_exceeded" and set(error) == {
        "message",
        "type",
        "param",
        "code",
    }
    assert "RPM" in error["message"]
    # The wait until the oldest of the three leaves the 60 s window.
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert 0 < int(refused.headers["retry-after-ms"]) <= 60_000
    # The SDK surfaces it as a RateLimitError with the same code.
    client = openai.OpenAI(base_url=limited.base_url, api_key=KEYS["tight"], max_retries=0)
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": "hi"}], max_tokens=2
        )
    assert caught.value.code == "rate_limit_exceeded"
    with sqlite3.connect(limited.database) as db:
        statuses = [
            row[0]
            for row in db.execute(
                "SELECT status FROM requests WHERE key_name = 'tight' ORDER BY started_at"
            )
        ]
    assert statuses == ["ok", "ok", "ok", "rate_limited", "rate_limited"]


def test_tpm_charges_prompt_plus_max_tokens_and_settles_to_real_use(
    limited: RunningServer,
) -> None:
    told = 0
    first = chat(limited, KEYS["tokens"], model="endless", max_tokens=100)
    assert first.status_code == 200
    told += first.json()["usage"]["total_tokens"]
    # Remaining tokens already reflect the settled count, not prompt + max_tokens.
    assert int(first.headers["x-ratelimit-remaining-tokens"]) == 400 - told
    assert first.headers["x-ratelimit-limit-tokens"] == "400"
    # A request larger than the whole limit can never pass: 429 and no retry.
    huge = chat(limited, KEYS["tokens"], model="endless", max_tokens=450)
    assert huge.status_code == 429 and huge.headers["x-should-retry"] == "false"
    assert "Request too large" in huge.json()["error"]["message"]
    second = chat(limited, KEYS["tokens"], model="endless", max_tokens=200)
    assert second.status_code == 200
    told += second.json()["usage"]["total_tokens"]
    assert int(second.headers["x-ratelimit-remaining-tokens"]) == 400 - told
    # What is left is less than the next request's prompt + max_tokens.
    third = chat(limited, KEYS["tokens"], model="endless", max_tokens=400 - told)
    assert third.status_code == 429
    assert third.json()["error"]["type"] == "tokens"
    assert int(third.headers["retry-after"]) >= 1


def test_concurrency_limit_counts_requests_in_flight(limited: RunningServer) -> None:
    headers = {"Authorization": f"Bearer {KEYS['single']}"}

    async def scenario() -> tuple[int, int]:
        async with httpx.AsyncClient(timeout=60) as client:
            body = {
                "model": "endless",
                "messages": [{"role": "user", "content": "go"}],
                "max_tokens": 400,
                "stream": True,
            }
            async with client.stream(
                "POST", f"{limited.base_url}/chat/completions", headers=headers, json=body
            ) as held:
                held_id = held.headers["x-request-id"]
                lines = held.aiter_lines()
                while not (await anext(lines)).startswith("data: {"):
                    pass
                during = await client.post(
                    f"{limited.base_url}/chat/completions",
                    headers=headers,
                    json={**body, "stream": False, "max_tokens": 2},
                )
            # The server sees the disconnect, stops the stream and writes its row.
            while not rows_of(limited, f"id = '{held_id}'"):  # noqa: ASYNC110 (a file, no event)
                await asyncio.sleep(0.05)
            after = await client.post(
                f"{limited.base_url}/chat/completions",
                headers=headers,
                json={**body, "stream": False, "max_tokens": 2},
            )
            return during.status_code, after.status_code

    during, after = asyncio.run(scenario())
    assert during == 429
    assert after == 200


def test_tier_caps_max_tokens_and_limits_models(limited: RunningServer) -> None:
    over = chat(limited, KEYS["capped"], max_tokens=9)
    assert over.status_code == 400
    assert over.json()["error"]["param"] == "max_tokens"
    assert "at most 8" in over.json()["error"]["message"]
    # Without max_tokens the tier's cap is the default.
    reply = chat(limited, KEYS["capped"], model="endless", max_tokens=None)
    assert reply.status_code == 200
    assert reply.json()["usage"]["completion_tokens"] == 8
    denied = chat(limited, KEYS["capped"], model="plain")
    assert denied.status_code == 403
    assert denied.json()["error"]["code"] == "model_not_allowed"


def test_key_allow_list_narrows_models_and_the_model_list(limited: RunningServer) -> None:
    key = KEYS["narrow"]
    assert chat(limited, key, model="tiny").status_code == 403
    assert chat(limited, key, model="spark").status_code == 403
    assert chat(limited, key, model="plain").status_code == 200
    listed = httpx.get(f"{limited.base_url}/models", headers={"Authorization": f"Bearer {key}"})
    assert [m["id"] for m in listed.json()["data"]] == ["plain"]
    hidden = httpx.get(
        f"{limited.base_url}/models/tiny", headers={"Authorization": f"Bearer {key}"}
    )
    assert hidden.status_code == 404


def test_expired_key_is_refused_with_401(limited: RunningServer) -> None:
    reply = chat(limited, KEYS["old"])
    assert reply.status_code == 401
    assert reply.json()["error"]["code"] == "expired_api_key"
    assert "expired" in reply.json()["error"]["message"]


def test_admin_key_has_no_limits_and_sees_engine_state(limited: RunningServer) -> None:
    replies = [chat(limited, ADMIN) for _ in range(2)]
    assert all(r.status_code == 200 for r in replies)
    assert "x-ratelimit-limit-requests" not in replies[0].headers
    model = httpx.get(
        f"{limited.base_url}/models/spark", headers={"Authorization": f"Bearer {ADMIN}"}
    ).json()
    assert model["id"] == "tiny" and model["status"] == "ready" and model["backend"] == "cpu"
    assert model["load_seconds"] > 0
    assert model["requests_running"] == 0 and model["requests_waiting"] == 0
    user_view = httpx.get(
        f"{limited.base_url}/models/spark", headers={"Authorization": f"Bearer {KEYS['tight']}"}
    ).json()
    assert "status" not in user_view and user_view["pricing"]["prompt"] == "0.10"
    no_key = httpx.get(f"{limited.base_url}/models")  # the public list, without engine state
    assert no_key.status_code == 200 and "status" not in no_key.json()["data"][0]
    bad_key = httpx.get(f"{limited.base_url}/models", headers={"Authorization": "Bearer nope"})
    assert bad_key.status_code == 401
