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

log = logging.getLogger(__name__)

# What a failed exchange with an upstream raises (a refused or lost connection, a timeout).
TransportError = (aiohttp.ClientError, asyncio.TimeoutError)
# Idle pooled connections are dropped before the usual 5 s keep-alive of servers such as
# uvicorn would close them under a request.
_KEEPALIVE_SECONDS = 4.0
_READ_CHUNK = 1 << 16


class Unreachable(EngineUnavailable):
    """The server could not be connected to; the request never reached it."""


def new_client(connect_timeout: float, timeout: float) -> aiohttp.ClientSession:
    """One connection pool per engine (made on the running loop); no limit on connections
    (the upstream queues). `timeout` bounds each wait for data, not a whole answer."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=_KEEPALIVE_SECONDS),
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

    def __init__(self, base_url: str, client: aiohttp.ClientSession, api_key: str | None) -> None:
        self.base_url = base_url.rstrip("/")
        self._client = client
        self._headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
        self._post_headers = {**self._headers, "content-type": "application/json"}

    def __repr__(self) -> str:
        return f"OpenAIServer({self.base_url})"

    async def get(self, path: str, wait: float) -> Fetched:
        """GET `path` under the base URL (health checks, /models) waiting at most `wait`
        seconds; errors are `TransportError`s."""
        return await fetch(self._client, f"{self.base_url}/{path}", wait, **self._headers)

    async def forward(
        self, endpoint: Endpoint, body: dict[str, Any], *, stream: bool, deployment: str
    ) -> UpstreamReply:
        url = f"{self.base_url}/{endpoint}"
        data = msgspec.json.encode(body)
        try:
            response = await self._post(url, data)
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
            raise Unreachable(f"{self.base_url} is unreachable: {_reason(exc)}") from exc
        except TransportError as exc:
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
        except TransportError as exc:
            response.close()
            raise EngineError(f"{self.base_url} failed: {_reason(exc)}") from exc
        except BaseException:
            response.close()
            raise
        return UpstreamReply(deployment, _closer(response), events=_events(response, self.base_url))

    async def _post(self, url: str, data: bytes) -> aiohttp.ClientResponse:
        """POST, once more when a pooled connection turns out closed by the server before
        it answered anything (its keep-alive ran out as the request left)."""
        try:
            return await self._client.post(url, data=data, headers=self._post_headers)
        except aiohttp.ServerDisconnectedError:
            return await self._client.post(url, data=data, headers=self._post_headers)


def _reason(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def _closer(response: aiohttp.ClientResponse) -> Any:
    """`close` of an UpstreamReply: the connection goes back to the pool when the answer
    was read to its end, else it is closed (which aborts the upstream's generation)."""

    async def close() -> None:
        if response.content.at_eof():
            response.release()
        else:
            response.close()

    return close


_DONE: dict[str, Any] = {}  # `[DONE]`


def _event_of(line: bytes, where: str) -> dict[str, Any] | None:
    """The JSON of a `data:` line (`_DONE` for `[DONE]`); None for any other line."""
    if not line.startswith(b"data:"):
        return None  # blank separators, comments, `event:` lines
    data = line[5:].strip()
    if data == b"[DONE]":
        return _DONE
    try:
        event = msgspec.json.decode(data)
    except msgspec.DecodeError:
        event = None  # JSON that msgspec refuses (NaN, Infinity) may still be Python's
    try:
        event = json.loads(data) if event is None else event
    except ValueError as exc:
        shown = data[:200].decode("utf-8", "replace")
        raise EngineError(f"{where} sent an event that is not JSON: {shown}") from exc
    return event if isinstance(event, dict) else None


async def _events(
    response: aiohttp.ClientResponse, where: str
) -> AsyncIterator[list[dict[str, Any]]]:
    """The JSON of the `data:` lines, in lists of those that arrived together (one hop
    per network read, not per event); stops at `[DONE]` or the end."""
    pending = b""
    try:
        while True:
            chunk = await response.content.read(_READ_CHUNK)
            pending += chunk if chunk else b"\n"  # the end: the last line is whole
            *lines, pending = pending.split(b"\n")
            batch: list[dict[str, Any]] = []
            for line in lines:
                event = _event_of(line, where)
                if event is _DONE:
                    if batch:
                        yield batch
                    return
                if event is not None:
                    batch.append(event)
            if batch:
                yield batch
            if not chunk:
                return
    except TransportError as exc:
        raise EngineError(f"lost the connection to {where}: {_reason(exc)}") from exc
    finally:
        if response.content.at_eof():
            response.release()
        else:
            response.close()
