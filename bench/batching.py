"""Aggregate tokens/s and time to first token at 1 and 4 concurrent streams, radiance
against llama.cpp's own ``llama-server`` on the same GGUF and threads, side by side.

Servers (``--servers``), each a real subprocess on a free port, all started up front:

- ``radiance``: `radiance up` with the batching llama.cpp engine (``parallel: 4``);
- ``llama-server``: llama.cpp's server built from the llama.cpp that llama-cpp-python
  vendors (``--parallel 4``; found with ``--llama-server`` or built by
  ``bench/llama_server.py`` under ``~/.cache/radiance``);
- ``llama-cpp-python`` (optional): llama-cpp-python's own server, one request at a time.

A round measures every level on every server, the servers' order alternating from round
to round, so drifting load on a shared machine falls on all of them alike. At each level
``--requests`` streaming chat requests are spread over that many clients, each sending its
share one after another (a closed loop); every stream runs to ``--max-tokens`` because the
benchmark model (``radiance demo-model --bench``) never emits its end token. Aggregate
tokens/s is all completion tokens of the level (from the usage chunk) over its wall time;
TTFT is per request, from sending it to its first content chunk. Every server gets the same
sampling: temperature 0.8, top-p 1, a seed per request; llama-server is also sent
``top_k: 0, min_p: 0`` (its defaults are 40 and 0.05, which radiance does not take), so
both draw from the whole vocabulary.

    .venv/bin/pip install -e '.[dev,bench]'
    .venv/bin/python bench/batching.py --rounds 3    # ~5 minutes on 2 cores, plus a build
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import pathlib
import platform
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import llama_server
import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
KEY = "sk-bench-0123456789"


@dataclass(frozen=True)
class Level:
    server: str
    streams: int
    round: int
    tokens: int
    seconds: float
    ttft: tuple[float, ...]
    load: float  # the machine's 1-minute load average when the level ended

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds

    def ttft_percentile(self, q: float) -> float:
        return float(np.percentile(self.ttft, q))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def radiance_command(
    model: pathlib.Path, folder: pathlib.Path, parallel: int, threads: int, port: int
) -> list[str]:
    config = folder / f"radiance-{parallel}.yaml"
    config.write_text(
        textwrap.dedent(
            f"""
            server:
              host: 127.0.0.1
              database: {folder / f"radiance-{parallel}.db"}
              log_level: warning
            backends:
              cpu: {{engine: llamacpp, threads: {threads}, parallel: {parallel}, max_queue: 256}}
            models:
              - id: bench
                backend: cpu
                source: {model}
                context_length: 2048
                embeddings: false
            keys:
              - name: bench
                secret: {KEY}
            """
        )
    )
    return [sys.executable, "-m", "appliance.cli", "up", str(config), "--port", str(port)]


def peer_command(model: pathlib.Path, threads: int, port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(model),
        "--model_alias",
        "bench",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_ctx",
        "2048",
        "--n_threads",
        str(threads),
        "--n_threads_batch",
        str(threads),
        # By default a new request interrupts the one streaming; queue them instead.
        "--interrupt_requests",
        "False",
    ]


@contextlib.contextmanager
def running(command: list[str], port: int, log: pathlib.Path) -> Iterator[str]:
    """Start a server process, wait until it lists its models, stop it afterwards."""
    with log.open("w") as out:
        process = subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}/v1"
        try:
            deadline = time.monotonic() + 180
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"{log.stem} exited:\n{log.read_text()[-3000:]}")
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"{base}/models", timeout=2).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{log.stem} did not start:\n{log.read_text()[-3000:]}")
                time.sleep(0.5)
            try:
                yield base
            except Exception:
                print(f"{log.stem} log:\n{log.read_text()[-3000:]}", file=sys.stderr)
                raise
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


# What llama-server is sent besides the common body: its own stages that radiance does not
# have, turned off (its defaults are top_k 40 and min_p 0.05).
PEER_SAMPLING: dict[str, dict[str, Any]] = {
    "llama-server": {"top_k": 0, "min_p": 0.0, "typical_p": 1.0, "repeat_penalty": 1.0}
}


async def one_stream(
    client: httpx.AsyncClient, base: str, number: int, max_tokens: int, server: str = "radiance"
) -> tuple[int, float]:
    """Send one streaming chat request; return (completion tokens, seconds to the first)."""
    body = {
        "model": "bench",
        "messages": [{"role": "user", "content": f"Request {number}: tell me a long story."}],
        "max_tokens": max_tokens,
        "temperature": 0.8,
        "top_p": 1.0,
        "seed": number,
        "stream": True,
        "stream_options": {"include_usage": True},
        **PEER_SAMPLING.get(server, {}),
    }
    sent = time.perf_counter()
    first = None
    chunks = 0
    usage = None
    async with client.stream(
        "POST", f"{base}/chat/completions", json=body, headers={"Authorization": f"Bearer {KEY}"}
    ) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not line.startswith("data: {"):
                continue
            event = json.loads(line[6:])
            if event.get("usage"):
                usage = event["usage"]["completion_tokens"]
            choices = event["choices"]
            if choices and choices[0]["delta"].get("content"):
                chunks += 1
                if first is None:
                    first = time.perf_counter() - sent
    if first is None:
        raise RuntimeError(f"request {number} produced no text")
    return (usage if usage is not None else chunks), first


async def measure(
    base: str, server: str, streams: int, requests: int, max_tokens: int, round_: int
) -> Level:
    results: list[tuple[int, float]] = []
    share = [requests // streams + (worker < requests % streams) for worker in range(streams)]

    async def client_loop(worker: int, client: httpx.AsyncClient) -> None:
        for sent in range(share[worker]):
            number = 10000 * round_ + 1000 * streams + 10 * worker + sent
            results.append(await one_stream(client, base, number, max_tokens, server))

    # No keep-alive: llama-server closes idle connections, and a reused one can be gone.
    limits = httpx.Limits(max_connections=streams + 2, max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=600, limits=limits) as client:
        await one_stream(client, base, 0, 8, server)  # warm up
        started = time.perf_counter()
        await asyncio.gather(*[client_loop(worker, client) for worker in range(streams)])
        seconds = time.perf_counter() - started
    tokens = sum(count for count, _ in results)
    if tokens != len(results) * max_tokens:
        print(f"  note: {server} made {tokens} tokens for {len(results)} x {max_tokens}")
    ttft = tuple(t for _, t in results)
    return Level(server, streams, round_, tokens, seconds, ttft, os.getloadavg()[0])


def table(runs: list[Level], peer: str) -> str:
    """Mean tokens/s over the rounds per server and level, TTFT over all its requests."""
    servers = list(dict.fromkeys(run.server for run in runs))
    lines = [
        f"| streams | server | tok/s (mean) | tok/s (each round) | TTFT p50 (s) | TTFT p95 (s) "
        f"| load avg | tok/s vs {peer} |",
        "| ---: | --- | ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    mean: dict[tuple[str, int], float] = {}
    for run in runs:
        key = (run.server, run.streams)
        mean[key] = float(
            np.mean([r.tokens_per_second for r in runs if (r.server, r.streams) == key])
        )
    for streams in sorted({run.streams for run in runs}):
        for server in servers:
            mine = [run for run in runs if (run.server, run.streams) == (server, streams)]
            if not mine:
                continue
            ttft = [t for run in mine for t in run.ttft]
            base = mean.get((peer, streams))
            ratio = f"{mean[(server, streams)] / base:.2f}x" if base else ""
            each = ", ".join(f"{run.tokens_per_second:.0f}" for run in mine)
            load = max(run.load for run in mine)
            lines.append(
                f"| {streams} | {server} | {mean[(server, streams)]:.1f} | {each} "
                f"| {np.percentile(ttft, 50):.3f} | {np.percentile(ttft, 95):.3f} "
                f"| {load:.2f} | {ratio} |"
            )
    return "\n".join(lines)


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name:"):
                cpu = line.split(":", 1)[1].strip()
    return f"{os.cpu_count()} cores, {cpu}, Python {platform.python_version()}"


def start_command(
    server: str, args: argparse.Namespace, folder: pathlib.Path, port: int
) -> list[str]:
    if server == "radiance":
        return radiance_command(args.model, folder, args.parallel, args.threads, port)
    if server == "llama-server":
        binary = args.llama_server or llama_server.default_binary()
        if not binary.exists():
            print("building llama-server from llama-cpp-python's sdist (about 10 minutes)")
            binary = llama_server.build()
        return llama_server.command(
            binary, args.model, port=port, threads=args.threads, parallel=args.parallel, ctx=2048
        )
    if server == "llama-cpp-python":
        return peer_command(args.model, args.threads, port)
    raise SystemExit(f"unknown server {server}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=pathlib.Path, default=ROOT / "models" / "bench.gguf")
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--requests", type=int, default=16, help="requests per level")
    parser.add_argument("--rounds", type=int, default=3, help="rounds, servers alternating")
    parser.add_argument("--streams", default="1,4", help="concurrency levels")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--parallel", type=int, default=4, help="slots of each server")
    parser.add_argument("--servers", default="radiance,llama-server", help="which to run")
    parser.add_argument(
        "--llama-server",
        type=pathlib.Path,
        help="the llama-server binary (default: built by bench/llama_server.py)",
    )
    parser.add_argument("--json", type=pathlib.Path, help="also write the figures here")
    args = parser.parse_args()

    if not args.model.exists():
        subprocess.run(
            [sys.executable, "-m", "appliance.cli", "demo-model", "--bench", str(args.model)],
            check=True,
        )
    levels_wanted = [int(n) for n in args.streams.split(",")]
    servers = args.servers.split(",")
    print(f"machine: {machine()}")
    print(
        f"model: {args.model} ({args.model.stat().st_size / 1e6:.0f} MB), max_tokens "
        f"{args.max_tokens}, {args.requests} requests per level, {args.threads} threads"
    )
    runs: list[Level] = []
    with tempfile.TemporaryDirectory(prefix="radiance-bench-") as tmp, contextlib.ExitStack() as up:
        folder = pathlib.Path(tmp)
        bases = {}
        for server in servers:
            port = free_port()
            command = start_command(server, args, folder, port)
            bases[server] = up.enter_context(running(command, port, folder / f"{server}.log"))
        for round_ in range(args.rounds):
            order = servers if round_ % 2 == 0 else servers[::-1]
            for streams in levels_wanted:
                for server in order:
                    level = asyncio.run(
                        measure(
                            bases[server], server, streams, args.requests, args.max_tokens, round_
                        )
                    )
                    print(
                        f"round {round_ + 1} {server:>16} x{streams}: "
                        f"{level.tokens_per_second:7.1f} tok/s, "
                        f"TTFT p50 {level.ttft_percentile(50):.3f} s "
                        f"p95 {level.ttft_percentile(95):.3f} s (load average {level.load:.2f})",
                        flush=True,
                    )
                    runs.append(level)
    print()
    peer = "llama-server" if "llama-server" in servers else servers[-1]
    print(table(runs, peer))
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "machine": machine(),
                    "max_tokens": args.max_tokens,
                    "requests": args.requests,
                    "threads": args.threads,
                    "parallel": args.parallel,
                    "runs": [
                        {
                            "server": level.server,
                            "streams": level.streams,
                            "round": level.round,
                            "tokens": level.tokens,
                            "seconds": level.seconds,
                            "ttft": list(level.ttft),
                            "load_average": level.load,
                        }
                        for level in runs
                    ],
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
