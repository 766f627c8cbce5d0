"""Deployments whose replicas cannot start, with scripted engines (AsyncTestClient).

A fake engine only stands in for what a real one cannot be made to do on demand: fail to
start on the second backend, or break in a way no engine error describes. The real
engines' deployments are tested in test_deployments.py.
"""

from __future__ import annotations

import asyncio
import json
import pathlib
import sqlite3
from collections.abc import AsyncIterator
from typing import Any

import pytest
from fake_engine import ScriptedEngine
from litestar.testing import AsyncTestClient

from appliance.app import create_app
from appliance.config import ModelConfig, parse_config_text
from backends.base import Engine, EngineError

ADMIN = {"Authorization": "Bearer unit-admin-key-0123"}
USER = {"Authorization": "Bearer sk-unit-test-key-1"}
CONFIG = """
server: {database: state.db, admin_key: unit-admin-key-0123}
backends: {cpu: {engine: llamacpp}, spare: {engine: llamacpp}}
models:
  - {id: scripted, backend: cpu, source: fake.gguf, context_length: 64}
keys:
  - {name: unit, secret: sk-unit-test-key-1}
"""


class WontStart(ScriptedEngine):
    async def start(self) -> None:
        raise EngineError("out of memory")


def engines(model: ModelConfig, path: Any, slot: int, gpus: Any) -> Engine:
    """Scripted replicas; on backend `spare` they cannot start; `broken` is our own bug."""
    if model.id == "broken":
        raise RuntimeError("a bug in the factory")
    return WontStart(["no"]) if model.backend == "spare" else ScriptedEngine(["ok"])


@pytest.fixture
async def client(tmp_path: pathlib.Path) -> AsyncIterator[AsyncTestClient]:  # type: ignore[type-arg]
    (tmp_path / "fake.gguf").write_bytes(b"GGUF")
    loaded = parse_config_text(CONFIG, "radiance.yaml", tmp_path, {})
    async with AsyncTestClient(app=create_app(loaded, engines=engines)) as test_client:
        yield test_client


async def settled(client: AsyncTestClient, name: str) -> dict[str, Any]:  # type: ignore[type-arg]
    for _ in range(500):
        data: dict[str, Any] = (await client.get(f"/v1/deployments/{name}", headers=ADMIN)).json()[
            "data"
        ]
        if data["status"] in ("ready", "failed"):
            return data
        await asyncio.sleep(0.01)
    raise AssertionError(f"{name} did not settle: {data}")


async def test_a_deployment_whose_replicas_cannot_start_fails_and_the_rest_serve(
    client: AsyncTestClient,  # type: ignore[type-arg]
) -> None:
    body = {"modelId": "scripted", "name": "nowhere", "configuration": {"backend": "spare"}}
    assert (await client.post("/v1/deployments", json=body, headers=ADMIN)).status_code == 202
    failed = await settled(client, "nowhere")
    assert failed["status"] == "failed" and failed["error"] == "out of memory"
    refused = await client.post(
        "/v1/chat/completions",
        json={"model": "nowhere", "messages": [{"role": "user", "content": "hi"}]},
        headers=USER,
    )
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "model_unavailable"
    assert "out of memory" in refused.json()["error"]["message"]
    served = await client.post(
        "/v1/chat/completions",
        json={"model": "scripted", "messages": [{"role": "user", "content": "hi"}]},
        headers=USER,
    )
    assert served.status_code == 200

    # A failed deployment is brought up again by a change that can work.
    change = {"configuration": {"backend": "cpu"}}
    put = await client.put("/v1/deployments/nowhere", json=change, headers=ADMIN)
    assert put.status_code == 202
    assert (await settled(client, "nowhere"))["status"] == "ready"


async def test_a_change_whose_new_replicas_fail_keeps_the_old_ones_serving(
    client: AsyncTestClient,  # type: ignore[type-arg]
    tmp_path: pathlib.Path,
) -> None:
    body = {"modelId": "scripted", "name": "steady", "configuration": {"replicas": 2}}
    await client.post("/v1/deployments", json=body, headers=ADMIN)
    assert (await settled(client, "steady"))["readyReplicas"] == 2
    change = {"configuration": {"backend": "spare"}}
    assert (await client.put("/v1/deployments/steady", json=change, headers=ADMIN)).is_success
    for _ in range(500):
        data = (await client.get("/v1/deployments/steady", headers=ADMIN)).json()["data"]
        if data["error"]:
            break
        await asyncio.sleep(0.01)
    assert data["status"] == "ready" and data["error"] == "update failed: out of memory"
    assert data["readyReplicas"] == 2 and data["configuration"]["backend"] == "cpu"
    # What is stored is what runs, so a restart brings back the working replicas.
    with sqlite3.connect(tmp_path / "state.db") as db:
        [stored] = db.execute("SELECT configuration FROM deployments").fetchone()
    assert json.loads(stored).get("backend") is None  # the model's own, cpu
    reply = await client.post(
        "/v1/chat/completions",
        json={"model": "steady", "messages": [{"role": "user", "content": "hi"}]},
        headers=USER,
    )
    assert reply.status_code == 200 and reply.headers["x-backend"] == "cpu"


async def test_a_fault_of_the_server_fails_the_deployment_with_its_reason(
    client: AsyncTestClient,  # type: ignore[type-arg]
) -> None:
    body = {"modelId": "scripted", "name": "broken"}
    assert (await client.post("/v1/deployments", json=body, headers=ADMIN)).status_code == 202
    failed = await settled(client, "broken")
    assert failed["status"] == "failed"
    assert failed["error"] == "internal error: a bug in the factory"
