"""A whole answer assembled from an upstream's stream chunks, as vLLM and OpenAI send them.

The end-to-end check (a replica's own whole answer against the one assembled at the
front) is in test_upstream.py; these are the shapes a Radiance replica never sends:
tool-call arguments in fragments, reasoning text, vLLM's `stop_reason`, several choices
interleaved."""

from __future__ import annotations

from typing import Any

from appliance.openai.assembly import Assembly


def chunk(choices: list[dict[str, Any]], usage: dict[str, int] | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-up",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "m",
        "system_fingerprint": "fp",
        "choices": choices,
        "usage": usage,
    }


def delta(index: int, **fields: Any) -> dict[str, Any]:
    return {"index": index, "delta": fields}


def ended(reason: str, stop_reason: int | None) -> dict[str, Any]:
    return {"finish_reason": reason, "stop_reason": stop_reason}


def test_chat_chunks_with_tool_call_fragments_reasoning_and_two_choices() -> None:
    assembly = Assembly("chat")
    call = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "lookup"}}
    fragment = [{"index": 0, "function": {"arguments": '{"ci'}}]
    rest = [{"index": 0, "function": {"arguments": 'ty": "Oslo"}'}}]
    other = {"index": 1, "id": "call_2", "type": "function"}
    other_call = [{**other, "function": {"name": "other", "arguments": "{}"}}]
    for event in [
        chunk([delta(0, role="assistant", content="")]),
        chunk([delta(1, role="assistant", content="Hel")]),
        chunk([delta(0, reasoning_content="think")]),
        chunk([{**delta(1, content="lo"), "logprobs": {"content": [{"t": 1}]}}]),
        chunk([delta(0, reasoning_content="ing")]),
        chunk([delta(0, tool_calls=[{**call, "function": {**call["function"]}}])]),
        chunk([delta(0, tool_calls=fragment)]),
        chunk([{**delta(1), "logprobs": {"content": [{"t": 2}]}, **ended("stop", None)}]),
        chunk([delta(0, tool_calls=rest)]),
        chunk([delta(0, tool_calls=other_call)]),
        chunk([{**delta(0), **ended("tool_calls", 7)}]),
        {**chunk([]), "choices": 5},  # a malformed chunk adds nothing
        chunk([], usage={"prompt_tokens": 5, "completion_tokens": 9, "total_tokens": 14}),
    ]:
        assembly.add(event)
    body = assembly.body({"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0})
    assert body["object"] == "chat.completion"
    assert (body["id"], body["model"], body["system_fingerprint"]) == ("chatcmpl-up", "m", "fp")
    assert body["usage"] == {"prompt_tokens": 5, "completion_tokens": 9, "total_tokens": 14}
    first, second = body["choices"]
    assert first == {
        "index": 0,
        "message": {
            "role": "assistant",
            "content": None,  # only tool calls: none, though the stream opened with ""
            "reasoning_content": "thinking",
            "refusal": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "lookup", "arguments": '{"city": "Oslo"}'},
                },
                {
                    "id": "call_2",
                    "type": "function",
                    "function": {"name": "other", "arguments": "{}"},
                },
            ],
        },
        "logprobs": None,
        "finish_reason": "tool_calls",
        "stop_reason": 7,
    }
    assert second["message"] == {"role": "assistant", "content": "Hello", "refusal": None}
    assert second["logprobs"] == {"content": [{"t": 1}, {"t": 2}]}
    assert (second["finish_reason"], second["stop_reason"]) == ("stop", None)


def test_text_chunks_join_text_and_log_probabilities() -> None:
    assembly = Assembly("completions")
    for text, offset in (("Once", 0), (" upon", 4)):
        assembly.add(
            {
                "id": "cmpl-up",
                "object": "text_completion",
                "created": 1,
                "model": "m",
                "choices": [
                    {
                        "index": 0,
                        "text": text,
                        "logprobs": {
                            "tokens": [text],
                            "token_logprobs": [-0.5],
                            "top_logprobs": [{text: -0.5}],
                            "text_offset": [offset],
                        },
                        "finish_reason": None,
                    }
                ],
            }
        )
    fallback = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
    body = assembly.body(fallback)
    assert body["object"] == "text_completion"
    assert body["usage"] == fallback  # the upstream reported none: what Radiance counted
    (choice,) = body["choices"]
    assert choice["text"] == "Once upon"
    assert choice["logprobs"] == {
        "tokens": ["Once", " upon"],
        "token_logprobs": [-0.5, -0.5],
        "top_logprobs": [{"Once": -0.5}, {" upon": -0.5}],
        "text_offset": [0, 4],
    }
    assert choice["finish_reason"] is None
