"""Malformed uploads and batch requests: each is a 4xx in OpenAI's envelope naming the
parameter, and the server lives on (httpx against a real `radiance up`)."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from conftest import ALICE, RunningServer

AS_ALICE = {"Authorization": f"Bearer {ALICE}"}


def error_of(reply: httpx.Response) -> dict[str, Any]:
    body: dict[str, Any] = reply.json()["error"]
    assert set(body) == {"message", "type", "param", "code"}
    return body


@pytest.mark.parametrize(
    ("headers", "content", "param"),
    [
        ({"content-type": "application/json"}, b'{"purpose": "batch"}', "file"),
        ({"content-type": "multipart/form-data"}, b"no boundary", "file"),
        ({"content-type": "multipart/form-data; boundary=xyz"}, b"garbage", "file"),
        (
            {"content-type": "multipart/form-data; boundary=xyz"},
            b'--xyz\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nbatch\r\n--xyz--\r\n',
            "file",
        ),
        (
            {"content-type": "multipart/form-data; boundary=xyz"},
            b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n\r\n{}'
            b'\r\n--xyz\r\nContent-Disposition: form-data; name="file"; filename="b"\r\n\r\n{}'
            b'\r\n--xyz\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nbatch'
            b"\r\n--xyz--\r\n",
            "file",
        ),
    ],
)
def test_bad_uploads_are_400s(
    server: RunningServer, headers: dict[str, str], content: bytes, param: str
) -> None:
    reply = httpx.post(f"{server.base_url}/files", headers={**AS_ALICE, **headers}, content=content)
    assert reply.status_code == 400, reply.text
    assert error_of(reply)["param"] == param


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ([], None),
        ({}, "input_file_id"),
        (
            {"input_file_id": 5, "endpoint": "/v1/completions", "completion_window": "24h"},
            "input_file_id",
        ),
        (
            {"input_file_id": "f", "endpoint": "/v1/completions", "completion_window": "1h"},
            "completion_window",
        ),
        (
            {
                "input_file_id": "f",
                "endpoint": "/v1/completions",
                "completion_window": "24h",
                "metadata": {f"k{n}": "v" for n in range(17)},
            },
            "metadata",
        ),
    ],
)
def test_bad_batch_requests_are_400s(server: RunningServer, body: Any, param: str | None) -> None:
    reply = httpx.post(f"{server.base_url}/batches", headers=AS_ALICE, json=body)
    assert reply.status_code == 400, reply.text
    assert error_of(reply)["param"] == param


@pytest.mark.parametrize(
    "path",
    [
        "/batches?limit=0",
        "/batches?limit=101",
        "/files?limit=0",
        "/files?order=sideways",
        "/files?purpose=nonsense",
    ],
)
def test_bad_listing_parameters_are_400s(server: RunningServer, path: str) -> None:
    reply = httpx.get(f"{server.base_url}{path}", headers=AS_ALICE)
    assert reply.status_code == 400, reply.text


@pytest.mark.parametrize(
    "file_id", ["..%2F..%2Fradiance.db", "%2e%2e", "file-" + "x" * 5000, "%00"]
)
def test_odd_file_ids_are_404s(server: RunningServer, file_id: str) -> None:
    for suffix in ("", "/content"):
        reply = httpx.get(f"{server.base_url}/files/{file_id}{suffix}", headers=AS_ALICE)
        assert reply.status_code in (404, 400), reply.text
    reply = httpx.get(f"{server.base_url}/batches/{file_id}", headers=AS_ALICE)
    assert reply.status_code in (404, 400)
    assert server.process.poll() is None


def test_a_file_of_deep_json_lines_fails_only_those_lines(server: RunningServer) -> None:
    deep = "[" * 100_000 + "]" * 100_000
    data = (deep + "\n").encode()
    upload = httpx.post(
        f"{server.base_url}/files",
        headers=AS_ALICE,
        files={"file": ("deep.jsonl", data)},
        data={"purpose": "batch"},
    )
    assert upload.status_code == 200, upload.text
    created = httpx.post(
        f"{server.base_url}/batches",
        headers=AS_ALICE,
        json={
            "input_file_id": upload.json()["id"],
            "endpoint": "/v1/completions",
            "completion_window": "24h",
        },
    ).json()
    deadline = time.monotonic() + 30
    while (
        batch := httpx.get(f"{server.base_url}/batches/{created['id']}", headers=AS_ALICE).json()
    )["status"] not in ("completed", "failed"):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert batch["status"] == "completed"
    assert batch["request_counts"] == {"total": 1, "completed": 0, "failed": 1}
