"""Exponential backoff: how long to wait after the n-th failure in a row.

One rule for everything Radiance retries: the next probe of an ejected upstream replica,
the restart of a dead vLLM server, the next attempt of a webhook delivery, the console's
next poll of a server that did not answer. It imports nothing, so any layer (the console
too, by an explicit exception to its import contract) may use it.
"""

from __future__ import annotations

from dataclasses import dataclass

_MOST_DOUBLINGS = 64  # far past any cap; keeps the float finite


@dataclass(frozen=True)
class Backoff:
    first: float = 1.0  # the wait after the first failure
    most: float = 60.0  # the wait never grows past this

    def after(self, failures: int) -> float:
        """The wait after ``failures`` failures in a row: ``first``, twice that, four
        times ..., at most ``most``."""
        doublings = min(max(failures - 1, 0), _MOST_DOUBLINGS)
        return float(min(self.most, self.first * 2.0**doublings))
