"""A scripted engine for fast tests of the serving layer (never the only test of a feature)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

from backends.base import (
    Capabilities,
    Delta,
    EngineError,
    EngineStats,
    EngineStatus,
    Prompt,
    SamplingParams,
    TokenEngine,
)

# A Hermes-shaped template's markers: its tool calls are <tool_call> blocks.
HERMES_TEMPLATE = "{{ tools }}<tool_call>{{ messages }}</tool_call>"


class ScriptedEngine(TokenEngine):
    """Answers every request with the same pieces of text, one token each; its chat
    template (only its markers are read) says which format the answers are in."""

    capabilities = Capabilities(embeddings=False, logprobs=False, json_schema=True, tools=True)

    def __init__(
        self,
        pieces: Sequence[str],
        fail_after: int | None = None,
        bug_at: str | None = None,
        template: str | None = HERMES_TEMPLATE,
    ) -> None:
        self.pieces = list(pieces)
        self.template = template
        self.rendered: list[dict[str, Any]] = []  # the options of each render_chat
        self.fail_after = fail_after
        # A bug of our own (not an EngineError) at "render", "first", "middle" or "end".
        self.bug_at = bug_at
        self.seen: list[SamplingParams] = []
        self._status = EngineStatus.STOPPED

    @property
    def status(self) -> EngineStatus:
        return self._status

    def stats(self) -> EngineStats:
        return EngineStats()

    async def start(self) -> None:
        self._status = EngineStatus.READY

    async def stop(self) -> None:
        self._status = EngineStatus.STOPPED

    def render_chat(
        self,
        messages: Sequence[dict[str, Any]],
        tools: Sequence[dict[str, Any]] | None,
        **options: Any,
    ) -> Prompt:
        if self.bug_at == "render":
            raise RuntimeError("a bug while rendering")
        self.rendered.append(options)
        text = "\n".join(str(m.get("content")) for m in messages)
        return self.render_text(text)

    @property
    def chat_template(self) -> str | None:
        return self.template

    def render_text(self, text: str) -> Prompt:
        return Prompt(text, tuple(range(len(text.split()) + 1)))

    def detokenize(self, tokens: Sequence[int]) -> str:
        return " ".join(map(str, tokens))

    async def generate(self, prompt: Prompt, params: SamplingParams) -> AsyncIterator[Delta]:
        self.seen.append(params)
        if self.bug_at == "first":
            raise RuntimeError("a bug before the first token")
        for number, piece in enumerate(self.pieces[: params.max_tokens]):
            if self.fail_after is not None and number == self.fail_after:
                raise EngineError("the device fell over")
            if self.bug_at == "middle" and number == 1:
                raise RuntimeError("a bug mid-stream")
            yield Delta(piece, 1)
        if self.bug_at == "end":
            raise RuntimeError("a bug after the last token")
        reason = "length" if len(self.pieces) > params.max_tokens else "stop"
        yield Delta("", 0, finish_reason=reason)
