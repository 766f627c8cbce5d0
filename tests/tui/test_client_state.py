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


async def test_deployments_come_page_by_page() -> None:
    """However small the server's pages, the listing follows `hasMore` to the end."""
    everyone = [{"id": f"dep-{n}", "status": "ready"} for n in range(5)]
    asked: list[int] = []

    def pages(request: httpx.Request) -> httpx.Response:
        offset = int(request.url.params["offset"])
        asked.append(offset)
        page = everyone[offset : offset + 2]
        more = offset + len(page) < len(everyone)
        pagination = {"total": 5, "limit": 2, "offset": offset, "hasMore": more}
        return httpx.Response(200, json={"data": page, "message": "", "pagination": pagination})

    client = RadianceClient("http://x:8000", ADMIN, transport=httpx.MockTransport(pages))
    listed = await client.deployments()
    assert [dep.id for dep in listed] == [f"dep-{n}" for n in range(5)] and asked == [0, 2, 4]
    await client.aclose()


async def test_deployment_actions_refused_or_gone_are_rejected() -> None:
    client = RadianceClient("http://x:8000", ADMIN, transport=FakeApi().transport())
    scaled = await client.scale_deployment("qwen2.5-0.5b", 3)
    assert scaled.configuration.replicas == 3 and scaled.configuration.auto_scaling
    for action in (client.scale_deployment("tiny", 2), client.delete_deployment("tiny")):
        with pytest.raises(ServerError) as caught:
            await action
        assert caught.value.kind == "rejected" and caught.value.status == 409
        assert "declared in radiance.yaml" in caught.value.message
    with pytest.raises(ServerError) as caught:
        await client.delete_deployment("no-such")
    assert caught.value.kind == "rejected" and caught.value.status == 404
    assert caught.value.message == "no deployment `no-such`"
    await client.aclose()
