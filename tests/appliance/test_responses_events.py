"""Chat chunks as Responses events, for the chunk shapes a real server streams but the
demo model does not make: tool calls in fragments over several chunks (vLLM), several
calls, text before a call, an error after the first event, SSE split at any byte.

The chunks are scripted; the same translation is exercised end to end through real
servers in test_responses.py and test_upstream.py."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import openai
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.openai.responses_answer import ResponseShell, whole_response
from appliance.openai.responses_protocol import Response
from appliance.openai.responses_request import responses_request
from appliance.openai.responses_stream import ResponseEvents


def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def sse(payloads: list[dict[str, Any] | str]) -> bytes:
    out = b""
    for payload in payloads:
        data = payload.encode() if isinstance(payload, str) else msgspec.json.encode(payload)
        out += b"data: " + data + b"\n\n"
    return out


async def pieces(raw: bytes, cuts: list[int]) -> AsyncIterator[bytes]:
    start = 0
    for cut in sorted(set(cuts)):
        yield raw[start:cut]
        start = cut
    yield raw[start:]


async def translate(
    raw: bytes, cuts: list[int] | None = None, store: bool = True
) -> tuple[list[dict[str, Any]], list[Response]]:
    body = {"model": "m", "input": "hi", "store": store}
    shell = ResponseShell(responses_request(msgspec.json.encode(body)), "resp_1", "m")
    kept: list[Response] = []

    async def keep(response: Response) -> None:
        kept.append(response)

    events = []
    async for event in ResponseEvents(shell, pieces(raw, cuts or []), keep):
        kind, data = event.split(b"\n", 1)
        assert event.endswith(b"\n\n")
        payload = json.loads(data.removeprefix(b"data: "))
        assert kind == b"event: " + payload["type"].encode()
        events.append(payload)
    return events, kept


TWO_CALLS = [
    chunk({"role": "assistant", "content": ""}),
    chunk({"content": "Let me look."}),
    chunk(
        {"tool_calls": [{"index": 0, "id": "call_a", "function": {"name": "f", "arguments": ""}}]}
    ),
    chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"x": '}}]}),
    chunk({"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]}),
    chunk(
        {"tool_calls": [{"index": 1, "id": "call_b", "function": {"name": "g", "arguments": "{}"}}]}
    ),
    chunk({}, "tool_calls"),
    {"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 9, "total_tokens": 14}},
    "[DONE]",
]


async def test_fragmented_calls_become_function_call_items() -> None:
    events, kept = await translate(sse(TWO_CALLS))  # type: ignore[arg-type]
    kinds = [e["type"] for e in events]
    assert kinds == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.delta",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    final = events[-1]["response"]
    assert [item["type"] for item in final["output"]] == [
        "message",
        "function_call",
        "function_call",
    ]
    message, first, second = final["output"]
    assert message["content"][0]["text"] == "Let me look." == final["output_text"]
    assert (first["call_id"], first["name"], json.loads(first["arguments"])) == (
        "call_a",
        "f",
        {"x": 1},
    )
    assert (second["call_id"], second["name"], second["arguments"]) == ("call_b", "g", "{}")
    assert final["usage"]["input_tokens"] == 5 and final["usage"]["output_tokens"] == 9
    added = [e for e in events if e["type"] == "response.output_item.added"]
    assert [e["output_index"] for e in added] == [0, 1, 2]
    assert kept and msgspec.to_builtins(kept[0]) == final


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=len(sse(TWO_CALLS))), max_size=40))  # type: ignore[arg-type]
async def test_any_split_of_the_stream_gives_the_same_events(cuts: list[int]) -> None:
    whole, _ = await translate(sse(TWO_CALLS))  # type: ignore[arg-type]
    split, _ = await translate(sse(TWO_CALLS), cuts)  # type: ignore[arg-type]
    for event in whole + split:  # ids are new per run
        event.pop("item_id", None)
        event.pop("item", None)
        event.pop("response", None)
    assert split == whole


async def test_an_error_after_the_start_is_an_error_event_then_failed() -> None:
    raw = sse(
        [
            chunk({"content": "partial"}),
            {
                "error": {
                    "message": "the server is shutting down",
                    "type": "server_error",
                    "param": None,
                    "code": "server_stopping",
                }
            },
            "[DONE]",
        ]
    )
    events, kept = await translate(raw)
    kinds = [e["type"] for e in events]
    assert kinds[-2:] == ["error", "response.failed"]
    assert events[-2]["code"] == "server_stopping"
    failed = events[-1]["response"]
    assert failed["status"] == "failed"
    assert failed["error"] == {"code": "server_stopping", "message": "the server is shutting down"}
    assert kept[0].status == "failed"


@pytest.mark.parametrize("finish", ["length", "stop"])
async def test_cut_by_max_output_tokens_is_incomplete(finish: str) -> None:
    events, _ = await translate(sse([chunk({"content": "abc"}, finish), "[DONE]"]), store=False)
    final = events[-1]
    if finish == "length":
        assert final["type"] == "response.incomplete"
        assert final["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
        assert final["response"]["output"][0]["status"] == "incomplete"
    else:
        assert final["type"] == "response.completed"
        assert final["response"]["incomplete_details"] is None


async def test_reasoning_comes_as_its_own_item_before_the_answer() -> None:
    usage = {
        "prompt_tokens": 4,
        "completion_tokens": 7,
        "total_tokens": 11,
        "completion_tokens_details": {"reasoning_tokens": 5},
    }
    raw = sse(
        [
            chunk({"reasoning_content": "Think"}),
            chunk({"reasoning_content": "ing."}),
            chunk({"content": "Hi"}, "stop"),
            {"choices": [], "usage": usage},
            "[DONE]",
        ]
    )
    events, _ = await translate(raw)
    kinds = [e["type"] for e in events]
    assert kinds == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.reasoning_text.delta",
        "response.reasoning_text.delta",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.reasoning_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    final = events[-1]["response"]
    thought, message = final["output"]
    assert thought["type"] == "reasoning"
    assert thought["content"] == [{"type": "reasoning_text", "text": "Thinking."}]
    assert final["output_text"] == "Hi" and message["content"][0]["text"] == "Hi"
    assert final["usage"]["output_tokens_details"] == {"reasoning_tokens": 5}
    # The SDK reads it as its own Response type.
    parsed = openai.types.responses.Response.model_validate(final)
    assert parsed.output[0].type == "reasoning" and parsed.output_text == "Hi"


def test_a_whole_answer_with_reasoning_and_reasoning_items_sent_back() -> None:
    body = {
        "model": "m",
        "input": [
            {"type": "reasoning", "id": "rs_1", "summary": []},
            {"role": "user", "content": "hi"},
        ],
    }
    plan = responses_request(msgspec.json.encode(body))
    assert [m["role"] for m in plan.chat_body()["messages"]] == ["user"]
    completion = {
        "choices": [
            {
                "message": {"role": "assistant", "content": "Hi", "reasoning_content": "Hmm."},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7},
    }
    response = whole_response(ResponseShell(plan, "resp_2", "m"), completion)
    parsed = openai.types.responses.Response.model_validate(msgspec.to_builtins(response))
    assert [item.type for item in parsed.output] == ["reasoning", "message"]
    assert parsed.output_text == "Hi"
