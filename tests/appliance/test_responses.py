"""/v1/responses through the official OpenAI SDK against a real `radiance up`.

The demo model is random, so what is asserted is what a client relies on: the shapes, the
event sequence, the usage and the ledger, tool calls forced by `tool_choice`, JSON that
parses under `text.format`, and conversations continued from stored responses.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator

import httpx
import openai
import pydantic
import pytest
from conftest import ALICE, BOB, RunningServer

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string", "maxLength": 12}},
        "required": ["city"],
        "additionalProperties": False,
    },
    "strict": True,
}


class Reply(pydantic.BaseModel):
    ok: bool
    n: int


@pytest.fixture
def client(server: RunningServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=server.base_url, api_key=ALICE, max_retries=0) as sdk:
        yield sdk


def ledger_row(server: RunningServer, request_id: str) -> tuple[object, ...]:
    with sqlite3.connect(server.database) as db:
        row = db.execute(
            "SELECT endpoint, model, prompt_tokens, completion_tokens, status "
            "FROM requests WHERE id = ?",
            (request_id,),
        ).fetchone()
    assert row is not None, request_id
    return tuple(row)


def test_text_response_with_usage_stored_and_billed(
    client: openai.OpenAI, server: RunningServer
) -> None:
    raw = client.responses.with_raw_response.create(
        model="spark",
        instructions="Be terse.",
        input="Say something.",
        max_output_tokens=12,
        temperature=0,
        metadata={"case": "text"},
    )
    response = raw.parse()
    # Every field the SDK's own type requires is there (its client parses leniently).
    openai.types.responses.Response.model_validate(raw.http_response.json())
    assert response.id.startswith("resp_")
    assert response.object == "response"
    assert response.model == "tiny"
    assert response.status in ("completed", "incomplete")
    assert response.instructions == "Be terse."
    assert response.metadata == {"case": "text"}
    [message] = response.output
    assert message.type == "message" and message.role == "assistant"
    assert message.content[0].type == "output_text"
    assert response.output_text == message.content[0].text
    usage = response.usage
    assert usage is not None and 1 <= usage.output_tokens <= 12
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens
    if usage.output_tokens == 12:
        assert response.status == "incomplete"
        assert response.incomplete_details is not None
        assert response.incomplete_details.reason == "max_output_tokens"
    request_id = raw.headers["x-request-id"]
    assert response.id == f"resp_{request_id}"
    assert ledger_row(server, request_id) == (
        "responses",
        "tiny",
        usage.input_tokens,
        usage.output_tokens,
        "ok",
    )
    again = client.responses.retrieve(response.id)
    assert again.model_dump() == response.model_dump()
    [item] = client.responses.input_items.list(response.id).data
    assert item.type == "message" and item.role == "user"
    assert item.content[0].type == "input_text" and item.content[0].text == "Say something."


def test_function_tool_round_trip_with_previous_response_id(client: openai.OpenAI) -> None:
    first = client.responses.create(
        model="tiny",
        input=[{"role": "user", "content": [{"type": "input_text", "text": "Weather?"}]}],
        tools=[WEATHER],  # type: ignore[list-item]
        tool_choice={"type": "function", "name": "get_weather"},
        max_output_tokens=40,
        temperature=0,
    )
    [call] = first.output
    assert call.type == "function_call" and call.name == "get_weather"
    assert call.call_id and call.status == "completed"
    arguments = json.loads(call.arguments)
    assert set(arguments) == {"city"} and isinstance(arguments["city"], str)
    assert first.output_text == ""
    second = client.responses.create(
        model="tiny",
        previous_response_id=first.id,
        input=[
            {
                "type": "function_call_output",
                "call_id": call.call_id,
                "output": json.dumps({"forecast": "sunny"}),
            }
        ],
        tools=[WEATHER],  # type: ignore[list-item]
        max_output_tokens=8,
    )
    assert second.previous_response_id == first.id
    assert second.output[0].type == "message"
    assert second.usage is not None
    # The conversation so far was read from the stored response: the prompt holds the
    # first request's (the same tools and question), the call and its output.
    assert first.usage is not None
    assert second.usage.input_tokens > first.usage.input_tokens


def test_structured_output_parses(client: openai.OpenAI) -> None:
    schema = {
        "type": "object",
        "properties": {"answer": {"type": "string", "maxLength": 10}, "n": {"type": "integer"}},
        "required": ["answer", "n"],
        "additionalProperties": False,
    }
    response = client.responses.create(
        model="tiny",
        input="Reply as JSON.",
        text={"format": {"type": "json_schema", "name": "reply", "schema": schema}},
        max_output_tokens=60,
        temperature=0,
    )
    assert response.text is not None and response.text.format is not None
    assert response.text.format.type == "json_schema"
    data = json.loads(response.output_text)
    assert set(data) == {"answer", "n"} and isinstance(data["n"], int)
    parsed = client.responses.parse(
        model="tiny", input="Reply.", text_format=Reply, max_output_tokens=60, temperature=0
    )
    assert isinstance(parsed.output_parsed, Reply)
    loose = client.responses.create(
        model="tiny",
        input="Any JSON.",
        text={"format": {"type": "json_object"}},
        max_output_tokens=40,
        temperature=0,
    )
    if loose.status == "completed":
        json.loads(loose.output_text)


def test_stream_sends_the_documented_event_sequence(
    client: openai.OpenAI, server: RunningServer
) -> None:
    with client.responses.stream(
        model="tiny", input="Stream something.", max_output_tokens=10, temperature=0
    ) as stream:
        events = list(stream)
        # The SDK hands a final response for `response.completed` only; one cut by
        # max_output_tokens ends with `response.incomplete`, which carries it too.
        final = events[-1].response  # type: ignore[union-attr]
        if events[-1].type == "response.completed":
            assert stream.get_final_response().output_text == final.output_text
    kinds = [event.type for event in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] in ("response.completed", "response.incomplete")
    for kind in (
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
    ):
        assert kind in kinds, kind
    assert [event.sequence_number for event in events] == list(range(len(events)))
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert final.output_text == deltas
    assert final.usage is not None and final.usage.output_tokens >= 1
    stored = client.responses.retrieve(final.id)
    assert stored.output_text == deltas and stored.status == final.status
    request_id = final.id.removeprefix("resp_")
    assert ledger_row(server, request_id)[3] == final.usage.output_tokens


def test_streamed_function_call_events(client: openai.OpenAI) -> None:
    stream = client.responses.create(
        model="tiny",
        input="Weather?",
        tools=[WEATHER],  # type: ignore[list-item]
        tool_choice="required",
        max_output_tokens=60,
        temperature=0,
        stream=True,
    )
    events = list(stream)
    kinds = [event.type for event in events]
    assert "response.function_call_arguments.delta" in kinds
    done = [e for e in events if e.type == "response.function_call_arguments.done"]
    assert done
    final = events[-1]
    assert final.type == "response.completed"
    calls = [item for item in final.response.output if item.type == "function_call"]
    assert [call.arguments for call in calls] == [e.arguments for e in done]
    for call in calls:
        assert call.name == "get_weather"
        json.loads(call.arguments)


def test_a_key_sees_only_its_own_responses(
    client: openai.OpenAI, server: RunningServer, request: pytest.FixtureRequest
) -> None:
    response = client.responses.create(model="tiny", input="hi", max_output_tokens=2)
    bob = openai.OpenAI(base_url=server.base_url, api_key=BOB, max_retries=0)
    request.addfinalizer(bob.close)
    with pytest.raises(openai.NotFoundError):
        bob.responses.retrieve(response.id)
    with pytest.raises(openai.NotFoundError):
        bob.responses.delete(response.id)
    with pytest.raises(openai.NotFoundError) as missing:
        bob.responses.create(
            model="tiny", input="go on", previous_response_id=response.id, max_output_tokens=2
        )
    assert missing.value.body["param"] == "previous_response_id"  # type: ignore[index]
    client.responses.delete(response.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(response.id)


def test_store_false_keeps_nothing(client: openai.OpenAI) -> None:
    response = client.responses.create(model="tiny", input="hi", max_output_tokens=2, store=False)
    assert response.store is False
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(response.id)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": "hi", "tools": [{"type": "web_search"}]}, "tools[0].type"),
        ({"input": [{"type": "input_image", "image_url": "x"}]}, "input[0].type"),
        (
            {"input": [{"role": "user", "content": [{"type": "input_file"}]}]},
            "input[0].content[0].type",
        ),
        ({"input": [{"role": "wizard", "content": "hi"}]}, "input[0].role"),
        ({"input": [{"type": "function_call_output", "output": "x"}]}, "input[0].call_id"),
        ({"input": "hi", "max_output_tokens": 0}, "max_output_tokens"),
        ({"input": "hi", "max_output_tokens": 10**9}, "max_output_tokens"),
        ({"input": "hi", "temperature": 3}, "temperature"),
        ({"input": "hi", "text": {"format": {"type": "json_schema"}}}, "text.format.schema"),
        ({"input": "hi", "tool_choice": {"type": "file_search"}}, "tool_choice"),
        ({"input": "hi", "background": True}, "background"),
        ({"input": "hi", "reasoning": {"effort": "high"}}, "reasoning"),
        ({"input": "hi", "reasoning": {"effort": "none", "summary": "auto"}}, "reasoning"),
        ({"input": "hi", "previous_response_id": "resp_nope"}, "previous_response_id"),
        ({"input": [], "model": "tiny"}, "input"),
        ({"input": "hi", "model": "nope"}, "model"),
        ({"input": "hi", "metadata": {"k": "v" * 600}}, "metadata[...]"),
    ],
)
def test_bad_requests_name_the_parameter(
    server: RunningServer, body: dict[str, object], param: str
) -> None:
    answer = httpx.post(
        f"{server.base_url}/responses",
        headers={"Authorization": f"Bearer {ALICE}"},
        json={"model": "tiny", **body},
        timeout=60,
    )
    assert 400 <= answer.status_code < 500, answer.text
    error = answer.json()["error"]
    assert error["param"] == param, error
    assert isinstance(error["message"], str) and error["message"]


def test_retrieving_and_listing_need_a_key_and_bounds(server: RunningServer) -> None:
    url = f"{server.base_url}/responses/resp_x"
    assert httpx.get(url).status_code == 401
    headers = {"Authorization": f"Bearer {ALICE}"}
    missing = httpx.get(url, headers=headers)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    bad = httpx.get(f"{url}/input_items?limit=0", headers=headers)
    assert bad.status_code == 400


def test_leaving_a_stream_settles_it_cancelled_and_billed(server: RunningServer) -> None:
    with (
        httpx.Client(base_url=server.base_url, timeout=60) as http,
        http.stream(
            "POST",
            "/responses",
            headers={"Authorization": f"Bearer {ALICE}"},
            json={"model": "endless", "input": "go", "max_output_tokens": 400, "stream": True},
        ) as stream,
    ):
        deltas = 0
        for line in stream.iter_lines():
            if line.startswith("data: ") and '"response.output_text.delta"' in line:
                deltas += 1
                if deltas == 3:
                    break
        request_id = stream.headers["x-request-id"]
    deadline = time.monotonic() + 10
    while True:
        with sqlite3.connect(server.database) as db:
            row = db.execute(
                "SELECT status, http_status, completion_tokens FROM requests WHERE id = ?",
                (request_id,),
            ).fetchone()
        if row is not None or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert row is not None
    status, http_status, tokens = row
    assert (status, http_status) == ("cancelled", 499)
    assert 3 <= tokens < 400
