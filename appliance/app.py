"""The app factory: routes, error mapping, and a lifespan that owns the database and engines."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import anyio
from litestar import Litestar, Request, Response, Router, get
from litestar.openapi import OpenAPIConfig

from appliance.accounting.limits import Limiter
from appliance.accounting.meter import Meter
from appliance.accounting.spending import Spending
from appliance.auth import Authenticator
from appliance.config import LoadedConfig
from appliance.errors import handle_api_error
from appliance.management.envelope import ManagementError, handle_management_error
from appliance.management.keys_routes import ApiKeysController
from appliance.management.live_routes import LiveController
from appliance.management.tiers_routes import TiersController
from appliance.metrics import CONTENT_TYPE, Metrics
from appliance.openai.routes import OpenAIController
from appliance.registry import ModelRegistry
from appliance.runtime import Runtime
from appliance.state.database import open_database
from appliance.state.keys import KeyStore, hash_secret
from appliance.state.ledger import Ledger

log = logging.getLogger(__name__)
KEY_REFRESH_SECONDS = 1.0


async def _follow_key_changes(keys: KeyStore) -> None:
    """Pick up keys another process (`radiance keys`) changed, within a second."""
    while True:
        await anyio.sleep(KEY_REFRESH_SECONDS)
        try:
            if await keys.refresh():
                log.info("reloaded API keys changed by another process")
        except Exception:
            log.exception("could not reload API keys")


@get("/metrics", summary="Prometheus metrics", media_type=CONTENT_TYPE, tags=["metrics"])
async def metrics(request: Request[Any, Any, Any]) -> Response[bytes]:
    return Response(Runtime.of(request).meter.metrics.render(), media_type=CONTENT_TYPE)


MANAGEMENT = [ApiKeysController, LiveController, TiersController]


def create_app(loaded: LoadedConfig, registry: ModelRegistry | None = None) -> Litestar:
    """Build the server for one config; `registry` lets tests bring their own engines."""
    config = loaded.config

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        db = await open_database(loaded.database_path)
        models = registry or ModelRegistry.from_config(loaded)
        ledger = Ledger(loaded.database_path)
        try:
            keys = KeyStore(db)
            await keys.sync_declared(config.keys)
            spending = Spending(ledger)
            ledger.listeners.append(spending.committed)
            ledger.start()
            await models.start_all()
            admin = config.server.admin_key
            app.state.runtime = Runtime(
                loaded=loaded,
                db=db,
                keys=keys,
                ledger=ledger,
                models=models,
                auth=Authenticator(keys, hash_secret(admin) if admin else None),
                meter=Meter(ledger, Limiter(), spending, Metrics(models)),
            )
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(_follow_key_changes, keys)
                yield
                tasks.cancel_scope.cancel()
        finally:
            await models.stop_all()
            await ledger.close()
            await db.close()

    return Litestar(
        route_handlers=[
            Router(path="/v1", route_handlers=[OpenAIController, *MANAGEMENT]),
            Router(path="/", route_handlers=[OpenAIController]),
            metrics,
        ],
        lifespan=[lifespan],
        exception_handlers={ManagementError: handle_management_error, Exception: handle_api_error},
        request_max_body_size=config.server.max_body_bytes,
        openapi_config=OpenAPIConfig(title="Radiance", version="0.1.0", path="/schema"),
        logging_config=None,
    )
