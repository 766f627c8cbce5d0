"""Choosing a replica: the usable one with the fewest requests in flight, ties in turn.

Both kinds of replica set pick this way: a deployment's replicas (``backends.replicas``)
and an openai backend's upstream servers (``backends.openai.engine``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Generic, Protocol, TypeVar


class Busy(Protocol):
    @property
    def in_flight(self) -> int: ...


B = TypeVar("B", bound=Busy)


class LeastBusy(Generic[B]):
    """Remembers where the last pick was, so that ties go round the list."""

    def __init__(self) -> None:
        self._next = 0

    def pick(self, items: Sequence[B], usable: Callable[[B], bool]) -> B | None:
        """The usable item with the fewest requests in flight (None if none is usable);
        among equals, the first one after the last pick."""
        count = len(items)
        order = [(self._next + i) % count for i in range(count)]
        candidates = [i for i in order if usable(items[i])]
        if not candidates:
            return None
        best = min(candidates, key=lambda i: items[i].in_flight)
        self._next = (best + 1) % count
        return items[best]
