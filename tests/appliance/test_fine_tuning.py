"""Fine-tuning through the official OpenAI SDK against a real `radiance up` on the CPU.

The demo model's Hugging Face copy is its `train_from:`; a job uploads chat examples,
validates them against its chat template, trains a LoRA adapter in a trainer process,
and serves it as `ft:tiny:<suffix>:<job id>`: its greedy answer differs from the base's
and matches transformers + PEFT running the same adapter. Jobs are billed in the ledger,
belong to their key, can be cancelled, and resume after the server is killed.
"""

from __future__ import annotations

import io
import json
import os
import pathlib
import signal
import sqlite3
import textwrap
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openai
import pytest
from conftest import ADMIN, ALICE, BOB, RunningServer, config_text, start_server
from openai.types.fine_tuning import FineTuningJob
from peft_reference import peft_greedy
from webhook_receiver import Receiver, serve_receiver

from backends.llamacpp.demo_model import TINY, write_demo_model
from backends.llamacpp.demo_model_hf import write_demo_model_hf

pytestmark = pytest.mark.slow
NAMES = ["Ada", "Alan", "Grace", "Linus", "Barbara", "Ken", "Dennis", "Edsger", "Frances", "John"]
PROMPT = [{"role": "user", "content": "Say hello to Ada"}]
FINAL = ("succeeded", "failed", "cancelled")


def examples(count: int = 10) -> bytes:
    lines = [
        {
            "messages": [
                {"role": "system", "content": "You greet people."},
                {"role": "user", "content": f"Say hello to {name}"},
                {"role": "assistant", "content": f"Hello, {name}! Nice to meet you."},
            ]
        }
        for name in (NAMES * 4)[:count]
    ]
    return "".join(json.dumps(line) + "\n" for line in lines).encode()


@pytest.fixture(scope="module")
def trained_models(
    tmp_path_factory: pytest.TempPathFactory, models_dir: pathlib.Path
) -> pathlib.Path:
    folder = tmp_path_factory.mktemp("trainable")
    write_demo_model(folder / "tiny.gguf", TINY)
    (folder / "endless.gguf").symlink_to(models_dir / "endless.gguf")
    write_demo_model_hf(folder / "tiny-hf", TINY)
    return folder


def tuning_config(models: pathlib.Path, **server: Any) -> str:
    text = config_text(models, server=server)
    text = text.replace('    pricing: {prompt: "0.10", completion: "0.40"}\n', "", 1)
    return text.replace(
        "    aliases: [spark]\n",
        "    aliases: [spark]\n"
        f"    train_from: {models / 'tiny-hf'}\n"
        '    pricing: {prompt: "0.10", completion: "0.40", training: "2.50",\n'
        '              fine_tuned: {prompt: "0.20", completion: "0.80"}}\n',
        1,
    ) + textwrap.dedent(
        """
        training:
          threads: 1
        """
    )


@pytest.fixture(scope="module")
def tuning(
    tmp_path_factory: pytest.TempPathFactory, trained_models: pathlib.Path
) -> Iterator[RunningServer]:
    running = start_server(tmp_path_factory.mktemp("tuning"), tuning_config(trained_models))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def hooks(tuning: RunningServer) -> Iterator[Receiver]:
    """A webhook receiver of the three fine-tuning events, for the module's server."""
    with serve_receiver(Receiver()) as receiver:
        reply = httpx.post(
            f"{tuning.base_url}/webhooks",
            json={"url": receiver.url, "events": [f"fine_tuning.job.{s}" for s in FINAL]},
            headers={"Authorization": f"Bearer {ADMIN}"},
        )
        assert reply.status_code == 201, reply.text
        yield receiver


def announced(receiver: Receiver, event: str, job_id: str) -> dict[str, Any]:
    """The webhook event of `job_id` (waits for its delivery)."""
    deadline = time.monotonic() + 30
    while True:
        for received in receiver.of_type(event):
            if received.event["data"]["job"]["id"] == job_id:
                return received.event
        assert time.monotonic() < deadline, f"no {event} for {job_id}"
        time.sleep(0.05)


def sdk(server: RunningServer, key: str = ALICE) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key=key, max_retries=0, timeout=60)


def wait_for(
    client: openai.OpenAI, job_id: str, done: Callable[[FineTuningJob], bool], timeout: float = 300
) -> FineTuningJob:
    deadline = time.monotonic() + timeout
    while True:
        job = client.fine_tuning.jobs.retrieve(job_id)
        if done(job):
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.25)


def upload(client: openai.OpenAI, data: bytes, purpose: str = "fine-tune") -> str:
    return client.files.create(file=("train.jsonl", io.BytesIO(data)), purpose=purpose).id  # type: ignore[arg-type]


def greedy(client: openai.OpenAI, model: str, tokens: int = 8) -> str:
    answer = client.chat.completions.create(
        model=model, messages=PROMPT, max_tokens=tokens, temperature=0, seed=7
    )
    return answer.choices[0].message.content or ""


def test_a_job_trains_serves_and_bills_its_model(
    tuning: RunningServer, trained_models: pathlib.Path, hooks: Receiver
) -> None:
    alice = sdk(tuning)
    before = greedy(alice, "tiny")
    training_file = upload(alice, examples())
    job = alice.fine_tuning.jobs.create(
        model="tiny",
        training_file=training_file,
        validation_file=upload(alice, examples(4)),
        suffix="hello",
        seed=7,
        hyperparameters={"n_epochs": 3, "batch_size": 2},
        metadata={"team": "greeters"},
    )
    assert job.status == "validating_files"
    assert job.hyperparameters.n_epochs == 3
    done = wait_for(alice, job.id, lambda j: j.status in FINAL)
    assert done.status == "succeeded", done.error
    assert done.fine_tuned_model == f"ft:tiny:hello:{job.id}"
    assert done.trained_tokens and done.trained_tokens > 0
    assert done.hyperparameters.batch_size == 2
    assert isinstance(done.hyperparameters.learning_rate_multiplier, float)
    assert done.finished_at is not None and done.result_files
    assert done.metadata == {"team": "greeters"}
    tagged = alice.fine_tuning.jobs.list(metadata={"team": "greeters"}).data
    assert [j.id for j in tagged] == [job.id]
    assert not alice.fine_tuning.jobs.list(metadata={"team": "other"}).data
    event = announced(hooks, "fine_tuning.job.succeeded", job.id)
    assert event["data"]["job"]["fine_tuned_model"] == done.fine_tuned_model

    # Events: newest first, status changes and the loss of the steps.
    events = list(alice.fine_tuning.jobs.list_events(job.id, limit=100))
    messages = [e.message for e in events]
    assert messages[0].startswith("The job has successfully completed")
    assert messages[-1].startswith("Created fine-tuning job")
    metrics = [e for e in events if e.type == "metrics"]
    assert metrics and all(isinstance((e.data or {}).get("train_loss"), float) for e in metrics)
    steps = [int((e.data or {})["step"]) for e in reversed(metrics)]
    assert steps == sorted(steps) and steps[-1] == (10 // 2) * 3
    checkpoints = list(alice.fine_tuning.jobs.checkpoints.list(job.id))
    assert [c.step_number for c in checkpoints] == [15, 10, 5]  # one per epoch, newest first
    assert all(c.metrics.train_loss is not None for c in checkpoints)
    assert all(c.metrics.valid_loss is not None for c in checkpoints)  # the validation file
    assert checkpoints[0].fine_tuned_model_checkpoint == f"ft:tiny:hello:{job.id}:ckpt-step-15"
    csv = alice.files.content(done.result_files[0]).text.splitlines()
    assert csv[0] == "step,train_loss,train_accuracy" and len(csv) > 1

    # The model is served at once, for this key, with the base's context and the
    # fine_tuned prices; its greedy answer is not the base's.
    name = done.fine_tuned_model
    listed = {m.id: m for m in alice.models.list()}
    assert name in listed
    model = alice.models.retrieve(name).model_dump()
    assert model["context_length"] == 1024
    assert model["pricing"] == {"prompt": "0.20", "completion": "0.80"}
    after = greedy(alice, name)
    assert after != before
    assert greedy(alice, "tiny") == before  # the base is untouched

    # The same adapter in transformers + PEFT gives the same greedy tokens.
    adapter = tuning.folder / "files" / "fine_tuning" / job.id / "adapter"
    assert after.startswith(peft_greedy(trained_models / "tiny-hf", adapter, PROMPT, 4))

    # Billed once to alice: trained tokens at the training price.
    with sqlite3.connect(tuning.database) as db:
        rows = db.execute(
            "SELECT key_name, model, prompt_tokens, prompt_price, cost_pusd, status "
            "FROM requests WHERE endpoint = '/v1/fine_tuning/jobs'"
        ).fetchall()
    cost = done.trained_tokens * 2_500_000  # picodollars: 2.50 USD per million
    assert rows == [("alice", "tiny:fine-tuning", done.trained_tokens, "2.50", cost, "ok")]
    invoices = httpx.get(
        f"{tuning.base_url}/billing/invoices", headers={"Authorization": f"Bearer {ADMIN}"}
    ).json()["data"]
    [statement] = [i for i in invoices if i["key"] == "alice"]
    [line] = [x for x in statement["lines"] if x["model"] == "tiny:fine-tuning"]
    assert line["prompt_tokens"] == done.trained_tokens and line["prompt_price"] == "2.50"

    with pytest.raises(openai.BadRequestError):  # it has ended
        alice.fine_tuning.jobs.cancel(job.id)

    # Another key sees neither the job, its files, nor its model.
    bob = sdk(tuning, BOB)
    with pytest.raises(openai.NotFoundError):
        bob.fine_tuning.jobs.retrieve(job.id)
    with pytest.raises(openai.NotFoundError):
        bob.fine_tuning.jobs.cancel(job.id)
    with pytest.raises(openai.NotFoundError):
        bob.files.retrieve(training_file)
    assert job.id not in [j.id for j in bob.fine_tuning.jobs.list()]
    assert name not in [m.id for m in bob.models.list()]
    with pytest.raises(openai.NotFoundError):
        greedy(bob, name)
    assert job.id in [j.id for j in sdk(tuning, ADMIN).fine_tuning.jobs.list(limit=100)]

    # Deleting the model removes it; the job keeps its record.
    assert alice.models.delete(name).deleted
    with pytest.raises(openai.NotFoundError):
        greedy(alice, name)


def test_invalid_files_are_refused_naming_the_line(tuning: RunningServer, hooks: Receiver) -> None:
    alice = sdk(tuning)
    bad = examples(3) + b'{"messages": [{"role": "wizard", "content": "hi"}]}\n'
    with pytest.raises(openai.BadRequestError) as refused:
        alice.fine_tuning.jobs.create(model="tiny", training_file=upload(alice, bad))
    error = refused.value.body
    assert isinstance(error, dict) and error["param"] == "training_file"
    assert "line 4" in error["message"] and "messages[0].role" in error["message"]

    batch_file = upload(alice, examples(2), purpose="batch")
    with pytest.raises(openai.BadRequestError) as wrong:
        alice.fine_tuning.jobs.create(model="tiny", training_file=batch_file)
    assert isinstance(wrong.value.body, dict) and wrong.value.body["param"] == "training_file"

    with pytest.raises(openai.BadRequestError) as untrainable:
        alice.fine_tuning.jobs.create(model="endless", training_file=upload(alice, examples(2)))
    assert isinstance(untrainable.value.body, dict)
    assert untrainable.value.body["param"] == "model"

    for field, value in [
        ("hyperparameters", {"n_epochs": 0}),
        ("hyperparameters", {"batch_size": "many"}),
        ("suffix", "has spaces"),
        ("seed", -1),
        ("method", {"type": "dpo"}),
        ("integrations", [{"type": "wandb", "wandb": {"project": "p"}}]),
    ]:
        with pytest.raises(openai.BadRequestError) as refused_field:
            alice.post(
                "/fine_tuning/jobs",
                body={"model": "tiny", "training_file": "file-x", field: value},
                cast_to=object,
            )
        body = refused_field.value.body
        assert isinstance(body, dict) and str(body["param"]).startswith(field), (field, body)

    # Too long for the model's context: the job fails at validation, naming the line.
    long_line = {
        "messages": [
            {"role": "user", "content": "word " * 2000},
            {"role": "assistant", "content": "ok"},
        ]
    }
    data = examples(2) + (json.dumps(long_line) + "\n").encode()
    job = alice.fine_tuning.jobs.create(model="tiny", training_file=upload(alice, data))
    failed = wait_for(alice, job.id, lambda j: j.status in FINAL, timeout=120)
    assert failed.status == "failed" and failed.error is not None
    assert failed.error.code == "invalid_training_file" and "line 3" in failed.error.message
    assert announced(hooks, "fine_tuning.job.failed", job.id)["data"]["job"]["status"] == "failed"


def test_a_dataset_for_a_model_is_rendered_and_counted(tuning: RunningServer) -> None:
    """/v1/datasets with a `model`: `validating`, then its tokens under that model's chat
    template (as the job's validation counts them), or `invalid` naming the line."""
    alice = sdk(tuning)
    headers = {"Authorization": f"Bearer {ALICE}"}

    def made(data: bytes) -> dict[str, Any]:
        reply = httpx.post(
            f"{tuning.base_url}/datasets",
            json={"name": "greetings", "fileId": upload(alice, data), "model": "spark"},
            headers=headers,
        )
        assert reply.status_code == 201, reply.text
        dataset: dict[str, Any] = reply.json()["data"]
        assert dataset["status"] == "validating" and dataset["model"] == "tiny"
        deadline = time.monotonic() + 120
        while dataset["status"] == "validating":
            assert time.monotonic() < deadline, dataset
            time.sleep(0.2)
            got = httpx.get(f"{tuning.base_url}/datasets/{dataset['id']}", headers=headers)
            dataset = got.json()["data"]
        return dataset

    ready = made(examples(4))
    assert ready["status"] == "ready" and ready["examples"] == 4 and ready["errors"] == []
    job = alice.fine_tuning.jobs.create(
        model="tiny", training_file=upload(alice, examples(4)), hyperparameters={"n_epochs": 1}
    )
    queued = wait_for(alice, job.id, lambda j: j.status != "validating_files")
    first = alice.fine_tuning.jobs.list_events(job.id, limit=100).data
    counted = [e.message for e in first if e.message.startswith("Files validated")]
    assert counted and f"{ready['tokens']} tokens;" in counted[0], (counted, ready)
    if queued.status not in FINAL:
        alice.fine_tuning.jobs.cancel(job.id)

    long_line = {"messages": [{"role": "user", "content": "word " * 2000}]}
    long_line["messages"].append({"role": "assistant", "content": "ok"})
    invalid = made(examples(1) + (json.dumps(long_line) + "\n").encode())
    assert invalid["status"] == "invalid" and invalid["tokens"] is None
    assert invalid["errors"][0]["line"] == 2, invalid


def trainer_running(job_id: str) -> bool:
    """Whether a process of this machine has the job's id on its command line (its trainer's
    spec path), read from /proc so no tool has to be installed."""
    for cmdline in pathlib.Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if job_id.encode() in cmdline.read_bytes():
                return True
        except OSError:  # it ended meanwhile
            continue
    return False


def test_cancel_stops_the_trainer_within_two_seconds(
    tuning: RunningServer, hooks: Receiver
) -> None:
    alice = sdk(tuning)
    job = alice.fine_tuning.jobs.create(
        model="tiny",
        training_file=upload(alice, examples(40)),
        hyperparameters={"n_epochs": 50, "batch_size": 1},
    )
    wait_for(
        alice,
        job.id,
        lambda j: (j.status == "running" and bool(j.trained_tokens)) or j.status in FINAL,
    )
    assert trainer_running(job.id)  # the process the cancel must end
    started = time.monotonic()
    cancelled = alice.fine_tuning.jobs.cancel(job.id)
    assert cancelled.status == "cancelled"
    while trainer_running(job.id):
        assert time.monotonic() - started < 2.0, "the trainer outlived its cancel"
        time.sleep(0.05)
    newest = alice.fine_tuning.jobs.list_events(job.id, limit=1)
    assert [e.message for e in newest.data] == ["Fine-tuning job cancelled"], [
        e.message for e in alice.fine_tuning.jobs.list_events(job.id, limit=100)
    ]
    assert alice.fine_tuning.jobs.cancel(job.id).status == "cancelled"  # again: as it is
    announced(hooks, "fine_tuning.job.cancelled", job.id)
    with sqlite3.connect(tuning.database) as db:
        billed = db.execute(
            "SELECT status, prompt_tokens FROM requests WHERE id = ?", (job.id,)
        ).fetchall()
    assert billed and billed[0][0] == "cancelled" and billed[0][1] > 0


def test_a_job_resumes_after_the_server_is_killed(
    tmp_path: pathlib.Path, trained_models: pathlib.Path
) -> None:
    folder = tmp_path / "restart"
    config = tuning_config(trained_models)
    first = start_server(folder, config)
    alice = sdk(first)
    job = alice.fine_tuning.jobs.create(
        model="tiny",
        training_file=upload(alice, examples(20)),
        hyperparameters={"n_epochs": 4, "batch_size": 1},
        seed=3,
    )
    wait_for(
        alice,
        job.id,
        lambda j: bool(list(alice.fine_tuning.jobs.checkpoints.list(j.id))) or j.status in FINAL,
    )
    assert trainer_running(job.id)
    os.kill(first.process.pid, signal.SIGKILL)
    first.stop()
    deadline = time.monotonic() + 5
    while trainer_running(job.id):  # the trainer follows its server
        assert time.monotonic() < deadline, "the trainer outlived its killed server"
        time.sleep(0.1)
    second = start_server(folder, config)
    try:
        alice = sdk(second)
        done = wait_for(alice, job.id, lambda j: j.status in FINAL)
        assert done.status == "succeeded", done.error
        messages = [e.message for e in alice.fine_tuning.jobs.list_events(job.id, limit=100)]
        assert "Training resumes from the last checkpoint" in messages
        steps = [c.step_number for c in alice.fine_tuning.jobs.checkpoints.list(job.id)]
        assert steps == [80, 60, 40, 20]
        name = done.fine_tuned_model or ""
        answer = greedy(alice, name)
    finally:
        second.stop()
    # The fine-tuned model is a stored deployment: it is served again after a restart,
    # still alice's alone, and the job was billed once.
    third = start_server(folder, config)
    try:
        assert greedy(sdk(third), name) == answer
        with pytest.raises(openai.NotFoundError):
            greedy(sdk(third, BOB), name)
        with sqlite3.connect(third.database) as db:
            billed = db.execute("SELECT COUNT(*) FROM requests WHERE id = ?", (job.id,))
            assert billed.fetchone() == (1,)
    finally:
        third.stop()
