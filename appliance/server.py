"""Run the app under uvicorn and print one ready line once every model is loaded."""

from __future__ import annotations

import logging
import socket
from collections.abc import Sequence

import uvicorn
from litestar import Litestar

from appliance.app import create_app
from appliance.config import LoadedConfig, ModelConfig
from appliance.connections import head_timeout_protocol, raise_open_file_limit
from appliance.runtime import Runtime
from backends.base import EngineStatus

log = logging.getLogger("radiance")


class _KnownStartupFailure(logging.Filter):
    """Drop uvicorn's traceback of a startup failure the lifespan already explained."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        known = "EngineError" in message or "NoModelLoaded" in message
        return not ("Traceback" in message and known)


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, app: Litestar) -> None:
        super().__init__(config)
        self._app = app

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            runtime: Runtime = self._app.state.runtime
            failed = [s.id for s in runtime.models if s.engine.status is EngineStatus.FAILED]
            models = [served.config for served in runtime.models]
            scheme = "https" if self.config.is_ssl else "http"
            line = ready_line(self.config.host, self._bound_port(), models, failed, scheme)
            print(line, flush=True)

    def _bound_port(self) -> int:
        for server in self.servers:
            for sock in server.sockets:
                port: int = sock.getsockname()[1]
                return port
        return self.config.port


def ready_line(
    host: str,
    port: int,
    models: Sequence[ModelConfig],
    failed: Sequence[str] = (),
    scheme: str = "http",
) -> str:
    """What `radiance up` prints once it serves: the address and the models that loaded."""
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    names = ", ".join(
        m.id + (f" (aliases: {', '.join(m.aliases)})" if m.aliases else "")
        for m in models
        if m.id not in failed
    )
    line = (
        f"radiance ready on {scheme}://{shown}:{port}/v1 (listening on {host}:{port}); "
        f"models: {names or 'none'}"
    )
    return line + (f"; failed to load: {', '.join(failed)}" if failed else "")


def serve(loaded: LoadedConfig, host: str | None = None, port: int | None = None) -> bool:
    """Serve until interrupted; False if the server could not start."""
    server_config = loaded.config.server
    tls = server_config.tls
    files = raise_open_file_limit()
    log.debug("open-file limit: %d", files)
    app = create_app(loaded)
    uv_config = uvicorn.Config(
        app,
        host=host or server_config.host,
        port=server_config.port if port is None else port,
        http=head_timeout_protocol(server_config.header_timeout_seconds),
        timeout_keep_alive=server_config.keep_alive_seconds,
        limit_concurrency=server_config.max_connections,
        ssl_certfile=None if tls is None else str(loaded.resolve(tls.cert)),
        ssl_keyfile=None if tls is None else str(loaded.resolve(tls.key)),
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=10,
    )
    logging.getLogger("uvicorn.error").addFilter(_KnownStartupFailure())
    server = _Server(uv_config, app)
    try:
        server.run()
    except KeyboardInterrupt:  # uvicorn re-raises Ctrl-C after its graceful shutdown
        log.info("stopped")
    return server.started
