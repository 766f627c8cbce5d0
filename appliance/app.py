"""The app factory: routes, error mapping, and a lifespan that owns the database and engines."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from litestar import Litestar, Router
from litestar.openapi import OpenAPIConfig

from appliance.auth import Authenticator
from appliance.config import LoadedConfig
from appliance.errors import handle_api_error
from appliance.openai.routes import OpenAIController
from appliance.registry import ModelRegistry
from appliance.runtime import Runtime
from appliance.state.database import open_database
from appliance.state.keys import KeyStore, hash_secret
from appliance.state.ledger import Ledger

log = logging.getLogger(__name__)


def create_app(loaded: LoadedConfig, registry: ModelRegistry | None = None) -> Litestar:
    """Build the server for one config; `registry` lets tests bring their own engines."""
    config = loaded.config

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        db = await open_database(loaded.database_path)
        models = registry or ModelRegistry.from_config(loaded)
        try:
            keys = KeyStore(db)
            await keys.sync_declared(config.keys)
            await models.start_all()
            admin = config.server.admin_key
            app.state.runtime = Runtime(
                loaded=loaded,
                db=db,
                keys=keys,
                ledger=Ledger(db),
                models=models,
                auth=Authenticator(keys, hash_secret(admin) if admin else None),
            )
            yield
        finally:
            await models.stop_all()
            await db.close()

    return Litestar(
        route_handlers=[
            Router(path="/v1", route_handlers=[OpenAIController]),
            Router(path="/", route_handlers=[OpenAIController]),
        ],
        lifespan=[lifespan],
        exception_handlers={Exception: handle_api_error},
        request_max_body_size=config.server.max_body_bytes,
        openapi_config=OpenAPIConfig(title="Radiance", version="0.1.0", path="/schema"),
        logging_config=None,
    )
