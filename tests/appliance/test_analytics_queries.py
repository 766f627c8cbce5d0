"""Analytics and billing queries over rows written through the real Ledger, at a fixed clock."""

from __future__ import annotations

import asyncio
import datetime
import itertools
import math
import pathlib
import random
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from appliance.accounting.money import UnitPrices, usd
from appliance.accounting.spending import Spending, period_start
from appliance.analytics.billing import Month, current_period, invoices
from appliance.analytics.performance import percentile, performance
from appliance.analytics.usage import Filters, raw_totals, totals
from appliance.analytics.window import HOUR, Span, Window
from appliance.state.database import Database, open_database
from appliance.state.keys import ApiKey, KeyStore
from appliance.state.ledger import Ledger, RequestRecord, latency_bucket

# Saturday 2025-03-15 12:30:00 UTC.
NOW = datetime.datetime(2025, 3, 15, 12, 30, tzinfo=datetime.UTC).timestamp()
CHEAP = UnitPrices("0.10", "0.40")
DEAR = UnitPrices("0.20", "0.80")  # the price of `tiny` from 2025-03-10 on
_ids = itertools.count()


def row(
    key: ApiKey,
    started_at: float,
    *,
    model: str | None = "tiny",
    prompt: int = 10,
    completion: int = 20,
    status: str = "ok",
    prices: UnitPrices = CHEAP,
    latency_ms: float = 200.0,
    ttft_ms: float | None = 50.0,
) -> RequestRecord:
    return RequestRecord(
        id=f"req{next(_ids)}",
        key_id=key.id,
        key_name=key.name,
        endpoint="chat",
        route_model=model,
        model=model,
        backend="cpu" if model else None,
        prompt_tokens=prompt,
        completion_tokens=completion,
        status=status,
        http_status={"ok": 200, "error": 400, "cancelled": 499, "rate_limited": 429}[status],
        error_code=None,
        latency_ms=latency_ms,
        ttft_ms=ttft_ms,
        started_at=started_at,
        ended_at=started_at + latency_ms / 1000,
        prompt_price=prices.prompt,
        completion_price=prices.completion,
        cost_pusd=prices.cost(prompt, completion),
    )


@dataclass
class World:
    db: Database
    ledger: Ledger
    alice: ApiKey
    bob: ApiKey
    carol: ApiKey  # never used

    async def write(self, rows: list[RequestRecord]) -> None:
        """Through the ledger's group commits, as the server writes them."""
        self.ledger.start()
        for record in rows:
            await self.ledger.record(record)
        await self.ledger.close()


@pytest.fixture
async def world(tmp_path: pathlib.Path) -> AsyncIterator[World]:
    db = await open_database(tmp_path / "state.db")
    keys = KeyStore(db)
    alice, _ = await keys.create("alice", tier=None, budget_usd="0.001", budget_period="month")
    bob, _ = await keys.create("bob", tier=None, budget_usd="0.00001", budget_period="day")
    carol, _ = await keys.create("carol", tier=None)
    yield World(db, Ledger(tmp_path / "state.db"), alice, bob, carol)
    await db.close()


def expected(rows: list[RequestRecord], window: Window) -> tuple[int, int, int, int]:
    inside = [r for r in rows if window.start <= r.started_at < window.end]
    return (
        len(inside),
        sum(r.prompt_tokens for r in inside),
        sum(r.completion_tokens for r in inside),
        sum(r.cost_pusd for r in inside),
    )


def test_window_splits_into_whole_hours_and_edges() -> None:
    aligned = Window.hours(100, 124)
    assert aligned.whole_hours == (100, 124)
    assert [(s.start, s.end) for s in aligned.edges] == [(360000.0, 360000.0), (446400.0, 446400.0)]
    ragged = Window(100 * HOUR + 0.5, 124 * HOUR + 10)
    assert ragged.whole_hours == (101, 124)
    assert ragged.edges == (Span(100 * HOUR + 0.5, 101 * HOUR), Span(124 * HOUR, 124 * HOUR + 10))
    inside_one_hour = Window(100 * HOUR + 5, 100 * HOUR + 50)
    assert inside_one_hour.whole_hours[0] == inside_one_hour.whole_hours[1]
    assert inside_one_hour.edges[0] == Span(100 * HOUR + 5, 100 * HOUR + 50)
    across_one_edge = Window(100 * HOUR + 5, 101 * HOUR + 5)
    assert across_one_edge.edges[0] == Span(100 * HOUR + 5, 101 * HOUR + 5)
    assert Window.last("24h", NOW) == Window(NOW - 86400, NOW)


async def test_usage_and_costs_are_exact_at_the_hour_edges(world: World) -> None:
    a, b = world.alice, world.bob
    window = Window.last("24h", NOW)  # [03-14 12:30, 03-15 12:30)
    start = window.start
    rows = [
        row(a, start - 0.001, prompt=1000),  # just before: excluded
        row(a, start),  # the first instant: included (a raw edge row)
        row(a, start + 1799.999, prompt=7, completion=3),  # last instant of the head edge
        row(a, start + 1800),  # 13:00, the first whole hour
        row(b, start + 1800 + 0.25, model="plain", prices=UnitPrices("0", "0")),
        row(b, start + 5000, status="error", prompt=0, completion=0, ttft_ms=None),
        row(b, start + 6000, model=None, status="error", prompt=0, completion=0, ttft_ms=None),
        row(a, NOW - 3600 - 0.001, completion=999),  # 11:29:59.999: a whole hour
        row(a, NOW - 1800),  # 12:00: the tail edge
        row(b, NOW - 0.001, prices=DEAR, prompt=123_456, completion=7),
        row(b, NOW, prompt=5000),  # the window's end: excluded
        row(a, NOW + 10, prompt=5000),  # later: excluded
    ]
    await world.write(rows)
    conn = world.db.reader
    by_key = {t.group: t for t in await totals(conn, window, "key")}
    for key in (a, b):
        mine = [r for r in rows if r.key_id == key.id]
        n, prompt, completion, cost = expected(mine, window)
        got = by_key[key.name]
        assert (got.requests, got.prompt_tokens, got.completion_tokens) == (n, prompt, completion)
        assert got.cost_pusd == cost
    assert by_key["alice"].requests == 5 and by_key["bob"].requests == 4
    # Hand-checked: bob's 123456 prompt tokens at 0.20 and 7 completion at 0.80 per 1M.
    assert by_key["bob"].cost(group_by="key").cost == "0.0246968"
    # 9 + 1.9 + 9 + 400.6 + 9 micro-USD: the five of alice's rows inside the window.
    assert by_key["alice"].cost(group_by="key").cost == "0.0004295"
    by_model = {t.group: t for t in await totals(conn, window, "model")}
    assert set(by_model) == {"tiny", "plain", None}
    assert by_model[None].requests == 1 and by_model["plain"].cost_pusd == 0
    by_day = await totals(conn, window, "day")
    assert [t.group for t in by_day] == ["2025-03-14", "2025-03-15"]
    assert sum(t.requests for t in by_day) == expected(rows, window)[0] == 9
    for group_by in ("key", "model", "day"):
        assert await totals(conn, window, group_by) == await raw_totals(conn, window, group_by)
    only = await totals(conn, window, "model", Filters(key_id=b.id, model="tiny"))
    assert [(t.group, t.requests, t.prompt_tokens) for t in only] == [("tiny", 2, 123_456)]


async def test_every_window_agrees_with_the_raw_rows(world: World) -> None:
    rng = random.Random(7)
    keys = [world.alice, world.bob]
    rows = [
        row(
            rng.choice(keys),
            NOW - rng.uniform(0, 40 * 86400),
            model=rng.choice(["tiny", "plain", None]),
            prompt=rng.randint(0, 500),
            completion=rng.randint(0, 500),
            prices=rng.choice([CHEAP, DEAR]),
        )
        for _ in range(400)
    ]
    await world.write(rows)
    conn = world.db.reader
    for timeframe in ("1h", "24h", "7d", "30d"):
        for now in (NOW, NOW - 1234.5, float(int(NOW // HOUR) * HOUR)):
            window = Window.last(timeframe, now)
            for group_by in ("key", "model", "day"):
                fast = await totals(conn, window, group_by)
                assert fast == await raw_totals(conn, window, group_by)
            n, _, _, cost = expected(rows, window)
            assert sum(t.requests for t in fast) == n
            assert sum(t.cost_pusd for t in fast) == cost


def nearest_rank(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


async def test_performance_counts_rates_and_percentiles(world: World) -> None:
    rng = random.Random(3)
    a = world.alice
    window = Window.last("7d", NOW)
    ok_rows = [
        row(
            a,
            NOW - rng.uniform(0, 7 * 86400),
            latency_ms=rng.lognormvariate(5, 1) + 1,
            ttft_ms=rng.uniform(2, 300),
            completion=rng.randint(2, 60),
        )
        for _ in range(500)
    ]
    # Slow ones in the partial hour at the window's end: p95 depends on reading them raw.
    ok_rows += [row(a, NOW - 60 - i, latency_ms=5000 + i, ttft_ms=1000) for i in range(20)]
    others = [
        row(a, NOW - 100, status="error", prompt=0, completion=0, ttft_ms=None),
        row(a, NOW - 200, status="error", prompt=0, completion=0, ttft_ms=None),
        row(a, NOW - 300, status="rate_limited", prompt=0, completion=0, ttft_ms=None),
        row(a, NOW - 400, status="cancelled", completion=5, latency_ms=900, ttft_ms=40),
        row(a, NOW - 8 * 86400, latency_ms=99999),  # outside the window
    ]
    await world.write(ok_rows + others)
    (tiny,) = await performance(world.db.reader, window)
    assert (tiny.model, tiny.requests, tiny.ok, tiny.errors) == ("tiny", 524, 520, 2)
    assert (tiny.cancelled, tiny.rate_limited) == (1, 1)
    assert tiny.error_rate == round(2 / 524, 6) and tiny.rate_limited_rate == round(1 / 524, 6)
    latencies = [r.latency_ms for r in ok_rows]
    ttfts = [r.ttft_ms for r in ok_rows + others[3:4] if r.ttft_ms is not None]
    for got, values, q in [
        (tiny.latency_p50_ms, latencies, 0.5),
        (tiny.latency_p95_ms, latencies, 0.95),
        (tiny.ttft_p50_ms, ttfts, 0.5),
        (tiny.ttft_p95_ms, ttfts, 0.95),
    ]:
        exact = nearest_rank(values, q)
        assert got is not None and abs(got - exact) / exact <= 0.05
    generated = [g for r in ok_rows + others[3:4] if (g := r.generation) is not None]
    speed = sum(t for t, _ in generated) / (sum(ms for _, ms in generated) / 1000)
    assert tiny.tokens_per_s is not None and abs(tiny.tokens_per_s - speed) < 0.01
    # The window starts and ends mid-hour: its edge rows are read raw and bucketed as the
    # ledger buckets them, so the merged histogram is that of exactly the rows inside.
    assert window.edges[0].start < window.edges[0].end
    assert tiny.latency_p95_ms == percentile(Counter(map(latency_bucket, latencies)), 0.95)
    assert tiny.ttft_p50_ms == percentile(Counter(map(latency_bucket, ttfts)), 0.5)
    assert percentile({latency_bucket(100): 1}, 0.5) == pytest.approx(100, rel=0.05)
    assert percentile({}, 0.5) is None
    (filtered,) = await performance(world.db.reader, window, Filters(key_id=a.id))
    assert filtered == tiny
    assert await performance(world.db.reader, window, Filters(model="plain")) == []


async def test_current_period_totals_and_budgets(world: World) -> None:
    a, b = world.alice, world.bob
    march = NOW - 14 * 86400  # 03-01 12:30
    rows = [
        row(a, march - 86400),  # February: not this period
        row(a, march, prompt=1000, completion=1000),
        row(a, NOW - 10, prices=DEAR, prompt=500, completion=250),
        row(b, NOW - 86400, prompt=100, completion=0),  # yesterday: not in bob's day budget
        row(b, NOW - 60, prompt=20, completion=5),
    ]
    await world.write(rows)
    found = {k.key: k for k in await current_period(world.db.reader, await _keys(world), NOW)}
    assert set(found) == {"alice", "bob", "carol"}
    alice, bob, carol = found["alice"], found["bob"], found["carol"]
    assert (alice.month, alice.requests, alice.prompt_tokens, alice.completion_tokens) == (
        "2025-03",
        2,
        1500,
        1250,
    )
    # 1000*0.10 + 1000*0.40 + 500*0.20 + 250*0.80 per 1M tokens = 0.0008 USD.
    assert alice.cost == "0.0008"
    assert alice.budget is not None
    assert (alice.budget.usd, alice.budget.spent, alice.budget.remaining) == (
        "0.001",
        "0.0008",
        "0.0002",
    )
    assert alice.budget.resets_at == "2025-04-01T00:00:00Z"
    assert bob.cost == "0.000014" and bob.budget is not None
    # Bob's budget is per day: only today's 20 + 5 tokens count, and it is spent.
    assert (bob.budget.period, bob.budget.spent, bob.budget.remaining) == (
        "day",
        "0.000004",
        "0.000006",
    )
    assert bob.budget.resets_at == "2025-03-16T00:00:00Z"
    assert (carol.requests, carol.cost, carol.budget) == (0, "0.00", None)


async def _keys(world: World) -> list[ApiKey]:
    return await KeyStore(world.db).all()


async def test_invoices_have_a_line_per_model_and_price(world: World) -> None:
    a, b = world.alice, world.bob
    first = datetime.datetime(2025, 3, 1, tzinfo=datetime.UTC).timestamp()
    end = datetime.datetime(2025, 4, 1, tzinfo=datetime.UTC).timestamp()
    rows = [
        row(a, first - 0.001, prompt=999),  # February
        row(a, first, prompt=1_000_000, completion=0),  # the first instant of March
        row(a, first + 86400, prompt=0, completion=500_000),
        row(a, first + 9 * 86400, prices=DEAR, prompt=1_000_000, completion=1),  # new price
        row(a, first + 10 * 86400, model="plain", prices=UnitPrices("0", "0")),
        row(a, first + 11 * 86400, status="error", prompt=0, completion=0, ttft_ms=None),
        row(a, end - 0.001, prompt=3, completion=4),  # the last instant of March
        row(a, end, prompt=999),  # April
        row(b, first - 3600, prompt=50),  # bob: February only
    ]
    await world.write(rows)
    (statement,) = await invoices(world.db.reader, Month.parse("2025-03"))
    assert (statement.key, statement.month, statement.currency) == ("alice", "2025-03", "USD")
    assert (statement.period_start, statement.period_end) == (
        "2025-03-01T00:00:00Z",
        "2025-04-01T00:00:00Z",
    )
    lines = [
        (
            line.model,
            line.prompt_price,
            line.completion_price,
            line.requests,
            line.prompt_tokens,
            line.completion_tokens,
            line.prompt_amount,
            line.completion_amount,
            line.amount,
        )
        for line in statement.lines
    ]
    assert lines == [
        ("plain", "0", "0", 1, 10, 20, "0.00", "0.00", "0.00"),
        ("tiny", "0.10", "0.40", 4, 1_000_003, 500_004, "0.1000003", "0.2000016", "0.3000019"),
        ("tiny", "0.20", "0.80", 1, 1_000_000, 1, "0.2", "0.0000008", "0.2000008"),
    ]
    assert statement.total == "0.5000027"
    march = [r for r in rows if first <= r.started_at < end]
    assert statement.total == usd(sum(r.cost_pusd for r in march))
    feb = await invoices(world.db.reader, Month.parse("2025-02"))
    assert [(s.key, s.total) for s in feb] == [("alice", "0.0001079"), ("bob", "0.000013")]
    assert await invoices(world.db.reader, Month.parse("2025-05")) == []


@pytest.mark.parametrize("text", ["2025-13", "2025-1", "25-01", "2025-00", "march", ""])
def test_a_bad_month_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="YYYY-MM"):
        Month.parse(text)


async def test_spend_committed_while_a_period_is_read_is_counted(world: World) -> None:
    """The first read of a key's period and a row committed right behind it: the answer
    and the listener's update reach the loop together, and the row's cost is counted."""
    spending = Spending(world.ledger)
    world.ledger.listeners.append(spending.committed)
    world.ledger.start()
    now = time.time()
    start = period_start("month", now)
    await world.ledger.record(row(world.alice, now))
    before = row(world.alice, now).cost_pusd
    read = asyncio.ensure_future(spending.spent(world.alice.id, start))
    for _ in range(3):
        await asyncio.sleep(0)  # the read is queued on the writer
    late = asyncio.ensure_future(world.ledger.record(row(world.alice, now)))
    await asyncio.sleep(0)  # the row is queued behind it
    time.sleep(0.3)  # noqa: ASYNC251 - the loop is busy: both answers are waiting when it looks
    assert await read in (before, 2 * before)
    await late
    assert await spending.spent(world.alice.id, start) == 2 * before
    # A hold counts against the budget until it is released, once.
    release = spending.hold(world.alice.id, start, 7)
    assert spending.held(world.alice.id, start) == 7
    release()
    release()
    assert spending.held(world.alice.id, start) == 0
    await world.ledger.close()
