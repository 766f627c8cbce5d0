"""The management envelope as typed Structs, so /schema documents every response.

``{"data", "message"}`` and, for lists, ``"pagination": {"total", "limit", "offset",
"hasMore"}``; errors as ``ErrorBody`` (see `appliance.management.envelope`).
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

import msgspec
from litestar.openapi import ResponseSpec

from appliance.management.envelope import page_params

T = TypeVar("T")


class Pagination(msgspec.Struct):
    total: int
    limit: int
    offset: int
    has_more: bool = msgspec.field(name="hasMore")


class Page(msgspec.Struct, Generic[T]):
    """A page of a list: `data` holds `limit` items at most, from `offset`."""

    data: list[T]
    message: str
    pagination: Pagination

    @classmethod
    def of(cls, items: list[T], limit: int | None, offset: int | None, message: str) -> Page[T]:
        """The page of `items` that `limit` and `offset` ask for (400 if they are bad)."""
        limit, offset = page_params(limit, offset)
        page = items[offset : offset + limit]
        more = offset + len(page) < len(items)
        return cls(page, message, Pagination(len(items), limit, offset, more))

    @classmethod
    def cut(cls, page: list[T], total: int, limit: int, offset: int, message: str) -> Page[T]:
        """A page the database already cut: `page` of `total` items, from `offset`."""
        more = offset + len(page) < total
        return cls(page, message, Pagination(total, limit, offset, more))


class Item(msgspec.Struct, Generic[T]):
    data: T
    message: str


class ErrorBody(msgspec.Struct):
    """`code` is a stable string such as VALIDATION_ERROR, UNAUTHORIZED, FORBIDDEN."""

    error: str
    code: str
    details: dict[str, Any]


def error_spec(description: str) -> ResponseSpec:
    return ResponseSpec(data_container=ErrorBody, description=description, generate_examples=False)


BAD_REQUEST = error_spec("A query parameter is invalid (VALIDATION_ERROR)")
UNAUTHORIZED = error_spec("No valid API key (UNAUTHORIZED)")
FORBIDDEN = error_spec("A user key on an admin endpoint (FORBIDDEN)")
NOT_FOUND = KEY_NOT_FOUND = error_spec("No such key (KEY_NOT_FOUND)")
WEBHOOK_NOT_FOUND = error_spec("No such webhook (WEBHOOK_NOT_FOUND)")
DEPLOYMENT_NOT_FOUND = error_spec("No such deployment (DEPLOYMENT_NOT_FOUND)")
KEY_CONFLICT = error_spec(
    "The name is taken, or the key is declared in radiance.yaml "
    "(KEY_NAME_TAKEN, KEY_DECLARED_IN_CONFIG)"
)
DEPLOYMENT_CONFLICT = error_spec(
    "The name is taken, or the deployment is declared in radiance.yaml "
    "(DEPLOYMENT_EXISTS, DEPLOYMENT_DECLARED_IN_CONFIG)"
)
ADMIN_ERRORS = {400: BAD_REQUEST, 401: UNAUTHORIZED, 403: FORBIDDEN}
USER_ERRORS = {400: BAD_REQUEST, 401: UNAUTHORIZED}
