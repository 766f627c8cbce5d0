"""Interactive time to first token with and without a batch running, side by side.

One `radiance up` (the batching llama.cpp engine, ``parallel: 4``) serves the benchmark
model. The same interactive load (``--clients`` clients, each sending ``--rounds``
streaming chat requests one after another) runs twice per repeat: alone, and while a
/v1/batches job of long lines runs on the same model. The two phases alternate, so a
slower or busier stretch of a shared machine hits both. Reported: TTFT p50 and p95 of
each phase, the ratio of the p95s, and how many batch lines finished meanwhile (the batch
did run, on the capacity the interactive load left).

    .venv/bin/python bench/batch_interactive.py --repeat 2 --json docs/bench-batch.json
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import pathlib
import subprocess
import sys
import tempfile
import textwrap
import time

import httpx
import numpy as np
import openai

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from batching import KEY, ROOT, free_port, machine, one_stream, running


def config(model: pathlib.Path, folder: pathlib.Path, parallel: int, threads: int) -> pathlib.Path:
    path = folder / "radiance.yaml"
    path.write_text(
        textwrap.dedent(
            f"""
            server:
              host: 127.0.0.1
              database: {folder / "radiance.db"}
              files_dir: {folder / "files"}
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
    return path


async def interactive(base: str, clients: int, rounds: int, max_tokens: int) -> list[float]:
    ttft: list[float] = []

    async def client_loop(worker: int, client: httpx.AsyncClient) -> None:
        for round_ in range(rounds):
            _, first = await one_stream(client, base, 100 * worker + round_, max_tokens)
            ttft.append(first)

    async with httpx.AsyncClient(timeout=600) as client:
        await asyncio.gather(*[client_loop(worker, client) for worker in range(clients)])
    return ttft


def start_batch(sdk: openai.OpenAI, lines: int, max_tokens: int) -> str:
    rows = [
        {
            "custom_id": f"line-{n}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {
                "model": "bench",
                "messages": [{"role": "user", "content": f"Batch {n}: a long story."}],
                "max_tokens": max_tokens,
                "seed": n,
            },
        }
        for n in range(lines)
    ]
    data = "".join(json.dumps(row) + "\n" for row in rows).encode()
    upload = sdk.files.create(file=("bench.jsonl", io.BytesIO(data)), purpose="batch")
    batch = sdk.batches.create(
        input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    while sdk.batches.retrieve(batch.id).status == "validating":
        time.sleep(0.05)
    time.sleep(1.0)  # lines are running
    return batch.id


def stop_batch(sdk: openai.OpenAI, batch_id: str) -> int:
    """Cancel the batch; the lines it finished."""
    sdk.batches.cancel(batch_id)
    while True:
        batch = sdk.batches.retrieve(batch_id)
        if batch.status == "cancelled":
            return batch.request_counts.completed if batch.request_counts else 0
        time.sleep(0.1)


def p(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=pathlib.Path, default=ROOT / "models" / "bench.gguf")
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=8, help="requests per client per phase")
    parser.add_argument("--max-tokens", type=int, default=32, help="per interactive request")
    parser.add_argument("--batch-tokens", type=int, default=96, help="per batch line")
    parser.add_argument("--parallel", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--json", type=pathlib.Path)
    args = parser.parse_args()
    if not args.model.exists():
        subprocess.run(
            [sys.executable, "-m", "appliance.cli", "demo-model", "--bench", str(args.model)],
            check=True,
        )
    print(f"machine: {machine()}")
    alone: list[float] = []
    loaded: list[float] = []
    done_lines: list[int] = []
    with tempfile.TemporaryDirectory(prefix="radiance-batch-bench-") as tmp:
        folder = pathlib.Path(tmp)
        port = free_port()
        path = config(args.model, folder, args.parallel, args.threads)
        command = [sys.executable, "-m", "appliance.cli", "up", str(path), "--port", str(port)]
        with running(command, port, folder / "server.log") as base:
            sdk = openai.OpenAI(base_url=base, api_key=KEY, max_retries=0)
            asyncio.run(interactive(base, 1, 1, 8))  # warm up
            for repeat in range(args.repeat):
                plain = asyncio.run(interactive(base, args.clients, args.rounds, args.max_tokens))
                lines = args.clients * args.rounds * 4
                batch_id = start_batch(sdk, lines, args.batch_tokens)
                started = time.perf_counter()
                busy = asyncio.run(interactive(base, args.clients, args.rounds, args.max_tokens))
                seconds = time.perf_counter() - started
                finished = stop_batch(sdk, batch_id)
                print(
                    f"run {repeat + 1}: TTFT p95 alone {p(plain, 95):.3f} s, with a batch "
                    f"{p(busy, 95):.3f} s; {finished} batch lines done in {seconds:.1f} s",
                    flush=True,
                )
                alone += plain
                loaded += busy
                done_lines.append(finished)
    ratio = p(loaded, 95) / p(alone, 95)
    print()
    print("| phase | requests | TTFT p50 (s) | TTFT p95 (s) | p95 vs alone | batch lines done |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    print(f"| alone | {len(alone)} | {p(alone, 50):.3f} | {p(alone, 95):.3f} | 1.00x | |")
    print(
        f"| with a batch | {len(loaded)} | {p(loaded, 50):.3f} | {p(loaded, 95):.3f} "
        f"| {ratio:.2f}x | {sum(done_lines)} |"
    )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "machine": machine(),
                    "settings": vars(args) | {"model": str(args.model), "json": str(args.json)},
                    "ttft_alone": alone,
                    "ttft_with_batch": loaded,
                    "batch_lines_done": done_lines,
                    "p95_ratio": ratio,
                },
                indent=2,
            )
        )
    return 0 if ratio <= 1.5 else 1


if __name__ == "__main__":
    raise SystemExit(main())
