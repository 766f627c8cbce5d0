"""Reasoning in ``<think>...</think>`` (DeepSeek-R1, Qwen3, QwQ) ahead of the answer.

Some templates open ``<think>`` in the prompt (DeepSeek-R1, Qwen3 in some versions), so
the output starts inside the thinking and only closes it; others leave the model to write
both tags. A model that never closes its thinking has written reasoning only.
"""

from __future__ import annotations

from dataclasses import dataclass

from appliance.openai.tool_formats.model import Family, Item, Think, Tools, partial_marker

OPEN = "<think>"
CLOSE = "</think>"


def prompt_opens_thinking(prompt: str) -> bool:
    """Whether a rendered prompt ends inside an open ``<think>`` block."""
    return prompt.rstrip().endswith(OPEN)


@dataclass(frozen=True)
class Thinking:
    """A family whose answer may begin with a ``<think>`` block."""

    inner: Family
    opens_inside: bool = False

    @property
    def name(self) -> str:
        return self.inner.name

    def scan(self, text: str, tools: Tools, final: bool) -> list[Item]:
        start = 0
        if not self.opens_inside:
            stripped = text.lstrip()
            if not final and OPEN.startswith(stripped):
                return []  # nothing yet, or a prefix of <think>
            if not stripped.startswith(OPEN):
                return self.inner.scan(text, tools, final)
            start = len(text) - len(stripped) + len(OPEN)
        elif text.lstrip().startswith(OPEN):
            start = text.index(OPEN) + len(OPEN)  # the model opened it again
        elif not final and OPEN.startswith(text.lstrip()) and text.strip():
            return []
        end = text.find(CLOSE, start)
        if end < 0:
            stop = len(text) if final else partial_marker(text, (CLOSE,))
            return [Think(text[start : max(start, stop)])]
        return [Think(text[start:end]), *self.inner.scan(text[end + len(CLOSE) :], tools, final)]
