"""Aggregate tokens/s and time to first token at 1, 4 and 8 concurrent streams.

Compares, on one machine in one run, three servers of the same GGUF:

- ``radiance``: `radiance up` with the batching llama.cpp engine (``parallel: 8``);
- ``radiance-serial``: `radiance up` with ``parallel: 1`` (one request at a time);
- ``llama-cpp-python``: llama-cpp-python's own server (``python -m llama_cpp.server``).

Each server runs alone as a real subprocess on a free port. At each concurrency level,
that many clients each send ``--rounds`` streaming chat requests one after another
(a closed loop); every stream runs to its fixed ``max_tokens`` because the benchmark
model (``radiance demo-model --bench``) never emits its end token. Aggregate tokens/s is
all tokens generated at the level over its wall time; TTFT is per request, from sending
it to its first content chunk.

    .venv/bin/pip install -e '.[dev,bench]'
    .venv/bin/python bench/batching.py --rounds 3 --repeat 2    # ~10 minutes on 2 cores
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

import httpx
import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
KEY = "sk-bench-0123456789"


@dataclass(frozen=True)
class Level:
    server: str
    streams: int
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
                    raise RuntimeError(f"{command[2]} exited:\n{log.read_text()[-3000:]}")
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"{base}/models", timeout=2).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{command[2]} did not start:\n{log.read_text()[-3000:]}")
                time.sleep(0.5)
            yield base
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


async def one_stream(
    client: httpx.AsyncClient, base: str, number: int, max_tokens: int
) -> tuple[int, float]:
    """Send one streaming chat request; return (content chunks, seconds to the first)."""
    body = {
        "model": "bench",
        "messages": [{"role": "user", "content": f"Request {number}: tell me a long story."}],
        "max_tokens": max_tokens,
        "temperature": 0.8,
        "seed": number,
        "stream": True,
    }
    sent = time.perf_counter()
    first = None
    chunks = 0
    async with client.stream(
        "POST", f"{base}/chat/completions", json=body, headers={"Authorization": f"Bearer {KEY}"}
    ) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not line.startswith("data: {"):
                continue
            choices = json.loads(line[6:])["choices"]
            if choices and choices[0]["delta"].get("content"):
                chunks += 1
                if first is None:
                    first = time.perf_counter() - sent
    if first is None:
        raise RuntimeError(f"request {number} produced no text")
    return chunks, first


async def measure(base: str, server: str, streams: int, rounds: int, max_tokens: int) -> Level:
    results: list[tuple[int, float]] = []

    async def client_loop(worker: int, client: httpx.AsyncClient) -> None:
        for round_ in range(rounds):
            number = 1000 * streams + 10 * worker + round_
            results.append(await one_stream(client, base, number, max_tokens))

    limits = httpx.Limits(max_connections=streams + 2)
    async with httpx.AsyncClient(timeout=600, limits=limits) as client:
        await one_stream(client, base, 0, 8)  # warm up
        started = time.perf_counter()
        await asyncio.gather(*[client_loop(worker, client) for worker in range(streams)])
        seconds = time.perf_counter() - started
    tokens = sum(chunks for chunks, _ in results)
    if tokens != len(results) * max_tokens:
        print(f"  note: {server} made {tokens} chunks for {len(results)} x {max_tokens} tokens")
    ttft = tuple(t for _, t in results)
    return Level(server, streams, tokens, seconds, ttft, os.getloadavg()[0])


def table(levels: list[Level], peer: str) -> str:
    by = {(level.server, level.streams): level for level in levels}
    servers = list(dict.fromkeys(level.server for level in levels))
    lines = [
        "| streams | server | tok/s | TTFT p50 (s) | TTFT p95 (s) "
        f"| tok/s vs {peer} | TTFT p95 vs {peer} |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for streams in sorted({level.streams for level in levels}):
        for server in servers:
            level = by.get((server, streams))
            if level is None:
                continue
            base = by.get((peer, streams))
            speed = f"{level.tokens_per_second / base.tokens_per_second:.2f}x" if base else ""
            ttft = f"{level.ttft_percentile(95) / base.ttft_percentile(95):.2f}x" if base else ""
            lines.append(
                f"| {streams} | {server} | {level.tokens_per_second:.1f} "
                f"| {level.ttft_percentile(50):.3f} | {level.ttft_percentile(95):.3f} "
                f"| {speed} | {ttft} |"
            )
    return "\n".join(lines)


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name:"):
                cpu = line.split(":", 1)[1].strip()
    return f"{os.cpu_count()} cores, {cpu}, Python {platform.python_version()}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=pathlib.Path, default=ROOT / "models" / "bench.gguf")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=4, help="requests per client per level")
    parser.add_argument("--streams", default="1,4,8", help="concurrency levels")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="measure each level this many times and keep the fastest run (other work on a "
        "shared machine only ever slows a run down)",
    )
    parser.add_argument(
        "--servers", default="radiance,llama-cpp-python,radiance-serial", help="which to run"
    )
    parser.add_argument("--json", type=pathlib.Path, help="also write the figures here")
    args = parser.parse_args()

    if not args.model.exists():
        subprocess.run(
            [sys.executable, "-m", "appliance.cli", "demo-model", "--bench", str(args.model)],
            check=True,
        )
    levels_wanted = [int(n) for n in args.streams.split(",")]
    slots = max(levels_wanted)
    print(f"machine: {machine()}")
    print(
        f"model: {args.model} ({args.model.stat().st_size / 1e6:.0f} MB), "
        f"max_tokens {args.max_tokens}, {args.rounds} requests per client"
    )
    levels: list[Level] = []  # the fastest run of each level
    everything: list[Level] = []
    with tempfile.TemporaryDirectory(prefix="radiance-bench-") as tmp:
        folder = pathlib.Path(tmp)
        for server in args.servers.split(","):
            port = free_port()
            if server == "radiance":
                command = radiance_command(args.model, folder, slots, args.threads, port)
            elif server == "radiance-serial":
                command = radiance_command(args.model, folder, 1, args.threads, port)
            elif server == "llama-cpp-python":
                command = peer_command(args.model, args.threads, port)
            else:
                parser.error(f"unknown server {server}")
            with running(command, port, folder / f"{server}.log") as base:
                for streams in levels_wanted:
                    runs = []
                    for _ in range(args.repeat):
                        level = asyncio.run(
                            measure(base, server, streams, args.rounds, args.max_tokens)
                        )
                        print(
                            f"{server:>17} x{streams}: {level.tokens_per_second:7.1f} tok/s, "
                            f"TTFT p50 {level.ttft_percentile(50):.3f} s "
                            f"p95 {level.ttft_percentile(95):.3f} s "
                            f"(load average {level.load:.2f})",
                            flush=True,
                        )
                        runs.append(level)
                    everything.extend(runs)
                    levels.append(max(runs, key=lambda run: run.tokens_per_second))
    print()
    print(f"fastest of {args.repeat} run(s) per level:")
    print(table(levels, "llama-cpp-python"))
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "machine": machine(),
                    "max_tokens": args.max_tokens,
                    "rounds": args.rounds,
                    "runs": [
                        {
                            "server": level.server,
                            "streams": level.streams,
                            "tokens": level.tokens,
                            "seconds": level.seconds,
                            "ttft": list(level.ttft),
                            "load_average": level.load,
                        }
                        for level in everything
                    ],
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
