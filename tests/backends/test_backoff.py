"""The one backoff rule: the wait doubles with each failure in a row, up to a cap."""

from __future__ import annotations

from backends.backoff import Backoff


def test_the_wait_doubles_from_the_first_up_to_the_most() -> None:
    assert [Backoff().after(n) for n in range(1, 9)] == [1, 2, 4, 8, 16, 32, 60, 60]
    assert [Backoff(first=5, most=30).after(n) for n in range(1, 6)] == [5, 10, 20, 30, 30]


def test_any_count_of_failures_gives_a_finite_wait() -> None:
    assert Backoff().after(0) == 1.0  # no failure yet counts as the first
    assert Backoff(first=1.0, most=600.0).after(100_000) == 600.0
