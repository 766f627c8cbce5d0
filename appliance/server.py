"""Run the app under uvicorn and print one ready line once every model is loaded."""

from __future__ import annotations

import logging
import socket

import uvicorn

from appliance.app import create_app
from appliance.config import LoadedConfig

log = logging.getLogger("radiance")


class _KnownStartupFailure(logging.Filter):
    """Drop uvicorn's traceback of a startup failure the lifespan already explained."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not ("Traceback" in message and "EngineError" in message)


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, loaded: LoadedConfig) -> None:
        super().__init__(config)
        self._loaded = loaded

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            print(ready_line(self._loaded, self.config.host, self._bound_port()), flush=True)

    def _bound_port(self) -> int:
        for server in self.servers:
            for sock in server.sockets:
                port: int = sock.getsockname()[1]
                return port
        return self.config.port


def ready_line(loaded: LoadedConfig, host: str, port: int) -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    models = ", ".join(
        m.id + (f" (aliases: {', '.join(m.aliases)})" if m.aliases else "")
        for m in loaded.config.models
    )
    return (
        f"radiance ready on http://{shown}:{port}/v1 (listening on {host}:{port}); "
        f"models: {models or 'none'}"
    )


def serve(loaded: LoadedConfig, host: str | None = None, port: int | None = None) -> bool:
    """Serve until interrupted; False if the server could not start."""
    server_config = loaded.config.server
    uv_config = uvicorn.Config(
        create_app(loaded),
        host=host or server_config.host,
        port=server_config.port if port is None else port,
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=10,
    )
    logging.getLogger("uvicorn.error").addFilter(_KnownStartupFailure())
    server = _Server(uv_config, loaded)
    try:
        server.run()
    except KeyboardInterrupt:  # uvicorn re-raises Ctrl-C after its graceful shutdown
        log.info("stopped")
    return server.started
