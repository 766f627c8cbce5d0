"""What auth + rate limits + the ledger add to a request, on a no-op engine.

Two servers run side by side in one run, each in its own process on a loopback port,
both serving POST /v1/chat/completions through the same OpenAI serving layer and the
same no-op engine (it answers `max_tokens` tokens at once):

- full: the real app (`create_app`): Bearer auth, tier limits, budget check, the
  group-committed ledger with rollups (fsync per group), Prometheus counters, headers;
- bare: the same decode, plan and answer, with none of them.

A driver sends the same load to each, alternating rounds, and reports requests/s and
p50/p95 latency with the ratio. Run by hand: `.venv/bin/python bench/overhead.py`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any, cast

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import msgspec  # noqa: E402
from litestar import Litestar, Request, Response, post  # noqa: E402

from backends.base import (  # noqa: E402
    Delta,
    EngineStats,
    EngineStatus,
    Prompt,
    SamplingParams,
    TokenEngine,
)

KEY = "bench-user-key-0123456789"
ADMIN = "bench-admin-key-0123456789"
CONFIG = f"""
server: {{host: 127.0.0.1, port: 0, database: radiance.db, admin_key: {ADMIN}}}
backends: {{cpu: {{engine: llamacpp}}}}
models:
  - {{id: noop, backend: cpu, source: noop.gguf, context_length: 4096,
     pricing: {{prompt: "0.10", completion: "0.40"}}}}
tiers:
  big: {{rpm: 100000000, tpm: 1000000000, concurrency: 1000}}
keys:
  - {{name: bench, secret: {KEY}, tier: big}}
"""


class NoopEngine(TokenEngine):
    """Answers every request at once with `max_tokens` one-token pieces."""

    def __init__(self) -> None:
        self._status = EngineStatus.STOPPED

    @property
    def status(self) -> EngineStatus:
        return self._status

    def stats(self) -> EngineStats:
        return EngineStats()

    async def start(self) -> None:
        self._status = EngineStatus.READY

    async def stop(self) -> None:
        self._status = EngineStatus.STOPPED

    def render_chat(
        self, messages: Sequence[dict[str, Any]], tools: Sequence[dict[str, Any]] | None
    ) -> Prompt:
        return self.render_text(" ".join(str(m.get("content")) for m in messages))

    def render_text(self, text: str) -> Prompt:
        return Prompt(text, tuple(range(len(text.split()) + 1)))

    def detokenize(self, tokens: Sequence[int]) -> str:
        return " ".join(map(str, tokens))

    async def generate(self, prompt: Prompt, params: SamplingParams) -> AsyncIterator[Delta]:
        for _ in range(params.max_tokens):
            yield Delta(" x", 1)
        yield Delta("", 0, finish_reason="length")


def _app(kind: str, folder: pathlib.Path) -> Any:
    from appliance.app import create_app
    from appliance.config import load_config
    from appliance.registry import ModelRegistry, ServedModel

    (folder / "noop.gguf").write_bytes(b"GGUF")
    (folder / "radiance.yaml").write_text(CONFIG)
    loaded = load_config(folder / "radiance.yaml")
    registry = ModelRegistry([ServedModel(loaded.config.models[0], "cpu", NoopEngine())])
    if kind == "full":
        return create_app(loaded, registry)
    return _bare_app(registry)


def _bare_app(registry: Any) -> Any:
    """The same serving layer with a context that has no key checks, limits or ledger."""
    from appliance.accounting.limits import Limiter
    from appliance.accounting.meter import UNLIMITED, Meter
    from appliance.metrics import Metrics
    from appliance.openai.chat import complete_chat, plan_chat
    from appliance.openai.decoding import decode_body
    from appliance.openai.protocol import ChatCompletionRequest
    from appliance.request_context import RequestContext
    from appliance.state.keys import ApiKey

    class NoLedger:
        listeners: list[Any] = []  # noqa: RUF012

        async def record(self, row: Any) -> None:
            return None

    meter = Meter(NoLedger(), Limiter(), None, Metrics(registry))  # type: ignore[arg-type]
    nobody = ApiKey("admin", "admin", "", "", None, "admin", 0.0)

    @post("/v1/chat/completions", status_code=200)
    async def chat(request: Request[Any, Any, Any]) -> Response[bytes]:
        body = decode_body(await request.body(), ChatCompletionRequest)
        served = registry.resolve(body.model)
        ctx = RequestContext(meter, nobody, UNLIMITED, "chat")
        ctx.use_model(served)
        engine = cast(TokenEngine, served.engine)  # the NoopEngine itself: no replica set here
        answer = await complete_chat(await plan_chat(body, served, engine, ctx), ctx)
        return Response(msgspec.json.encode(answer), media_type="application/json")

    async def start(app: Litestar) -> None:
        for served in registry:
            await served.engine.start()

    return Litestar([chat], on_startup=[start], logging_config=None)


def serve(kind: str, port: int) -> None:
    import uvicorn

    with tempfile.TemporaryDirectory() as folder:
        app = _app(kind, pathlib.Path(folder))
        uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


async def _round(url: str, requests: int, concurrency: int, max_tokens: int) -> list[float]:
    import httpx

    body = {
        "model": "noop",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": max_tokens,
    }
    latencies: list[float] = []
    queue = iter(range(requests))
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {KEY}"}, timeout=30) as client:

        async def worker() -> None:
            for _ in queue:
                started = time.perf_counter()
                reply = await client.post(url, json=body)
                reply.raise_for_status()
                latencies.append(time.perf_counter() - started)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies


def _wait_ready(port: int) -> None:
    import httpx

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", json={}, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.2)
    raise RuntimeError(f"server on port {port} did not start")


def drive(args: argparse.Namespace) -> None:
    ports = {"full": 18731, "bare": 18732}
    servers = [
        subprocess.Popen([sys.executable, __file__, "serve", kind, str(port)])
        for kind, port in ports.items()
    ]
    try:
        for port in ports.values():
            _wait_ready(port)
        results: dict[str, list[float]] = {kind: [] for kind in ports}
        throughput: dict[str, list[float]] = {kind: [] for kind in ports}
        for round_number in range(args.rounds + 1):
            for kind, port in ports.items():
                url = f"http://127.0.0.1:{port}/v1/chat/completions"
                started = time.perf_counter()
                latencies = asyncio.run(
                    _round(url, args.requests, args.concurrency, args.max_tokens)
                )
                elapsed = time.perf_counter() - started
                if round_number == 0:
                    continue  # warm-up
                results[kind] += latencies
                throughput[kind].append(args.requests / elapsed)
    finally:
        for server in servers:
            server.terminate()
            server.wait()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    print(
        f"{args.rounds} rounds x {args.requests} requests, {args.concurrency} concurrent, "
        f"max_tokens {args.max_tokens}, non-streaming chat"
    )
    print(f"{'path':<6} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8}")
    summary = {}
    for kind in ports:
        lat = sorted(results[kind])
        rps = statistics.median(throughput[kind])
        p50 = lat[len(lat) // 2] * 1000
        p95 = lat[int(len(lat) * 0.95)] * 1000
        summary[kind] = (rps, p50, p95)
        print(f"{kind:<6} {rps:>8.0f} {p50:>8.2f} {p95:>8.2f}")
    full, bare = summary["full"], summary["bare"]
    print(
        f"full/bare: throughput {full[0] / bare[0]:.2f}x, "
        f"added p50 latency {full[1] - bare[1]:+.2f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command")
    serve_cmd = commands.add_parser("serve")
    serve_cmd.add_argument("kind", choices=["full", "bare"])
    serve_cmd.add_argument("port", type=int)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=16)
    args = parser.parse_args()
    if args.command == "serve":
        serve(args.kind, args.port)
    else:
        drive(args)


if __name__ == "__main__":
    main()
