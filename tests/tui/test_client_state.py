"""The console's client (errors become banners or notices) and its rates from counters."""

from __future__ import annotations

import httpx
import pytest
from fake_api import ADMIN, FakeApi

from tui.client import RadianceClient, ServerError
from tui.state import ConsoleState
from tui.wire import LiveSnapshot, ModelLive, RecentRequest, Totals


def reply(status: int, body: object) -> httpx.MockTransport:
    return httpx.MockTransport(lambda request: httpx.Response(status, json=body))


@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        (401, {"error": "Invalid API key.", "code": "UNAUTHORIZED"}, "unauthorized"),
        (403, {"error": "needs the admin key", "code": "FORBIDDEN"}, "forbidden"),
        (404, {"error": {"message": "Not Found"}}, "protocol"),
        (503, {"error": "down"}, "unreachable"),
        (200, {"data": {"unexpected": True}}, "protocol"),
    ],
)
async def test_failures_have_a_kind(status: int, body: object, kind: str) -> None:
    client = RadianceClient("http://x:8000/v1/", ADMIN, transport=reply(status, body))
    with pytest.raises(ServerError) as caught:
        await client.live()
    assert caught.value.kind == kind and caught.value.lasting
    assert ADMIN not in caught.value.message and ADMIN not in repr(client)
    await client.aclose()


async def test_an_unreachable_server_and_a_refused_action() -> None:
    client = RadianceClient("http://x:8000", ADMIN, transport=FakeApi(reachable=False).transport())
    with pytest.raises(ServerError) as caught:
        await client.keys()
    assert caught.value.kind == "unreachable" and "Connection refused" in caught.value.message
    declared = {"error": "key `alice` is declared in radiance.yaml", "code": "KEY_DECLARED"}
    client = RadianceClient("http://x:8000", ADMIN, transport=reply(409, declared))
    with pytest.raises(ServerError) as caught:
        await client.revoke_key("alice")
    assert caught.value.kind == "rejected" and not caught.value.lasting
    assert caught.value.message == declared["error"]


def snapshot(moment: float, sequence: int, tokens: int, requests: int) -> LiveSnapshot:
    model = ModelLive(
        id="tiny",
        name="Tiny",
        status="ready",
        totals=Totals(requests=requests, generated_tokens=tokens),
    )
    recent = [
        RecentRequest(seq=seq, id=str(seq), time=moment, key="alice", model="tiny", status="ok")
        for seq in range(max(1, sequence - 2), sequence + 1)
    ]
    return LiveSnapshot(time=moment, sequence=sequence, models=[model], recent=recent)


def test_rates_come_from_counter_differences_over_server_time() -> None:
    state = ConsoleState(url="http://x")
    assert [r.seq for r in state.take(snapshot(100.0, 2, 0, 0))] == [1, 2]
    assert state.rates == {}  # one snapshot is not a rate yet
    assert [r.seq for r in state.take(snapshot(102.0, 5, 300, 4))] == [3, 4, 5]
    rates = state.rates["tiny"]
    assert rates.tokens_now == 150.0 and rates.requests_now == 2.0
    assert state.since == 5 and len(state.tail) == 5
    # A restart: counters and sequence start again; no negative rate, no bogus sample.
    state.take(snapshot(103.0, 1, 10, 1))
    assert state.rates == {} and state.since == 1 and len(state.tail) == 1
    state.take(snapshot(104.0, 1, 40, 1))
    assert state.rates["tiny"].tokens_now == 30.0
