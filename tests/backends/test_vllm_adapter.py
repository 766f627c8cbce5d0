"""A vLLM model with a LoRA adapter, against a stand-in for vLLM's API server.

The stand-in (a module named like vLLM's, run by the engine's real command line) records
its command line, its environment and the body of `POST /v1/load_lora_adapter`, and refuses
an adapter folder without weights as vLLM does (404 and its error envelope). Real vLLM
serving an adapter is tested in test_vllm.py.
"""

from __future__ import annotations

import json
import os
import pathlib
import sys
import textwrap

import pytest

from backends.base import EngineError, EngineStatus
from backends.vllm.adapter import AdapterError, lora_rank, max_lora_rank
from backends.vllm.engine import ENTRY_POINT, VllmEngine, VllmSettings

STAND_IN = textwrap.dedent(
    """
    import argparse, http.server, json, os, sys

    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int)
    options, _ = parser.parse_known_args()
    dump = os.environ["DUMP"]
    record = {"argv": sys.argv[1:], "env": dict(os.environ), "loads": []}

    class Server(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.answer(200 if self.path == "/health" else 404, b"")

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["content-length"])))
            record["loads"].append([self.path, body])
            with open(dump, "w") as file:
                json.dump(record, file)
            weights = os.path.join(body["lora_path"], "adapter_model.safetensors")
            if os.path.isfile(weights):
                self.answer(200, b"Success")
            else:
                message = f"Loading lora {body['lora_name']} failed: No adapter found for <path>"
                error = {"message": message, "type": "NotFoundError", "param": None, "code": 404}
                self.answer(404, json.dumps({"error": error}).encode())

        def answer(self, status, body):
            self.send_response(status)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    with open(dump, "w") as file:
        json.dump(record, file)
    http.server.HTTPServer(("127.0.0.1", options.port), Server).serve_forever()
    """
)


@pytest.fixture
def stand_in_python(tmp_path: pathlib.Path) -> pathlib.Path:
    package = tmp_path / "site"
    module = package / (ENTRY_POINT.replace(".", "/") + ".py")
    module.parent.mkdir(parents=True)
    module.write_text(STAND_IN)
    python = tmp_path / "python"
    python.write_text(f'#!/bin/sh\ncd "{package}" && exec "{sys.executable}" "$@"\n')
    python.chmod(0o755)
    return python


def adapter_folder(tmp_path: pathlib.Path, *, weights: bool = True) -> pathlib.Path:
    folder = tmp_path / "support-lora"
    folder.mkdir()
    config = {"peft_type": "LORA", "r": 8, "rank_pattern": {"q_proj": 12}}
    (folder / "adapter_config.json").write_text(json.dumps(config))
    if weights:
        (folder / "adapter_model.safetensors").write_bytes(b"")
    return folder


def settings_for(python: pathlib.Path, tmp_path: pathlib.Path, adapter: str) -> VllmSettings:
    return VllmSettings(
        model_id="support",
        python=str(python),
        model="/srv/models/tiny",
        context_length=256,
        log_path=tmp_path / "vllm.log",
        env={"DUMP": str(tmp_path / "record.json")},
        adapter=adapter,
        startup_timeout=60,
    )


async def test_the_adapter_is_loaded_at_run_time_under_the_models_id(
    tmp_path: pathlib.Path, stand_in_python: pathlib.Path
) -> None:
    folder = adapter_folder(tmp_path)
    engine = VllmEngine(settings_for(stand_in_python, tmp_path, str(folder)))
    await engine.start()
    try:
        assert engine.status is EngineStatus.READY
    finally:
        await engine.stop()
    record = json.loads((tmp_path / "record.json").read_text())
    argv = " ".join(record["argv"])
    # The base model is served under another name: vLLM refuses an adapter named as it.
    assert "--served-model-name support--base" in argv
    assert "--enable-lora --max-lora-rank 16" in argv  # rank_pattern's 12 is the largest
    assert record["env"]["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "True"
    assert record["loads"] == [
        ["/v1/load_lora_adapter", {"lora_name": "support", "lora_path": str(folder)}]
    ]


async def test_a_refused_adapter_fails_the_start_with_vllms_message(
    tmp_path: pathlib.Path, stand_in_python: pathlib.Path
) -> None:
    folder = adapter_folder(tmp_path, weights=False)
    engine = VllmEngine(settings_for(stand_in_python, tmp_path, str(folder)))
    with pytest.raises(EngineError) as info:
        await engine.start()
    assert engine.status is EngineStatus.FAILED
    assert engine.pid is not None
    with pytest.raises(ProcessLookupError):  # the server was stopped
        os.kill(engine.pid, 0)
    message = str(info.value)
    assert message.startswith(f"vLLM did not load the adapter `{folder}` (404): Loading lora")
    assert "No adapter found" in message and engine.stats().error == message


async def test_an_adapter_without_its_config_fails_before_vllm_starts(
    tmp_path: pathlib.Path, stand_in_python: pathlib.Path
) -> None:
    folder = adapter_folder(tmp_path)
    (folder / "adapter_config.json").unlink()
    engine = VllmEngine(settings_for(stand_in_python, tmp_path, str(folder)))
    with pytest.raises(EngineError, match=r"has no adapter_config\.json"):
        await engine.start()
    assert engine.status is EngineStatus.FAILED
    assert not (tmp_path / "record.json").exists()


def test_the_lora_rank_vllm_is_started_with() -> None:
    assert [max_lora_rank(r) for r in (1, 8, 9, 64, 300, 512)] == [8, 8, 16, 64, 320, 512]
    with pytest.raises(AdapterError, match="above 512"):
        max_lora_rank(513)


def test_a_rank_is_a_positive_integer(tmp_path: pathlib.Path) -> None:
    (tmp_path / "adapter_config.json").write_text('{"r": true}')
    with pytest.raises(AdapterError, match="no rank `r`"):
        lora_rank(tmp_path)
    (tmp_path / "adapter_config.json").write_text('{"r": 4, "rank_pattern": {"v_proj": 32}}')
    assert lora_rank(tmp_path) == 32
