"""The vllm engine: one supervised `vllm serve` per model, requests proxied to it.

Radiance starts vLLM's OpenAI server with the interpreter of another venv, as a process
group of its own on 127.0.0.1 and a free port, and captures its output to a log file.
`start` waits until `/health` answers 200 (vLLM refuses connections while it loads), or
fails with the last log lines. A supervisor task then watches the process: when it dies,
or its `/health` fails, the group is killed and started again after a backoff that
doubles up to a minute (the status is `loading` meanwhile, and requests get 503 with
Retry-After). `stop` terminates the whole group, so the GPU memory is freed. `/metrics`
is scraped every few seconds into `stats()`. vLLM inherits only an allow-list of
Radiance's environment (`backends.vllm.environment`), never its secrets.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import pathlib
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NoReturn

import aiohttp

from backends.backoff import Backoff
from backends.base import (
    Endpoint,
    EngineError,
    EngineStats,
    EngineStatus,
    EngineUnavailable,
    ProxyEngine,
    UpstreamReply,
)
from backends.openai.client import (
    OpenAIServer,
    TransportError,
    Unreachable,
    error_of,
    fetch,
    new_client,
)
from backends.vllm.adapter import AdapterError, lora_rank, max_lora_rank
from backends.vllm.environment import child_environment
from backends.vllm.metrics import parse_metrics
from backends.vllm.process import ChildGroup, free_port

log = logging.getLogger(__name__)
ENTRY_POINT = "vllm.entrypoints.openai.api_server"
# The name vLLM serves the base model under when the model's id names its adapter.
BASE_SUFFIX = "--base"
# Waits before restarting a dead server: 1 s, doubling while restarts fail, up to a minute.
RESTART_BACKOFF = Backoff(first=1.0, most=60.0)


@dataclass(frozen=True)
class VllmSettings:
    model_id: str
    python: str
    model: str  # --model: a hub id or a local folder
    context_length: int
    log_path: pathlib.Path
    args: Mapping[str, Any] = field(default_factory=dict)
    gpus: tuple[int, ...] | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    tool_parser: str | None = None
    # A PEFT LoRA folder (absolute) served under the model's id, on top of `model`.
    adapter: str | None = None
    startup_timeout: float = 1800.0
    timeout: float = 600.0
    # Seconds between health checks and metric scrapes of a ready server.
    poll_interval: float = 2.0


def flag_args(args: Mapping[str, Any]) -> list[str]:
    """`{max_num_seqs: 8, enforce_eager: true}` as `--max-num-seqs 8 --enforce-eager`."""
    flags: list[str] = []
    for name, value in args.items():
        flag = "--" + name.replace("_", "-")
        if value is True:
            flags.append(flag)
        elif value is False:
            flags.append("--no-" + name.replace("_", "-"))
        elif isinstance(value, list):
            flags += [flag, *map(str, value)]
        elif isinstance(value, dict):
            flags += [flag, json.dumps(value)]
        else:
            flags += [flag, str(value)]
    return flags


def vllm_command(settings: VllmSettings, port: int, max_rank: int | None = None) -> list[str]:
    """The command line of one server; with an adapter (`max_rank`: its `--max-lora-rank`)
    the base model gets another name, as the model's id is the adapter's."""
    served = settings.model_id + BASE_SUFFIX if settings.adapter else settings.model_id
    command = [
        settings.python,
        "-m",
        ENTRY_POINT,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--model",
        settings.model,
        "--served-model-name",
        served,
        "--max-model-len",
        str(settings.context_length),
    ]
    if settings.tool_parser:
        command += ["--enable-auto-tool-choice", "--tool-call-parser", settings.tool_parser]
    if settings.adapter:
        if "enable_lora" not in settings.args:
            command.append("--enable-lora")
        if "max_lora_rank" not in settings.args and max_rank is not None:
            command += ["--max-lora-rank", str(max_rank)]
    return command + flag_args(settings.args)


class VllmEngine(ProxyEngine):
    def __init__(self, settings: VllmSettings) -> None:
        self.settings = settings
        self._status = EngineStatus.STOPPED
        self._child = ChildGroup(f"vllm-{settings.model_id}", settings.log_path)
        self._client: aiohttp.ClientSession | None = None
        self._server: OpenAIServer | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._figures: dict[str, float] = {}
        self._error: str | None = None
        self._load_seconds: float | None = None
        self.restarts = 0
        self._stopping = False

    @property
    def status(self) -> EngineStatus:
        return self._status

    @property
    def pid(self) -> int | None:
        return self._child.pid

    def stats(self) -> EngineStats:
        figures = self._figures
        return EngineStats(
            running=int(figures.get("requests_running", 0)),
            waiting=int(figures.get("requests_waiting", 0)),
            load_seconds=self._load_seconds,
            error=self._error,
            extra={**figures, "restarts": float(self.restarts)},
        )

    async def start(self) -> None:
        """Start vLLM and wait until it serves; EngineError with its last lines if not."""
        self._client = new_client(connect_timeout=5.0, timeout=self.settings.timeout)
        self._stopping = False
        try:
            await self._launch()
        except EngineError:
            await self._child.stop()
            await self._client.close()
            raise
        self._supervisor = asyncio.create_task(
            self._supervise(), name=f"supervise-{self.settings.model_id}"
        )

    async def _launch(self) -> None:
        settings = self.settings
        self._status = EngineStatus.LOADING
        port = free_port()
        extra = dict(settings.env)
        rank = None
        if settings.adapter:
            try:
                rank = max_lora_rank(lora_rank(pathlib.Path(settings.adapter)))
            except AdapterError as error:
                self._status, self._error = EngineStatus.FAILED, str(error)
                raise EngineError(str(error)) from None
            extra["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] = "True"  # for /v1/load_lora_adapter
        env = child_environment(os.environ, extra, settings.gpus)
        started = time.perf_counter()
        log.info(
            "starting vLLM for %s from %s on port %d (log: %s)",
            settings.model_id,
            settings.model,
            port,
            settings.log_path,
        )
        await self._child.start(vllm_command(settings, port, rank), env)
        assert self._client is not None
        self._server = OpenAIServer(
            f"http://127.0.0.1:{port}/v1",
            self._client,
            None,
            connect_timeout=5.0,
            timeout=self.settings.timeout,
        )
        deadline = time.monotonic() + settings.startup_timeout
        while not await self._healthy():
            if not self._child.running:
                code = await self._child.wait()
                self._fail(f"vLLM exited with code {code} while loading")
            if time.monotonic() > deadline:
                self._fail(f"vLLM was not ready after {settings.startup_timeout:.0f} s")
            await asyncio.sleep(0.5)
        if settings.adapter:
            await self._load_adapter(settings.adapter)
        self._load_seconds = time.perf_counter() - started
        self._status, self._error = EngineStatus.READY, None
        log.info("vLLM for %s is ready in %.1f s", settings.model_id, self._load_seconds)

    async def _load_adapter(self, folder: str) -> None:
        """POST /v1/load_lora_adapter: the adapter, named as the model; vLLM's refusal fails
        the start with its message."""
        assert self._client is not None and self._server is not None
        body = {"lora_name": self.settings.model_id, "lora_path": folder}
        url = f"{self._server.base_url}/load_lora_adapter"
        try:
            async with self._client.post(
                url, json=body, timeout=aiohttp.ClientTimeout(total=self.settings.timeout)
            ) as response:
                status, raw = response.status, await response.read()
        except TransportError as error:
            self._fail(f"vLLM did not load the adapter `{folder}`: {error!r}")
        if status != 200:
            message = str(error_of(status, raw, {}))
            self._fail(f"vLLM did not load the adapter `{folder}` ({status}): {message}")
        log.info("vLLM for %s loaded the adapter %s", self.settings.model_id, folder)

    def _fail(self, reason: str) -> NoReturn:
        self._status = EngineStatus.FAILED
        self._error = (
            f"{reason}; last lines of {self.settings.log_path}:\n{self._child.last_lines()}"
        )
        raise EngineError(self._error)

    async def _healthy(self) -> bool:
        """GET /health (at the server's root, not under /v1): 200 means serving."""
        assert self._client is not None and self._server is not None
        root = self._server.base_url.removesuffix("/v1")
        try:
            response = await fetch(self._client, f"{root}/health", 5.0)
        except TransportError:
            return False
        return response.status == 200

    async def _scrape(self) -> None:
        assert self._client is not None and self._server is not None
        root = self._server.base_url.removesuffix("/v1")
        with contextlib.suppress(*TransportError, ValueError):
            response = await fetch(self._client, f"{root}/metrics", 5.0)
            if response.status == 200:
                self._figures = parse_metrics(response.body.decode("utf-8", "replace"))

    async def _supervise(self) -> None:
        """Watch the ready server; restart it with backoff when it dies or turns unhealthy."""
        failures = 0  # in a row: the server's end, then each restart that failed too
        while not self._stopping:
            reason = await self._watch()
            if self._stopping:
                return
            failures += 1
            wait = RESTART_BACKOFF.after(failures)
            self._status = EngineStatus.LOADING
            self._error = f"{reason}; restarting in {wait:.0f} s"
            log.warning("vLLM for %s: %s", self.settings.model_id, self._error)
            await self._child.stop(grace=10)
            await asyncio.sleep(wait)
            self.restarts += 1
            try:
                await self._launch()
                failures = 0
            except EngineError as exc:
                log.error("vLLM for %s did not come back: %s", self.settings.model_id, exc)
                await self._child.stop(grace=10)

    async def _watch(self) -> str:
        """Wait until the process exits or its health check fails; say which."""
        failures = 0
        exited = asyncio.ensure_future(self._child.wait())
        try:
            while True:
                done, _ = await asyncio.wait({exited}, timeout=self.settings.poll_interval)
                if done:
                    return f"vLLM exited with code {exited.result()}"
                if await self._healthy():
                    failures = 0
                    await self._scrape()
                else:
                    failures += 1
                    if failures >= 3:
                        return "vLLM failed 3 health checks"
        finally:
            exited.cancel()

    async def stop(self) -> None:
        self._stopping = True
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        await self._child.stop()
        if self._server is not None:
            self._server.close()
        if self._client is not None:
            await self._client.close()
        self._status = EngineStatus.STOPPED

    async def forward(
        self, endpoint: Endpoint, body: dict[str, Any], *, stream: bool
    ) -> UpstreamReply:
        if self._status is not EngineStatus.READY or self._server is None:
            state = self._error or self._status.value
            raise EngineUnavailable(f"vLLM for `{self.settings.model_id}` is not serving: {state}")
        if stream:
            # vLLM reports the usage in every chunk, so an abandoned stream bills exactly.
            options = body.get("stream_options") or {}
            body = {**body, "stream_options": {**options, "continuous_usage_stats": True}}
        server = self._server
        try:
            return await server.forward(endpoint, body, stream=stream, deployment=server.base_url)
        except Unreachable:
            if not self._child.running:  # died since the last check: the supervisor restarts it
                self._status = EngineStatus.LOADING
            raise
