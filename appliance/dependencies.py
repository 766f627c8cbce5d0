"""The runtime's parts as Litestar dependencies, and the guard on the admin routes.

The app's lifespan builds one `Runtime`; a handler names the parts it needs as parameters
(`keys: KeyStore`, `caller: ApiKey`, ...) and `DEPENDENCIES` hands them over.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import aiosqlite
from litestar import Request
from litestar.connection import ASGIConnection
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.handlers import BaseRouteHandler

from appliance.accounting.limits import Policy
from appliance.accounting.meter import Meter
from appliance.auth import Authenticator
from appliance.config import Config
from appliance.deployments.manager import DeploymentManager
from appliance.management.errors import ManagementError
from appliance.registry import ModelRegistry
from appliance.runtime import Runtime
from appliance.state.keys import ApiKey, KeyStore
from appliance.state.webhooks import WebhookStore
from appliance.webhooks.events import EventBus

T = TypeVar("T")


def _runtime(state: State) -> Runtime:
    runtime: Runtime = state.runtime
    return runtime


def _part(part: Callable[[Runtime], T]) -> Provide:
    def provide(state: State) -> T:
        return part(_runtime(state))

    return Provide(provide, sync_to_thread=False)


def _caller(request: Request[Any, Any, Any], auth: NamedDependency[Authenticator]) -> ApiKey:
    """The key the request presents, or 401."""
    return auth.bearer(request.headers.get("authorization"))


def _policy(caller: NamedDependency[ApiKey], state: State) -> Policy:
    return _runtime(state).policy(caller)


def _config(runtime: Runtime) -> Config:
    return runtime.loaded.config


def _reader(runtime: Runtime) -> aiosqlite.Connection:
    return runtime.db.reader


def _models(runtime: Runtime) -> ModelRegistry:
    return runtime.models


def _keys(runtime: Runtime) -> KeyStore:
    return runtime.keys


def _auth(runtime: Runtime) -> Authenticator:
    return runtime.auth


def _meter(runtime: Runtime) -> Meter:
    return runtime.meter


def _events(runtime: Runtime) -> EventBus:
    return runtime.events


def _webhooks(runtime: Runtime) -> WebhookStore:
    return runtime.webhooks


def _deployments(runtime: Runtime) -> DeploymentManager:
    return runtime.deployments


DEPENDENCIES: dict[str, Provide] = {
    "config": _part(_config),
    "reader": _part(_reader),  # the state file's reading connection
    "models": _part(_models),
    "keys": _part(_keys),
    "auth": _part(_auth),
    "meter": _part(_meter),
    "events": _part(_events),
    "webhooks": _part(_webhooks),
    "deployments": _part(_deployments),
    "caller": Provide(_caller, sync_to_thread=False),
    "policy": Provide(_policy, sync_to_thread=False),
}


def admin_only(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Let the admin key through: 401 without a valid key, 403 with a user key."""
    key = _runtime(connection.app.state).auth.bearer(connection.headers.get("authorization"))
    if not key.is_admin:
        raise ManagementError(
            403, "FORBIDDEN", "This endpoint needs the admin key (server.admin_key)."
        )
