"""A webhook receiver on a loopback port that records what it gets and checks signatures
the way a receiver should (its own HMAC code, not the server's)."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import http.server
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes

    @property
    def event(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed

    def signed_by(self, secret: str, tolerance: float = 300) -> bool:
        """Verify `X-Radiance-Signature: t=...,v1=...` over the raw body, and its age."""
        parts = dict(p.split("=", 1) for p in self.headers["x-radiance-signature"].split(","))
        timestamp = int(parts["t"])
        expected = hmac.new(
            secret.encode(), f"{timestamp}.".encode() + self.body, hashlib.sha256
        ).hexdigest()
        fresh = abs(time.time() - timestamp) <= tolerance
        return fresh and hmac.compare_digest(expected, parts["v1"])


@dataclass
class Receiver:
    fail_first: int = 0  # answer 500 to this many requests first
    down: bool = False  # answer 503 while set
    received: list[Received] = field(default_factory=list)
    url: str = ""

    def of_type(self, event: str) -> list[Received]:
        return [r for r in self.received if r.event["type"] == event]


def _handler(receiver: Receiver) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            headers = {name.lower(): value for name, value in self.headers.items()}
            receiver.received.append(Received(headers, body))
            if receiver.down:
                status = 503
            elif receiver.fail_first > 0:
                receiver.fail_first -= 1
                status = 500
            else:
                status = 200
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

    return Handler


@contextlib.contextmanager
def serve_receiver(receiver: Receiver) -> Iterator[Receiver]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(receiver))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
