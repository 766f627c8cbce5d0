"""Fine-tune file checks: every error names its line and field (no torch here)."""

from __future__ import annotations

import json
import subprocess
import sys

from backends.training.examples import MAX_ERRORS, read_examples


def line(obj: object) -> str:
    return json.dumps(obj)


GOOD = line(
    {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
            {"role": "assistant", "content": "Hello.", "weight": 0},
            {"role": "user", "content": "Weather?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "weather", "arguments": "{}"},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
            {"role": "assistant", "content": "Sunny."},
        ],
        "tools": [{"type": "function", "function": {"name": "weather", "parameters": {}}}],
        "parallel_tool_calls": False,
    }
)


def test_a_good_line_is_parsed_with_text_parts_joined_and_weights() -> None:
    result = read_examples([GOOD, "", "   "])  # blank lines are skipped
    assert result.errors == []
    (example,) = result.examples
    assert example.line == 1
    assert example.messages[1]["content"] == "Hi"
    assert [m.get("weight") for m in example.messages if m["role"] == "assistant"] == [0, 1, 1]
    assert example.tools is not None


def test_hostile_lines_name_line_and_field() -> None:
    hostile = [
        GOOD,
        "{not json",
        "[1, 2]",
        line({"messages": [{"role": "user", "content": "hi"}]}),
        line({"messages": [{"role": "user", "content": "hi"}, {"role": "robot", "content": "x"}]}),
        line({"messages": [{"role": "user", "content": 5}, {"role": "assistant", "content": "x"}]}),
        line(
            {
                "messages": [
                    {"role": "user", "content": "hi"},
                    {"role": "assistant", "content": "x", "weight": 0.5},
                ]
            }
        ),
        line({"messages": [{"role": "assistant", "content": "x"}], "extra": 1}),
        line(
            {
                "messages": [
                    {"role": "user", "content": "x", "weight": 1},
                    {"role": "assistant", "content": "y"},
                ]
            }
        ),
        line({"messages": []}),
        line({"messages": [{"role": "assistant", "content": [{"type": "image_url"}]}]}),
        line({"messages": [{"role": "assistant", "content": None}]}),
        line(
            {
                "messages": [
                    {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [{"function": {"name": "f", "arguments": {}}}],
                    }
                ]
            }
        ),
        line({"messages": [{"role": "assistant", "content": "x", "weight": True}]}),
    ]
    result = read_examples(hostile)
    assert len(result.examples) == 1
    found = {(e.line, e.param) for e in result.errors}
    assert found == {
        (2, ""),
        (3, ""),
        (4, "messages"),
        (5, "messages[1].role"),
        (6, "messages[0].content"),
        (7, "messages[1].weight"),
        (8, "extra"),
        (9, "messages[0].weight"),
        (10, "messages"),
        (11, "messages[0].content[0]"),
        (12, "messages[0].content"),
        (13, "messages[0].tool_calls[0].function.arguments"),
        (14, "messages[0].weight"),
    }
    messages = {e.line: e.message for e in result.errors}
    assert "not valid JSON" in messages[2]
    assert "at least one assistant message" in messages[4]
    assert "`robot` is not one of system, user, assistant, tool" in messages[5]
    assert "weight must be 0 or 1" in messages[7]


def test_errors_are_capped_but_all_counted() -> None:
    result = read_examples(["{}"] * (MAX_ERRORS + 5))
    assert len(result.errors) == MAX_ERRORS
    assert result.error_count == MAX_ERRORS + 5


def test_an_empty_file_is_an_error() -> None:
    result = read_examples(["", "\n"])
    assert [(e.line, e.message) for e in result.errors] == [(1, "the file has no examples")]


def test_reading_examples_imports_no_torch() -> None:
    code = (
        "import sys, backends.training.examples, backends.training.spec;"
        "sys.exit('torch' in sys.modules or 'transformers' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
