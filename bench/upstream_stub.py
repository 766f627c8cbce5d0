"""A minimal OpenAI-compatible upstream for gateway benchmarks: answers at once.

``POST /v1/chat/completions`` answers a fixed 16-token completion (or, with
``"stream": true``, 16 content chunks, a usage chunk and ``[DONE]``); ``GET /v1/models``
lists the model. It speaks HTTP/1.1 keep-alive on a bare asyncio protocol (on uvloop when
it is installed) so that it costs a small fraction of what any gateway in front of it costs.

    python bench/upstream_stub.py PORT
"""

from __future__ import annotations

import asyncio
import sys
import time

import msgspec

MODEL = "stub"
TOKENS = 16


def _completion() -> bytes:
    return msgspec.json.encode(
        {
            "id": "chatcmpl-stub",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": MODEL,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": " x" * TOKENS},
                    "finish_reason": "length",
                }
            ],
            "usage": {"prompt_tokens": 9, "completion_tokens": TOKENS, "total_tokens": 9 + TOKENS},
        }
    )


def _stream() -> bytes:
    def chunk(delta: dict[str, object], finish: str | None, usage: object = None) -> bytes:
        body = {
            "id": "chatcmpl-stub",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": MODEL,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]
            if usage is None
            else [],
            "usage": usage,
        }
        return b"data: " + msgspec.json.encode(body) + b"\n\n"

    events = [chunk({"role": "assistant", "content": ""}, None)]
    events += [chunk({"content": " x"}, None) for _ in range(TOKENS - 1)]
    events.append(chunk({"content": " x"}, "length"))
    usage = {"prompt_tokens": 9, "completion_tokens": TOKENS, "total_tokens": 9 + TOKENS}
    events.append(chunk({}, None, usage))
    events.append(b"data: [DONE]\n\n")
    return b"".join(events)


def _response(status: str, content_type: str, body: bytes) -> bytes:
    head = (
        f"HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


COMPLETION = _response("200 OK", "application/json", _completion())
STREAM = _response("200 OK", "text/event-stream", _stream())
MODELS = _response(
    "200 OK",
    "application/json",
    msgspec.json.encode({"object": "list", "data": [{"id": MODEL, "object": "model"}]}),
)
NOT_FOUND = _response("404 Not Found", "application/json", b'{"error":{"message":"no"}}')


class Stub(asyncio.Protocol):
    def __init__(self) -> None:
        self._buffer = b""
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # uvloop's is no subclass

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while True:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self._buffer[:end].decode("latin-1")
            length = 0
            for line in head.split("\r\n")[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            if len(self._buffer) < end + 4 + length:
                return
            body = self._buffer[end + 4 : end + 4 + length]
            self._buffer = self._buffer[end + 4 + length :]
            self._answer(head.split(" ", 2)[:2], body)

    def _answer(self, request_line: list[str], body: bytes) -> None:
        assert self._transport is not None
        method, path = request_line
        if method == "GET" and path.endswith("/models"):
            self._transport.write(MODELS)
        elif method == "POST" and path.endswith("/chat/completions"):
            streamed = b'"stream":true' in body.replace(b" ", b"")
            self._transport.write(STREAM if streamed else COMPLETION)
        else:
            self._transport.write(NOT_FOUND)


async def serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Stub, "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


def main() -> None:
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(int(sys.argv[1])))
    else:
        uvloop.run(serve(int(sys.argv[1])))


if __name__ == "__main__":
    main()
