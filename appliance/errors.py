"""One exception tree for the OpenAI API, and the one place that turns it into HTTP.

Every error leaves the server as OpenAI's envelope
``{"error": {"message", "type", "param", "code"}}`` with a string code; nothing else,
and never a traceback.
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException

log = logging.getLogger(__name__)


class ApiError(Exception):
    status = 400
    type = "invalid_request_error"
    code = "invalid_request"

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        self.headers = headers or {}


class InvalidRequest(ApiError):
    pass


class ContextLengthExceeded(ApiError):
    code = "context_length_exceeded"


class Unauthorized(ApiError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class Forbidden(ApiError):
    status = 403
    type = "permission_error"
    code = "forbidden"


class NotFound(ApiError):
    status = 404
    code = "not_found"


class ModelNotFound(NotFound):
    code = "model_not_found"


class PayloadTooLarge(ApiError):
    status = 413
    code = "request_too_large"


class ServiceUnavailable(ApiError):
    status = 503
    type = "server_error"
    code = "overloaded"

    def __init__(self, message: str, *, retry_after: float, code: str | None = None) -> None:
        seconds = max(1, round(retry_after))
        super().__init__(
            message,
            code=code,
            headers={"retry-after": str(seconds), "retry-after-ms": str(int(retry_after * 1000))},
        )


class BadGateway(ApiError):
    """An upstream server failed or answered what Radiance cannot pass on."""

    status = 502
    type = "server_error"
    code = "bad_gateway"

    def __init__(self, message: str, *, retry_after: float = 1, code: str | None = None) -> None:
        seconds = max(1, round(retry_after))
        super().__init__(
            message,
            code=code,
            headers={"retry-after": str(seconds), "retry-after-ms": str(int(retry_after * 1000))},
        )


class InternalError(ApiError):
    status = 500
    type = "server_error"
    code = "internal_error"


def envelope(error: ApiError) -> dict[str, Any]:
    return {
        "error": {
            "message": error.message,
            "type": error.type,
            "param": error.param,
            "code": error.code,
        }
    }


def error_response(error: ApiError, headers: dict[str, str] | None = None) -> Response[bytes]:
    return Response(
        content=msgspec.json.encode(envelope(error)),
        status_code=error.status,
        media_type="application/json",
        headers={**error.headers, **(headers or {})},
    )


_HTTP_CODES = {
    400: (InvalidRequest, "invalid_request"),
    401: (Unauthorized, "invalid_api_key"),
    404: (NotFound, "not_found"),
    405: (InvalidRequest, "method_not_allowed"),
    413: (PayloadTooLarge, "request_too_large"),
}


def from_http_exception(exc: HTTPException) -> ApiError:
    """Litestar's own errors (no route, wrong method, body too large) in our envelope."""
    kind, code = _HTTP_CODES.get(exc.status_code, (InvalidRequest, "invalid_request"))
    error = kind(exc.detail or "request failed", code=code)
    error.status = exc.status_code
    if exc.status_code >= 500:
        error.type = "server_error"
    return error


def handle_api_error(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    handler = request.scope.get("route_handler")
    management = getattr(handler, "opt", {}).get("envelope") == "management"
    if management and isinstance(exc, HTTPException) and exc.status_code < 500:
        # Litestar's own checks (query parameters, body size) on a management route.
        body = {"error": exc.detail, "code": "VALIDATION_ERROR", "details": {"errors": exc.extra}}
        if exc.status_code != 400:
            body["code"] = "REQUEST_ERROR"
        return Response(
            msgspec.json.encode(body), status_code=exc.status_code, media_type="application/json"
        )
    if isinstance(exc, ApiError):
        return error_response(exc)
    if isinstance(exc, HTTPException):
        return error_response(from_http_exception(exc))
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(InternalError("the server failed to handle this request"))
