"""The official OpenAI Node SDK's responses.create against a real `radiance up`.

tests/node/responses.mjs does the calls and prints one JSON summary; this test runs it and
checks the summary. The SDK is pinned in tests/node/package-lock.json; scripts/test.sh installs
it (`npm ci`) and sets RADIANCE_REQUIRE_NODE=1, so there a missing node or SDK fails the test.
Elsewhere (a developer's `pytest` on a machine without Node) it is skipped, saying how to run it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from typing import Any

import pytest
from conftest import ALICE, ROOT, RunningServer

pytestmark = pytest.mark.slow

PROJECT = ROOT / "tests" / "node"
SCRIPT = PROJECT / "responses.mjs"
STREAM_OPENING = [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.content_part.added",
]
STREAM_CLOSING = [
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
]


@pytest.fixture
def node() -> str:
    """The node binary, once the SDK is installed; otherwise a skip, or a failure under
    RADIANCE_REQUIRE_NODE (set by scripts/test.sh once it installed the SDK, and by CI).
    Asked for before the server, so a skip starts none."""
    node = shutil.which("node")
    missing = None
    if node is None:
        missing = "node is not on PATH"
    elif not (PROJECT / "node_modules" / "openai" / "package.json").is_file():
        missing = "the Node SDK is not installed in tests/node (npm ci --prefix tests/node)"
    if missing is None:
        assert node is not None
        return node
    if os.environ.get("RADIANCE_REQUIRE_NODE"):
        pytest.fail(f"{missing}, but RADIANCE_REQUIRE_NODE is set")
    pytest.skip(f"{missing}; scripts/test.sh installs and runs it")


def run_script(node: str, server: RunningServer) -> dict[str, Any]:
    done = subprocess.run(
        [node, str(SCRIPT), server.base_url, ALICE, "tiny"],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, f"node failed ({done.returncode}):\n{done.stderr}"
    lines = done.stdout.strip().splitlines()
    assert lines, f"node printed nothing:\n{done.stderr}"
    summary: dict[str, Any] = json.loads(lines[-1])
    return summary


def check_shape(response: dict[str, Any], max_output: int) -> None:
    """A Response object as OpenAI documents it, billed exactly."""
    assert response["id"].startswith("resp_")
    assert response["object"] == "response"
    assert response["model"] == "tiny"
    usage = response["usage"]
    assert usage["input_tokens"] > 0 and 1 <= usage["output_tokens"] <= max_output
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    if response["status"] == "incomplete":  # the random model ran into max_output_tokens
        assert response["incomplete_details"] == {"reason": "max_output_tokens"}
        assert usage["output_tokens"] == max_output
    else:
        assert response["status"] == "completed"
        assert response["incomplete_details"] is None


def test_node_sdk_responses(node: str, server: RunningServer) -> None:
    summary = run_script(node, server)
    lock = json.loads((PROJECT / "package-lock.json").read_text())
    assert summary["sdk"] == lock["packages"]["node_modules/openai"]["version"]

    plain = summary["plain"]
    check_shape(plain, 24)
    assert plain["output_types"] == ["message"]
    assert isinstance(plain["output_text"], str)

    tool = summary["tool"]
    # The forced call: the named function, arguments inside its schema (the script ran it).
    assert tool["call"]["name"] == "get_weather"
    assert tool["call"]["arguments"]["city"] in ("Paris", "Rome")
    assert tool["call"]["call_id"]
    first, chained, replayed = tool["first"], tool["chained"], tool["replayed"]
    check_shape(first, 100)
    assert first["status"] == "completed"
    assert first["output_types"] == ["function_call"] and first["output_text"] == ""
    # The function_call_output reached the model both ways, and both ways are one prompt:
    # the same input tokens and, decoded greedily, the same answer.
    for follow_up in (chained, replayed):
        check_shape(follow_up, 24)
        assert follow_up["output_types"] in (["message"], ["function_call"])
        assert follow_up["usage"]["input_tokens"] > first["usage"]["input_tokens"]
    assert chained["previous_response_id"] == first["id"]
    assert replayed["previous_response_id"] is None
    assert chained["usage"] == replayed["usage"]
    assert chained["output_text"] == replayed["output_text"]
    assert tool["replayed_stored"] is False  # store: false

    structured = summary["structured"]  # the script parsed and checked it against the schema
    check_shape(structured, 100)
    assert structured["status"] == "completed" and structured["format"] == "json_schema"
    assert json.loads(structured["output_text"]) == structured["value"]

    stream = summary["stream"]
    types = stream["types"]
    assert types[:4] == STREAM_OPENING
    deltas = types.count("response.output_text.delta")
    assert deltas >= 1
    assert types[4 : 4 + deltas] == ["response.output_text.delta"] * deltas
    assert types[4 + deltas : -1] == STREAM_CLOSING
    assert types[-1] == f"response.{stream['final']['status']}"
    assert stream["deltas"] == stream["final_text"]
    assert stream["retrieved"]["id"] == stream["final"]["id"]
    assert stream["retrieved"]["output_text"] == stream["final_text"]
    assert stream["retrieved"]["status"] == stream["final"]["status"]
