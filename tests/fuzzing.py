"""What the fuzz tests and scripts/fuzz_long.py share: the schemathesis run, and a
hand-made corpus of malformed requests for the three inference endpoints.

Each corpus case is (path, raw body, the `param` the 4xx must name, or None when any 4xx
in the envelope will do).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from conftest import RunningServer

# Small completions: the fuzzer's requests that do generate stay quick.
FUZZ_TIERS = """
tiers:
  free: {rpm: 1000000, tpm: 1000000000, max_tokens: 8}
"""
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
TESTS = Path(__file__).resolve().parent


def schemathesis(
    server: RunningServer,
    key: str,
    report: Path,
    examples: int,
    checks: str = "not_a_server_error",
    phases: str = "examples,coverage,fuzzing",
    options: tuple[str, ...] = (),
    hooks: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """One schemathesis run over every operation of the server's own OpenAPI document
    (`options`: more of its flags, such as filters), each request recorded in the HAR file
    `report`; exit code 0 only when every one of `checks` held (by default: no 5xx).
    `hooks` names a module of schemathesis hooks in tests/."""
    env = dict(os.environ)
    if hooks is not None:
        env["SCHEMATHESIS_HOOKS"] = hooks
        paths = [str(TESTS), str(TESTS.parent), env.get("PYTHONPATH")]
        env["PYTHONPATH"] = os.pathsep.join(filter(None, paths))
    return subprocess.run(
        [
            str(SCHEMATHESIS),
            "run",
            f"{server.root_url}/schema/openapi.json",
            "--url",
            server.root_url,
            "--header",
            f"Authorization: Bearer {key}",
            "--checks",
            checks,
            "--phases",
            phases,
            *options,
            "--max-examples",
            str(examples),
            "--workers",
            "1",
            "--request-timeout",
            "60",
            "--seed",
            "1",
            "--no-color",
            "--output-truncate",
            "true",
            "--report",
            "har",
            "--report-har-path",
            str(report),
        ],
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
        env=env,
    )


Case = tuple[str, bytes, str | None]

CHAT: dict[str, Any] = {
    "model": "tiny",
    "messages": [{"role": "user", "content": "hi"}],
    "max_tokens": 4,
}
COMPLETION: dict[str, Any] = {"model": "tiny", "prompt": "hi", "max_tokens": 4}
EMBEDDING: dict[str, Any] = {"model": "tiny", "input": "hi"}
RESPONSE: dict[str, Any] = {"model": "tiny", "input": "hi", "max_output_tokens": 4}
BODIES = {
    "/chat/completions": CHAT,
    "/completions": COMPLETION,
    "/embeddings": EMBEDDING,
    "/responses": RESPONSE,
}

# Values of the wrong type or out of range for (nearly) every field.
WRONG = [None, True, -1, 2**70, 1e308, "", "x" * 300, [], [1, "a"], {"a": 1}, "NaN"]
FIELDS = {
    "/chat/completions": [
        "model",
        "messages",
        "max_tokens",
        "max_completion_tokens",
        "temperature",
        "top_p",
        "n",
        "stop",
        "seed",
        "frequency_penalty",
        "presence_penalty",
        "repetition_penalty",
        "logit_bias",
        "logprobs",
        "top_logprobs",
        "response_format",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "stream",
        "stream_options",
        "user",
    ],
    "/completions": [
        "model",
        "prompt",
        "max_tokens",
        "temperature",
        "top_p",
        "n",
        "stop",
        "seed",
        "logprobs",
        "echo",
        "suffix",
        "best_of",
        "logit_bias",
        "stream",
        "stream_options",
    ],
    "/embeddings": ["model", "input", "encoding_format", "dimensions", "user"],
    "/responses": [
        "model",
        "input",
        "instructions",
        "max_output_tokens",
        "temperature",
        "top_p",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "text",
        "metadata",
        "store",
        "previous_response_id",
        "stream",
        "seed",
    ],
}
REQUIRED = {
    "/chat/completions": ["model", "messages"],
    "/completions": ["model", "prompt"],
    "/embeddings": ["model", "input"],
    "/responses": ["model", "input"],
}


def _json(body: dict[str, Any]) -> bytes:
    return json.dumps(body).encode()


def _with(path: str, **fields: Any) -> bytes:
    return _json({**BODIES[path], **fields})


def cases() -> Iterator[Case]:
    for path, fields in FIELDS.items():
        for field in fields:
            for value in WRONG:
                # Some wrong-looking values are valid (null, a bool for `stream`): any
                # answer below 500 in the right envelope is fine for those.
                yield path, _with(path, **{field: value}), None
        for field in REQUIRED[path]:
            body = dict(BODIES[path])
            del body[field]
            yield path, _json(body), field
        yield path, b"", None
        yield path, b"not json", None
        yield path, b"[1, 2]", None
        yield path, b'{"model": "tiny", "\xff\xfe": "\xc3\x28"}', None  # invalid UTF-8
        yield path, b"[" * 100_000 + b"]" * 100_000, None
        yield path, b'{"model": ' + b"[" * 3000 + b"]" * 3000 + b"}", None
        yield path, _with(path, model="模型"), "model"
        yield path, _with(path, model="a\r\nx-injected: 1"), "model"
        yield path, _with(path, model="m" * 50_000), "model"
        yield path, _with(path, unknown_field=1), None
    chat = "/chat/completions"
    yield chat, _with(chat, messages=[]), "messages"
    yield chat, _with(chat, messages=[{"role": "robot", "content": "x"}]), "messages[0].role"
    yield chat, _with(chat, messages=[{"content": "x"}]), "messages[0].role"
    yield chat, _with(chat, messages=[{"role": "user", "content": 5}]), "messages[0].content"
    yield chat, _with(chat, messages=[{"role": "user"}]), "messages[0].content"
    yield chat, _with(chat, messages=[{"role": "user", "content": [{"type": "image_url"}]}]), None
    yield chat, _with(chat, messages=[{"role": "user", "content": "x"}] * 5000), None
    yield chat, _with(chat, max_tokens=-1), "max_tokens"
    yield chat, _with(chat, max_tokens=10**12), "max_tokens"
    yield chat, _with(chat, n=10**9), "n"
    yield chat, _with(chat, temperature=1e308), "temperature"
    yield chat, _with(chat, stop=["s"] * 1000), "stop"
    yield chat, _with(chat, logit_bias={"abc": 1}), "logit_bias"
    yield chat, _with(chat, logit_bias={"999999": 1}), "logit_bias"
    yield chat, _with(chat, logit_bias={"1": 1000}), None
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
    yield chat, _with(chat, tools=[tool] * 10_000), None
    yield chat, _with(chat, tools=[tool, tool]), "tools"
    yield chat, _with(chat, tool_choice="required"), "tool_choice"
    yield (
        chat,
        _with(chat, tool_choice={"type": "function", "function": {"name": "g"}}, tools=[tool]),
        "tool_choice",
    )
    yield chat, _with(chat, response_format={"type": "json_schema"}), None
    yield chat, _with(chat, response_format={"type": "xml"}), None
    yield chat, _with(chat, reasoning_effort="extreme"), "reasoning_effort"
    yield chat, _with(chat, stream_options={"include_usage": "yes"}), None
    completions = "/completions"
    for prompt, param in (
        ([999999], "prompt"),
        ([-1], "prompt"),
        ([[1], [2**40]], "prompt[1]"),
        ([], "prompt"),
        ([[]], None),
        ([1, "a"], None),
        (["x"] * 3000, "prompt"),
    ):
        yield completions, _with(completions, prompt=prompt), param
    embeddings = "/embeddings"
    for value, param in (
        ([[-1]], "input"),
        ([[15339, 1917]], "input"),
        ([], "input"),
        ([""], "input[0]"),
        ([[]], "input[0]"),
        (["x"] * 3000, "input"),
        ([[1, 2], "x"], None),
    ):
        yield embeddings, _with(embeddings, input=value), param
    responses = "/responses"
    function = {"type": "function", "name": "f", "parameters": {"type": "object"}}
    for fields, param in (
        ({"input": [{"type": "computer_call_output", "call_id": "c"}]}, "input[0].type"),
        ({"input": [{"type": "reasoning", "summary": []}]}, "input"),
        ({"input": [{"type": 5}]}, "input[0].type"),
        ({"input": [{"role": "user", "content": 5}]}, "input[0].content"),
        ({"input": [{"role": "user", "content": [{"type": "input_text"}]}]}, None),
        ({"input": [{"type": "function_call", "call_id": "c", "name": "f"}]}, None),
        ({"input": [{"role": "user", "content": "x"}] * 5000}, None),
        ({"tools": [function] * 10_000}, None),
        ({"tools": [{"type": "function"}]}, "tools[0].name"),
        ({"tools": [{"type": "mcp", "server_url": "http://x"}]}, "tools[0].type"),
        ({"tool_choice": {"type": "function", "name": "g"}, "tools": [function]}, None),
        ({"text": {"format": {"type": "xml"}}}, None),
        ({"text": {"format": {"type": "json_schema", "schema": {"type": 5}}}}, None),
        ({"metadata": {str(i): "v" for i in range(100)}}, "metadata"),
        ({"previous_response_id": "x" * 5000}, "previous_response_id"),
        ({"truncation": "auto"}, "truncation"),
        ({"include": ["message.output_text.logprobs"]}, "include"),
        ({"conversation": "conv_1"}, "conversation"),
    ):
        yield responses, _with(responses, **fields), param
