"""Where errors become HTTP: every error a request can end in, mapped to its envelope.

The OpenAI API answers ``{"error": {"message", "type", "param", "code"}}`` (`ApiError`);
the management API answers ``{"error", "code", "details"}`` (`ManagementError`, and the
stores' and the deployment manager's refusals, which only its routes meet).
`EXCEPTION_HANDLERS` is the app's table. The management routes add `MANAGEMENT_HANDLERS`,
which puts the errors both APIs share (Litestar's own checks of parameters and bodies, a
missing or bad key, a body that does not decode) in their envelope instead.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException
from litestar.types import ExceptionHandlersMap

from appliance.analytics.usage import FilterKeyNotFound
from appliance.deployments.manager import DeploymentDeclared, DeploymentExists, DeploymentNotFound
from appliance.deployments.spec import DeploymentInvalid
from appliance.errors import (
    ApiError,
    InternalError,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    Unauthorized,
    envelope,
)
from appliance.management.errors import ManagementError, invalid
from appliance.state.keys import KeyDeclared, KeyNameTaken, KeyNotFound
from appliance.state.webhooks import WebhookNotFound

log = logging.getLogger(__name__)
AnyRequest = Request[Any, Any, Any]


def error_response(
    status: int, body: msgspec.Struct | dict[str, Any], headers: dict[str, str] | None = None
) -> Response[bytes]:
    return Response(
        msgspec.json.encode(body),
        status_code=status,
        media_type="application/json",
        headers=headers or {},
    )


def api_error_response(error: ApiError, headers: dict[str, str] | None = None) -> Response[bytes]:
    """An OpenAI API error, with its own headers (retry-after) and `headers`."""
    return error_response(error.status, envelope(error), {**error.headers, **(headers or {})})


_HTTP_CODES: dict[int, tuple[type[ApiError], str]] = {
    400: (InvalidRequest, "invalid_request"),
    401: (Unauthorized, "invalid_api_key"),
    404: (NotFound, "not_found"),
    405: (InvalidRequest, "method_not_allowed"),
    413: (PayloadTooLarge, "request_too_large"),
}


def from_http_exception(exc: HTTPException) -> ApiError:
    """Litestar's own errors (no route, wrong method, body too large) as an API error."""
    kind, code = _HTTP_CODES.get(exc.status_code, (InvalidRequest, "invalid_request"))
    error = kind(exc.detail or "request failed", code=code)
    error.status = exc.status_code
    if exc.status_code >= 500:
        error.type = "server_error"
    return error


# -- the OpenAI envelope: the app's default --------------------------------------------


def _api_error(request: AnyRequest, exc: ApiError) -> Response[bytes]:
    return api_error_response(exc)


def _http_exception(request: AnyRequest, exc: HTTPException) -> Response[bytes]:
    return api_error_response(from_http_exception(exc))


def _unexpected(request: AnyRequest, exc: Exception) -> Response[bytes]:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return api_error_response(InternalError("the server failed to handle this request"))


# -- the management envelope -----------------------------------------------------------


def _management_error(request: AnyRequest, exc: ManagementError) -> Response[bytes]:
    return error_response(exc.status, exc.body())


def _refusal(
    status: int, code: str, message: str, detail: str
) -> Callable[[AnyRequest, Exception], Response[bytes]]:
    """A handler that answers `status` and `code`. The error's text (an id or a name) fills
    the `{}` in `message` and is `details[detail]`."""

    def handle(request: AnyRequest, exc: Exception) -> Response[bytes]:
        subject = str(exc)
        error = ManagementError(status, code, message.format(subject), {detail: subject})
        return _management_error(request, error)

    return handle


def _deployment_invalid(request: AnyRequest, exc: DeploymentInvalid) -> Response[bytes]:
    details = {"field": exc.field} if exc.field else {}
    if exc.hint:
        details["hint"] = exc.hint
    return _management_error(request, invalid(str(exc), **details))


_MANAGEMENT_CODES = {400: "VALIDATION_ERROR", 401: "UNAUTHORIZED", 403: "FORBIDDEN"}


def _shared_api_error(request: AnyRequest, exc: ApiError) -> Response[bytes]:
    """A bad key or a body that does not decode, on a management route."""
    if exc.status >= 500:
        return api_error_response(exc)
    code = _MANAGEMENT_CODES.get(exc.status, "REQUEST_ERROR")
    details = {"field": exc.param} if exc.param else {}
    return _management_error(request, ManagementError(exc.status, code, exc.message, details))


def _shared_http_exception(request: AnyRequest, exc: HTTPException) -> Response[bytes]:
    """Litestar's own checks (query parameters, body size) on a management route."""
    if exc.status_code >= 500:
        return _http_exception(request, exc)
    code = "VALIDATION_ERROR" if exc.status_code == 400 else "REQUEST_ERROR"
    error = ManagementError(exc.status_code, code, exc.detail, {"errors": exc.extra})
    return _management_error(request, error)


EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    ApiError: _api_error,
    HTTPException: _http_exception,
    ManagementError: _management_error,
    KeyNotFound: _refusal(404, "KEY_NOT_FOUND", "no API key `{}`", "id"),
    FilterKeyNotFound: _refusal(404, "KEY_NOT_FOUND", "No API key has the name or id {!r}.", "key"),
    KeyNameTaken: _refusal(409, "KEY_NAME_TAKEN", "a key named `{}` exists", "name"),
    KeyDeclared: _refusal(
        409,
        "KEY_DECLARED_IN_CONFIG",
        "key `{}` is declared in radiance.yaml; change or remove it there and restart",
        "name",
    ),
    WebhookNotFound: _refusal(404, "WEBHOOK_NOT_FOUND", "no webhook `{}`", "id"),
    DeploymentNotFound: _refusal(404, "DEPLOYMENT_NOT_FOUND", "no deployment `{}`", "id"),
    DeploymentDeclared: _refusal(
        409,
        "DEPLOYMENT_DECLARED_IN_CONFIG",
        "deployment `{}` is declared in radiance.yaml; change it there and restart, or "
        "create a deployment of another name with POST /v1/deployments",
        "id",
    ),
    DeploymentExists: _refusal(
        409,
        "DEPLOYMENT_EXISTS",
        "`{}` already names a model or deployment; give the deployment a `name`",
        "name",
    ),
    DeploymentInvalid: _deployment_invalid,
    Exception: _unexpected,
}
MANAGEMENT_HANDLERS: ExceptionHandlersMap = {
    ApiError: _shared_api_error,
    HTTPException: _shared_http_exception,
}
