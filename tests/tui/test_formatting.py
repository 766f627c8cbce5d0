"""How sizes and counts read in the console's narrow columns."""

from __future__ import annotations

import pytest

from tui import formatting as fmt


@pytest.mark.parametrize(
    ("done", "total", "shown"),
    [
        (2_066_400_000, 4_920_000_000, "2.1 of 4.9 GB"),
        (512_000_000, 4_920_000_000, "512.0 MB of 4.9 GB"),
        (1_500_000, None, "1.5 MB"),
        (0, 900, "0 of 900 B"),
    ],
)
def test_download_sizes(done: int, total: int | None, shown: str) -> None:
    assert fmt.size_pair(done, total) == shown


def test_counted() -> None:
    assert fmt.counted(1, "replica") == "1 replica"
    assert fmt.counted(3, "replica") == "3 replicas"
