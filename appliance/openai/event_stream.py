"""A streamed answer's HTTP response, which closes its events however it ends.

The client went away, sending failed, or the response never started: closing the events
settles the request (`SettledStream.aclose`), once.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from litestar.response import Stream
from litestar.response.base import ASGIResponse
from litestar.types import Receive, Scope, Send


class EventStream(Stream):
    """A streamed answer whose events are closed however the response ends: the client
    went away, sending failed, or the response never started; closing settles the
    request (`SettledStream.aclose`)."""

    def to_asgi_response(self, *args: Any, **kwargs: Any) -> ASGIResponse:
        response = super().to_asgi_response(*args, **kwargs)
        if isinstance(self.iterator, Settling):
            return _ClosingResponse(response, self.iterator)
        return response


@runtime_checkable
class Settling(Protocol):
    """Events whose closing settles their request: a `SettledStream`, or events made
    from one."""

    async def aclose(self) -> None: ...


class _ClosingResponse(ASGIResponse):
    def __init__(self, response: ASGIResponse, events: Settling) -> None:
        super().__init__()
        self._response = response
        self._events = events

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self._response(scope, receive, send)
        finally:
            await self._events.aclose()  # shielded
