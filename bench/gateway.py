"""What the gateway adds in front of an upstream: Radiance vs the upstream alone (and LiteLLM).

Side by side in one run, each contender a real server process on a loopback port:

- ``stub``: bench/upstream_stub.py, an OpenAI-compatible upstream that answers at once;
- ``radiance``: `radiance up` with an ``engine: openai`` backend in front of the stub,
  Bearer auth, a tier's rpm/tpm/concurrency limits, the budget check, the ledger (one row per
  request, durable before the response ends), Prometheus metrics and the log line;
- ``litellm``: LiteLLM's proxy in front of the same stub with only a master key, when
  ``--litellm`` names a Python that has ``litellm[proxy]`` installed;
- ``-PART``: with ``--without PART ...``, Radiance with that part of the request path taken
  out (``bench/gateway_parts.py``: ledger, metrics, watch, assembly, log; ``all`` for
  every one at once), to see what each costs. Never a configuration: each breaks a promise.

wrk drives each in turn (alternating rounds, one contender loaded at a time) with
non-streaming and streaming chat requests (16 tokens) at 1 and 32 connections, and the
table gives requests/s, p50/p99 latency and the p50 each gateway adds over the stub.

    apt-get install wrk
    .venv/bin/python bench/gateway.py --rounds 3 --duration 5
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pathlib
import platform
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
from gateway_parts import PARTS

ROOT = pathlib.Path(__file__).resolve().parent.parent
KEY = "sk-bench-gateway-0123456789"
ADMIN = "sk-bench-admin-0123456789"
BODY = {"model": "stub", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 16}


@dataclass(frozen=True)
class Run:
    server: str
    mode: str  # "json" or "stream"
    connections: int
    requests_per_s: float
    p50_ms: float
    p99_ms: float


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _radiance_config(
    folder: pathlib.Path, upstream: int, durability: str, log_level: str
) -> pathlib.Path:
    config = folder / "radiance.yaml"
    text = textwrap.dedent(
        f"""
            server:
              host: 127.0.0.1
              database: {folder / "radiance.db"}
              admin_key: {ADMIN}
              log_level: {log_level}
            backends:
              stub:
                engine: openai
                urls: [http://127.0.0.1:{upstream}/v1]
            models:
              - id: stub
                backend: stub
                context_length: 4096
                pricing: {{prompt: "0.10", completion: "0.40"}}
            tiers:
              big: {{rpm: 100000000, tpm: 1000000000, concurrency: 1000}}
            keys:
              - {{name: bench, secret: {KEY}, tier: big}}
            """
    )
    if durability != "process":  # only then: a checkout from before the setting reads this
        text = text.replace("backends:", f"  ledger_durability: {durability}\nbackends:", 1)
    config.write_text(text)
    return config


def _litellm_config(folder: pathlib.Path, upstream: int) -> pathlib.Path:
    config = folder / "litellm.yaml"
    config.write_text(
        textwrap.dedent(
            f"""
            model_list:
              - model_name: stub
                litellm_params:
                  model: openai/stub
                  api_base: http://127.0.0.1:{upstream}/v1
                  api_key: none
            general_settings:
              master_key: {KEY}
            """
        )
    )
    return config


@contextlib.contextmanager
def started(
    command: list[str], port: int, name: str, logs: pathlib.Path, source: pathlib.Path = ROOT
) -> Iterator[None]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RADIANCE_")}
    env["PYTHONPATH"] = str(source)
    log = logs / f"{name}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=source, env=env, stdout=out, stderr=out)
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited: {log.read_text()[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                reply = httpx.post(
                    f"http://127.0.0.1:{port}/v1/chat/completions",
                    json=BODY,
                    headers={"Authorization": f"Bearer {KEY}"},
                    timeout=5,
                )
                if reply.status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not answer on port {port}")
            time.sleep(0.3)
        yield
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


def _duration_ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if match is None:
        raise ValueError(f"wrk printed a duration this cannot read: {text!r}")
    return float(match[1]) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[match[2]]


def wrk(
    server: str, port: int, mode: str, connections: int, duration: int, script: pathlib.Path
) -> Run:
    body = {**BODY, "stream": True} if mode == "stream" else BODY
    script.write_text(
        f"wrk.method = 'POST'\nwrk.body = '{json.dumps(body)}'\n"
        "wrk.headers['Content-Type'] = 'application/json'\n"
        f"wrk.headers['Authorization'] = 'Bearer {KEY}'\n"
    )
    out = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{duration}s",
            "--latency",
            "--timeout",
            "60s",
            "-s",
            str(script),
            f"http://127.0.0.1:{port}/v1/chat/completions",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    if "Non-2xx" in out or "Socket errors" in out:
        raise RuntimeError(f"wrk saw failures:\n{out}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _duration_ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    p99 = _duration_ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    return Run(server, mode, connections, rps, p50, p99)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--modes", nargs="+", default=["json", "stream"])
    parser.add_argument("--durability", default="process", choices=["process", "power"])
    parser.add_argument("--log-level", default="info", help="Radiance's (info: a line a request)")
    parser.add_argument("--litellm", help="a Python with litellm[proxy] installed")
    parser.add_argument(
        "--before", type=pathlib.Path, help="another checkout of Radiance, run as `before`"
    )
    parser.add_argument("--json", type=pathlib.Path, help="also write every run here")
    parser.add_argument(
        "--without",
        nargs="+",
        default=[],
        help="also Radiance without these parts (see bench/gateway_parts.py; `all`: every one)",
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        folder = pathlib.Path(tmp)
        upstream = free_port()
        ports = {"stub": upstream}
        stack.enter_context(
            started(
                [sys.executable, "bench/upstream_stub.py", str(upstream)], upstream, "stub", folder
            )
        )
        ports["radiance"] = free_port()
        config = _radiance_config(folder, upstream, args.durability, args.log_level)
        radiance = [sys.executable, "-m", "appliance.cli", "up", str(config)]
        radiance += ["--port", str(ports["radiance"])]
        stack.enter_context(started(radiance, ports["radiance"], "radiance", folder))
        if args.before:  # the same, from another checkout (another commit) of Radiance
            ports["before"] = free_port()
            before = [sys.executable, "-m", "appliance.cli", "up", str(config)]
            before += ["--port", str(ports["before"])]
            stack.enter_context(started(before, ports["before"], "before", folder, args.before))
        for part in args.without:  # attribution: what each part of the path costs
            name = f"-{part}"
            parts = ",".join(PARTS) if part == "all" else part
            ports[name] = free_port()
            command = [sys.executable, "bench/gateway_parts.py", parts, "--", "up", str(config)]
            command += ["--port", str(ports[name])]
            stack.enter_context(started(command, ports[name], name.strip("-"), folder))
        if args.litellm:
            ports["litellm"] = free_port()
            litellm = [args.litellm, "-m", "litellm.proxy.proxy_cli"]
            litellm += ["--config", str(_litellm_config(folder, upstream))]
            litellm += ["--port", str(ports["litellm"]), "--num_workers", "1"]
            stack.enter_context(started(litellm, ports["litellm"], "litellm", folder))
        runs: list[Run] = []
        script = folder / "request.lua"
        for round_number in range(args.rounds + 1):
            for mode in args.modes:
                for connections in args.connections:
                    for server, port in ports.items():
                        duration = 1 if round_number == 0 else args.duration
                        run = wrk(server, port, mode, connections, duration, script)
                        if round_number:
                            runs.append(run)
            if round_number:
                print(f"round {round_number} done, load {os.getloadavg()[0]:.2f}", flush=True)
    _report(runs, list(ports))
    if args.json:
        args.json.write_text(json.dumps([run.__dict__ for run in runs], indent=1))


def _report(runs: list[Run], servers: list[str]) -> None:
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, load {os.getloadavg()[0]:.2f}"
    )
    print(
        f"{'mode':<7}{'conns':>6} {'server':<10}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'+p50 ms':>9}{'vs litellm':>11}"
    )
    for mode in dict.fromkeys(run.mode for run in runs):
        for connections in dict.fromkeys(run.connections for run in runs):
            chosen = [r for r in runs if r.mode == mode and r.connections == connections]
            medians = {
                server: (
                    statistics.median(r.requests_per_s for r in chosen if r.server == server),
                    statistics.median(r.p50_ms for r in chosen if r.server == server),
                    statistics.median(r.p99_ms for r in chosen if r.server == server),
                )
                for server in servers
            }
            for server, (rps, p50, p99) in medians.items():
                added = "" if server == "stub" else f"{p50 - medians['stub'][1]:+.2f}"
                ratio = ""
                if "litellm" in medians and server == "radiance":
                    ratio = f"{rps / medians['litellm'][0]:.1f}x"
                print(
                    f"{mode:<7}{connections:>6} {server:<10}{rps:>9.0f}{p50:>9.2f}{p99:>9.2f}"
                    f"{added:>9}{ratio:>11}"
                )


if __name__ == "__main__":
    main()
