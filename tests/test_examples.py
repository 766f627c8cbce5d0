"""The example configs check clean and the example clients work as written."""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys

import pytest
from conftest import ADMIN, ALICE, ROOT, RunningServer

EXAMPLES = ROOT / "examples"


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory, models_dir: pathlib.Path) -> pathlib.Path:
    """A copy of the repo's layout: examples/ beside models/tiny.gguf."""
    root = tmp_path_factory.mktemp("layout")
    shutil.copytree(EXAMPLES, root / "examples")
    (root / "models").mkdir()
    shutil.copy(models_dir / "tiny.gguf", root / "models" / "tiny.gguf")
    shutil.copy(models_dir / "tiny.gguf", root / "models" / "qwen2.5-7b-instruct-q4_k_m.gguf")
    (root / "vllm" / "bin").mkdir(parents=True)  # stands for a venv that has vllm
    (root / "vllm" / "bin" / "python").symlink_to("/bin/true")
    return root


@pytest.mark.parametrize(
    "name",
    ["cpu-only.yaml", "gpu-box.yaml", "several-models.yaml", "vllm-h100.yaml", "multi-box.yaml"],
)
def test_example_configs_check_clean(layout: pathlib.Path, name: str) -> None:
    env = {
        **os.environ,
        "RADIANCE_ADMIN_KEY": "an-admin-key-for-tests",
        "ALICE_KEY": "sk-alice-examples-1",
        "TEAM_KEY": "sk-team-examples-12",
        "RADIANCE_MODELS": str(layout / "models"),
        "VLLM_PYTHON": str(layout / "vllm" / "bin" / "python"),
        "EDGE_KEY": "sk-edge-examples-1",
    }
    result = subprocess.run(
        [sys.executable, "-m", "appliance.cli", "check", str(layout / "examples" / name)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        ("chat.py", "streamed"),
        ("structured.py", "tool call: get_weather"),
        ("embeddings.py", "usage:"),
        ("responses.py", "function call: get_weather"),
        ("curl.sh", '"pricing"'),
        ("curl.sh", "[DONE]"),
        ("deployments.py", "replicas: ['tiny-example-0', 'tiny-example-1']"),
    ],
)
def test_example_clients_run_against_a_server(
    server: RunningServer, script: str, expected: str
) -> None:
    command = ["bash"] if script.endswith(".sh") else [sys.executable]
    result = subprocess.run(
        [*command, str(EXAMPLES / script)],
        capture_output=True,
        text=True,
        timeout=120,
        env={
            **os.environ,
            "RADIANCE_URL": server.base_url,
            "ALICE_KEY": ALICE,
            "RADIANCE_ADMIN_KEY": ADMIN,
        },
    )
    assert result.returncode == 0, result.stderr
    assert expected in result.stdout
