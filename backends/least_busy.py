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
        best, best_index, fewest = None, 0, 0
        for step in range(count):  # a loop, not lists: this runs once per request
            index = (self._next + step) % count
            item = items[index]
            if (best is None or item.in_flight < fewest) and usable(item):
                best, best_index, fewest = item, index, item.in_flight
        if best is not None:
            self._next = (best_index + 1) % count
        return best
