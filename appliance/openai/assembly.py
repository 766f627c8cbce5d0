"""A whole OpenAI answer assembled from the chunks of its stream.

Radiance asks a proxy engine's upstream for a stream even when the client wants one JSON
body: the chunks say how many tokens were made as they arrive, so a request abandoned by
its client is billed for what the upstream generated until then, and the upstream is
stopped at once. The chunks are merged the way the official SDK accumulates them: text
fields concatenate, lists of indexed entries (tool calls) merge by index, other lists
(log-probabilities) extend, and everything else keeps the last value sent.
"""

from __future__ import annotations

from typing import Any

# Fields that name or classify rather than accumulate: the last value sent stands.
_REPLACED = frozenset({"index", "type", "role", "id", "finish_reason", "stop_reason", "object"})
# The keys of a choice in a chunk that only adds text (with `text` or `delta`).
_PLAIN_CHOICE = frozenset({"index", "delta", "text", "finish_reason", "logprobs"})
_WHOLE_OBJECT = {"chat.completion.chunk": "chat.completion", "text_completion": "text_completion"}


class Assembly:
    """Chunks in, one chat or text completion body out."""

    def __init__(self, endpoint: str) -> None:
        self.chat = endpoint == "chat"
        self.head: dict[str, Any] = {}
        self.choices: dict[int, dict[str, Any]] = {}
        self.usage: dict[str, Any] | None = None
        # The text of plain chunks (one choice, only text, nothing to replace), kept as
        # pieces and joined when any other chunk or the end comes: most chunks are these.
        self._texts: dict[int, list[str]] = {}

    def add(self, chunk: dict[str, Any]) -> None:
        if not self.head:
            self.head = {k: v for k, v in chunk.items() if k not in ("choices", "usage")}
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            self.usage = usage
        choices = chunk.get("choices")
        plain = self._plain_text(choices)
        if plain is not None:
            index, text = plain
            self._texts.setdefault(index, []).append(text)
            return
        self._join_texts()
        for choice in choices if isinstance(choices, list) else ():
            if not isinstance(choice, dict) or not isinstance(choice.get("index", 0), int):
                continue
            index = choice.get("index", 0)
            into = self.choices.setdefault(index, {"index": index})
            if self.chat:
                delta = choice.get("delta")
                message = into.setdefault("message", {})
                if isinstance(delta, dict):
                    merge(message, delta)
                rest = {k: v for k, v in choice.items() if k != "delta"}
            else:
                rest = choice
            merge(into, rest)

    def _plain_text(self, choices: object) -> tuple[int, str] | None:
        """(index, text) of a chunk that only adds text to a choice already under way."""
        if not isinstance(choices, list) or len(choices) != 1:
            return None
        choice = choices[0]
        index = choice.get("index", 0) if isinstance(choice, dict) else None
        if not isinstance(choice, dict) or index not in self.choices:
            return None
        if choice.get("finish_reason") is not None or choice.get("logprobs") is not None:
            return None
        if not _PLAIN_CHOICE.issuperset(choice):
            return None
        if not self.chat:
            text = choice.get("text")
            return (index, text) if isinstance(text, str) and "delta" not in choice else None
        delta = choice.get("delta")
        if not isinstance(delta, dict) or len(delta) != 1 or "text" in choice:
            return None
        content = delta.get("content")
        return (index, content) if isinstance(content, str) else None

    def _join_texts(self) -> None:
        texts, self._texts = self._texts, {}
        for index, pieces in texts.items():
            into = self.choices[index]
            if self.chat:
                merge(into.setdefault("message", {}), {"content": "".join(pieces)})
            else:
                merge(into, {"text": "".join(pieces)})

    def body(self, usage: dict[str, Any]) -> dict[str, Any]:
        """The whole answer, with `usage` when the upstream reported none."""
        self._join_texts()
        head = dict(self.head)
        head["object"] = _WHOLE_OBJECT.get(str(head.get("object")), head.get("object"))
        choices = [self._finished(self.choices[i]) for i in sorted(self.choices)]
        return {**head, "choices": choices, "usage": self.usage or usage}

    def _finished(self, choice: dict[str, Any]) -> dict[str, Any]:
        choice.setdefault("logprobs", None)
        choice.setdefault("finish_reason", None)
        if not self.chat:
            choice.setdefault("text", "")
            return choice
        message = choice["message"]
        message["role"] = message.get("role") or "assistant"
        message.setdefault("content", None)
        message.setdefault("refusal", None)
        calls = message.get("tool_calls")
        if isinstance(calls, list):
            for call in calls:
                if isinstance(call, dict):
                    call.pop("index", None)
            if calls and message["content"] == "":
                # Streams open with empty content; a whole answer that only calls tools
                # has none.
                message["content"] = None
        return choice


def merge(into: dict[str, Any], delta: dict[str, Any]) -> dict[str, Any]:
    """Accumulate one chunk's `delta` into `into` (the SDK's rules, see the module)."""
    for key, value in delta.items():
        old = into.get(key)
        if old is None or value is None or key in _REPLACED:
            if value is not None or key not in into:
                into[key] = value
        elif isinstance(old, str) and isinstance(value, str):
            into[key] = old + value
        elif isinstance(old, dict) and isinstance(value, dict):
            merge(old, value)
        elif isinstance(old, list) and isinstance(value, list):
            _merge_list(old, value)
        else:
            into[key] = value
    return into


def _merge_list(into: list[Any], entries: list[Any]) -> None:
    for entry in entries:
        index = entry.get("index") if isinstance(entry, dict) else None
        if not isinstance(index, int):
            into.append(entry)
            continue
        found = next(
            (e for e in into if isinstance(e, dict) and e.get("index") == index),
            None,
        )
        if found is None:
            into.append(dict(entry))
        else:
            merge(found, entry)
