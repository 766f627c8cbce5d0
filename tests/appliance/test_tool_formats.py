"""Each family's exact output, parsed whole and streamed at any split, in OpenAI's shapes."""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from openai.types.chat import ChatCompletionChunk, ChatCompletionMessage

from appliance.openai.tool_formats import (
    Call,
    CallArguments,
    CallStart,
    Content,
    Event,
    Parsed,
    Reasoning,
    Tools,
    by_name,
    detect,
)

TOOLS = Tools.from_openai(
    [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": {
                    "type": "object",
                    "properties": {
                        "city": {"type": "string"},
                        "days": {"type": "integer"},
                        "metric": {"type": "boolean"},
                        "hours": {"type": "array"},
                    },
                },
            },
        },
        {"type": "function", "function": {"name": "get_time", "parameters": {}}},
    ]
)

DS_CALLS, DS_CALLS_END = "<｜tool▁calls▁begin｜>", "<｜tool▁calls▁end｜>"
DS_CALL, DS_CALL_END, DS_SEP = "<｜tool▁call▁begin｜>", "<｜tool▁call▁end｜>", "<｜tool▁sep｜>"
PARIS = {"city": "Paris"}
ROME = {"city": "Rome"}


@dataclass(frozen=True)
class Case:
    family: str
    text: str
    content: str | None
    calls: list[tuple[str, dict[str, Any]]]
    reasoning: str | None = None
    thinking: bool = False
    prompt: str = ""


CASES = {
    "hermes": Case(
        "hermes",
        'Let me check.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n'
        '</tool_call>\n<tool_call>\n{"name": "get_time", "arguments": {}}\n</tool_call>',
        "Let me check.",
        [("get_weather", PARIS), ("get_time", {})],
    ),
    "qwen3_thinking": Case(
        "hermes",
        "<think>\nThe user wants weather.\n</think>\n\n<tool_call>\n"
        '{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>',
        None,
        [("get_weather", PARIS)],
        reasoning="The user wants weather.",
        thinking=True,
    ),
    "qwen3_coder": Case(
        "qwen3_coder",
        "I'll look.\n<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n"
        "<parameter=days>\n3\n</parameter>\n<parameter=metric>\ntrue\n</parameter>\n"
        "<parameter=hours>\n[1, 2]\n</parameter>\n</function>\n</tool_call>",
        "I'll look.",
        [("get_weather", {"city": "Paris", "days": 3, "metric": True, "hours": [1, 2]})],
    ),
    "llama3_bare": Case(
        "llama3",
        '{"name": "get_weather", "parameters": {"city": "Paris"}}',
        None,
        [("get_weather", PARIS)],
    ),
    "llama3_python_tag": Case(
        "llama3",
        '<|python_tag|>{"name": "get_weather", "parameters": {"city": "Paris"}}; '
        '{"name": "get_weather", "parameters": {"city": "Rome"}}',
        None,
        [("get_weather", PARIS), ("get_weather", ROME)],
    ),
    "llama3_newlines": Case(
        "llama3",
        '{"type": "function", "name": "get_weather", "parameters": {"city": "Paris"}}\n'
        '{"name": "get_time", "parameters": {}}',
        None,
        [("get_weather", PARIS), ("get_time", {})],
    ),
    "mistral_list": Case(
        "mistral",
        '[TOOL_CALLS] [{"name": "get_weather", "arguments": {"city": "Paris"}}, '
        '{"name": "get_time", "arguments": {}}]',
        None,
        [("get_weather", PARIS), ("get_time", {})],
    ),
    "mistral_args": Case(
        "mistral",
        'Sure.[TOOL_CALLS]get_weather[ARGS]{"city": "Paris"}[TOOL_CALLS]get_time[ARGS]{}',
        "Sure.",
        [("get_weather", PARIS), ("get_time", {})],
    ),
    "mistral_call_id": Case(
        "mistral",
        '[TOOL_CALLS]get_weather[CALL_ID]a1b2c3d4e[ARGS]{"city": "Paris"}',
        None,
        [("get_weather", PARIS)],
    ),
    "deepseek_v3": Case(
        "deepseek",
        f"{DS_CALLS}{DS_CALL}function{DS_SEP}get_weather\n```json\n"
        f'{{"city": "Paris"}}\n```{DS_CALL_END}\n{DS_CALL}function{DS_SEP}get_time\n'
        f"```json\n{{}}\n```{DS_CALL_END}{DS_CALLS_END}",
        None,
        [("get_weather", PARIS), ("get_time", {})],
    ),
    "deepseek_r1": Case(
        "deepseek",
        f"Weather, so a call.\n</think>\n\nChecking.{DS_CALLS}{DS_CALL}function{DS_SEP}"
        f'get_weather\n```json\n{{"city": "Paris"}}\n```{DS_CALL_END}{DS_CALLS_END}',
        "Checking.",
        [("get_weather", PARIS)],
        reasoning="Weather, so a call.",
        prompt="<｜User｜>weather?<｜Assistant｜><think>\n",
    ),
    "deepseek_v31": Case(
        "deepseek",
        f'{DS_CALLS}{DS_CALL}get_weather{DS_SEP}{{"city": "Paris"}}{DS_CALL_END}'
        f"{DS_CALL}get_time{DS_SEP}{{}}{DS_CALL_END}{DS_CALLS_END}",
        None,
        [("get_weather", PARIS), ("get_time", {})],
    ),
    "harmony": Case(
        "harmony",
        "<|channel|>analysis<|message|>User asks weather. Call the tool.<|end|>"
        "<|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json"
        '<|message|>{"city":"Paris"}',
        None,
        [("get_weather", PARIS)],
        reasoning="User asks weather. Call the tool.",
    ),
    "harmony_final": Case(
        "harmony",
        "<|channel|>analysis<|message|>Simple.<|end|><|start|>assistant<|channel|>final"
        "<|message|>It is sunny.",
        "It is sunny.",
        [],
        reasoning="Simple.",
    ),
    "harmony_recipient_first": Case(
        "harmony",
        "<|channel|>analysis<|message|>Tool.<|end|><|start|>assistant to=functions.get_time"
        "<|channel|>commentary json<|message|>{}<|call|>",
        None,
        [("get_time", {})],
        reasoning="Tool.",
    ),
    "granite": Case(
        "granite",
        'Checking.<|tool_call|>[{"name": "get_weather", "arguments": {"city": "Paris"}}, '
        '{"name": "get_time", "arguments": {}}]',
        "Checking.",
        [("get_weather", PARIS), ("get_time", {})],
    ),
    "phi4_mini": Case(
        "phi4_mini",
        'functools[{"name": "get_weather", "arguments": {"city": "Paris"}}]',
        None,
        [("get_weather", PARIS)],
    ),
    "generic": Case(
        "generic",
        '{"tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris"}}]}',
        None,
        [("get_weather", PARIS)],
    ),
    "generic_response": Case("generic", '{"response": "Hello there"}', "Hello there", []),
}


def parser(case: Case) -> Any:
    ids = iter(f"call_{n}" for n in range(1000))
    return by_name(case.family, thinking=case.thinking).parser(
        TOOLS, prompt=case.prompt, ids=lambda: next(ids)
    )


def message(parsed: Parsed) -> ChatCompletionMessage:
    """The whole answer as OpenAI's message, validated by the SDK's own types."""
    body: dict[str, Any] = {"role": "assistant", "content": parsed.content}
    if parsed.reasoning is not None:
        body["reasoning_content"] = parsed.reasoning
    if parsed.calls:
        body["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in parsed.calls
        ]
    return ChatCompletionMessage.model_validate(body)


def chunk(event: Event) -> ChatCompletionChunk:
    """One stream event as OpenAI's chunk delta."""
    delta: dict[str, Any]
    if isinstance(event, Content):
        delta = {"content": event.text}
    elif isinstance(event, Reasoning):
        delta = {"reasoning_content": event.text}
    elif isinstance(event, CallStart):
        function = {"name": event.name, "arguments": ""}
        delta = {"tool_calls": [{"index": event.index, "id": event.id, "type": "function",
                                 "function": function}]}  # fmt: skip
    else:
        delta = {"tool_calls": [{"index": event.index, "function": {"arguments": event.fragment}}]}
    return ChatCompletionChunk.model_validate(
        {
            "id": "chatcmpl-1",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": "m",
            "choices": [{"index": 0, "delta": delta, "finish_reason": None}],
        }
    )


def streamed(case_parser: Any, pieces: list[str]) -> Parsed:
    """Feed the pieces, check each event's chunk shape, and rebuild the answer."""
    stream = case_parser.stream()
    events: list[Event] = []
    for piece in pieces:
        events += stream.feed(piece)
    events += stream.finish()
    content, reasoning = "", ""
    calls: dict[int, dict[str, str]] = {}
    for event in events:
        chunk(event)
        if isinstance(event, Content):
            content += event.text
        elif isinstance(event, Reasoning):
            reasoning += event.text
        elif isinstance(event, CallStart):
            assert event.index == len(calls), "a call's first event carries its name"
            calls[event.index] = {"id": event.id, "name": event.name, "arguments": ""}
        elif isinstance(event, CallArguments):
            calls[event.index]["arguments"] += event.fragment

    return Parsed(
        content or None,
        reasoning or None,
        [Call(c["id"], c["name"], c["arguments"]) for c in calls.values()],
    )


def same(a: Parsed, b: Parsed) -> None:
    assert (a.content, a.reasoning) == (b.content, b.reasoning)
    assert [(c.name, c.arguments) for c in a.calls] == [(c.name, c.arguments) for c in b.calls]


def split(text: str, cuts: list[int]) -> list[str]:
    points = sorted({c % (len(text) + 1) for c in cuts})
    bounds = [0, *points, len(text)]
    return [text[a:b] for a, b in itertools.pairwise(bounds)]


@pytest.mark.parametrize("name", sorted(CASES))
def test_whole_text_gives_openai_message(name: str) -> None:
    case = CASES[name]
    parsed = parser(case).parse(case.text)
    assert parsed.content == case.content
    assert parsed.reasoning == case.reasoning
    assert [(c.name, json.loads(c.arguments)) for c in parsed.calls] == case.calls
    msg = message(parsed)
    assert [t.function.name for t in msg.tool_calls or []] == [n for n, _ in case.calls]
    for text in (parsed.content or "", parsed.reasoning or ""):
        assert "<tool_call>" not in text
        assert "[TOOL_CALLS]" not in text
        assert "<|" not in text
        assert "｜" not in text


@pytest.mark.parametrize("name", sorted(CASES))
def test_streamed_char_by_char(name: str) -> None:
    case = CASES[name]
    same(streamed(parser(case), list(case.text)), parser(case).parse(case.text))


@pytest.mark.parametrize("name", sorted(CASES))
@settings(max_examples=60, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=12))
def test_streamed_at_any_split(name: str, cuts: list[int]) -> None:
    case = CASES[name]
    same(streamed(parser(case), split(case.text, cuts)), parser(case).parse(case.text))


@pytest.mark.parametrize("name", sorted(CASES))
@settings(max_examples=40, deadline=None)
@given(
    end=st.integers(min_value=0, max_value=10_000),
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=6),
)
def test_truncated_answers_are_text_never_errors(name: str, end: int, cuts: list[int]) -> None:
    """Any prefix (a call cut by max_tokens) parses, and stream and whole agree on it."""
    case = CASES[name]
    text = case.text[: end % (len(case.text) + 1)]
    whole = parser(case).parse(text)
    message(whole)
    for call in whole.calls:
        assert isinstance(json.loads(call.arguments), dict)
    same(streamed(parser(case), split(text, cuts)), whole)


@pytest.mark.parametrize(
    ("family", "text"),
    [
        ("hermes", '<tool_call>\n{"name": "launch_rockets", "arguments": {}}\n</tool_call>'),
        ("hermes", '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Par'),
        ("hermes", '<tool_call>\n{"name": "get_weather", "arguments": [1]}\n</tool_call>'),
        ("qwen3_coder", "<tool_call>\n<function=launch>\n</function>\n</tool_call>"),
        ("llama3", '{"name": "launch_rockets", "parameters": {}}'),
        ("llama3", '{"name": "get_weather", "parameters": {"city": '),
        ("mistral", '[TOOL_CALLS]launch[ARGS]{"a": 1}'),
        ("mistral", '[TOOL_CALLS][{"name": "get_weather", "arguments": {"ci'),
        ("deepseek", f"{DS_CALLS}{DS_CALL}function{DS_SEP}launch\n```json\n{{}}\n```{DS_CALL_END}"),
        ("harmony", '<|channel|>commentary to=functions.launch <|message|>{"a": 1}<|call|>'),
        ("generic", '{"name": "launch", "arguments": {}}'),
        ("granite", '<|tool_call|>[{"name": "launch", "arguments": {}}]'),
        ("phi4_mini", 'functools[{"name": "get_weather", "arguments": {"ci'),
    ],
)
def test_malformed_or_unknown_calls_stay_text(family: str, text: str) -> None:
    case = Case(family, text, None, [])
    parsed = parser(case).parse(text)
    assert parsed.calls == []
    assert parsed.content
    message(parsed)
    same(streamed(parser(case), list(text)), parsed)


def test_content_streams_without_waiting_for_the_end() -> None:
    stream = parser(CASES["hermes"]).stream()
    assert stream.feed("Hello ") == [Content("Hello")]  # the space waits: it may end it
    assert stream.feed("wor") == [Content(" wor")]
    assert stream.feed("ld <tool") == [Content("ld")]  # "<tool" may begin a call
    assert stream.feed("_call>\n") == []
    events = stream.feed('{"name": "get_time", "arguments": {}}\n</tool_call>')
    assert events == [CallStart(0, "call_0", "get_time"), CallArguments(0, "{}")]
    assert stream.finish() == []


def test_thinking_streams_as_reasoning() -> None:
    stream = parser(CASES["deepseek_r1"]).stream()
    assert stream.feed("Let me think") == [Reasoning("Let me think")]
    assert stream.feed("</thi") == []
    assert stream.feed("nk>\n\nIt is") == [Content("It is")]


def test_unclosed_thinking_is_all_reasoning() -> None:
    parsed = parser(CASES["deepseek_r1"]).parse("still thinking about it")
    assert (parsed.content, parsed.reasoning) == (None, "still thinking about it")


@pytest.mark.parametrize(
    ("template", "family", "thinking"),
    [
        ("{{ '<tool_call>' }}{% if tools %}{% endif %}", "hermes", False),
        ("<tool_call>\n<function=x>\n<parameter=y>", "qwen3_coder", False),
        ("{{ '<|start_header_id|>ipython<|end_header_id|>' }}{{ tools }}", "llama3", False),
        ("<|python_tag|>", "llama3", False),
        ("[AVAILABLE_TOOLS][TOOL_CALLS]", "mistral", False),
        ("<｜tool▁calls▁begin｜><think>", "deepseek", True),
        ("<|channel|>analysis<|message|>", "harmony", False),
        ("<tool_call></tool_call><think></think>", "hermes", True),
        ("{{ '<|tool_call|>' }}", "granite", False),
        ("functools[{{ tools }}]", "phi4_mini", False),
        (None, "generic", False),
    ],
)
def test_detection_from_template_markers(template: str | None, family: str, thinking: bool) -> None:
    found = detect(template)
    assert (found.name, found.thinking) == (family, thinking)


@pytest.mark.parametrize(
    ("vllm", "ours"),
    [
        ("hermes", "hermes"),
        ("llama3_json", "llama3"),
        ("mistral", "mistral"),
        ("deepseek_v3", "deepseek"),
        ("deepseek_v31", "deepseek"),
        ("qwen3_coder", "qwen3_coder"),
        ("openai", "harmony"),
    ],
)
def test_vllm_parser_names(vllm: str, ours: str) -> None:
    assert by_name(vllm).name == ours


def test_unknown_parser_name_lists_the_known() -> None:
    from appliance.openai.tool_formats import UnknownFormat

    with pytest.raises(UnknownFormat, match="hermes"):
        by_name("nonesuch")


FRAGMENTS = [
    "<tool_call>", "</tool_call>", "<think>", "</think>", "<|python_tag|>", "[TOOL_CALLS]",
    "[ARGS]", "[CALL_ID]", DS_CALLS, DS_CALL, DS_SEP, DS_CALL_END, DS_CALLS_END, "<|channel|>",
    "analysis", "final", "commentary to=functions.get_time", "<|message|>", "<|end|>",
    "<|start|>assistant", "<|call|>", "<function=get_weather>", "<parameter=city>",
    "</parameter>", "</function>", '{"name": "get_time", "arguments": {}}',
    '{"name": "get_weather", "parameters": {"city": "P"}}', "get_time", "{}", "{", "}", "[",
    "]", '"', ";", "\n", " ", "hello", "<", "|", "```json\n", "```", "function",
    "<|tool_call|>", "functools",
]  # fmt: skip


@pytest.mark.parametrize("family", ["hermes", "qwen3_coder", "llama3", "mistral", "deepseek",
                                    "harmony", "granite", "phi4_mini", "generic"])  # fmt: skip
@pytest.mark.parametrize(("thinking", "prompt"), [(False, ""), (True, ""), (True, "<think>\n")])
@settings(max_examples=150, deadline=None)
@given(
    parts=st.lists(st.sampled_from(FRAGMENTS), max_size=14),
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=8),
)
def test_any_text_streams_as_it_parses(
    family: str, thinking: bool, prompt: str, parts: list[str], cuts: list[int]
) -> None:
    """Whatever mix of markers a model writes: no exception, and the stream agrees."""
    case = Case(family, "".join(parts), None, [], thinking=thinking, prompt=prompt)
    whole = parser(case).parse(case.text)
    message(whole)
    same(streamed(parser(case), split(case.text, cuts)), whole)
