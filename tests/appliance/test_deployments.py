"""Deployments through a real `radiance up`: the management API, replicas, scaling, deletes."""

from __future__ import annotations

import asyncio
import pathlib
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openai
import pytest
from conftest import ADMIN, ALICE, RunningServer, start_server
from webhook_receiver import Receiver, serve_receiver

pytestmark = pytest.mark.slow
AS_ADMIN = {"Authorization": f"Bearer {ADMIN}"}
HELLO = [{"role": "user", "content": "Hello there"}]
Launch = Callable[..., RunningServer]


def api(server: RunningServer, method: str, path: str, **options: Any) -> httpx.Response:
    return httpx.request(
        method, f"{server.base_url}{path}", headers=AS_ADMIN, timeout=30, **options
    )


def deploy(server: RunningServer, body: dict[str, Any]) -> dict[str, Any]:
    reply = api(server, "POST", "/deployments", json=body)
    assert reply.status_code == 202, reply.text
    data: dict[str, Any] = reply.json()["data"]
    return data


def wait_for(
    server: RunningServer, name: str, check: Callable[[dict[str, Any]], bool], within: float = 60
) -> dict[str, Any]:
    """The deployment once `check` holds for it (failing the test after `within` s)."""
    deadline = time.monotonic() + within
    while True:
        reply = api(server, "GET", f"/deployments/{name}")
        data: dict[str, Any] = reply.json().get("data") or {}
        if reply.status_code == 200 and check(data):
            return data
        assert time.monotonic() < deadline, f"timed out; last: {reply.text}"
        time.sleep(0.05)


def ready(count: int = 1) -> Callable[[dict[str, Any]], bool]:
    def check(data: dict[str, Any]) -> bool:
        return data["status"] == "ready" and data["readyReplicas"] == count

    return check


_CLIENTS: list[openai.OpenAI] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while _CLIENTS:
        _CLIENTS.pop().close()


def sdk(server: RunningServer, base: str | None = None) -> openai.OpenAI:
    """An SDK client as a user makes one (closed after the test)."""
    client = openai.OpenAI(base_url=base or server.base_url, api_key=ALICE, max_retries=0)
    _CLIENTS.append(client)
    return client


def test_declared_models_are_deployments_that_only_radiance_yaml_changes(launch: Launch) -> None:
    server = launch()
    listing = api(server, "GET", "/deployments", params={"limit": 2}).json()
    assert listing["pagination"] == {"total": 3, "limit": 2, "offset": 0, "hasMore": True}
    first = listing["data"][0]
    assert (first["id"], first["modelId"], first["declared"], first["status"]) == (
        "tiny",
        "tiny",
        True,
        "ready",
    )
    assert first["configuration"]["backend"] == "cpu" and first["readyReplicas"] == 1
    for method, body in (("PUT", {"configuration": {"replicas": 2}}), ("DELETE", None)):
        reply = api(server, method, "/deployments/tiny", json=body)
        assert reply.status_code == 409
        assert reply.json()["code"] == "DEPLOYMENT_DECLARED_IN_CONFIG"
    assert api(server, "GET", "/deployments/nope").json()["code"] == "DEPLOYMENT_NOT_FOUND"
    as_user = httpx.get(
        f"{server.base_url}/deployments", headers={"Authorization": f"Bearer {ALICE}"}
    )
    assert as_user.status_code == 403 and as_user.json()["code"] == "FORBIDDEN"


def test_an_api_deployment_serves_on_its_replicas_and_comes_back_after_a_restart(
    launch: Launch,
) -> None:
    server = launch()
    with serve_receiver(Receiver()) as receiver:
        hook = api(
            server,
            "POST",
            "/webhooks",
            json={"url": receiver.url, "events": ["deployment.status_changed"]},
        ).json()["data"]
        created = deploy(
            server,
            {"modelId": "tiny", "name": "tiny-pair", "configuration": {"replicas": 2}},
        )
        assert created["status"] == "pending" and created["declared"] is False
        done = wait_for(server, "tiny-pair", ready(2))
        assert [r["id"] for r in done["replicas"]] == ["tiny-pair-0", "tiny-pair-1"]
        assert done["configuration"]["backend"] == "cpu"

        # Chat through the SDK on both replicas; the model list shows the deployment.
        client = sdk(server)
        listed = {m.id: m for m in client.models.list()}
        assert listed["tiny-pair"].parent == "tiny"  # type: ignore[attr-defined]
        assert listed["tiny-pair"].pricing == listed["tiny"].pricing  # type: ignore[attr-defined]
        replicas = set()
        for _ in range(4):
            raw = client.chat.completions.with_raw_response.create(
                model="tiny-pair", messages=HELLO, max_tokens=4
            )
            assert raw.headers["x-deployment-id"] == "tiny-pair"
            replicas.add(raw.headers["x-replica-id"])
            assert raw.parse().model == "tiny-pair"
        assert replicas == {"tiny-pair-0", "tiny-pair-1"}

        # The seed's inference path: the SDK with base_url on the deployment.
        on_deployment = sdk(server, f"{server.base_url}/models/tiny-pair")
        raw_completion = on_deployment.completions.with_raw_response.create(
            model="tiny-pair", prompt="Once upon a time", max_tokens=5, temperature=0
        )
        completion = raw_completion.parse()
        assert raw_completion.headers["x-deployment-id"] == "tiny-pair"
        assert completion.object == "text_completion" and completion.usage is not None
        assert 1 <= completion.usage.completion_tokens <= 5  # greedy: never ends at once
        plain = httpx.post(
            f"{server.base_url}/models/tiny-pair/completions",
            json={"prompt": "Hi", "max_tokens": 2},
            headers={"Authorization": f"Bearer {ALICE}"},
        )
        assert plain.status_code == 200 and plain.json()["model"] == "tiny-pair"
        other = httpx.post(
            f"{server.base_url}/models/tiny-pair/completions",
            json={"model": "endless", "prompt": "Hi", "max_tokens": 2},
            headers={"Authorization": f"Bearer {ALICE}"},
        )
        assert other.status_code == 400 and other.json()["error"]["param"] == "model"

        # Webhook deliveries, signed: pending -> loading -> ready.
        def changes() -> list[tuple[str, str]]:
            return [
                (r.event["data"]["previous"], r.event["data"]["status"])
                for r in receiver.of_type("deployment.status_changed")
                if r.event["data"]["deployment"]["id"] == "tiny-pair"
            ]

        deadline = time.monotonic() + 30
        while len(changes()) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        # Delivered at least once, not in order.
        assert sorted(set(changes())) == [("loading", "ready"), ("pending", "loading")]
        assert all(r.signed_by(hook["secret"]) for r in receiver.received)

    # Billed under the deployment's name at the model's prices.
    server.stop()
    with sqlite3.connect(server.database) as db:
        rows = db.execute(
            "SELECT COUNT(*), SUM(completion_tokens), MIN(prompt_price) FROM requests "
            "WHERE model = 'tiny-pair' AND status = 'ok'"
        ).fetchone()
    assert rows[0] == 6 and rows[1] >= 5 and rows[2] == "0.10"

    again = start_server(server.folder, server.folder.joinpath("radiance.yaml").read_text())
    try:
        back = wait_for(again, "tiny-pair", ready(2))
        assert back["declared"] is False and back["createdAt"] == created["createdAt"]
        reply = sdk(again).chat.completions.create(model="tiny-pair", messages=HELLO, max_tokens=3)
        assert reply.usage is not None and 1 <= reply.usage.completion_tokens <= 3
        assert "tiny-pair" in again.log()
    finally:
        again.stop()


def test_bad_deployment_requests_are_refused_and_nothing_is_stored(launch: Launch) -> None:
    server = launch()
    cases: list[tuple[Any, int, str, str | None]] = [
        ({"modelId": "nope", "name": "x"}, 400, "VALIDATION_ERROR", "modelId"),
        (
            {"modelId": "tiny", "name": "x", "configuration": {"backend": "gpu"}},
            400,
            "VALIDATION_ERROR",
            "configuration.backend",
        ),
        ({"modelId": "tiny"}, 409, "DEPLOYMENT_EXISTS", None),
        ({"modelId": "tiny", "name": "spark"}, 409, "DEPLOYMENT_EXISTS", None),
        ({"modelId": "tiny", "name": "x", "colour": "red"}, 400, "VALIDATION_ERROR", None),
        (
            {"modelId": "tiny", "name": "x", "configuration": {"minReplicas": 2}},
            400,
            "VALIDATION_ERROR",
            "configuration.minReplicas",
        ),
        (
            {
                "modelId": "tiny",
                "name": "x",
                "configuration": {"autoScaling": True, "minReplicas": 3, "maxReplicas": 2},
            },
            400,
            "VALIDATION_ERROR",
            "configuration.minReplicas",
        ),
        (
            {"modelId": "tiny", "name": "x", "configuration": {"replicas": 0}},
            400,
            "VALIDATION_ERROR",
            None,
        ),
        (
            {
                "modelId": "fresh",
                "source": "/no/such/file.gguf",
                "configuration": {"backend": "cpu"},
            },
            400,
            "VALIDATION_ERROR",
            "source",
        ),
        (
            {
                "modelId": "fresh",
                "source": "hf://acme/only-a-repo",
                "configuration": {"backend": "cpu"},
            },
            400,
            "VALIDATION_ERROR",
            "source",
        ),
        (
            {"modelId": "fresh", "source": "/tmp/x.gguf"},
            400,
            "VALIDATION_ERROR",
            "configuration.backend",
        ),
        ({"modelId": "tiny", "name": "with/slash"}, 400, "VALIDATION_ERROR", None),
        ("not json", 400, "VALIDATION_ERROR", None),
    ]
    for body, status, code, field in cases:
        if isinstance(body, str):
            reply = api(server, "POST", "/deployments", content=body)
        else:
            reply = api(server, "POST", "/deployments", json=body)
        assert reply.status_code == status, (body, reply.text)
        error = reply.json()
        assert error["code"] == code and error["error"], body
        if field is not None:
            assert error["details"]["field"] == field, (body, error)
    missing = api(server, "PUT", "/deployments/none", json={"configuration": {"replicas": 2}})
    assert missing.status_code == 404
    assert api(server, "GET", "/deployments").json()["pagination"]["total"] == 3
    with sqlite3.connect(server.database) as db:
        assert db.execute("SELECT COUNT(*) FROM deployments").fetchone()[0] == 0


class Traffic:
    """Chat requests from a few threads until stopped; every answer's status and headers."""

    def __init__(self, server: RunningServer, model: str, workers: int = 3) -> None:
        self.client = sdk(server)
        self.model = model
        self.results: list[tuple[int, str, str]] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._loop) for _ in range(workers)]

    def _loop(self) -> None:
        for _ in range(400):  # bounded, whatever happens
            if self._stop.is_set():
                return
            try:
                raw = self.client.chat.completions.with_raw_response.create(
                    model=self.model, messages=HELLO, max_tokens=6
                )
            except openai.APIError as exc:
                self.errors.append(repr(exc))
                continue
            self.results.append(
                (raw.status_code, raw.headers["x-backend"], raw.headers["x-replica-id"])
            )

    def __enter__(self) -> Traffic:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def served(self) -> int:
        return len(self.results)


def test_scaling_and_changing_a_deployment_drops_no_request(launch: Launch) -> None:
    server = launch()
    deploy(server, {"modelId": "tiny", "name": "rolling"})
    wait_for(server, "rolling", ready(1))
    with Traffic(server, "rolling") as traffic:
        for change, check in (
            ({"replicas": 3}, ready(3)),
            ({"replicas": 1}, ready(1)),
            (
                {"backend": "narrow"},
                lambda d: ready(1)(d) and d["configuration"]["backend"] == "narrow",
            ),
        ):
            before = traffic.served()
            reply = api(server, "PUT", "/deployments/rolling", json={"configuration": change})
            assert reply.status_code == 202, reply.text
            wait_for(server, "rolling", lambda d, check=check: check(d) and d["error"] is None)
            # Requests went on through the change.
            deadline = time.monotonic() + 30
            while traffic.served() < before + 6 and time.monotonic() < deadline:
                time.sleep(0.05)
    assert traffic.errors == []
    assert {status for status, _, _ in traffic.results} == {200}
    backends = [backend for _, backend, _ in traffic.results]
    assert backends[0] == "cpu" and backends[-1] == "narrow"
    assert len({replica for _, _, replica in traffic.results}) >= 2
    log = server.log()
    # Two replicas stopped scaling down, the old one after the new backend took over.
    assert log.count("backends.replicas: replica rolling-") - log.count("draining") == 3
    with sqlite3.connect(server.database) as db:
        stored = db.execute("SELECT configuration FROM deployments WHERE id = 'rolling'").fetchone()
    assert '"backend":"narrow"' in stored[0] and '"replicas":1' in stored[0]


def test_delete_drains_requests_in_flight_then_frees_the_replicas(launch: Launch) -> None:
    server = launch()
    deploy(server, {"modelId": "endless", "name": "going"})
    wait_for(server, "going", ready(1))
    stream = sdk(server).chat.completions.create(
        model="going",
        messages=HELLO,
        max_tokens=150,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [next(stream)]
    reply = api(server, "DELETE", "/deployments/going")
    assert reply.status_code == 202 and reply.json()["data"]["status"] == "draining"
    with pytest.raises(openai.NotFoundError) as refused:
        sdk(server).chat.completions.create(model="going", messages=HELLO, max_tokens=2)
    assert refused.value.body["code"] == "model_not_found"  # type: ignore[index]
    assert api(server, "GET", "/deployments/going").json()["data"]["status"] == "draining"
    chunks += list(stream)
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 150
    assert chunks[-2].choices[0].finish_reason == "length"
    deadline = time.monotonic() + 30
    while api(server, "GET", "/deployments/going").status_code != 404:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert "deployment going removed; its replicas are stopped" in server.log()
    server.stop()
    with sqlite3.connect(server.database) as db:
        assert db.execute("SELECT COUNT(*) FROM deployments").fetchone()[0] == 0
        billed = db.execute(
            "SELECT completion_tokens, status FROM requests "
            "WHERE model = 'going' AND endpoint = 'chat'"
        ).fetchall()
    assert (150, "ok") in billed


def test_autoscaling_adds_a_replica_under_a_queue_and_removes_it_after_a_lull(
    launch: Launch,
) -> None:
    server = launch()
    deploy(
        server,
        {
            "modelId": "endless",
            "name": "elastic",
            "configuration": {
                "autoScaling": True,
                "minReplicas": 1,
                "maxReplicas": 2,
                "targetQueue": 1,
                "cooldownSeconds": 1,
            },
        },
    )
    wait_for(server, "elastic", ready(1))
    peak: list[int] = []
    with Traffic(server, "elastic", workers=3):
        # endless answers slowly on one thread: the queue builds, a replica is added.
        grown = wait_for(server, "elastic", lambda d: d["readyReplicas"] == 2, within=60)
        peak.append(grown["readyReplicas"])
        assert grown["configuration"]["replicas"] == 2  # wanted now
    assert peak == [2]
    shrunk = wait_for(server, "elastic", ready(1), within=60)
    assert shrunk["configuration"]["autoScaling"] is True
    assert shrunk["configuration"]["replicas"] == 1
    log = server.log()
    assert "autoscaling 1 -> 2 replicas" in log and "autoscaling 2 -> 1 replicas" in log


def test_an_allow_list_admits_the_deployments_of_the_models_it_names(launch: Launch) -> None:
    carol = "sk-carol-test-0123456789"
    server = launch(
        tiers="tiers:\n  free: {}\n  slow-only: {models: [endless]}\n",
        keys=[f"{{name: carol, tier: slow-only, secret: {carol}}}"],
    )
    deploy(server, {"modelId": "endless", "name": "endless-copy"})
    deploy(server, {"modelId": "tiny", "name": "tiny-copy"})
    wait_for(server, "endless-copy", ready(1))
    wait_for(server, "tiny-copy", ready(1))
    client = openai.OpenAI(base_url=server.base_url, api_key=carol, max_retries=0)
    try:
        assert sorted(m.id for m in client.models.list()) == ["endless", "endless-copy"]
        reply = client.chat.completions.create(model="endless-copy", messages=HELLO, max_tokens=2)
        assert reply.usage is not None and reply.usage.completion_tokens == 2
        with pytest.raises(openai.PermissionDeniedError) as refused:
            client.chat.completions.create(model="tiny-copy", messages=HELLO, max_tokens=2)
        assert refused.value.body["code"] == "model_not_allowed"  # type: ignore[index]
    finally:
        client.close()


def resident_mb(server: RunningServer) -> float:
    """The server process's resident memory, from /proc."""
    status = pathlib.Path(f"/proc/{server.process.pid}/status").read_text()
    [line] = [line for line in status.splitlines() if line.startswith("VmRSS:")]
    return int(line.split()[1]) / 1024


def test_deleting_a_deployment_frees_the_memory_of_its_replicas(launch: Launch) -> None:
    server = launch()
    before = resident_mb(server)
    deploy(
        server,
        {
            "modelId": "endless",
            "name": "roomy",
            "configuration": {"backend": "cpu", "replicas": 3, "contextLength": 2048},
        },
    )
    wait_for(server, "roomy", ready(3))
    loaded = resident_mb(server)
    assert loaded - before > 50  # three contexts' KV caches and buffers
    assert api(server, "DELETE", "/deployments/roomy").status_code == 202
    deadline = time.monotonic() + 30
    while api(server, "GET", "/deployments/roomy").status_code != 404:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    after = resident_mb(server)
    assert after - before < 0.2 * (loaded - before), (before, loaded, after)


def test_two_creates_of_one_name_at_once_answer_202_and_409(launch: Launch) -> None:
    server = launch()
    body = {"modelId": "tiny", "name": "twin"}

    async def both() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=30, headers=AS_ADMIN) as client:
            url = f"{server.base_url}/deployments"
            return list(await asyncio.gather(*(client.post(url, json=body) for _ in range(2))))

    replies = asyncio.run(both())
    assert sorted(r.status_code for r in replies) == [202, 409], [r.text for r in replies]
    conflict = next(r for r in replies if r.status_code == 409)
    assert conflict.json()["code"] == "DEPLOYMENT_EXISTS"
    listed = api(server, "GET", "/deployments").json()["data"]
    assert [d["id"] for d in listed].count("twin") == 1
