"""One OpenAI-compatible server at a base URL: forward a request, read its SSE events.

Shared by the openai engine (remote replicas) and the vllm engine (a local child). A
connection that cannot be made is `Unreachable` (nothing reached the server, so another
replica may take the request); an error status is an `UpstreamError` with the server's
own message; a connection lost mid-answer is an `EngineError`.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx

from backends.base import Endpoint, EngineError, EngineUnavailable, UpstreamError, UpstreamReply

log = logging.getLogger(__name__)


class Unreachable(EngineUnavailable):
    """The server could not be connected to; the request never reached it."""


def new_client(connect_timeout: float, timeout: float) -> httpx.AsyncClient:
    """One connection pool per engine; no limit on connections (the upstream queues)."""
    return httpx.AsyncClient(
        timeout=httpx.Timeout(timeout, connect=connect_timeout),
        limits=httpx.Limits(max_connections=None, max_keepalive_connections=64),
        trust_env=False,
    )


def error_of(status: int, raw: bytes, headers: httpx.Headers) -> UpstreamError:
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

    def __init__(self, base_url: str, client: httpx.AsyncClient, api_key: str | None) -> None:
        self.base_url = base_url.rstrip("/")
        self._client = client
        self._headers = {"authorization": f"Bearer {api_key}"} if api_key else {}

    def __repr__(self) -> str:
        return f"OpenAIServer({self.base_url})"

    async def get(self, path: str, wait: float) -> httpx.Response:
        """GET `path` under the base URL (health checks, /models) waiting at most `wait`
        seconds; errors are httpx's."""
        return await self._client.get(
            f"{self.base_url}/{path}", headers=self._headers, timeout=wait
        )

    async def forward(
        self, endpoint: Endpoint, body: dict[str, Any], *, stream: bool, deployment: str
    ) -> UpstreamReply:
        request = self._client.build_request(
            "POST", f"{self.base_url}/{endpoint}", json=body, headers=self._headers
        )
        try:
            response = await self._client.send(request, stream=True)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise Unreachable(
                f"{self.base_url} is unreachable: {exc or type(exc).__name__}"
            ) from exc
        except httpx.HTTPError as exc:
            raise EngineError(f"{self.base_url} failed: {exc or type(exc).__name__}") from exc
        try:
            if response.status_code >= 400:
                raise error_of(response.status_code, await response.aread(), response.headers)
            if not stream:
                raw = await response.aread()
                await response.aclose()
                try:
                    data = json.loads(raw)
                except ValueError:
                    data = None
                if not isinstance(data, dict):
                    raise EngineError(f"{self.base_url} answered something else than JSON")
                return UpstreamReply(deployment, response.aclose, body=data)
        except httpx.HTTPError as exc:
            await response.aclose()
            raise EngineError(f"{self.base_url} failed: {exc or type(exc).__name__}") from exc
        except BaseException:
            await response.aclose()
            raise
        return UpstreamReply(deployment, response.aclose, events=_events(response, self.base_url))


async def _events(response: httpx.Response, where: str) -> AsyncIterator[dict[str, Any]]:
    """The JSON of each `data:` line, as each arrives; stops at `[DONE]` or the end."""
    try:
        async for line in response.aiter_lines():
            if not line.startswith("data:"):
                continue  # blank separators, comments, `event:` lines
            data = line[5:].strip()
            if data == "[DONE]":
                return
            try:
                event = json.loads(data)
            except ValueError as exc:
                raise EngineError(f"{where} sent an event that is not JSON: {data[:200]}") from exc
            if isinstance(event, dict):
                yield event
    except httpx.HTTPError as exc:
        raise EngineError(f"lost the connection to {where}: {exc or type(exc).__name__}") from exc
    finally:
        await response.aclose()
