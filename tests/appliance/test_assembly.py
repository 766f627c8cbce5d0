"""A whole answer assembled from an upstream's stream chunks, as vLLM and OpenAI send them.

The end-to-end check (a replica's own whole answer against the one assembled at the
front) is in test_upstream.py; these are the shapes a Radiance replica never sends:
tool-call arguments in fragments, reasoning text, vLLM's `stop_reason`, several choices
interleaved."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

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


class _EveryChunkMerged(Assembly):
    """The assembly without its shortcut for plain text chunks: the reference."""

    def _plain_text(self, choices: object) -> tuple[int, str] | None:
        return None


_piece = st.text(max_size=4)
_chat_delta = st.one_of(
    st.fixed_dictionaries({"content": _piece}),
    st.fixed_dictionaries({"content": _piece, "role": st.just("assistant")}),
    st.fixed_dictionaries({"reasoning_content": _piece}),
    st.fixed_dictionaries(
        {
            "tool_calls": st.lists(
                st.fixed_dictionaries({"index": st.integers(0, 1)}).map(
                    lambda call: {**call, "function": {"arguments": "{}"}}
                ),
                max_size=2,
            )
        }
    ),
)
_chat_choice = st.builds(
    lambda index, delta, reason, logprobs: {
        "index": index,
        "delta": delta,
        **({"finish_reason": reason} if reason != "absent" else {}),
        **({"logprobs": logprobs} if logprobs != "absent" else {}),
    },
    st.integers(0, 2),
    _chat_delta,
    st.sampled_from(["absent", None, "stop", "length"]),
    st.sampled_from(["absent", None, {"content": []}]),
)
# Most chunks of a real stream are plain: one choice, one piece of text.
_plain_chat = st.builds(
    lambda index, text: [{"index": index, "delta": {"content": text}}], st.integers(0, 1), _piece
)
_plain_text = st.builds(
    lambda index, text: [{"index": index, "text": text}], st.integers(0, 1), _piece
)
_text_choice = st.builds(
    lambda index, text, reason: {"index": index, "text": text, "finish_reason": reason},
    st.integers(0, 2),
    _piece,
    st.sampled_from([None, "stop"]),
)


@given(st.lists(_plain_chat | st.lists(_chat_choice, max_size=3), max_size=16), st.booleans())
def test_plain_chat_chunks_assemble_as_if_each_were_merged(
    chunks: list[list[dict[str, Any]]], usage_last: bool
) -> None:
    usage = {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8}
    fast, reference = Assembly("chat"), _EveryChunkMerged("chat")
    for index, choices in enumerate(chunks):
        last = usage_last and index == len(chunks) - 1
        for assembly in (fast, reference):
            assembly.add(chunk(copy.deepcopy(choices), usage if last else None))
    assert fast.body(usage) == reference.body(usage)


@given(st.lists(_plain_text | st.lists(_text_choice, max_size=3), max_size=16))
def test_plain_text_chunks_assemble_as_if_each_were_merged(
    chunks: list[list[dict[str, Any]]],
) -> None:
    usage = {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8}
    fast, reference = Assembly("completions"), _EveryChunkMerged("completions")
    for choices in chunks:
        for assembly in (fast, reference):
            assembly.add({**chunk(copy.deepcopy(choices)), "object": "text_completion"})
    assert fast.body(usage) == reference.body(usage)
