"""Fine-tune files in OpenAI's chat format, checked line by line (no torch needed).

Each non-blank line is one JSON object::

    {"messages": [{"role": "system" | "user" | "assistant" | "tool", "content": ...,
                   "weight": 0 | 1, "tool_calls": [...], ...}],
     "tools": [...], "parallel_tool_calls": true | false}

The rules follow OpenAI's fine-tune file checks: ``messages`` is a non-empty list with at
least one assistant message; a role is one of the four; content is a string or a list of
text parts (``{"type": "text", "text": ...}``), and may be null only for an assistant
message that has ``tool_calls``; ``weight`` (assistant messages only) is 0 or 1; a
tool call is ``{"id", "type": "function", "function": {"name", "arguments"}}``; no other
top-level keys. Blank lines (only whitespace) are skipped, as OpenAI does. At most
``MAX_ERRORS`` errors are reported; the file is still read to the end to count examples.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import msgspec

MAX_ERRORS = 20
ROLES = ("system", "user", "assistant", "tool")
TOP_LEVEL = ("messages", "tools", "parallel_tool_calls")
MESSAGE_KEYS = {
    "system": {"role", "content", "name"},
    "user": {"role", "content", "name"},
    "assistant": {"role", "content", "name", "weight", "tool_calls", "refusal"},
    "tool": {"role", "content", "tool_call_id", "name"},
}


@dataclass(frozen=True)
class ExampleError:
    line: int  # 1-based line of the file
    param: str  # the field's path in the line's object, e.g. messages[2].role
    message: str

    def as_dict(self) -> dict[str, object]:
        return {"line": self.line, "param": self.param, "message": self.message}


@dataclass(frozen=True)
class Example:
    """One checked line: messages with string content and a ``weight`` on each
    assistant message (1 unless the file said 0), plus the tools offered."""

    line: int
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] | None = None


@dataclass
class ExampleFile:
    examples: list[Example] = field(default_factory=list)
    errors: list[ExampleError] = field(default_factory=list)
    error_count: int = 0  # all errors found; ``errors`` keeps the first MAX_ERRORS

    def add(self, error: ExampleError) -> None:
        self.error_count += 1
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(error)


class _Bad(Exception):
    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param
        self.message = message


_decoder = msgspec.json.Decoder()


def read_examples(lines: Iterable[bytes | str]) -> ExampleFile:
    """Check every line; the valid ones become examples, the rest errors."""
    result = ExampleFile()
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            result.examples.append(parse_line(number, raw))
        except _Bad as bad:
            result.add(ExampleError(number, bad.param, bad.message))
    if not result.examples and not result.error_count:
        result.add(ExampleError(1, "", "the file has no examples"))
    return result


def read_example_file(path: str) -> ExampleFile:
    with open(path, "rb") as handle:
        return read_examples(handle)


def parse_line(number: int, raw: bytes | str) -> Example:
    try:
        obj = _decoder.decode(raw)
    except msgspec.DecodeError as exc:
        raise _Bad("", f"the line is not valid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise _Bad("", f"each line must be a JSON object, not {_kind(obj)}")
    for key in obj:
        if key not in TOP_LEVEL:
            raise _Bad(key, f"unknown key `{key}`; a line has only {', '.join(TOP_LEVEL)}")
    tools = _tools(obj.get("tools"))
    if "parallel_tool_calls" in obj and not isinstance(obj["parallel_tool_calls"], bool):
        raise _Bad("parallel_tool_calls", "parallel_tool_calls must be true or false")
    messages = obj.get("messages")
    if messages is None:
        raise _Bad("messages", "the line has no `messages`")
    if not isinstance(messages, list) or not messages:
        raise _Bad("messages", "messages must be a non-empty list")
    checked = [_message(f"messages[{i}]", m) for i, m in enumerate(messages)]
    if not any(m["role"] == "assistant" for m in checked):
        raise _Bad("messages", "an example needs at least one assistant message")
    return Example(number, checked, tools)


def _message(path: str, message: object) -> dict[str, Any]:
    if not isinstance(message, dict):
        raise _Bad(path, f"a message must be an object, not {_kind(message)}")
    role = message.get("role")
    if role not in ROLES:
        why = "is missing" if role is None else f"`{role}` is not one of {', '.join(ROLES)}"
        raise _Bad(f"{path}.role", f"the role {why}")
    for key in message:
        if key not in MESSAGE_KEYS[role]:
            raise _Bad(f"{path}.{key}", f"{role} messages have no `{key}`")
    out: dict[str, Any] = {"role": role}
    tool_calls = message.get("tool_calls")
    if tool_calls is not None:
        out["tool_calls"] = _tool_calls(f"{path}.tool_calls", tool_calls)
    content = message.get("content")
    if content is None and not (role == "assistant" and tool_calls):
        raise _Bad(f"{path}.content", f"{role} messages need content")
    out["content"] = None if content is None else _content(f"{path}.content", content)
    if role == "assistant":
        weight = message.get("weight", 1)
        if isinstance(weight, bool) or weight not in (0, 1):
            raise _Bad(f"{path}.weight", "weight must be 0 or 1")
        out["weight"] = int(weight)
    for key in ("name", "tool_call_id"):
        if key in message:
            if not isinstance(message[key], str):
                raise _Bad(f"{path}.{key}", f"{key} must be a string")
            out[key] = message[key]
    return out


def _content(path: str, content: object) -> str:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise _Bad(path, f"content must be a string or a list of text parts, not {_kind(content)}")
    texts = []
    for i, part in enumerate(content):
        where = f"{path}[{i}]"
        if not isinstance(part, dict) or part.get("type") != "text":
            raise _Bad(where, 'a content part must be {"type": "text", "text": ...}')
        if not isinstance(part.get("text"), str):
            raise _Bad(f"{where}.text", "a text part's text must be a string")
        texts.append(part["text"])
    return "".join(texts)


def _tool_calls(path: str, calls: object) -> list[dict[str, Any]]:
    if not isinstance(calls, list) or not calls:
        raise _Bad(path, "tool_calls must be a non-empty list")
    for i, call in enumerate(calls):
        where = f"{path}[{i}]"
        if not isinstance(call, dict):
            raise _Bad(where, "a tool call must be an object")
        if call.get("type", "function") != "function":
            raise _Bad(f"{where}.type", "a tool call's type must be `function`")
        function = call.get("function")
        if not isinstance(function, dict):
            raise _Bad(f"{where}.function", "a tool call needs a `function` object")
        if not isinstance(function.get("name"), str) or not function["name"]:
            raise _Bad(f"{where}.function.name", "a tool call needs a function name")
        if not isinstance(function.get("arguments"), str):
            raise _Bad(f"{where}.function.arguments", "arguments must be a JSON string")
    return list(calls)


def _tools(tools: object) -> list[dict[str, Any]] | None:
    if tools is None:
        return None
    if not isinstance(tools, list):
        raise _Bad("tools", "tools must be a list")
    for i, tool in enumerate(tools):
        where = f"tools[{i}]"
        if not isinstance(tool, dict) or tool.get("type", "function") != "function":
            raise _Bad(where, 'a tool must be {"type": "function", "function": {...}}')
        function = tool.get("function")
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise _Bad(f"{where}.function.name", "a tool needs a function name")
    return list(tools)


def _kind(value: object) -> str:
    return {
        dict: "an object",
        list: "a list",
        str: "a string",
        bool: "a boolean",
        int: "a number",
        float: "a number",
    }.get(type(value), "null")
