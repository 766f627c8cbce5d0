"""Everything a request handler needs, built by the app's lifespan and kept on app.state."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import aiosqlite
from litestar import Request

from appliance.auth import Authenticator
from appliance.config import LoadedConfig
from appliance.registry import ModelRegistry
from appliance.state.keys import KeyStore
from appliance.state.ledger import Ledger


@dataclass
class Runtime:
    loaded: LoadedConfig
    db: aiosqlite.Connection
    keys: KeyStore
    ledger: Ledger
    models: ModelRegistry
    auth: Authenticator

    @staticmethod
    def of(request: Request[Any, Any, Any]) -> Runtime:
        runtime: Runtime = request.app.state.runtime
        return runtime
