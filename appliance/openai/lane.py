"""The hot inference endpoints served straight over ASGI.

Chat, text completions and embeddings are what a gateway serves thousands of times a
second. Litestar still routes them and documents them (their handlers stay in
`routes.py`), but each is answered by this route middleware, which never calls the
handler: it reads the body, authenticates, runs `infer` and sends the reply itself. That
spares a Litestar request, a signature model, a response object and its header encoding
per request, about a tenth of a proxied request's CPU. What the client sees is the same:
the same envelopes, headers and streams, and a body over `server.max_body_bytes` is a 413.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from typing import Any

import anyio
import msgspec
from litestar import Litestar
from litestar.types import ASGIApp, Receive, Scope, Send

from appliance.errors import ApiError, PayloadTooLarge
from appliance.openai.inference import BodyCut, Reply, Serve, error_reply, infer, inference_of
from appliance.runtime import Runtime

_JSON = (b"content-type", b"application/json")
_SSE = (b"content-type", b"text/event-stream; charset=utf-8")


class Lane:
    """The ASGI app of one endpoint: its requests are `endpoint`, bodies of `kind` served
    by `serve`. Litestar reaches it as the route's middleware (`middleware`); the server
    also calls it straight for the route's paths, before Litestar's own layers."""

    def __init__(self, endpoint: str, kind: type[msgspec.Struct], serve: Serve[Any]) -> None:
        self.endpoint, self.kind, self.serve = endpoint, kind, serve

    def middleware(self, app: ASGIApp) -> ASGIApp:
        """As a route middleware: `app`, the route's handler, is never called."""
        return self

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        litestar: Litestar = scope["litestar_app"]
        runtime: Runtime = litestar.state.runtime
        try:
            inference = inference_of(runtime, _authorization(scope))
        except ApiError as exc:
            await _send_whole(send, error_reply(exc))
            return
        limit = litestar.request_max_body_size
        limit = limit if isinstance(limit, int) else sys.maxsize

        async def read_body() -> bytes:
            return await _body(scope, receive, limit)

        reply = await infer(
            inference, scope, receive, read_body, self.endpoint, self.kind, self.serve
        )
        if reply.events is None:
            await _send_whole(send, reply)
        else:
            await _send_stream(send, receive, reply, reply.events)


def _authorization(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            return value.decode("latin-1")
    return None


async def _body(scope: Scope, receive: Receive, limit: int) -> bytes:
    """The request's body, or a 413 as soon as it is over `limit` bytes (announced or
    received)."""
    for name, value in scope["headers"]:
        if name == b"content-length" and value.isdigit() and int(value) > limit:
            raise PayloadTooLarge("Request Entity Too Large", code="request_too_large")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise BodyCut
        chunk: bytes = message.get("body", b"")  # type: ignore[assignment]
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge("Request Entity Too Large", code="request_too_large")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _head(reply: Reply, content_type: tuple[bytes, bytes]) -> list[tuple[bytes, bytes]]:
    headers = [content_type]
    headers += [(k.encode("latin-1"), v.encode("latin-1")) for k, v in reply.headers.items()]
    return headers


async def _send_whole(send: Send, reply: Reply) -> None:
    headers = _head(reply, _JSON)
    headers.append((b"content-length", b"%d" % len(reply.body)))
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    await send({"type": "http.response.body", "body": reply.body, "more_body": False})


async def _send_stream(
    send: Send, receive: Receive, reply: Reply, events: AsyncIterator[bytes]
) -> None:
    """Send the events as they come until they end or the client goes away; then close
    them, which settles the request (cancelled, if it had not ended)."""
    try:
        with anyio.CancelScope() as scope:
            watcher = asyncio.ensure_future(_hang_up(receive, scope))
            try:
                await send(
                    {
                        "type": "http.response.start",
                        "status": reply.status,
                        "headers": _head(reply, _SSE),
                    }
                )
                async for event in events:
                    await send({"type": "http.response.body", "body": event, "more_body": True})
                await send({"type": "http.response.body", "body": b"", "more_body": False})
            finally:
                watcher.cancel()
    finally:
        closer = getattr(events, "aclose", None)
        if closer is not None:
            await closer()


async def _hang_up(receive: Receive, scope: anyio.CancelScope) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    scope.cancel()
