"""/v1/files and /v1/batches through the official OpenAI SDK against a real `radiance up`.

A batch's lines are served as the same requests made directly (the tiny random model
answers them), bad lines land in the error file with their codes, a batch can be
cancelled mid-run, and one killed with kill -9 resumes after a restart with every
`custom_id` in the results exactly once.
"""

from __future__ import annotations

import io
import json
import signal
import sqlite3
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openai
import pytest
from conftest import ADMIN, ALICE, BOB, RunningServer
from openai.types import Batch

GOOD = 4


def chat_line(custom_id: str, model: str = "tiny", **body: Any) -> dict[str, Any]:
    return {
        "custom_id": custom_id,
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {
            "model": model,
            "messages": [{"role": "user", "content": f"hello {custom_id}"}],
            "max_tokens": 8,
            **body,
        },
    }


def jsonl(lines: list[dict[str, Any] | str]) -> bytes:
    return "".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines).encode()


# The timeout is generous: on the session's shared server, interactive tests that ran up
# to a minute before can hold the tiny model's spare capacity that long (spare_lease).
def wait_for(
    client: openai.OpenAI, batch_id: str, done: Callable[[Batch], bool], timeout: float = 180
) -> Batch:
    deadline = time.monotonic() + timeout
    while True:
        batch = client.batches.retrieve(batch_id)
        if done(batch):
            return batch
        assert time.monotonic() < deadline, batch
        time.sleep(0.2)


def ended(batch: Batch) -> bool:
    return batch.status in ("completed", "failed", "expired", "cancelled")


def results(client: openai.OpenAI, file_id: str | None) -> list[dict[str, Any]]:
    if file_id is None:
        return []
    text = client.files.content(file_id).text
    return [json.loads(line) for line in text.splitlines()]


@pytest.fixture
def client(server: RunningServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=server.base_url, api_key=ALICE, max_retries=0) as sdk:
        yield sdk


def test_a_batch_runs_its_lines_and_writes_the_results_as_openai_does(
    client: openai.OpenAI, server: RunningServer
) -> None:
    lines: list[dict[str, Any] | str] = [chat_line(f"ok-{n}", seed=n) for n in range(GOOD)]
    lines += [
        "{not json",
        {**chat_line("wrong-url"), "url": "/v1/completions"},
        chat_line("no-model", model="no-such-model"),
        chat_line("too-hot", temperature=7),
    ]
    uploaded = client.files.create(
        file=("requests.jsonl", io.BytesIO(jsonl(lines))), purpose="batch"
    )
    assert uploaded.purpose == "batch" and uploaded.bytes == len(jsonl(lines))
    assert uploaded.filename == "requests.jsonl"
    created = client.batches.create(
        input_file_id=uploaded.id,
        endpoint="/v1/chat/completions",
        completion_window="24h",
        metadata={"job": "test"},
    )
    assert created.status == "validating" and created.metadata == {"job": "test"}
    assert created.expires_at == created.created_at + 24 * 3600
    batch = wait_for(client, created.id, ended)
    assert batch.status == "completed", batch
    assert batch.request_counts is not None
    assert (batch.request_counts.total, batch.request_counts.completed) == (8, GOOD)
    assert batch.request_counts.failed == 4
    for stamp in ("in_progress_at", "finalizing_at", "completed_at"):
        assert getattr(batch, stamp) is not None, stamp

    output = results(client, batch.output_file_id)
    assert [line["custom_id"] for line in output] == [f"ok-{n}" for n in range(GOOD)]
    for line in output:
        assert line["id"].startswith("batch_req_") and line["error"] is None
        response = line["response"]
        assert response["status_code"] == 200
        completion = openai.types.chat.ChatCompletion.model_validate(response["body"])
        assert completion.model == "tiny" and completion.usage is not None

    errors = {line["custom_id"]: line for line in results(client, batch.error_file_id)}
    assert set(errors) == {None, "wrong-url", "no-model", "too-hot"}
    assert errors[None]["error"]["code"] == "invalid_json"
    assert errors["wrong-url"]["error"]["code"] == "invalid_url"
    no_model = errors["no-model"]["response"]
    assert no_model["status_code"] == 404
    assert no_model["body"]["error"]["code"] == "model_not_found"
    too_hot = errors["too-hot"]["response"]
    assert too_hot["status_code"] == 400
    assert too_hot["body"]["error"]["param"] == "temperature"

    # Each answered line has its ledger row, marked with the batch, billed at the price.
    request_ids = [line["response"]["request_id"] for line in output]
    with sqlite3.connect(server.database) as db:
        rows = db.execute(
            "SELECT id, batch_id, status, cost_pusd FROM requests WHERE batch_id = ?",
            (batch.id,),
        ).fetchall()
    billed = {row[0]: row for row in rows}
    assert set(request_ids) <= set(billed)
    assert all(billed[rid][2] == "ok" and billed[rid][3] > 0 for rid in request_ids)

    assert client.batches.list(limit=100).data[0].id == batch.id
    listed = client.files.list(purpose="batch_output")
    assert {f.id for f in listed.data} >= {batch.output_file_id, batch.error_file_id}


def test_a_bad_batch_request_is_a_400_naming_the_field(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.batches.create(
            input_file_id="file-x",
            endpoint="/v1/moderations",  # type: ignore[arg-type]
            completion_window="24h",
        )
    assert caught.value.body["param"] == "endpoint"  # type: ignore[index]
    with pytest.raises(openai.NotFoundError):
        client.batches.create(
            input_file_id="file-none", endpoint="/v1/completions", completion_window="24h"
        )
    fine_tune = client.files.create(file=("t.jsonl", b"{}\n"), purpose="fine-tune")
    with pytest.raises(openai.BadRequestError) as caught:
        client.batches.create(
            input_file_id=fine_tune.id, endpoint="/v1/completions", completion_window="24h"
        )
    assert caught.value.body["param"] == "input_file_id"  # type: ignore[index]


def test_duplicate_custom_ids_fail_the_batch_with_the_line(client: openai.OpenAI) -> None:
    data = jsonl([chat_line("a"), chat_line("b"), chat_line("a")])
    uploaded = client.files.create(file=("dup.jsonl", data), purpose="batch")
    created = client.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    batch = wait_for(client, created.id, ended)
    assert batch.status == "failed" and batch.failed_at is not None
    assert batch.errors is not None and batch.errors.data is not None
    [error] = batch.errors.data
    assert (error.code, error.line, error.param) == ("duplicate_custom_id", 3, "custom_id")


def test_another_key_cannot_see_the_batch_or_its_files(
    client: openai.OpenAI, server: RunningServer
) -> None:
    uploaded = client.files.create(file=("one.jsonl", jsonl([chat_line("x")])), purpose="batch")
    created = client.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    with openai.OpenAI(base_url=server.base_url, api_key=BOB, max_retries=0) as bob:
        with pytest.raises(openai.NotFoundError):
            bob.batches.retrieve(created.id)
        with pytest.raises(openai.NotFoundError):
            bob.batches.cancel(created.id)
        with pytest.raises(openai.NotFoundError):
            bob.files.retrieve(uploaded.id)
        with pytest.raises(openai.NotFoundError):
            bob.files.content(uploaded.id)
        with pytest.raises(openai.NotFoundError):
            bob.files.delete(uploaded.id)
        with pytest.raises(openai.NotFoundError):
            bob.batches.create(
                input_file_id=uploaded.id,
                endpoint="/v1/chat/completions",
                completion_window="24h",
            )
        assert created.id not in {b.id for b in bob.batches.list().data}
        assert uploaded.id not in {f.id for f in bob.files.list().data}
    with openai.OpenAI(base_url=server.base_url, api_key=ADMIN, max_retries=0) as admin:
        assert admin.batches.retrieve(created.id).id == created.id
        assert admin.files.retrieve(uploaded.id).id == uploaded.id
    batch = wait_for(client, created.id, ended)
    assert batch.status == "completed"


def test_files_round_trip_and_pages(client: openai.OpenAI) -> None:
    made = [
        client.files.create(file=(f"f{n}.jsonl", f"{n}\n".encode()), purpose="user_data")
        for n in range(3)
    ]
    assert client.files.content(made[1].id).content == b"1\n"
    page = client.files.list(purpose="user_data", limit=2)
    assert len(page.data) == 2 and page.has_more
    rest = client.files.list(purpose="user_data", limit=2, after=page.data[-1].id)
    seen = [f.id for f in page.data] + [f.id for f in rest.data]
    assert set(seen) >= {f.id for f in made}
    deleted = client.files.delete(made[0].id)
    assert deleted.deleted and deleted.id == made[0].id
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(made[0].id)


def test_uploads_over_the_cap_are_413_naming_file(launch: Callable[..., RunningServer]) -> None:
    server = launch(server={"max_file_bytes": 1000})
    with openai.OpenAI(base_url=server.base_url, api_key=ALICE, max_retries=0) as sdk:
        small = sdk.files.create(file=("s.jsonl", b"x" * 1000), purpose="batch")
        assert small.bytes == 1000
        with pytest.raises(openai.APIStatusError) as caught:
            sdk.files.create(file=("big.jsonl", b"x" * 5000), purpose="batch")
    assert caught.value.status_code == 413
    assert caught.value.body["param"] == "file"  # type: ignore[index]
    bad = httpx.post(
        f"{server.base_url}/files",
        headers={"Authorization": f"Bearer {ALICE}"},
        files={"file": ("a.jsonl", b"{}")},
        data={"purpose": "nonsense"},
    )
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "purpose"
    leftovers = [p.name for p in (server.folder / "files").iterdir() if p.suffix == ".part"]
    assert not leftovers


def _slow_lines(count: int) -> bytes:
    # The `endless` model never stops on its own: each line generates all its max_tokens.
    return jsonl([chat_line(f"line-{n}", model="endless", max_tokens=40) for n in range(count)])


def test_cancel_mid_run_keeps_what_is_done(client: openai.OpenAI) -> None:
    uploaded = client.files.create(file=("slow.jsonl", _slow_lines(12)), purpose="batch")
    created = client.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    wait_for(client, created.id, lambda b: bool(b.request_counts and b.request_counts.completed))
    cancelling = client.batches.cancel(created.id)
    assert cancelling.status in ("cancelling", "cancelled")
    batch = wait_for(client, created.id, ended)
    assert batch.status == "cancelled" and batch.cancelled_at is not None
    assert batch.cancelling_at is not None
    assert batch.request_counts is not None and batch.request_counts.completed < 12
    output = results(client, batch.output_file_id)
    errors = results(client, batch.error_file_id)
    ids = [line["custom_id"] for line in output + errors]
    assert sorted(ids) == sorted(f"line-{n}" for n in range(12))
    assert {line["error"]["code"] for line in errors} == {"batch_cancelled"}
    assert client.batches.cancel(created.id).status == "cancelled"  # again: as it is
    with pytest.raises(openai.BadRequestError):
        client.batches.cancel(_completed_batch(client))


def _completed_batch(client: openai.OpenAI) -> str:
    uploaded = client.files.create(file=("one.jsonl", jsonl([chat_line("c")])), purpose="batch")
    created = client.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    return wait_for(client, created.id, ended).id


def test_a_batch_killed_with_kill_9_resumes_after_a_restart(
    launch: Callable[..., RunningServer],
) -> None:
    server = launch()
    folder = server.folder
    count = 10
    with openai.OpenAI(base_url=server.base_url, api_key=ALICE, max_retries=0) as sdk:
        uploaded = sdk.files.create(file=("slow.jsonl", _slow_lines(count)), purpose="batch")
        created = sdk.batches.create(
            input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        wait_for(
            sdk, created.id, lambda b: bool(b.request_counts and b.request_counts.completed >= 2)
        )
    server.process.send_signal(signal.SIGKILL)
    assert server.stop() == -signal.SIGKILL
    again = launch(folder=folder)
    with openai.OpenAI(base_url=again.base_url, api_key=ALICE, max_retries=0) as sdk:
        batch = wait_for(sdk, created.id, ended, timeout=120)
        assert batch.status == "completed", batch
        assert batch.request_counts is not None and batch.request_counts.completed == count
        output = results(sdk, batch.output_file_id)
        assert batch.error_file_id is None
    assert sorted(line["custom_id"] for line in output) == sorted(f"line-{n}" for n in range(count))
