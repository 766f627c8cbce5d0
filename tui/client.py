"""An async client for the server's management API; the console's only way to the server.

Every failure becomes a `ServerError` whose `kind` says what the console should do about
it: `unreachable`, `unauthorized` (no or wrong admin key), `forbidden` (a user key) and
`protocol` (an answer the console cannot read) put up a banner and keep retrying;
`rejected` (a 4xx about the action itself, such as a key or deployment declared in the
config, or one that is gone) is told to the user once.
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar
from urllib.parse import quote

import httpx
import msgspec

from tui.wire import (
    BatchRow,
    CreatedKey,
    Deployment,
    FineTuningJobView,
    KeyInfo,
    LiveSnapshot,
    Tier,
)

ErrorKind = Literal["unreachable", "unauthorized", "forbidden", "rejected", "protocol"]
T = TypeVar("T")
RECENT_LIMIT = 200
PAGE = 1000
FINE_TUNING_LIMIT = 100  # the newest jobs: those under way are among them
# Paths of one item, where 404 means the item is gone (rejected), not a missing endpoint.
ITEM_PATHS = ("/api-keys/", "/deployments/")


class ServerError(Exception):
    def __init__(self, kind: ErrorKind, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.kind: ErrorKind = kind
        self.message = message
        self.status = status

    @property
    def lasting(self) -> bool:
        """Whether it is about the connection (a banner) rather than one action."""
        return self.kind != "rejected"


class _Pagination(msgspec.Struct, rename="camel"):
    total: int
    has_more: bool = False


class _Envelope(msgspec.Struct):
    data: msgspec.Raw
    pagination: _Pagination | None = None


def _error_message(reply: httpx.Response) -> str:
    try:
        body = reply.json()
    except ValueError:
        return reply.text.strip()[:200] or reply.reason_phrase
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, str):
            return error
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])
    return reply.reason_phrase


class RadianceClient:
    """One server, one admin key; `transport` lets tests answer without a server."""

    def __init__(
        self,
        base_url: str,
        admin_key: str,
        *,
        timeout: float = 5.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/").removesuffix("/v1")
        self._http = httpx.AsyncClient(
            base_url=f"{self.base_url}/v1",
            headers={"Authorization": f"Bearer {admin_key}"},
            timeout=timeout,
            transport=transport,
        )

    def __repr__(self) -> str:
        return f"RadianceClient({self.base_url!r})"

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _call(self, method: str, path: str, **kwargs: Any) -> bytes:
        try:
            reply = await self._http.request(method, path, **kwargs)
        except httpx.TimeoutException:
            raise ServerError("unreachable", f"no answer from {self.base_url}") from None
        except httpx.HTTPError as exc:
            reason = str(exc) or type(exc).__name__
            raise ServerError("unreachable", f"cannot reach {self.base_url}: {reason}") from None
        if reply.is_success:
            return reply.content
        message = _error_message(reply)
        status = reply.status_code
        if status == 401:
            raise ServerError("unauthorized", f"the admin key was refused: {message}", status)
        if status == 403:
            raise ServerError("forbidden", f"this key is not the admin key: {message}", status)
        if status == 404 and not path.startswith(ITEM_PATHS):
            raise ServerError("protocol", f"{path} is missing; is this a Radiance server?", status)
        if 400 <= status < 500:
            raise ServerError("rejected", message, status)
        raise ServerError("unreachable", f"the server failed ({status}): {message}", status)

    async def _page(
        self, kind: type[T], method: str, path: str, **kwargs: Any
    ) -> tuple[T, _Pagination | None]:
        raw = await self._call(method, path, **kwargs)
        try:
            envelope = msgspec.json.decode(raw, type=_Envelope)
            return msgspec.json.decode(envelope.data, type=kind), envelope.pagination
        except msgspec.DecodeError as exc:  # ValidationError is a DecodeError
            raise ServerError("protocol", f"unexpected answer from {path}: {exc}") from None

    async def _data(self, kind: type[T], method: str, path: str, **kwargs: Any) -> T:
        data, _ = await self._page(kind, method, path, **kwargs)
        return data

    async def _listing(self, kind: type[list[T]], path: str) -> list[T]:
        """Every item of a paged listing, a page of PAGE at a time."""
        items: list[T] = []
        while True:
            params = {"limit": PAGE, "offset": len(items)}
            page, pagination = await self._page(kind, "GET", path, params=params)
            items.extend(page)
            if pagination is None or not pagination.has_more or not page:
                return items

    async def live(self, since: int = 0) -> LiveSnapshot:
        params = {"since": since, "limit": RECENT_LIMIT}
        return await self._data(LiveSnapshot, "GET", "/analytics/live", params=params)

    async def keys(self) -> list[KeyInfo]:
        return await self._listing(list[KeyInfo], "/api-keys")

    async def tiers(self) -> list[Tier]:
        return await self._data(list[Tier], "GET", "/tiers")

    async def create_key(self, name: str, tier: str | None) -> CreatedKey:
        body: dict[str, Any] = {"name": name}
        if tier is not None:
            body["tier"] = tier
        return await self._data(CreatedKey, "POST", "/api-keys", json=body)

    async def set_tier(self, key_id: str, tier: str | None) -> KeyInfo:
        path = f"/api-keys/{quote(key_id, safe='')}"
        return await self._data(KeyInfo, "PUT", path, json={"tier": tier})

    async def revoke_key(self, key_id: str) -> KeyInfo:
        path = f"/api-keys/{quote(key_id, safe='')}"
        return await self._data(KeyInfo, "DELETE", path)

    async def batches(self) -> list[BatchRow]:
        """The newest batches of every key (OpenAI's list: `data`, no pagination)."""
        return await self._data(list[BatchRow], "GET", "/batches", params={"limit": 100})

    async def fine_tuning_jobs(self) -> list[FineTuningJobView]:
        """The newest fine-tuning jobs of every key (one page of the seed's list)."""
        params = {"limit": FINE_TUNING_LIMIT}
        return await self._data(list[FineTuningJobView], "GET", "/fine-tuning", params=params)

    async def deployments(self) -> list[Deployment]:
        return await self._listing(list[Deployment], "/deployments")

    async def scale_deployment(self, deployment_id: str, replicas: int) -> Deployment:
        """Ask for `replicas` replicas (within an autoscaled deployment's bounds)."""
        path = f"/deployments/{quote(deployment_id, safe='')}"
        body = {"configuration": {"replicas": replicas}}
        return await self._data(Deployment, "PUT", path, json=body)

    async def delete_deployment(self, deployment_id: str) -> Deployment:
        """Remove a deployment: it drains its requests in flight, then stops."""
        path = f"/deployments/{quote(deployment_id, safe='')}"
        return await self._data(Deployment, "DELETE", path)
