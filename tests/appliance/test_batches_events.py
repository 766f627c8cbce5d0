"""Batches on the other endpoints, their webhooks, and a batch that expires (through the
official SDK against a real `radiance up`)."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable

import httpx
import openai
from conftest import ADMIN, ALICE, RunningServer
from test_batches import chat_line, ended, jsonl, results, wait_for
from webhook_receiver import Receiver, serve_receiver

AS_ADMIN = {"Authorization": f"Bearer {ADMIN}"}


def test_batches_of_embeddings_and_responses(server: RunningServer) -> None:
    with openai.OpenAI(base_url=server.base_url, api_key=ALICE, max_retries=0) as sdk:
        for endpoint, body, kind in (
            (
                "/v1/embeddings",
                {"model": "tiny", "input": "hello"},
                openai.types.CreateEmbeddingResponse,
            ),
            (
                "/v1/responses",
                {"model": "tiny", "input": "hello", "max_output_tokens": 8},
                openai.types.responses.Response,
            ),
            (
                "/v1/completions",
                {"model": "tiny", "prompt": "hello", "max_tokens": 8},
                openai.types.Completion,
            ),
        ):
            lines = [
                {"custom_id": f"{n}", "method": "POST", "url": endpoint, "body": body}
                for n in range(2)
            ]
            upload = sdk.files.create(file=("in.jsonl", jsonl(list(lines))), purpose="batch")
            created = sdk.batches.create(
                input_file_id=upload.id,
                endpoint=endpoint,  # type: ignore[arg-type]
                completion_window="24h",
            )
            batch = wait_for(sdk, created.id, ended)
            assert batch.status == "completed" and batch.error_file_id is None, endpoint
            for line in results(sdk, batch.output_file_id):
                kind.model_validate(line["response"]["body"])


def test_batch_events_reach_webhooks(server: RunningServer) -> None:
    with serve_receiver(Receiver()) as receiver:
        reply = httpx.post(
            f"{server.base_url}/webhooks",
            json={"url": receiver.url, "events": ["batch.completed", "batch.cancelled"]},
            headers=AS_ADMIN,
        )
        assert reply.status_code == 201, reply.text
        hook = reply.json()["data"]
        try:
            with openai.OpenAI(base_url=server.base_url, api_key=ALICE, max_retries=0) as sdk:
                upload = sdk.files.create(
                    file=("a.jsonl", jsonl([chat_line("a")])), purpose="batch"
                )
                created = sdk.batches.create(
                    input_file_id=upload.id,
                    endpoint="/v1/chat/completions",
                    completion_window="24h",
                )
                wait_for(sdk, created.id, ended)
            deadline = time.monotonic() + 30
            while not receiver.of_type("batch.completed"):
                assert time.monotonic() < deadline, "no batch.completed"
                time.sleep(0.05)
            [event] = [
                r.event
                for r in receiver.of_type("batch.completed")
                if r.event["data"]["batch"]["id"] == created.id
            ]
            assert event["data"]["batch"]["request_counts"]["completed"] == 1
            assert receiver.of_type("batch.completed")[0].signed_by(hook["secret"])
        finally:
            httpx.delete(f"{server.base_url}/webhooks/{hook['id']}", headers=AS_ADMIN)


def test_an_expired_batch_keeps_the_lines_done(launch: Callable[..., RunningServer]) -> None:
    server = launch()
    with openai.OpenAI(base_url=server.base_url, api_key=ALICE, max_retries=0) as sdk:
        lines = [chat_line(f"line-{n}", model="endless", max_tokens=40) for n in range(12)]
        upload = sdk.files.create(file=("slow.jsonl", jsonl(list(lines))), purpose="batch")
        created = sdk.batches.create(
            input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        wait_for(sdk, created.id, lambda b: bool(b.request_counts and b.request_counts.completed))
        with sqlite3.connect(server.database) as db:  # the window ends now
            db.execute("UPDATE batches SET expires_at = 0 WHERE id = ?", (created.id,))
        batch = wait_for(sdk, created.id, ended)
        assert batch.status == "expired" and batch.expired_at is not None
        assert batch.request_counts is not None
        done = batch.request_counts.completed
        assert 0 < done < 12
        output = results(sdk, batch.output_file_id)
        errors = results(sdk, batch.error_file_id)
    assert len(output) == done
    assert {line["error"]["code"] for line in errors} == {"batch_expired"}
    ids = sorted(line["custom_id"] for line in output + errors)
    assert ids == sorted(f"line-{n}" for n in range(12))


def test_lines_of_a_revoked_key_are_refused(server: RunningServer) -> None:
    made = httpx.post(
        f"{server.base_url}/api-keys", headers=AS_ADMIN, json={"name": "batch-revoked"}
    ).json()["data"]
    lines = [chat_line(f"line-{n}", model="endless", max_tokens=40) for n in range(8)]
    with openai.OpenAI(base_url=server.base_url, api_key=made["key"], max_retries=0) as sdk:
        upload = sdk.files.create(file=("slow.jsonl", jsonl(list(lines))), purpose="batch")
        created = sdk.batches.create(
            input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        wait_for(sdk, created.id, lambda b: bool(b.request_counts and b.request_counts.completed))
    gone = httpx.delete(f"{server.base_url}/api-keys/{made['id']}", headers=AS_ADMIN)
    assert gone.status_code == 200, gone.text
    with openai.OpenAI(base_url=server.base_url, api_key=ADMIN, max_retries=0) as admin:
        batch = wait_for(admin, created.id, ended)
        assert batch.status == "completed" and batch.request_counts is not None
        assert 0 < batch.request_counts.completed < 8
        errors = results(admin, batch.error_file_id)
    assert {line["error"]["code"] for line in errors} == {"invalid_api_key"}
    assert len(errors) == 8 - batch.request_counts.completed
