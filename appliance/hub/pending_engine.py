"""The stand-in engine of a model whose file is still on the hub.

It holds the model's place in the registry while the file downloads, reports the
download's progress, and answers every request as unavailable; once the file is local
the registry swaps in the real engine. If the download fails it stays, FAILED, with
the reason.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

from appliance.hub.progress import DownloadProgress
from backends.base import (
    Backend,
    Delta,
    EngineStats,
    EngineStatus,
    EngineUnavailable,
    Prompt,
    SamplingParams,
)


class PendingEngine(Backend):
    def __init__(self, model_id: str, source: str) -> None:
        self.model_id = model_id
        self.progress = DownloadProgress(source)
        self._status = EngineStatus.STOPPED
        self._error: str | None = None

    @property
    def status(self) -> EngineStatus:
        return self._status

    def stats(self) -> EngineStats:
        return EngineStats(error=self._error)

    def downloading(self, progress: DownloadProgress) -> None:
        """Progress callback of the download (called on its thread)."""
        self.progress = progress
        self._status = EngineStatus.LOADING

    def fail(self, reason: str) -> None:
        self._status = EngineStatus.FAILED
        self._error = reason

    def _unavailable(self) -> EngineUnavailable:
        state = "failed" if self._status is EngineStatus.FAILED else "downloading"
        return EngineUnavailable(f"model {self.model_id} is {state}")

    async def start(self) -> None:
        raise self._unavailable()

    async def stop(self) -> None:
        if self._status is not EngineStatus.FAILED:
            self._status = EngineStatus.STOPPED

    def render_chat(
        self, messages: Sequence[dict[str, Any]], tools: Sequence[dict[str, Any]] | None
    ) -> Prompt:
        raise self._unavailable()

    def render_text(self, text: str) -> Prompt:
        raise self._unavailable()

    def detokenize(self, tokens: Sequence[int]) -> str:
        raise self._unavailable()

    async def generate(self, prompt: Prompt, params: SamplingParams) -> AsyncIterator[Delta]:
        raise self._unavailable()
        yield  # an async generator, like every engine's
