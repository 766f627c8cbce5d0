"""What a vLLM process inherits from Radiance's environment: an allow-list, never secrets.

The engine test starts a stand-in for vLLM's API server (a module named like vLLM's, run by
the engine's real command line through ChildGroup) that records its environment and
answers /health, so it runs everywhere without vLLM.
"""

from __future__ import annotations

import json
import os
import pathlib
import sys
import textwrap

import pytest

from backends.base import EngineStatus
from backends.vllm.engine import ENTRY_POINT, VllmEngine, VllmSettings
from backends.vllm.environment import child_environment, inherited

PARENT = {
    "PATH": "/usr/bin",
    "HOME": "/home/radiance",
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
    "HF_HOME": "/srv/hf",
    "HF_TOKEN": "hf_gated_access",
    "HF_ENDPOINT": "http://127.0.0.1:9000",
    "HUGGING_FACE_HUB_TOKEN": "hf_old_name",
    "VLLM_CPU_KVCACHE_SPACE": "1",
    "CUDA_HOME": "/usr/local/cuda",
    "OMP_NUM_THREADS": "1",
    "LD_LIBRARY_PATH": "/usr/local/cuda/lib64",
    "RADIANCE_ADMIN_KEY": "admin-secret-value-0001",
    "ALICE_KEY": "sk-alice-secret",
    "OPENAI_API_KEY": "sk-upstream-secret",
    "VLLM_API_KEY": "would-lock-radiance-out",
    "AWS_SECRET_ACCESS_KEY": "aws-secret",
    "DATABASE_PASSWORD": "db-secret",
    "GITHUB_TOKEN": "ghp_secret",
    "PYTHONPATH": "/work/radiance",
}
PASSED = {
    "PATH",
    "HOME",
    "LANG",
    "LC_ALL",
    "HF_HOME",
    "HF_TOKEN",
    "HF_ENDPOINT",
    "HUGGING_FACE_HUB_TOKEN",
    "VLLM_CPU_KVCACHE_SPACE",
    "CUDA_HOME",
    "OMP_NUM_THREADS",
    "LD_LIBRARY_PATH",
}


def test_only_the_allow_list_is_inherited() -> None:
    env = child_environment(PARENT, {})
    assert set(env) == PASSED
    assert all(env[name] == PARENT[name] for name in PASSED)
    assert not any(inherited(name) for name in set(PARENT) - PASSED)


def test_the_backend_env_and_gpus_are_added_last() -> None:
    extra = {"VLLM_API_KEY": "set-on-purpose", "OMP_NUM_THREADS": "4", "MY_FLAG": "on"}
    env = child_environment({**PARENT, "CUDA_VISIBLE_DEVICES": "0,1,2,3"}, extra, gpus=(2, 3))
    assert env["VLLM_API_KEY"] == "set-on-purpose"  # written in radiance.yaml: passed
    assert env["OMP_NUM_THREADS"] == "4" and env["MY_FLAG"] == "on"
    assert env["CUDA_VISIBLE_DEVICES"] == "2,3"
    assert child_environment({"CUDA_VISIBLE_DEVICES": "1"}, {}) == {"CUDA_VISIBLE_DEVICES": "1"}


STAND_IN = textwrap.dedent(
    """
    import argparse, http.server, json, os

    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int)
    options, _ = parser.parse_known_args()
    with open(os.environ["ENV_DUMP"], "w") as dump:
        json.dump(dict(os.environ), dump)

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path == "/health" else 404)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    http.server.HTTPServer(("127.0.0.1", options.port), Health).serve_forever()
    """
)


@pytest.fixture
def stand_in_python(tmp_path: pathlib.Path) -> pathlib.Path:
    """An interpreter whose `-m vllm.entrypoints.openai.api_server` is the stand-in."""
    package = tmp_path / "site"
    module = package / (ENTRY_POINT.replace(".", "/") + ".py")
    module.parent.mkdir(parents=True)
    module.write_text(STAND_IN)
    python = tmp_path / "python"
    python.write_text(f'#!/bin/sh\ncd "{package}" && exec "{sys.executable}" "$@"\n')
    python.chmod(0o755)
    return python


async def test_the_engine_starts_vllm_without_radiance_secrets(
    tmp_path: pathlib.Path, stand_in_python: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in PARENT.items():
        if name != "PATH":  # the stand-in's shell needs the real one
            monkeypatch.setenv(name, value)
    dump = tmp_path / "env.json"
    settings = VllmSettings(
        model_id="tiny-hf",
        python=str(stand_in_python),
        model="/srv/models/tiny",
        context_length=256,
        log_path=tmp_path / "vllm.log",
        env={"ENV_DUMP": str(dump), "VLLM_CPU_KVCACHE_SPACE": "2"},
        gpus=(0,),
        startup_timeout=60,
    )
    engine = VllmEngine(settings)
    await engine.start()
    try:
        assert engine.status is EngineStatus.READY
        env = json.loads(dump.read_text())
    finally:
        await engine.stop()
    assert env["HF_HOME"] == "/srv/hf" and env["HF_TOKEN"] == "hf_gated_access"
    assert env["VLLM_CPU_KVCACHE_SPACE"] == "2" and env["CUDA_VISIBLE_DEVICES"] == "0"
    assert env["PATH"] == os.environ["PATH"]
    for name in ("RADIANCE_ADMIN_KEY", "ALICE_KEY", "OPENAI_API_KEY", "VLLM_API_KEY"):
        assert name not in env
    secrets = {value for name, value in PARENT.items() if name not in PASSED}
    assert not secrets & set(env.values())
