"""The management API's own envelope, distinct from the OpenAI one.

Success: ``{"data": ..., "message": "..."}``, lists add
``"pagination": {"total", "limit", "offset", "hasMore"}``. Errors:
``{"error": "...", "code": "KEY_NOT_FOUND", "details": {...}}`` with the right status.
"""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec
from litestar import Request, Response

from appliance.errors import ApiError
from appliance.runtime import Runtime
from appliance.state.keys import ApiKey

AnyRequest = Request[Any, Any, Any]
MAX_PAGE = 1000
T = TypeVar("T")


class ManagementError(Exception):
    def __init__(
        self, status: int, code: str, message: str, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details or {}


def invalid(message: str, **details: Any) -> ManagementError:
    return ManagementError(400, "VALIDATION_ERROR", message, details)


def handle_management_error(request: AnyRequest, exc: ManagementError) -> Response[bytes]:
    return error_response(exc)


def decode_body(raw: bytes, kind: type[T]) -> T:
    """A request body as `kind`, or 400 VALIDATION_ERROR saying what is wrong."""
    try:
        return msgspec.json.decode(raw, type=kind)
    except msgspec.ValidationError as exc:
        raise invalid(f"invalid request body: {exc}") from None
    except msgspec.DecodeError:
        raise invalid("the request body is not valid JSON") from None


def error_response(exc: ManagementError) -> Response[bytes]:
    body = {"error": exc.message, "code": exc.code, "details": exc.details}
    return Response(
        msgspec.json.encode(body), status_code=exc.status, media_type="application/json"
    )


def ok(data: Any, message: str, status: int = 200) -> Response[bytes]:
    return Response(
        msgspec.json.encode({"data": data, "message": message}),
        status_code=status,
        media_type="application/json",
    )


def paged(items: list[Any], total: int, limit: int, offset: int, message: str) -> Response[bytes]:
    pagination = {
        "total": total,
        "limit": limit,
        "offset": offset,
        "hasMore": offset + len(items) < total,
    }
    body = {"data": items, "message": message, "pagination": pagination}
    return Response(msgspec.json.encode(body), media_type="application/json")


MAX_OFFSET = 2**62  # SQLite integers are 64-bit


def page_params(limit: int | None, offset: int | None) -> tuple[int, int]:
    limit = 50 if limit is None else limit
    offset = 0 if offset is None else offset
    if not 1 <= limit <= MAX_PAGE:
        raise invalid(f"`limit` must be between 1 and {MAX_PAGE}", field="limit", value=limit)
    if not 0 <= offset <= MAX_OFFSET:
        raise invalid(f"`offset` must be between 0 and {MAX_OFFSET}", field="offset")
    return limit, offset


def caller(request: AnyRequest) -> ApiKey:
    """The key behind the request, or 401 in the management envelope."""
    try:
        return Runtime.of(request).auth.bearer(request.headers.get("authorization"))
    except ApiError as exc:
        raise ManagementError(401, "UNAUTHORIZED", exc.message) from None


def require_admin(request: AnyRequest) -> ApiKey:
    """The admin key, or 401 without a valid key and 403 with a user key."""
    key = caller(request)
    if not key.is_admin:
        raise ManagementError(
            403, "FORBIDDEN", "This endpoint needs the admin key (server.admin_key)."
        )
    return key
