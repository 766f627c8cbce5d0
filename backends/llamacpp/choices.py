"""The streams of one prompt's choices (OpenAI's ``n``), queued together.

The first stream read submits every choice in one go, so the scheduler admits them
together and evaluates the prompt once (the others follow the slot that evaluates it; see
scheduler.py). Each stream relays its own choice's deltas until its slot is released;
closing one before its end (the client went away) cancels that choice, even when it was
never read.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

from backends.base import Delta
from backends.llamacpp.slots import RELEASED, Request


class ChoiceGroup:
    """The choices of one generate_choices call, submitted together by the first of their
    streams to be read."""

    def __init__(
        self,
        submit: Callable[[], Awaitable[list[Request]]],
        cancel: Callable[[Request], None],
    ) -> None:
        self._submit = submit
        self._cancel = cancel
        self._submitted: asyncio.Future[list[Request]] | None = None

    def streams(self, count: int) -> list[AsyncIterator[Delta]]:
        return [ChoiceStream(self, index) for index in range(count)]

    async def request(self, index: int) -> Request:
        if self._submitted is None:
            self._submitted = asyncio.ensure_future(self._submit())
        return (await asyncio.shield(self._submitted))[index]

    def cancel(self, index: int) -> None:
        """Cancel one choice, if it was submitted (a stream closed before its end)."""
        submitted = self._submitted
        if submitted is None:
            return
        if submitted.done() and not submitted.cancelled() and submitted.exception() is None:
            self._cancel(submitted.result()[index])
        elif not submitted.done():
            submitted.add_done_callback(lambda _: self.cancel(index))


class ChoiceStream:
    """One choice's deltas until its slot is released; what the scheduler raises,
    re-raised. Closing it before the end (the client went away) cancels the choice."""

    def __init__(self, group: ChoiceGroup, index: int) -> None:
        self._group = group
        self._index = index
        self._queue: asyncio.Queue[object] | None = None
        self._ended = False

    def __aiter__(self) -> ChoiceStream:
        return self

    async def __anext__(self) -> Delta:
        if self._ended:
            raise StopAsyncIteration
        if self._queue is None:
            self._queue = (await self._group.request(self._index)).queue
        item = await self._queue.get()
        if item is RELEASED:
            self._ended = True
            raise StopAsyncIteration
        if isinstance(item, BaseException):
            self._ended = True
            raise item
        assert isinstance(item, Delta)
        return item

    async def aclose(self) -> None:
        if not self._ended:
            self._ended = True
            self._group.cancel(self._index)
