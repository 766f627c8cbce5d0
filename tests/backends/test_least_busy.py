"""The least-busy choice every replica set makes."""

from __future__ import annotations

from dataclasses import dataclass

from backends.least_busy import LeastBusy


@dataclass
class Server:
    name: str
    in_flight: int = 0
    up: bool = True


def test_the_fewest_in_flight_wins_and_ties_go_round_the_list() -> None:
    servers = [Server("a"), Server("b"), Server("c")]
    picker: LeastBusy[Server] = LeastBusy()
    assert [picker.pick(servers, lambda s: s.up).name for _ in range(4)] == ["a", "b", "c", "a"]
    servers[1].in_flight = 2
    servers[2].in_flight = 1
    assert picker.pick(servers, lambda s: s.up) is servers[0]
    servers[0].in_flight = 3
    assert picker.pick(servers, lambda s: s.up) is servers[2]


def test_only_usable_items_are_picked() -> None:
    servers = [Server("a", up=False), Server("b", in_flight=5)]
    picker: LeastBusy[Server] = LeastBusy()
    assert picker.pick(servers, lambda s: s.up) is servers[1]
    servers[1].up = False
    assert picker.pick(servers, lambda s: s.up) is None
    assert picker.pick([], lambda s: True) is None
