"""The `radiance` command as a user runs it."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

from conftest import ROOT


def radiance(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "appliance.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def test_check_accepts_the_shipped_config_once_its_model_exists(tmp_path: pathlib.Path) -> None:
    shipped = (ROOT / "radiance.yaml").read_text()
    (tmp_path / "radiance.yaml").write_text(shipped)
    env = {"RADIANCE_ADMIN_KEY": "a-long-admin-key-123", "ALICE_KEY": "sk-alice-12345678"}
    missing = radiance("check", str(tmp_path / "radiance.yaml"), env=env)
    assert missing.returncode == 1
    assert "radiance demo-model" in missing.stderr
    made = radiance("demo-model", str(tmp_path / "models" / "tiny.gguf"))
    assert made.returncode == 0 and "random" in made.stdout
    ok = radiance("check", str(tmp_path / "radiance.yaml"), env=env)
    assert ok.returncode == 0, ok.stderr
    assert "OK" in ok.stdout


def test_check_points_at_the_broken_line(tmp_path: pathlib.Path) -> None:
    config = tmp_path / "broken.yaml"
    config.write_text(
        "server:\n"
        "  port: 8000\n"
        "backends:\n"
        "  cpu: {engine: llamacpp}\n"
        "models:\n"
        "  - id: a\n"
        "    backend: cpuu\n"
        "    source: nowhere.gguf\n"
    )
    result = radiance("check", str(config))
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert any(
        line.startswith(f"{config}:7:") and "$.models[0].backend" in line and "`cpu`" in line
        for line in lines
    ), result.stderr
    assert any(f"{config}:8:" in line and "$.models[0].source" in line for line in lines)
    assert "Traceback" not in result.stderr


def test_up_with_a_model_that_cannot_load_fails_clearly(tmp_path: pathlib.Path) -> None:
    (tmp_path / "bad.gguf").write_bytes(b"GGUF" + b"\0" * 64)
    config = tmp_path / "radiance.yaml"
    config.write_text(
        "server: {port: 0, host: 127.0.0.1}\n"
        "backends: {cpu: {engine: llamacpp}}\n"
        "models: [{id: broken, backend: cpu, source: bad.gguf}]\n"
    )
    result = radiance("up", str(config))
    assert result.returncode != 0
    assert "broken" in result.stderr and "cannot load" in result.stderr
    assert "ready on" not in result.stdout
