"""One OpenAI-compatible server at a base URL: forward a request, read its SSE events.

Shared by the openai engine (remote replicas) and the vllm engine (a local child). A
connection that cannot be made is `Unreachable` (nothing reached the server, so another
replica may take the request); an error status is an `UpstreamError` with the server's
own message; a connection lost mid-answer is an `EngineError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import msgspec

from backends.base import Endpoint, EngineError, EngineUnavailable, UpstreamError, UpstreamReply
from backends.openai import http1

log = logging.getLogger(__name__)

# What a failed exchange with an upstream raises (a refused or lost connection, a timeout).
TransportError = (aiohttp.ClientError, asyncio.TimeoutError)


class Unreachable(EngineUnavailable):
    """The server could not be connected to; the request never reached it."""


def new_client(connect_timeout: float, timeout: float) -> aiohttp.ClientSession:
    """The client of an engine's other calls (health checks, model lists, adapters), made
    on the running loop; forwarded requests go through each server's `http1.Pool`.
    `timeout` bounds each wait for data, not a whole answer."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=http1.KEEPALIVE_SECONDS),
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout, sock_read=timeout),
        trust_env=False,
        skip_auto_headers=("User-Agent",),
    )


@dataclass(frozen=True)
class Fetched:
    """A whole answer to a GET."""

    status: int
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


async def fetch(client: aiohttp.ClientSession, url: str, wait: float, **headers: str) -> Fetched:
    """GET `url`, waiting at most `wait` seconds in all; errors are `TransportError`s."""
    async with client.get(
        url, headers=headers, timeout=aiohttp.ClientTimeout(total=wait)
    ) as response:
        return Fetched(response.status, await response.read())


def error_of(status: int, raw: bytes, headers: Mapping[str, str]) -> UpstreamError:
    """An error response as UpstreamError: OpenAI's envelope, FastAPI's detail, or text."""
    message, param, code = "", None, None
    try:
        data = json.loads(raw)
    except ValueError:
        data = None
    if isinstance(data, dict):
        error = data.get("error", data)
        if isinstance(error, dict):
            message = str(error.get("message") or error.get("detail") or "")
            param = error.get("param") if isinstance(error.get("param"), str) else None
            code = error.get("code") if isinstance(error.get("code"), str) else None
        elif isinstance(error, str):
            message = error
        if not message and "detail" in data:
            message = json.dumps(data["detail"])
    if not message:
        message = raw.decode("utf-8", "replace").strip()[:500] or f"HTTP {status}"
    retry_after: float | None = None
    with contextlib.suppress(ValueError):
        retry_after = float(headers.get("retry-after", ""))
    return UpstreamError(message, status, param=param, code=code, retry_after=retry_after)


class OpenAIServer:
    """A server whose OpenAI API is at `base_url` (ending in /v1)."""

    def __init__(
        self,
        base_url: str,
        client: aiohttp.ClientSession,
        api_key: str | None,
        *,
        connect_timeout: float,
        timeout: float,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._client = client
        self._headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
        self._pool = http1.Pool(self.base_url, connect_timeout, timeout)
        self._heads: dict[str, bytes] = {}
        self._post_headers = {"content-type": "application/json", **self._headers}

    def __repr__(self) -> str:
        return f"OpenAIServer({self.base_url})"

    async def get(self, path: str, wait: float) -> Fetched:
        """GET `path` under the base URL (health checks, /models) waiting at most `wait`
        seconds; errors are `TransportError`s."""
        return await fetch(self._client, f"{self.base_url}/{path}", wait, **self._headers)

    def close(self) -> None:
        """Close the idle connections of forwarded requests."""
        self._pool.close()

    async def forward(
        self, endpoint: Endpoint, body: dict[str, Any], *, stream: bool, deployment: str
    ) -> UpstreamReply:
        head = self._heads.get(endpoint)
        if head is None:
            head = self._heads[endpoint] = self._pool.head(endpoint, self._post_headers)
        try:
            response = await self._pool.post(head, msgspec.json.encode(body))
        except http1.ConnectFailed as exc:
            raise Unreachable(f"{self.base_url} is unreachable: {_reason(exc)}") from exc
        except http1.TransportFailed as exc:
            raise EngineError(f"{self.base_url} failed: {_reason(exc)}") from exc
        try:
            if response.status >= 400:
                raise error_of(response.status, await response.read(), response.headers)
            if not stream:
                raw = await response.read()
                response.release()
                try:
                    answer = json.loads(raw)
                except ValueError:
                    answer = None
                if not isinstance(answer, dict):
                    raise EngineError(f"{self.base_url} answered something else than JSON")
                return UpstreamReply(deployment, _closer(response), body=answer)
        except http1.TransportFailed as exc:
            response.release()
            raise EngineError(f"{self.base_url} failed: {_reason(exc)}") from exc
        except BaseException:
            response.release()
            raise
        return UpstreamReply(deployment, _closer(response), events=_events(response, self.base_url))


def _reason(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def _closer(response: http1.Response) -> Any:
    """`close` of an UpstreamReply: the connection goes back to the pool when the answer
    was read to its end, else it is closed (which aborts the upstream's generation)."""

    async def close() -> None:
        response.release()

    return close


_DONE = b"[DONE]"


def _decoded(payload: bytes, where: str) -> Any:
    """The JSON of one `data:` payload (msgspec, or Python's for NaN and Infinity)."""
    try:
        return msgspec.json.decode(payload)
    except msgspec.DecodeError:
        pass
    try:
        return json.loads(payload)
    except ValueError as exc:
        shown = payload[:200].decode("utf-8", "replace")
        raise EngineError(f"{where} sent an event that is not JSON: {shown}") from exc


def _batch(payloads: list[bytes], where: str) -> list[dict[str, Any]]:
    """The JSON objects of `data:` payloads that arrived together, decoded in one call
    (one array of them all) unless one of them needs a closer look."""
    try:
        events = msgspec.json.decode(b"[" + b",".join(payloads) + b"]")
    except msgspec.DecodeError:
        events = [_decoded(payload, where) for payload in payloads]
    return [event for event in events if isinstance(event, dict)]


async def _events(response: http1.Response, where: str) -> AsyncIterator[list[dict[str, Any]]]:
    """The JSON of the `data:` lines, in lists of those that arrived together (one hop
    per network read, not per event); stops at `[DONE]` or the end. Blank separators,
    comments and `event:` lines are passed over."""
    pending = b""
    try:
        while True:
            chunk = await response.chunk()
            pending += chunk if chunk else b"\n"  # the end: the last line is whole
            *lines, pending = pending.split(b"\n")
            payloads = [line[5:].strip() for line in lines if line.startswith(b"data:")]
            done = _DONE in payloads
            if done:
                payloads = payloads[: payloads.index(_DONE)]
            if payloads and (batch := _batch(payloads, where)):
                yield batch
            if done or not chunk:
                return
    except http1.TransportFailed as exc:
        raise EngineError(f"lost the connection to {where}: {_reason(exc)}") from exc
    finally:
        response.release()
