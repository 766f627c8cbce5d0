"""What one connection to the listener may cost: a deadline on the request head, and room
for thousands of sockets.

uvicorn keeps a connection open for as long as the client likes until a request head
arrives: a client that connects and sends nothing, or sends a header byte now and then
(slowloris), holds a socket forever. `head_timeout_protocol` gives each connection
`seconds` to deliver a whole request head, counted from the connect or from the end of the
previous response; a connection that misses it is closed. Partial data does not restart
the count. Once the head is parsed the request runs as long as it needs.

The protocol is uvicorn's httptools one (llhttp, the parser Node.js uses, in C) rather
than the pure-Python h11: it parses a request in a few microseconds instead of tens.
"""

from __future__ import annotations

import asyncio
import logging
import resource

from msgspec.json import encode
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from appliance.errors import InvalidRequest, envelope

log = logging.getLogger(__name__)


class HeadTimeoutProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a deadline on each request head."""

    head_timeout: float = 10.0
    _head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._await_head()

    def on_headers_complete(self) -> None:
        self._cancel_head_timer()  # before the request starts: it may answer at once
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        # A pipelined request already parsed starts now; it owes no head.
        owes_head = not self.pipeline
        super().on_response_complete()
        if owes_head:
            self._await_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        """A request the parser refuses (a control character in a header, a bad length,
        not HTTP): the API's error envelope, then the connection closes."""
        body = encode(envelope(InvalidRequest(f"{msg} (malformed HTTP)", code="invalid_http")))
        head = (
            b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n"
        )
        self.transport.write(head + body)
        self.transport.close()

    def _await_head(self) -> None:
        if self._head_timer is None and not self.transport.is_closing():
            self._head_timer = self.loop.call_later(self.head_timeout, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():
            log.debug("closing a connection that sent no request head in %.1f s", self.head_timeout)
            self.transport.close()


def head_timeout_protocol(seconds: float) -> type[HeadTimeoutProtocol]:
    """The protocol class to hand uvicorn (`http=`), with a head deadline of `seconds`."""

    class Protocol(HeadTimeoutProtocol):
        head_timeout = seconds

    return Protocol


def raise_open_file_limit() -> int:
    """Raise this process's soft limit on open files to the hard limit; the new soft limit.

    Every connection is a file descriptor, and the usual soft limit (1024) is far below
    what one server can hold.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # An unlimited hard limit cannot be a soft limit everywhere (macOS); 1 Mi fds is plenty.
    target = 1 << 20 if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as error:
            log.warning("could not raise the open-file limit from %d: %s", soft, error)
            return soft
        return target
    return soft
