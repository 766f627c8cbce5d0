"""The runtime's parts as Litestar dependencies, and the guards on the admin routes and
/metrics.

The app's lifespan builds one `Runtime`; a handler names the parts it needs as parameters
(`keys: NamedDependency[KeyStore]`, `caller: NamedDependency[ApiKey]`, ...) and
`DEPENDENCIES` hands them over.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from litestar import Request
from litestar.connection import ASGIConnection
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.handlers import BaseRouteHandler

from appliance.accounting.limits import Policy
from appliance.auth import Authenticator
from appliance.management.errors import ManagementError
from appliance.openai.models import Audience
from appliance.runtime import Runtime
from appliance.state.keys import ApiKey

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


def _audience(
    request: Request[Any, Any, Any], auth: NamedDependency[Authenticator], state: State
) -> Audience:
    """Who lists the models: without an Authorization header, anyone (the public models);
    with one, its key (a bad key is a 401, never the public view)."""
    header = request.headers.get("authorization")
    if header is None:
        return Audience(public_only=True)
    key = auth.bearer(header)
    return Audience(allowed=_runtime(state).policy(key).models, admin=key.is_admin, key_id=key.id)


DEPENDENCIES: dict[str, Provide] = {
    "config": _part(lambda runtime: runtime.loaded.config),
    "reader": _part(lambda runtime: runtime.db.reader),  # the state file's reading connection
    "models": _part(lambda runtime: runtime.models),
    "keys": _part(lambda runtime: runtime.keys),
    "auth": _part(lambda runtime: runtime.auth),
    "meter": _part(lambda runtime: runtime.meter),
    "events": _part(lambda runtime: runtime.events),
    "webhooks": _part(lambda runtime: runtime.webhooks),
    "deployments": _part(lambda runtime: runtime.deployments),
    "responses": _part(lambda runtime: runtime.responses),
    "files": _part(lambda runtime: runtime.files),
    "batches": _part(lambda runtime: runtime.batches),
    "batch_runner": _part(lambda runtime: runtime.batch_runner),
    "fine_tuning": _part(lambda runtime: runtime.fine_tuning),
    "datasets": _part(lambda runtime: runtime.datasets),
    "caller": Provide(_caller, sync_to_thread=False),
    "policy": Provide(_policy, sync_to_thread=False),
    "audience": Provide(_audience, sync_to_thread=False),
}


def admin_only(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Let the admin key through: 401 without a valid key, 403 with a user key. Litestar's
    own answer to OPTIONS (the allowed methods, no data) stays open to anyone."""
    if connection.scope.get("method") == "OPTIONS":
        return
    key = _runtime(connection.app.state).auth.bearer(connection.headers.get("authorization"))
    if not key.is_admin:
        raise ManagementError(
            403, "FORBIDDEN", "This endpoint needs the admin key (server.admin_key)."
        )


def metrics_reader(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Let the admin key or the metrics key through; anything else is a 401."""
    auth = _runtime(connection.app.state).auth
    auth.metrics_reader(connection.headers.get("authorization"))
