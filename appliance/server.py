"""Run the app under uvicorn and print one ready line once every model is loaded."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Mapping, Sequence

import uvicorn
from litestar import Litestar
from litestar.enums import ScopeType
from litestar.types import (
    ASGIApp,
    HTTPResponseBodyEvent,
    HTTPResponseStartEvent,
    Message,
    Receive,
    Scope,
    Send,
)
from msgspec.json import encode

from appliance.app import create_app
from appliance.config import LoadedConfig, ModelConfig
from appliance.connections import head_timeout_protocol, raise_open_file_limit
from appliance.errors import ApiError, InternalError, envelope
from appliance.openai.answer_reading import describe_format
from appliance.openai.routes import LANES
from appliance.request_context import REQUEST_ID, error_event, server_stopping
from appliance.runtime import Runtime
from backends.base import EngineStatus, TokenEngine
from backends.replicas import ReplicaSet

log = logging.getLogger("radiance")


class _KnownStartupFailure(logging.Filter):
    """Drop uvicorn's traceback of a startup failure the lifespan already explained."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        known = "EngineError" in message or "NoModelLoaded" in message
        return not ("Traceback" in message and known)


class _AnswerWhenStopping:
    """The outermost ASGI app. uvicorn cancels the requests still running when the
    shutdown's grace period ends; their clients then get a 503 in the API's envelope (or,
    mid-stream, an error event and `[DONE]`) instead of a dropped connection, and the log
    gets no traceback. Each request has settled its ledger row before this answers.

    The inference endpoints' lanes (`lane.py`) are called straight from here for their
    exact paths, sparing Litestar's routing and exception layers; anything else, and
    those paths spelled otherwise, goes through Litestar (which reaches the same lanes)."""

    def __init__(self, app: Litestar) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        lane = LANES.get(scope["path"]) if scope["method"] == "POST" else None
        if lane is not None:
            scope["app"] = scope["litestar_app"] = self.app
            scope.setdefault("state", {})
            await self._answer(lane, scope, receive, send)
            return
        await self._answer(self.app, scope, receive, send)

    async def _answer(self, app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
        started = finished = False

        async def watched(message: Message) -> None:
            nonlocal started, finished
            if message["type"] == "http.response.start":
                started = True
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                finished = True
            await send(message)

        try:
            await app(scope, receive, watched)
        except Exception:  # a bug in a lane (Litestar answers its own)
            if app is self.app or started:
                raise
            log.exception("unhandled error on POST %s", scope["path"])
            await _send_error(send, InternalError("the server failed to handle this request"))
        except asyncio.CancelledError:
            runtime: Runtime | None = getattr(self.app.state, "runtime", None)
            if runtime is None or not runtime.meter.stopping or finished:
                raise
            error = server_stopping()
            if started:  # mid-stream
                await send(
                    HTTPResponseBodyEvent(
                        type="http.response.body", body=error_event(error), more_body=False
                    )
                )
                return
            await _send_error(send, error, scope.get("state", {}).get(REQUEST_ID))


async def _send_error(send: Send, error: ApiError, request_id: str | None = None) -> None:
    headers = {**error.headers, "content-type": "application/json"}
    if request_id is not None:
        headers["x-request-id"] = request_id
    await send(
        HTTPResponseStartEvent(
            type="http.response.start",
            status=error.status,
            headers=[(k.encode(), v.encode()) for k, v in headers.items()],
        )
    )
    await send(
        HTTPResponseBodyEvent(
            type="http.response.body", body=encode(envelope(error)), more_body=False
        )
    )


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, app: Litestar) -> None:
        super().__init__(config)
        self._app = app

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """Stop taking connections and let the requests under way finish for the grace
        period; those uvicorn then cancels are the server's doing (503), not their
        clients' (499)."""
        runtime: Runtime | None = getattr(self._app.state, "runtime", None)
        grace = self.config.timeout_graceful_shutdown
        timer = None
        if runtime is not None and grace is not None:
            meter = runtime.meter
            timer = asyncio.get_running_loop().call_later(
                grace, lambda: setattr(meter, "stopping", True)
            )
        try:
            await super().shutdown(sockets)
        finally:
            if timer is not None:
                timer.cancel()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            runtime: Runtime = self._app.state.runtime
            failed = [s.id for s in runtime.models if s.engine.status is EngineStatus.FAILED]
            models = [served.config for served in runtime.models]
            scheme = "https" if self.config.is_ssl else "http"
            formats = answer_formats(runtime)
            line = ready_line(self.config.host, self._bound_port(), models, failed, scheme, formats)
            print(line, flush=True)

    def _bound_port(self) -> int:
        for server in self.servers:
            for sock in server.sockets:
                port: int = sock.getsockname()[1]
                return port
        return self.config.port


def answer_formats(runtime: Runtime) -> dict[str, str]:
    """The tool-call format of each model whose answers Radiance reads (llama.cpp's)."""
    formats = {}
    for served in runtime.models:
        engine = served.engine
        if isinstance(engine, ReplicaSet):
            replicas = engine.replicas
            engine = replicas[0].engine if replicas else engine
        if isinstance(engine, TokenEngine):
            formats[served.id] = describe_format(served.config, engine.chat_template)
    return formats


def ready_line(
    host: str,
    port: int,
    models: Sequence[ModelConfig],
    failed: Sequence[str] = (),
    scheme: str = "http",
    formats: Mapping[str, str] | None = None,
) -> str:
    """What `radiance up` prints once it serves: the address and the models that loaded,
    each with the tool-call format its answers are read in (where Radiance reads them)."""
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    formats = formats or {}

    def notes(model: ModelConfig) -> str:
        said = [f"aliases: {', '.join(model.aliases)}"] if model.aliases else []
        said += [f"tool format: {formats[model.id]}"] if model.id in formats else []
        return f" ({'; '.join(said)})" if said else ""

    names = ", ".join(m.id + notes(m) for m in models if m.id not in failed)
    line = (
        f"radiance ready on {scheme}://{shown}:{port}/v1 (listening on {host}:{port}); "
        f"models: {names or 'none'}"
    )
    return line + (f"; failed to load: {', '.join(failed)}" if failed else "")


def _has_uvloop() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:  # Windows has none: the stock loop serves the same, slower
        return False
    return True


def serve(loaded: LoadedConfig, host: str | None = None, port: int | None = None) -> bool:
    """Serve until interrupted; False if the server could not start."""
    server_config = loaded.config.server
    tls = server_config.tls
    files = raise_open_file_limit()
    log.debug("open-file limit: %d", files)
    app = create_app(loaded)
    uv_config = uvicorn.Config(
        _AnswerWhenStopping(app),
        host=host or server_config.host,
        port=server_config.port if port is None else port,
        http=head_timeout_protocol(server_config.header_timeout_seconds),
        loop="uvloop" if _has_uvloop() else "asyncio",
        timeout_keep_alive=server_config.keep_alive_seconds,
        limit_concurrency=server_config.max_connections,
        ssl_certfile=None if tls is None else str(loaded.resolve(tls.cert)),
        ssl_keyfile=None if tls is None else str(loaded.resolve(tls.key)),
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=server_config.shutdown_grace_seconds,
    )
    logging.getLogger("uvicorn.error").addFilter(_KnownStartupFailure())
    server = _Server(uv_config, app)
    try:
        server.run()
    except KeyboardInterrupt:  # uvicorn re-raises Ctrl-C after its graceful shutdown
        log.info("stopped")
    return server.started
