"""The OpenAPI document holds: every answer the server sends has a documented status, its
documented content type and, for JSON, the documented schema (schemathesis checks each,
over the document's own request examples and generated requests)."""

from __future__ import annotations

import os
import pathlib
from collections.abc import Iterator

import httpx
import pytest
from conftest import ADMIN, ALICE, RunningServer, config_text, start_server
from fuzzing import FUZZ_TIERS, schemathesis

EXAMPLES = int(os.environ.get("RADIANCE_CONTRACT_EXAMPLES", "4"))
CHECKS = "response_schema_conformance,status_code_conformance,content_type_conformance"


@pytest.fixture(scope="module")
def contract_server(
    tmp_path_factory: pytest.TempPathFactory, models_dir: pathlib.Path
) -> Iterator[RunningServer]:
    """The test server, its `tiny` also called `my-model` (the name in the examples)."""
    text = config_text(models_dir, tiers=FUZZ_TIERS)
    named = text.replace("aliases: [spark]", "aliases: [spark, my-model]")
    assert named != text
    running = start_server(tmp_path_factory.mktemp("contract"), named)
    yield running
    running.stop()


@pytest.mark.slow
@pytest.mark.parametrize("who", ["user", "admin"])
def test_every_answer_matches_the_document(
    contract_server: RunningServer,
    tmp_path: pathlib.Path,
    who: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    key = ALICE if who == "user" else ADMIN
    stored = httpx.post(
        f"{contract_server.base_url}/responses",
        headers={"Authorization": f"Bearer {key}"},
        json={"model": "tiny", "input": "Hello", "max_output_tokens": 4},
        timeout=60,
    )
    assert stored.status_code == 200, stored.text
    monkeypatch.setenv("CONTRACT_RESPONSE_ID", stored.json()["id"])  # for the hooks
    result = schemathesis(
        contract_server,
        key,
        tmp_path / "run.har",
        EXAMPLES,
        checks=CHECKS,
        phases="examples,fuzzing",
        hooks="contract_hooks",
    )
    assert result.returncode == 0, result.stdout[-8000:]
    assert "generated" in result.stdout  # it did run cases
    assert "Traceback" not in contract_server.log()
