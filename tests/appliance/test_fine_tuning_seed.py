"""/v1/fine-tuning and /v1/datasets through the app (AsyncTestClient): the management
envelope, one key's jobs and datasets hidden from another, hostile bodies refused with the
field named, and a job made here listed by /v1/fine_tuning/jobs too.

No trainer runs here: the runner is held still, so a job stays as it was made."""

from __future__ import annotations

import asyncio
import json
import pathlib
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
from fake_engine import ScriptedEngine
from litestar.testing import AsyncTestClient

from appliance.accounting.limits import RateLimited
from appliance.app import create_app
from appliance.config import parse_config_text
from appliance.fine_tuning.runner import FineTuningRunner
from appliance.management.typed_envelope import Item, Page
from appliance.management.wire import DatasetView, FineTuningJobView
from appliance.openai.fine_tuning_protocol import CreateFineTuningJobRequest
from appliance.registry import ModelRegistry, ServedModel

ADMIN = "unit-admin-key-0123"
ALICE = "sk-unit-alice-key-1"
BOB = "sk-unit-bob-key-22"
AS_ADMIN = {"Authorization": f"Bearer {ADMIN}"}
AS_ALICE = {"Authorization": f"Bearer {ALICE}"}
AS_BOB = {"Authorization": f"Bearer {BOB}"}
CONFIG = f"""
server: {{database: state.db, admin_key: {ADMIN}}}
backends: {{cpu: {{engine: llamacpp}}}}
models:
  - {{id: tiny, backend: cpu, source: fake.gguf, train_from: weights}}
  - {{id: plain, backend: cpu, source: fake.gguf}}
keys:
  - {{name: alice, secret: {ALICE}}}
  - {{name: bob, secret: {BOB}}}
training: {{jobs_per_key: 3}}
"""
EXAMPLE = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}
GOOD = (json.dumps(EXAMPLE) + "\n") * 3 + "\n"
BAD = json.dumps(EXAMPLE) + "\nnot json\n" + json.dumps({"prompt": "x"}) + "\n"

Client = AsyncTestClient  # type: ignore[type-arg]


@pytest.fixture
async def client(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[AsyncTestClient]:  # type: ignore[type-arg]
    async def still(self: FineTuningRunner) -> None:  # no trainer: jobs stay as made
        return None

    monkeypatch.setattr(FineTuningRunner, "step", still)
    (tmp_path / "fake.gguf").write_bytes(b"GGUF")
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "config.json").write_text("{}")
    loaded = parse_config_text(CONFIG, "radiance.yaml", tmp_path, {})
    registry = ModelRegistry(
        [ServedModel(model, "cpu", ScriptedEngine(["hi"])) for model in loaded.config.models]
    )
    async with AsyncTestClient(app=create_app(loaded, registry=registry)) as running:
        yield running


async def upload(client: Client, who: dict[str, str], text: str, purpose: str = "fine-tune") -> str:
    reply = await client.post(
        "/v1/files",
        files={"file": ("train.jsonl", text.encode())},
        data={"purpose": purpose},
        headers=who,
    )
    assert reply.status_code == 200, reply.text
    file_id: str = reply.json()["id"]
    return file_id


def refused(reply: Any, status: int, field: str | None = None) -> dict[str, Any]:
    """A management error: its status, `error`, `code`, `details` (naming `field`)."""
    assert reply.status_code == status, reply.text
    body: dict[str, Any] = reply.json()
    assert set(body) == {"error", "code", "details"}, body
    if field is not None:
        assert body["details"].get("field") == field, body
    return body


async def test_a_job_made_on_the_seed_route_is_the_openai_routes_job(client: Client) -> None:
    file_id = await upload(client, AS_ALICE, GOOD)
    body = {
        "model": "tiny",
        "trainingFile": file_id,
        "hyperparameters": {"nEpochs": 2, "learningRateMultiplier": 0.5},
        "suffix": "support",
        "seed": 7,
        "metadata": {"team": "search"},
    }
    made = await client.post("/v1/fine-tuning", json=body, headers=AS_ALICE)
    assert made.status_code == 201, made.text
    item = msgspec.json.decode(made.content, type=Item[FineTuningJobView], strict=True)
    job = item.data
    assert item.message and job.status == "validating_files" and job.model == "tiny"
    assert job.training_file == file_id and job.suffix == "support" and job.seed == 7
    assert job.hyperparameters.n_epochs == 2 and job.hyperparameters.batch_size == "auto"
    assert job.step == 0 and job.total_steps is None and job.last_loss is None
    assert job.metadata == {"team": "search"} and job.created_at and job.finished_at is None
    wire = made.json()["data"]
    assert {"fineTunedModel", "trainingFile", "totalSteps", "lastLoss", "estimatedFinish"} <= set(
        wire
    )

    openai_list = (await client.get("/v1/fine_tuning/jobs", headers=AS_ALICE)).json()
    assert [j["id"] for j in openai_list["data"]] == [job.id]
    assert openai_list["data"][0]["hyperparameters"]["n_epochs"] == 2

    listed = await client.get("/v1/fine-tuning", headers=AS_ALICE)
    page = msgspec.json.decode(listed.content, type=Page[FineTuningJobView], strict=True)
    assert [j.id for j in page.data] == [job.id]
    assert listed.json()["pagination"] == {"total": 1, "limit": 50, "offset": 0, "hasMore": False}
    running = await client.get("/v1/fine-tuning?status=running", headers=AS_ALICE)
    assert running.json()["data"] == [] and running.json()["pagination"]["total"] == 0

    one = await client.get(f"/v1/fine-tuning/{job.id}", headers=AS_ALICE)
    assert one.status_code == 200 and one.json()["data"]["id"] == job.id

    cancelled = await client.post(f"/v1/fine-tuning/{job.id}/cancel", headers=AS_ALICE)
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["data"]["status"] == "cancelled"
    assert cancelled.json()["data"]["finishedAt"] is not None
    again = await client.post(f"/v1/fine-tuning/{job.id}/cancel", headers=AS_ALICE)
    assert again.json()["data"]["status"] == "cancelled"  # as the OpenAI route answers
    seen = (await client.get(f"/v1/fine_tuning/jobs/{job.id}", headers=AS_ALICE)).json()
    assert seen["status"] == "cancelled"


async def test_jobs_and_datasets_of_one_key_are_hidden_from_another(client: Client) -> None:
    file_id = await upload(client, AS_ALICE, GOOD)
    dataset = await client.post(
        "/v1/datasets", json={"name": "support", "fileId": file_id}, headers=AS_ALICE
    )
    assert dataset.status_code == 201, dataset.text
    dataset_id = dataset.json()["data"]["id"]
    made = await client.post(
        "/v1/fine-tuning", json={"model": "tiny", "datasetId": dataset_id}, headers=AS_ALICE
    )
    assert made.status_code == 201, made.text
    job_id = made.json()["data"]["id"]
    assert made.json()["data"]["trainingFile"] == file_id

    for path in (f"/v1/fine-tuning/{job_id}", f"/v1/datasets/{dataset_id}"):
        code = "FINE_TUNING_JOB_NOT_FOUND" if "fine" in path else "DATASET_NOT_FOUND"
        assert refused(await client.get(path, headers=AS_BOB), 404)["code"] == code
    refused(await client.post(f"/v1/fine-tuning/{job_id}/cancel", headers=AS_BOB), 404)
    refused(await client.delete(f"/v1/datasets/{dataset_id}", headers=AS_BOB), 404)
    bob_jobs = (await client.get("/v1/fine-tuning", headers=AS_BOB)).json()
    assert bob_jobs["data"] == [] and bob_jobs["pagination"]["total"] == 0
    assert (await client.get("/v1/datasets", headers=AS_BOB)).json()["data"] == []
    # Bob can neither train on Alice's file nor make a dataset of it, nor use her dataset.
    theirs = {"model": "tiny", "trainingFile": file_id}
    body = refused(await client.post("/v1/fine-tuning", json=theirs, headers=AS_BOB), 404)
    assert body["code"] == "FILE_NOT_FOUND" and body["details"]["field"] == "trainingFile"
    with_dataset = {"model": "tiny", "datasetId": dataset_id}
    refused(
        await client.post("/v1/fine-tuning", json=with_dataset, headers=AS_BOB), 404, "datasetId"
    )
    of_file = {"name": "mine", "fileId": file_id}
    refused(await client.post("/v1/datasets", json=of_file, headers=AS_BOB), 404, "fileId")

    admin_jobs = (await client.get("/v1/fine-tuning", headers=AS_ADMIN)).json()
    assert [j["id"] for j in admin_jobs["data"]] == [job_id]
    admin_sets = (await client.get("/v1/datasets", headers=AS_ADMIN)).json()
    assert [d["id"] for d in admin_sets["data"]] == [dataset_id]
    assert (await client.get("/v1/fine-tuning")).status_code == 401

    gone = await client.delete(f"/v1/datasets/{dataset_id}", headers=AS_ALICE)
    assert gone.status_code == 200 and gone.json()["data"]["id"] == dataset_id
    refused(await client.get(f"/v1/datasets/{dataset_id}", headers=AS_ALICE), 404)
    kept = await client.get(f"/v1/files/{file_id}", headers=AS_ALICE)
    assert kept.status_code == 200  # the file stays


async def test_a_dataset_is_checked_when_it_is_made(client: Client) -> None:
    uploaded = await client.post(
        "/v1/datasets",
        files={"file": ("good.jsonl", GOOD.encode())},
        data={"name": "support"},
        headers=AS_ALICE,
    )
    assert uploaded.status_code == 201, uploaded.text
    good = msgspec.json.decode(uploaded.content, type=Item[DatasetView], strict=True).data
    assert good.status == "ready" and good.examples == 3 and good.errors == []
    # Without a model nothing renders it: no token count (test_fine_tuning counts one).
    assert good.tokens is None and good.model is None and good.name == "support"
    stored = (await client.get(f"/v1/files/{good.file_id}", headers=AS_ALICE)).json()
    assert stored["purpose"] == "fine-tune" and stored["filename"] == "good.jsonl"

    bad_file = await upload(client, AS_ALICE, BAD)
    made = await client.post(
        "/v1/datasets", json={"name": "broken", "fileId": bad_file}, headers=AS_ALICE
    )
    assert made.status_code == 201, made.text
    bad = made.json()["data"]
    assert bad["status"] == "invalid" and bad["examples"] is None
    [not_json, no_messages, *_] = bad["errors"]
    assert not_json["line"] == 2 and "not valid JSON" in not_json["message"]
    assert no_messages["line"] == 3 and "messages" in no_messages["message"]
    job = {"model": "tiny", "datasetId": bad["id"]}
    body = refused(await client.post("/v1/fine-tuning", json=job, headers=AS_ALICE), 400)
    assert body["details"] == {"field": "datasetId", "reason": "invalid_dataset"}

    many = "\n".join(f"broken {n}" for n in range(50)) + "\n"
    many_file = await upload(client, AS_ALICE, many)
    capped = await client.post(
        "/v1/datasets", json={"name": "many", "fileId": many_file}, headers=AS_ALICE
    )
    assert len(capped.json()["data"]["errors"]) == 20

    listed = (await client.get("/v1/datasets?limit=2&offset=1", headers=AS_ALICE)).json()
    assert listed["pagination"] == {"total": 3, "limit": 2, "offset": 1, "hasMore": False}
    assert [d["name"] for d in listed["data"]] == ["broken", "support"]


async def test_hostile_requests_are_refused_in_the_management_envelope(client: Client) -> None:
    file_id = await upload(client, AS_ALICE, GOOD)
    batch_file = await upload(client, AS_ALICE, GOOD, purpose="batch")
    post = client.post
    cases: list[tuple[str, Any, int, str | None]] = [
        ("/v1/fine-tuning", b"{not json", 400, None),
        ("/v1/fine-tuning", b"[1, 2]", 400, None),
        ("/v1/fine-tuning", {"model": "tiny", "trainingFile": file_id, "epochs": 3}, 400, "epochs"),
        ("/v1/fine-tuning", {"model": "tiny"}, 400, "trainingFile"),
        (
            "/v1/fine-tuning",
            {"model": "tiny", "trainingFile": file_id, "datasetId": "ds-1"},
            400,
            "trainingFile",
        ),
        ("/v1/fine-tuning", {"trainingFile": file_id}, 400, "model"),
        ("/v1/fine-tuning", {"model": "nope", "trainingFile": file_id}, 404, "model"),
        ("/v1/fine-tuning", {"model": "plain", "trainingFile": file_id}, 400, "model"),
        ("/v1/fine-tuning", {"model": "tiny", "trainingFile": batch_file}, 400, "trainingFile"),
        (
            "/v1/fine-tuning",
            {"model": "tiny", "trainingFile": file_id, "validationFile": "file-x"},
            404,
            "validationFile",
        ),
        (
            "/v1/fine-tuning",
            {"model": "tiny", "trainingFile": file_id, "hyperparameters": {"nEpochs": 0}},
            400,
            "hyperparameters.nEpochs",
        ),
        (
            "/v1/fine-tuning",
            {"model": "tiny", "trainingFile": file_id, "hyperparameters": {"n_epochs": 2}},
            400,
            "hyperparameters.n_epochs",
        ),
        (
            "/v1/fine-tuning",
            {"model": "tiny", "trainingFile": file_id, "suffix": "a b"},
            400,
            "suffix",
        ),
        ("/v1/fine-tuning", {"model": "tiny", "trainingFile": file_id, "seed": -1}, 400, "seed"),
        ("/v1/datasets", {"name": "x" * 5000, "fileId": file_id}, 400, "name"),
        ("/v1/datasets", {"name": "", "fileId": file_id}, 400, "name"),
        ("/v1/datasets", {"name": "x", "fileId": batch_file}, 400, "fileId"),
        ("/v1/datasets", {"name": "x", "fileId": file_id, "extra": 1}, 400, "extra"),
        ("/v1/datasets", {"name": "x", "fileId": file_id, "model": "nope"}, 404, "model"),
        ("/v1/datasets", b"{", 400, None),
    ]
    for path, body, status, field in cases:
        if isinstance(body, bytes):
            reply = await post(
                path, content=body, headers={**AS_ALICE, "content-type": "application/json"}
            )
        else:
            reply = await post(path, json=body, headers=AS_ALICE)
        refused(reply, status, field)

    huge = await post(
        "/v1/datasets",
        content=b" " * (70 * 1024),
        headers={**AS_ALICE, "content-type": "application/json"},
    )
    refused(huge, 413)
    no_name = await post(
        "/v1/datasets", files={"file": ("a.jsonl", GOOD.encode())}, headers=AS_ALICE
    )
    refused(no_name, 400, "name")
    long_name = await post(
        "/v1/datasets",
        files={"file": ("a.jsonl", GOOD.encode())},
        data={"name": "y" * 5000},
        headers=AS_ALICE,
    )
    refused(long_name, 400, "name")
    no_file = await post(
        "/v1/datasets", data={"name": "n"}, files={"other": ("a", b"x")}, headers=AS_ALICE
    )
    refused(no_file, 400, "file")
    for query in ("limit=0", "limit=1001", "offset=-1", "status=done", "limit=abc"):
        for path in ("/v1/fine-tuning", "/v1/datasets"):
            if "status" in query and "datasets" in path:
                continue
            reply = await client.get(f"{path}?{query}", headers=AS_ALICE)
            assert refused(reply, 400)["code"] == "VALIDATION_ERROR", (path, query)
    # Nothing was made by any of it, but the refused upload left no dataset behind either.
    assert (await client.get("/v1/fine-tuning", headers=AS_ALICE)).json()["data"] == []
    assert (await client.get("/v1/datasets", headers=AS_ALICE)).json()["data"] == []


async def test_a_key_may_have_only_so_many_jobs_under_way(client: Client) -> None:
    file_id = await upload(client, AS_ALICE, GOOD)
    job = {"model": "tiny", "training_file": file_id}
    made = [await client.post("/v1/fine_tuning/jobs", json=job, headers=AS_ALICE) for _ in range(3)]
    assert [r.status_code for r in made] == [200, 200, 200]
    over = await client.post("/v1/fine_tuning/jobs", json=job, headers=AS_ALICE)
    assert over.status_code == 429, over.text
    assert over.json()["error"]["code"] == "rate_limit_exceeded"
    assert over.headers["x-should-retry"] == "false"
    seed = await client.post(
        "/v1/fine-tuning", json={"model": "tiny", "trainingFile": file_id}, headers=AS_ALICE
    )
    refused(seed, 429)
    # Another key has its own allowance; a cancelled job frees a place.
    theirs = await upload(client, AS_BOB, GOOD)
    bob = {"model": "tiny", "training_file": theirs}
    assert (await client.post("/v1/fine_tuning/jobs", json=bob, headers=AS_BOB)).status_code == 200
    first = made[0].json()["id"]
    cancelled = await client.post(f"/v1/fine_tuning/jobs/{first}/cancel", headers=AS_ALICE)
    assert cancelled.json()["status"] == "cancelled"
    again = await client.post("/v1/fine_tuning/jobs", json=job, headers=AS_ALICE)
    assert again.status_code == 200, again.text


async def test_the_job_cap_holds_when_many_are_made_at_once(client: Client) -> None:
    """Ten creates interleaved on the server's loop (the service, as the route calls it):
    the cap of three holds however their file reads and writes overlap."""
    file_id = await upload(client, AS_ALICE, GOOD)
    runtime = client.app.state.runtime
    alice = runtime.keys.authenticate(ALICE)
    body = CreateFineTuningJobRequest(model="tiny", training_file=file_id)

    async def create() -> str:
        try:
            await runtime.fine_tuning.create(alice, body)
        except RateLimited:
            return "429"
        return "200"

    outcomes = await asyncio.gather(*(create() for _ in range(10)))
    assert sorted(outcomes) == ["200"] * 3 + ["429"] * 7
    listed = await client.get("/v1/fine_tuning/jobs", headers=AS_ALICE)
    assert len(listed.json()["data"]) == 3
