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
    hf = tmp_path / "models" / "tiny-hf"  # the same weights for fine-tuning, beside it
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in hf.iterdir()}
    ok = radiance("check", str(tmp_path / "radiance.yaml"), env=env)
    assert ok.returncode == 0, ok.stderr
    assert "OK" in ok.stdout
    # The demo model's template is Hermes-shaped: its tool calls are <tool_call> blocks.
    assert "tool format hermes (its chat template)" in ok.stdout


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
    # With other models that load, a broken one is only marked failed (test_hub_pull);
    # when no model at all can load, the start fails.
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


def test_keys_cli_works_beside_a_running_server(launch) -> None:  # type: ignore[no-untyped-def]
    import time

    import httpx
    from conftest import ADMIN, ALICE

    server = launch()
    config = str(server.folder / "radiance.yaml")
    env = {"RADIANCE_ADMIN_KEY": ADMIN, "ALICE_KEY": ALICE}
    made = radiance(
        "keys", "create", "--config", config, "--name", "henry", "--tier", "free",
        "--models", "tiny,spark", "--budget", "12.50", env=env,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    secret = next(
        line.split()[-1] for line in made.stdout.splitlines() if line.startswith("secret")
    )

    def status() -> int:
        return httpx.post(
            f"{server.base_url}/chat/completions",
            headers={"Authorization": f"Bearer {secret}"},
            json={"model": "tiny", "messages": [{"role": "user", "content": "x"}], "max_tokens": 2},
        ).status_code

    deadline = time.monotonic() + 15
    while status() != 200 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert status() == 200
    listed = radiance("keys", "list", "--config", config, env=env)
    assert "henry" in listed.stdout and "alice" in listed.stdout and secret not in listed.stdout
    as_json = radiance("keys", "list", "--config", config, "--json", env=env)
    henry = next(k for k in __import__("json").loads(as_json.stdout) if k["name"] == "henry")
    assert henry["budget"] == {"usd": "12.50", "period": "month"}
    assert henry["models"] == ["tiny", "spark"]
    declared = radiance("keys", "revoke", "alice", "--config", config, env=env)
    assert declared.returncode == 1 and "declared in the config" in declared.stderr
    gone = radiance("keys", "revoke", "henry", "--config", config, env=env)
    assert gone.returncode == 0
    deadline = time.monotonic() + 15
    while status() != 401 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert status() == 401
    bad = radiance("keys", "create", "--config", config, "--name", "x", "--tier", "gold", env=env)
    assert bad.returncode == 1 and "tier `gold` is not declared" in bad.stderr


def test_console_without_an_admin_key_says_how_to_give_one() -> None:
    env = {k: v for k, v in os.environ.items() if k != "RADIANCE_ADMIN_KEY"}
    done = subprocess.run(
        [sys.executable, "-m", "appliance.cli", "console", "--url", "http://127.0.0.1:9"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 2
    assert "--admin-key" in done.stderr and "RADIANCE_ADMIN_KEY" in done.stderr
