"""Shared fixtures: real demo models, real configs, a real `radiance up` process."""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import re
import select
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Any

import pytest

from backends.llamacpp.demo_model import TINY, DemoModelSpec, write_demo_model

ROOT = pathlib.Path(__file__).resolve().parent.parent
READY = re.compile(r"radiance ready on (https?://[^ ]+/v1)")

ALICE = "sk-alice-test-0123456789"
BOB = "sk-bob-test-9876543210"
ADMIN = "admin-test-key-0123456789"


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    folder = tmp_path_factory.mktemp("models")
    write_demo_model(folder / "tiny.gguf", TINY)
    # Never ends on its own, and is slow enough (~150 tokens/s on one thread) that a
    # request stays in flight while a test queues or cancels others.
    endless = DemoModelSpec(embedding=512, layers=6, heads=8, kv_heads=4, ffn=2048, eos_bias=0.0)
    write_demo_model(folder / "endless.gguf", endless)
    return folder


DEFAULT_TIERS = """
tiers:
  free: {rpm: 1000, tpm: 1000000}
"""


def config_text(
    models_dir: pathlib.Path,
    *,
    max_queue: int = 64,
    body: int = 65536,
    tiers: str = DEFAULT_TIERS,
    keys: Sequence[str] = (),
    server: Mapping[str, Any] | None = None,
) -> str:
    """The test config; `tiers` replaces the tiers block, `keys` (YAML flow maps) are added,
    `server` fields (written as YAML flow) join the `server:` block."""
    text = textwrap.dedent(
        f"""
        server:
          host: 127.0.0.1
          port: 0
          database: radiance.db
          admin_key: ${{RADIANCE_ADMIN_KEY}}
          max_body_bytes: {body}
        backends:
          cpu:
            engine: llamacpp
            threads: 2
          narrow:
            engine: llamacpp
            threads: 1
            parallel: 1
            max_queue: {max_queue}
        models:
          - id: tiny
            name: Tiny Random Llama
            backend: cpu
            source: {models_dir / "tiny.gguf"}
            context_length: 1024
            pricing: {{prompt: "0.10", completion: "0.40"}}
            aliases: [spark]
          - id: endless
            backend: narrow
            source: {models_dir / "endless.gguf"}
            context_length: 512
          - id: plain
            name: Temperature only
            backend: cpu
            source: {models_dir / "tiny.gguf"}
            context_length: 256
            parameters: [temperature, max_tokens]
            embeddings: false
        keys:
          - name: alice
            tier: free
            secret: ${{ALICE_KEY}}
          - name: bob
            secret: {BOB}
        """
    )
    fields = "".join(f"  {name}: {json.dumps(value)}\n" for name, value in (server or {}).items())
    text = text.replace("\nbackends:\n", f"\n{fields}backends:\n", 1)
    extra = "".join(f"  - {key}\n" for key in keys)
    return text + extra + textwrap.dedent(tiers)


@dataclass
class RunningServer:
    process: subprocess.Popen[str]
    base_url: str
    folder: pathlib.Path
    log_path: pathlib.Path
    log_file: IO[str]
    ready_line: str = ""

    @property
    def root_url(self) -> str:
        return self.base_url.removesuffix("/v1")

    @property
    def database(self) -> pathlib.Path:
        return self.folder / "radiance.db"

    def log(self) -> str:
        return self.log_path.read_text()

    def stop(self, sig: int = signal.SIGINT) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()
        self.log_file.close()
        return self.process.returncode


def start_server(
    folder: pathlib.Path, config: str, timeout: float = 60, port: int = 0
) -> RunningServer:
    """Run `radiance up` as a real process (on `port`, 0: a free one); wait for its ready line."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "radiance.yaml"
    path.write_text(config)
    env = {**os.environ, "RADIANCE_ADMIN_KEY": ADMIN, "ALICE_KEY": ALICE, "PYTHONUNBUFFERED": "1"}
    log_path = folder / "server.log"
    log_file = log_path.open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "appliance.cli", "up", str(path), "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=log_file,
        text=True,
    )
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([process.stdout], [], [], 0.5)
        if ready:
            line = process.stdout.readline()
            match = READY.search(line)
            if match:
                return RunningServer(process, match.group(1), folder, log_path, log_file, line)
        if process.poll() is not None:
            break
    process.kill()
    process.wait()
    process.stdout.close()
    log_file.close()
    raise RuntimeError(f"radiance up did not become ready:\n{log_path.read_text()}")


@pytest.fixture(scope="session")
def server(
    tmp_path_factory: pytest.TempPathFactory, models_dir: pathlib.Path
) -> Iterator[RunningServer]:
    running = start_server(tmp_path_factory.mktemp("server"), config_text(models_dir))
    yield running
    running.stop()


@pytest.fixture
def launch(
    tmp_path: pathlib.Path, models_dir: pathlib.Path
) -> Iterator[Callable[..., RunningServer]]:
    """Start a server of a test's own, with config_text options; stopped after the test."""
    started: list[RunningServer] = []

    def run(folder: pathlib.Path | None = None, **options: Any) -> RunningServer:
        folder = folder or tmp_path / f"server{len(started)}"
        running = start_server(folder, config_text(models_dir, **options))
        started.append(running)
        return running

    yield run
    for running in started:
        with contextlib.suppress(Exception):
            running.stop()
