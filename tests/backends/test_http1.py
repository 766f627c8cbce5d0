"""The lean HTTP/1.1 client (backends/openai/http1.py) against real loopback servers,
each scripted to answer exactly the bytes a test needs."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import hashlib
import ipaddress
import pathlib
import random
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest

from backends.openai.http1 import ConnectFailed, Pool, ReadTimeout, TransportFailed

HEADERS = {"Authorization": "Bearer k", "Content-Type": "application/json"}


def ok(body: bytes = b"ok", extra: str = "") -> bytes:
    return b"HTTP/1.1 200 OK\r\n%bContent-Length: %d\r\n\r\n%b" % (extra.encode(), len(body), body)


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data)


@dataclass
class Request:
    line: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Conn:
    """One accepted connection, as the scripted server sees it."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    requests: list[Request] = field(default_factory=list)
    ended: asyncio.Event = field(default_factory=asyncio.Event)  # the client closed or reset

    async def request(self) -> Request | None:
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            return None
        line, *fields = head.decode("latin-1").split("\r\n")[:-2]
        headers = dict(f.split(": ", 1) for f in fields)
        body = await self.reader.readexactly(int(headers.get("Content-Length", "0")))
        self.requests.append(Request(line, headers, body))
        return self.requests[-1]

    async def until_end(self) -> None:
        with contextlib.suppress(ConnectionError):
            while await self.reader.read(65536):
                pass
        self.ended.set()

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()


Script = Callable[[Conn], Awaitable[None]]


@dataclass
class Upstream:
    conns: list[Conn] = field(default_factory=list)
    port: int = 0

    @property
    def requests(self) -> list[Request]:
        return [r for c in self.conns for r in c.requests]


Start = Callable[..., Awaitable[tuple[Upstream, Pool]]]


@pytest.fixture
async def start() -> AsyncIterator[Start]:
    """start(script, read_timeout=2.0, tls=None) -> a server running `script` on each
    connection and a Pool for http(s)://127.0.0.1:PORT/v1."""
    servers: list[asyncio.Server] = []
    pools: list[Pool] = []
    tasks: list[asyncio.Task[None]] = []

    async def make(
        script: Script, read_timeout: float = 2.0, tls: ssl.SSLContext | None = None
    ) -> tuple[Upstream, Pool]:
        upstream = Upstream()

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            tasks.append(asyncio.current_task())  # type: ignore[arg-type]
            conn = Conn(reader, writer)
            upstream.conns.append(conn)
            try:
                with contextlib.suppress(asyncio.CancelledError):  # the test's end
                    await script(conn)
            finally:
                writer.close()
                with contextlib.suppress(ConnectionError, ssl.SSLError):
                    await writer.wait_closed()

        server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=tls)
        servers.append(server)
        upstream.port = server.sockets[0].getsockname()[1]
        scheme = "https" if tls else "http"
        pool = Pool(f"{scheme}://127.0.0.1:{upstream.port}/v1", 2.0, read_timeout)
        pools.append(pool)
        return upstream, pool

    yield make
    for pool in pools:
        pool.close()
    for server in servers:
        server.close()
        await server.wait_closed()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def answer_each(conn: Conn) -> None:
    while await conn.request():
        await conn.send(ok(b'{"n": %d}' % len(conn.requests)))


async def test_a_content_length_body_and_the_request_the_server_received(start: Start) -> None:
    upstream, pool = await start(answer_each)
    response = await pool.post(pool.head("chat/completions", HEADERS), b'{"model": "m"}')
    assert (response.status, await response.read(), response.at_eof) == (200, b'{"n": 1}', True)
    [request] = upstream.requests
    assert request.line == "POST /v1/chat/completions HTTP/1.1"
    assert request.headers == {
        "Host": f"127.0.0.1:{upstream.port}",
        **HEADERS,
        "Content-Length": "14",
    }
    assert request.body == b'{"model": "m"}'


async def test_a_chunked_body_comes_piece_by_piece_in_order(start: Start) -> None:
    async def script(conn: Conn) -> None:
        await conn.request()
        await conn.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for piece in (b"alpha", b"beta", b"gamma"):
            await asyncio.sleep(0.03)
            await conn.send(chunk(piece))
        await asyncio.sleep(0.03)
        await conn.send(b"0\r\n\r\n")
        await conn.until_end()

    _, pool = await start(script)
    response = await pool.post(pool.head("x", {}), b"")
    pieces = [await response.chunk() for _ in range(3)]
    assert pieces == [b"alpha", b"beta", b"gamma"]
    assert not response.at_eof
    assert await response.chunk() == b""
    assert response.at_eof
    assert await response.chunk() == b""


async def test_a_body_ended_by_the_close_is_read_whole_and_its_connection_not_reused(
    start: Start,
) -> None:
    async def script(conn: Conn) -> None:
        if len(upstream.conns) > 1:
            await answer_each(conn)
            return
        await conn.request()
        await conn.send(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil ")
        await asyncio.sleep(0.03)
        await conn.send(b"the end")  # and closes

    upstream, pool = await start(script)
    response = await pool.post(pool.head("x", {}), b"1")
    assert await response.read() == b"until the end"
    assert response.at_eof
    response.release()
    response = await pool.post(pool.head("x", {}), b"2")
    assert await response.read() == b'{"n": 1}'
    assert len(upstream.conns) == 2


async def test_keep_alive_reuses_one_connection(start: Start) -> None:
    upstream, pool = await start(answer_each)
    for n in (1, 2, 3):
        response = await pool.post(pool.head("x", {}), b"")
        assert await response.read() == b'{"n": %d}' % n
        response.release()
    assert len(upstream.conns) == 1
    assert len(upstream.requests) == 3


async def test_a_response_released_before_its_end_closes_its_connection(start: Start) -> None:
    async def script(conn: Conn) -> None:
        await conn.request()
        if len(upstream.conns) == 1:
            await conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten..")
            await conn.until_end()
        else:
            await conn.send(ok())
            await conn.until_end()

    upstream, pool = await start(script)
    response = await pool.post(pool.head("x", {}), b"")
    assert await response.chunk() == b"only ten.."
    response.release()
    await asyncio.wait_for(upstream.conns[0].ended.wait(), 2)
    response = await pool.post(pool.head("x", {}), b"")
    assert await response.read() == b"ok"
    assert len(upstream.conns) == 2


async def test_an_answer_with_connection_close_is_not_reused(start: Start) -> None:
    async def script(conn: Conn) -> None:
        await conn.request()
        await conn.send(ok(extra="Connection: close\r\n"))
        await conn.until_end()  # left to the client to close

    upstream, pool = await start(script)
    for _ in (1, 2):
        response = await pool.post(pool.head("x", {}), b"")
        assert await response.read() == b"ok"
        response.release()
    assert len(upstream.conns) == 2
    await asyncio.wait_for(upstream.conns[0].ended.wait(), 2)


async def test_a_pooled_connection_closed_while_idle_is_retried_once_on_a_new_one(
    start: Start,
) -> None:
    upstream, pool = await start(answer_each)
    response = await pool.post(pool.head("x", {}), b"first")
    assert await response.read() == b'{"n": 1}'
    response.release()
    assert len(pool._idle) == 1  # pooled: the next post takes it
    # The server drops the idle connection now, before the client's loop could notice.
    upstream.conns[0].writer.get_extra_info("socket").shutdown(socket.SHUT_RDWR)
    response = await pool.post(pool.head("x", {}), b"second")
    assert (response.status, await response.read()) == (200, b'{"n": 1}')
    assert len(upstream.conns) == 2
    assert [r.body for r in upstream.conns[1].requests] == [b"second"]


async def test_a_read_timeout_raises_and_the_request_is_not_sent_again(start: Start) -> None:
    async def script(conn: Conn) -> None:
        await conn.request()
        await conn.send(ok())  # the first answer; the second request gets none
        await conn.request()
        await conn.until_end()

    upstream, pool = await start(script, read_timeout=0.3)
    response = await pool.post(pool.head("x", {}), b"1")
    assert await response.read() == b"ok"
    response.release()
    with pytest.raises(ReadTimeout):
        await asyncio.wait_for(pool.post(pool.head("x", {}), b"2"), 2)
    assert [r.body for r in upstream.requests] == [b"1", b"2"]
    assert len(upstream.conns) == 1
    await asyncio.wait_for(upstream.conns[0].ended.wait(), 2)  # and that connection closed


async def test_a_refused_connection_raises_connect_failed() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    pool = Pool(f"http://127.0.0.1:{port}/v1", 2.0, 2.0)
    with pytest.raises(ConnectFailed):
        await pool.post(pool.head("x", {}), b"")


async def test_a_connection_lost_mid_body_raises_transport_failed(start: Start) -> None:
    async def script(conn: Conn) -> None:
        await conn.request()
        await conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npart")
        await asyncio.sleep(0.05)

    _, pool = await start(script)
    response = await pool.post(pool.head("x", {}), b"")
    with pytest.raises(TransportFailed) as raised:
        await response.read()
    assert raised.type is TransportFailed  # neither a timeout nor a connect failure


async def test_garbage_instead_of_http_raises_transport_failed(start: Start) -> None:
    async def script(conn: Conn) -> None:
        await conn.request()
        await conn.send(b"SSH-2.0-OpenSSH_9.6\r\n\r\n\x00\xff garbage")
        await conn.until_end()

    _, pool = await start(script)
    with pytest.raises(TransportFailed) as raised:
        await pool.post(pool.head("x", {}), b"")
    assert raised.type is TransportFailed


async def test_a_slow_reader_gets_every_byte_of_a_large_body_with_bounded_buffering(
    start: Start,
) -> None:
    data = random.Random(7).randbytes(8 << 20)

    async def script(conn: Conn) -> None:
        await conn.request()
        await conn.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for at in range(0, len(data), 100_000):
            await conn.send(chunk(data[at : at + 100_000]))
        await conn.send(b"0\r\n\r\n")
        await conn.until_end()

    _, pool = await start(script)
    response = await pool.post(pool.head("x", {}), b"")
    digest, sizes = hashlib.sha256(), []
    while True:
        await asyncio.sleep(0.05)  # the server is far faster than this reader
        piece = await response.chunk()
        if not piece:
            break
        digest.update(piece)
        sizes.append(len(piece))
    assert sum(sizes) == len(data)
    assert digest.digest() == hashlib.sha256(data).digest()
    # Reading paused above 1 MiB: what waited for the reader never came near the whole body.
    assert max(sizes) < 2 << 20


async def test_an_error_status_comes_back_with_its_headers_and_body(start: Start) -> None:
    body = b'{"error": {"message": "slow down"}}'

    async def script(conn: Conn) -> None:
        await conn.request()
        await conn.send(
            b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 7\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%b" % (len(body), body)
        )
        await conn.until_end()

    _, pool = await start(script)
    response = await pool.post(pool.head("x", {}), b"")
    assert response.status == 429
    assert response.headers == {
        "retry-after": "7",
        "content-type": "application/json",
        "content-length": str(len(body)),
    }
    assert await response.read() == body


def self_signed(directory: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
    """A certificate for 127.0.0.1 and its key, made with `cryptography`."""
    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    pem, pkcs8 = serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8
    (directory / "cert.pem").write_bytes(cert.public_bytes(pem))
    (directory / "key.pem").write_bytes(key.private_bytes(pem, pkcs8, serialization.NoEncryption()))
    return directory / "cert.pem", directory / "key.pem"


async def test_https_with_a_trusted_self_signed_certificate(
    start: Start, tmp_path: pathlib.Path
) -> None:
    cert, key = self_signed(tmp_path)
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    upstream, pool = await start(answer_each, tls=server_tls)
    pool._ssl = ssl.create_default_context(cafile=str(cert))
    for n in (1, 2):
        response = await pool.post(pool.head("chat/completions", HEADERS), b"{}")
        assert (response.status, await response.read()) == (200, b'{"n": %d}' % n)
        response.release()
    assert len(upstream.conns) == 1
    assert upstream.requests[0].line == "POST /v1/chat/completions HTTP/1.1"
