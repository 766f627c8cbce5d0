"""The listener's edge: TLS, a key on /metrics, and connections that cannot starve others.

Every test runs a real `radiance up` and talks to it over loopback: the openai SDK and httpx
for requests, plain sockets for the connections that misbehave.
"""

from __future__ import annotations

import json
import pathlib
import resource
import socket
import ssl
import subprocess
import time
from collections.abc import Callable
from typing import Any

import httpx
import openai
import pytest
from conftest import ADMIN, ALICE, RunningServer

from appliance.config import ConfigError, parse_config_text

pytestmark = pytest.mark.slow
HELLO = [{"role": "user", "content": "Hello"}]
# How long a test waits for the server to close a connection; far above any timeout set.
CLOSE_BOUND = 15.0
METRICS_KEY = "metrics-reader-key-0123456789"


@pytest.fixture
def serve(launch: Callable[..., RunningServer]) -> Callable[..., RunningServer]:
    """Start a server with extra `server:` fields, in `folder` if given."""

    def run(folder: pathlib.Path | None = None, **server: Any) -> RunningServer:
        return launch(folder=folder, server=server)

    return run


def chat(base_url: str, http_client: httpx.Client | None = None) -> str:
    with openai.OpenAI(
        base_url=base_url, api_key=ALICE, max_retries=0, http_client=http_client
    ) as client:
        reply = client.chat.completions.create(model="tiny", messages=HELLO, max_tokens=3)
    assert reply.choices[0].finish_reason in ("stop", "length")
    return reply.model


def port_of(running: RunningServer) -> int:
    return int(running.root_url.rsplit(":", 1)[1])


def closed_by_server(sock: socket.socket, drip: bytes = b"") -> bool:
    """Wait (CLOSE_BOUND at most) for the server to close `sock`; send `drip` a byte at a
    time every 0.3 s meanwhile. Whether it was closed before the drip ran out."""
    deadline = time.monotonic() + CLOSE_BOUND
    sock.settimeout(0.3)
    sent = 0
    while time.monotonic() < deadline:
        try:
            if sent < len(drip):
                sock.sendall(drip[sent : sent + 1])
                sent += 1
            if sock.recv(4096) == b"":
                return sent < len(drip) or not drip
        except TimeoutError:
            continue
        except (ConnectionResetError, BrokenPipeError):
            return True
    return False


def open_file_room(count: int) -> None:
    """Raise this test process's soft open-file limit so `count` sockets fit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < count + 256:
        if hard != resource.RLIM_INFINITY and hard < count + 256:
            pytest.skip(f"the hard open-file limit ({hard}) is below {count + 256}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (count + 256, hard))


# --- TLS --------------------------------------------------------------------------------


def self_signed(folder: pathlib.Path) -> pathlib.Path:
    """A certificate for 127.0.0.1 (cert.pem) and its key (key.pem) in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    command = "openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=127.0.0.1"
    command += " -addext subjectAltName=IP:127.0.0.1"
    files = ["-keyout", str(folder / "key.pem"), "-out", str(folder / "cert.pem")]
    subprocess.run([*command.split(), *files], check=True, capture_output=True)
    return folder / "cert.pem"


def test_tls_serves_https_with_the_configured_certificate(
    serve: Callable[..., RunningServer], tmp_path: pathlib.Path
) -> None:
    folder = tmp_path / "tls-server"
    cert = self_signed(folder)
    running = serve(folder, tls={"cert": "cert.pem", "key": "key.pem"})  # relative to the file
    assert running.base_url.startswith("https://127.0.0.1:")

    trusting = ssl.create_default_context(cafile=str(cert))
    with httpx.Client(verify=trusting) as http:
        assert chat(running.base_url, http) == "tiny"
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"{running.base_url}/models")  # the system's roots do not know it

    plain = f"http://127.0.0.1:{port_of(running)}/v1/models"
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        httpx.get(plain, headers={"Authorization": f"Bearer {ALICE}"})


def test_tls_files_are_checked_with_file_and_line(tmp_path: pathlib.Path) -> None:
    base = "server:\n  tls:\n    cert: cert.pem\n    key: missing.pem\n"
    self_signed(tmp_path)
    with pytest.raises(ConfigError) as info:
        parse_config_text(base, "radiance.yaml", tmp_path, {})
    [problem] = info.value.problems
    assert problem.render() == (
        f"radiance.yaml:4:10: $.server.tls.key: `{tmp_path / 'missing.pem'}` does not exist"
    )

    (tmp_path / "other.pem").write_text((tmp_path / "cert.pem").read_text())
    swapped = "server:\n  tls: {cert: cert.pem, key: other.pem}\n"
    with pytest.raises(ConfigError) as info:
        parse_config_text(swapped, "radiance.yaml", tmp_path, {})
    [problem] = info.value.problems
    assert problem.path == "$.server.tls" and problem.line == 2
    assert "cannot be used" in problem.message


# --- /metrics ---------------------------------------------------------------------------


def metrics(running: RunningServer, key: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.get(f"{running.root_url}/metrics", headers=headers)


def test_metrics_need_the_admin_key(server: RunningServer) -> None:
    for key in (None, "not-a-key-at-all-000000", ALICE):
        refused = metrics(server, key)
        assert refused.status_code == 401, key
        error = refused.json()["error"]
        assert error["type"] == "authentication_error"
        assert error["code"] == "invalid_api_key"
        assert ("metrics_key" if key else "Authorization: Bearer") in error["message"]
        assert "radiance:" not in refused.text
    allowed = metrics(server, ADMIN)
    assert allowed.status_code == 200
    assert allowed.headers["content-type"].startswith("text/plain")
    assert "radiance:model_ready" in allowed.text


def test_a_metrics_key_from_the_environment_reads_metrics_only(
    serve: Callable[..., RunningServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RADIANCE_METRICS_KEY", METRICS_KEY)
    running = serve(metrics_key="${RADIANCE_METRICS_KEY}")
    assert metrics(running, METRICS_KEY).status_code == 200
    assert metrics(running, ADMIN).status_code == 200
    assert metrics(running, ALICE).status_code == 401
    assert metrics(running, METRICS_KEY[:-1]).status_code == 401
    models = httpx.get(
        f"{running.base_url}/models", headers={"Authorization": f"Bearer {METRICS_KEY}"}
    )
    assert models.status_code == 401  # not an API key
    assert METRICS_KEY not in running.log()


def test_metrics_key_is_optional_and_at_least_16_characters(tmp_path: pathlib.Path) -> None:
    text = "server:\n  metrics_key: ${RADIANCE_METRICS_KEY:-}\n"
    loaded = parse_config_text(text, "radiance.yaml", tmp_path, {})
    assert loaded.config.server.metrics_key is None  # unset: only the admin key reads
    with pytest.raises(ConfigError) as info:
        parse_config_text(text, "radiance.yaml", tmp_path, {"RADIANCE_METRICS_KEY": "short"})
    [problem] = info.value.problems
    assert problem.path == "$.server.metrics_key" and problem.line == 2
    assert "length >= 16" in problem.message and "short" not in problem.render()


# --- connections ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [("header_timeout_seconds", 0), ("keep_alive_seconds", 0), ("max_connections", 0)],
)
def test_connection_limits_must_be_positive(tmp_path: pathlib.Path, field: str, value: int) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config_text(f"server:\n  {field}: {value}\n", "radiance.yaml", tmp_path, {})
    [problem] = info.value.problems
    assert problem.path == f"$.server.{field}" and problem.line == 2


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-Odd: a\rb\r\n\r\n",
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
        b"\x00\xff NOT HTTP\r\n\r\n",
    ],
    ids=["CR in a header", "negative length", "not HTTP"],
)
def test_malformed_http_is_a_400_in_the_api_envelope(
    server: RunningServer, request_bytes: bytes
) -> None:
    with socket.create_connection(("127.0.0.1", port_of(server))) as sock:
        sock.sendall(request_bytes)
        sock.settimeout(CLOSE_BOUND)
        answer = b""
        while chunk := sock.recv(4096):  # the server closes the connection
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ") and b"application/json" in head
    error = json.loads(body)["error"]
    assert error["code"] == "invalid_http" and error["type"] == "invalid_request_error"
    assert chat(server.base_url) == "tiny"


def test_a_thousand_idle_connections_do_not_block_a_request(
    serve: Callable[..., RunningServer],
) -> None:
    count = 1000
    open_file_room(count)
    # A long head deadline keeps them all open while the request runs.
    running = serve(header_timeout_seconds=600)
    port = port_of(running)
    idle: list[socket.socket] = []
    try:
        for number in range(count):
            sock = socket.create_connection(("127.0.0.1", port))
            if number % 4 == 0:
                sock.sendall(b"GET /v1/models HTTP/1.1\r\nHost: loc")  # a head never finished
            idle.append(sock)
        assert chat(running.base_url) == "tiny"
        for sock in idle[:: count // 10]:  # still open: nothing to read, no EOF
            sock.setblocking(False)
            with pytest.raises(BlockingIOError):
                sock.recv(1)
    finally:
        for sock in idle:
            sock.close()


def test_slow_and_silent_connections_are_closed_after_the_head_timeout(
    serve: Callable[..., RunningServer],
) -> None:
    running = serve(header_timeout_seconds=1, keep_alive_seconds=600)
    address = ("127.0.0.1", port_of(running))
    head = b"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: " + b"a" * 200 + b"\r\n\r\n"

    with socket.create_connection(address) as silent:
        assert closed_by_server(silent)
    with socket.create_connection(address) as slow:
        assert closed_by_server(slow, drip=head)  # before the head was complete

    # The deadline starts again after a response, even with a long keep-alive.
    with socket.create_connection(address) as reused:
        reused.sendall(head)
        reused.settimeout(CLOSE_BOUND)
        assert reused.recv(4096).startswith(b"HTTP/1.1 200 ")  # the public model list
        assert closed_by_server(reused)

    assert chat(running.base_url) == "tiny"


def test_a_request_whose_head_arrived_may_take_longer_than_the_head_timeout(
    serve: Callable[..., RunningServer],
) -> None:
    running = serve(header_timeout_seconds=1)
    body = json.dumps({"model": "tiny", "messages": HELLO, "max_tokens": 2}).encode()
    head = (
        "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {ALICE}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", port_of(running))) as sock:
        sock.sendall(head)
        time.sleep(2.5)  # past the head deadline: only the head counts
        sock.sendall(body)
        sock.settimeout(CLOSE_BOUND * 4)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 200 "), reply[:200]
    assert b'"chat.completion"' in reply


def test_connections_beyond_max_connections_get_503(
    serve: Callable[..., RunningServer],
) -> None:
    running = serve(max_connections=3, header_timeout_seconds=600)
    address = ("127.0.0.1", port_of(running))
    with socket.create_connection(address) as first, socket.create_connection(address) as second:
        first.sendall(b"GET /v1/mo")
        second.sendall(b"GET /v1/mo")
        with socket.create_connection(address) as third:
            third.sendall(b"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            third.settimeout(CLOSE_BOUND)
            assert third.recv(4096).startswith(b"HTTP/1.1 503 ")


def test_radiance_up_raises_its_open_file_limit(
    serve: Callable[..., RunningServer],
) -> None:
    limits = pathlib.Path("/proc/self/limits")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if not limits.exists() or hard == resource.RLIM_INFINITY or hard <= 512:
        pytest.skip("needs Linux's /proc and a finite hard open-file limit above 512")
    resource.setrlimit(resource.RLIMIT_NOFILE, (512, hard))  # the server inherits this
    try:
        running = serve()
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    text = pathlib.Path(f"/proc/{running.process.pid}/limits").read_text()
    [line] = [row for row in text.splitlines() if row.startswith("Max open files")]
    assert line.split()[3:5] == [str(hard), str(hard)]
