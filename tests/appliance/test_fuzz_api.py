"""Fuzzing a real server: schemathesis over its own OpenAPI document, and a hand-made corpus.

What a user would see is asserted: never a 5xx, every error in its API's envelope (naming
the field where one is wrong), the server alive at the end, a normal request still
answered and nothing stored lost. CI runs a short pass; RADIANCE_FUZZ_EXAMPLES raises the
examples per operation, and scripts/fuzz_long.py runs the long one.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import ADMIN, ALICE, RunningServer
from fuzzing import FUZZ_TIERS, cases, schemathesis

EXAMPLES = int(os.environ.get("RADIANCE_FUZZ_EXAMPLES", "8"))


def stored(server: RunningServer) -> dict[str, Any]:
    """What must survive: the declared keys and the ledger's rows so far."""
    admin = {"Authorization": f"Bearer {ADMIN}"}
    keys = httpx.get(f"{server.base_url}/api-keys?limit=100", headers=admin).json()["data"]
    return {
        "declared": sorted(k["name"] for k in keys if k.get("source") == "config"),
        "alice works": httpx.get(
            f"{server.base_url}/models", headers={"Authorization": f"Bearer {ALICE}"}
        ).status_code,
    }


def still_serving(server: RunningServer) -> None:
    assert server.process.poll() is None, server.log()[-3000:]
    answer = httpx.post(
        f"{server.base_url}/chat/completions",
        headers={"Authorization": f"Bearer {ALICE}"},
        json={"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4},
        timeout=60,
    )
    assert answer.status_code == 200, answer.text


@pytest.mark.slow
@pytest.mark.parametrize("who", ["user", "admin"])
def test_schemathesis_finds_no_server_error(
    launch: Callable[..., RunningServer], tmp_path: Path, who: str
) -> None:
    server = launch(tiers=FUZZ_TIERS)
    before = stored(server)
    result = schemathesis(server, ALICE if who == "user" else ADMIN, tmp_path / "run.har", EXAMPLES)
    assert result.returncode == 0, result.stdout[-6000:]
    assert "generated" in result.stdout  # it did run cases
    still_serving(server)
    assert stored(server) == before
    assert "Traceback" not in server.log()


def test_malformed_requests_get_a_4xx_envelope(server: RunningServer) -> None:
    before = stored(server)
    headers = {"Authorization": f"Bearer {ALICE}", "content-type": "application/json"}
    with httpx.Client(base_url=server.base_url, headers=headers, timeout=60) as client:
        for path, raw, param in cases():
            answer = client.post(path, content=raw)
            where = f"{path} {raw[:200]!r}"
            assert answer.status_code < 500, f"{where}: {answer.text[:500]}"
            if answer.status_code == 200:
                assert param is None, f"{where} was accepted"
                continue
            error = answer.json()["error"]
            assert set(error) == {"message", "type", "param", "code"}, where
            assert isinstance(error["message"], str) and isinstance(error["code"], str), where
            if param is not None:
                assert 400 <= answer.status_code < 500, f"{where}: {answer.text[:300]}"
                assert error["param"] == param, f"{where}: {error}"
            assert "x-injected" not in answer.headers
    still_serving(server)
    assert stored(server) == before
