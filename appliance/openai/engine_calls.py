"""Calling an engine from the serving layer: engine errors become API errors."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from appliance.errors import (
    ApiError,
    ContextLengthExceeded,
    InternalError,
    InvalidRequest,
    ServiceUnavailable,
)
from appliance.openai.answers import ChatCompletionTokenLogprob, TopLogprob
from backends.base import (
    Delta,
    EngineError,
    EngineOverloaded,
    EngineUnavailable,
    Prompt,
    PromptTooLong,
    SamplingParams,
    TokenEngine,
    TokenLogprob,
    UnknownToken,
    UnsupportedRequest,
)


def api_error(exc: EngineError) -> ApiError:
    if isinstance(exc, EngineOverloaded):
        return ServiceUnavailable(
            f"The server is busy: {exc}. Retry after {exc.retry_after:g} s.",
            retry_after=exc.retry_after,
        )
    if isinstance(exc, EngineUnavailable):
        return ServiceUnavailable(str(exc), retry_after=5, code="model_unavailable")
    if isinstance(exc, UnsupportedRequest):
        return InvalidRequest(str(exc), param=exc.param)
    if isinstance(exc, UnknownToken):
        return InvalidRequest(str(exc), param="prompt", code="invalid_token_id")
    if isinstance(exc, PromptTooLong):
        return ContextLengthExceeded(
            f"This model's maximum context length is {exc.context_length} tokens, and the "
            f"input has {exc.prompt_tokens} tokens.",
            param="messages",
        )
    return InternalError(f"the engine failed: {exc}")


class _Prefetched:
    """An async iterator whose first delta is already in hand."""

    def __init__(self, first: Delta | None, rest: AsyncIterator[Delta]) -> None:
        self._first = first
        self._rest = rest

    def __aiter__(self) -> _Prefetched:
        return self

    async def __anext__(self) -> Delta:
        if self._first is not None:
            first, self._first = self._first, None
            return first
        try:
            return await self._rest.__anext__()
        except EngineError as exc:
            raise api_error(exc) from exc

    async def aclose(self) -> None:
        await self._rest.aclose()  # type: ignore[attr-defined]


def logprob_entry(lp: TokenLogprob) -> ChatCompletionTokenLogprob:
    return ChatCompletionTokenLogprob(
        token=lp.token,
        logprob=lp.logprob,
        bytes=list(lp.bytes),
        top_logprobs=[
            TopLogprob(token=t.token, logprob=t.logprob, bytes=list(t.bytes)) for t in lp.top
        ],
    )


async def first_deltas(
    engine: TokenEngine, prompt: Prompt, choices: Sequence[SamplingParams]
) -> list[_Prefetched]:
    """Start every choice of one prompt together (an engine may evaluate the prompt once
    and decode the choices side by side) and wait for each one's first delta, so that a
    full queue, a bad grammar or a dead engine is reported before any response byte."""
    streams = engine.generate_choices(prompt, choices)
    started: list[_Prefetched] = []
    try:
        for deltas in streams:
            try:
                first = await deltas.__anext__()
            except StopAsyncIteration:
                started.append(_Prefetched(None, deltas))
                continue
            except EngineError as exc:
                raise api_error(exc) from exc
            started.append(_Prefetched(first, deltas))
    except BaseException:
        await close_all(streams)
        raise
    return started


async def close_all(streams: Sequence[AsyncIterator[Delta]]) -> None:
    """Let go of every choice's stream (those still running are cancelled)."""
    for deltas in streams:
        await deltas.aclose()  # type: ignore[attr-defined]
