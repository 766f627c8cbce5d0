"""Time the analytics queries over a year of ledger rows (1,000,000 by default).

    .venv/bin/python bench/analytics.py [--rows 1000000] [--runs 7] [--db /tmp/analytics.db]

Fills a fresh SQLite file through the real Ledger (group commits that also fold every row
into usage_hourly and latency_hourly), then reports the median time of each query over
several runs, beside the same usage query computed from the raw rows only. The clock is
fixed at a time that is not on an hour, so every window has partial edge hours.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import pathlib
import platform
import random
import sqlite3
import statistics
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TypeVar

import aiosqlite

from appliance.accounting.money import UnitPrices
from appliance.analytics.billing import Month, current_period, invoices
from appliance.analytics.performance import performance
from appliance.analytics.usage import CostRow, Filters, GroupBy, raw_totals, totals
from appliance.analytics.window import Timeframe, Window
from appliance.state.database import Database, open_database
from appliance.state.keys import ApiKey, KeyStore
from appliance.state.ledger import Ledger, RequestRecord

NOW = datetime.datetime(2025, 6, 15, 12, 30, 17, tzinfo=datetime.UTC).timestamp()
YEAR = 365 * 86400
MODELS = {
    "llama-8b": [UnitPrices("0.10", "0.40")],
    "qwen-32b": [UnitPrices("0.50", "1.50"), UnitPrices("0.40", "1.20")],  # price cut mid-year
    "mistral-7b": [UnitPrices("0", "0")],
    "embed-small": [UnitPrices("0.02", "0")],
}
STATUSES = ["ok"] * 94 + ["error"] * 3 + ["cancelled"] * 1 + ["rate_limited"] * 2
CHUNK = 5000
T = TypeVar("T")


def make_row(rng: random.Random, n: int, key: ApiKey, started_at: float) -> RequestRecord:
    model = rng.choice(list(MODELS))
    prices = MODELS[model][0 if started_at < NOW - YEAR / 2 else -1]
    status = rng.choice(STATUSES)
    served = status in ("ok", "cancelled")
    prompt = rng.randint(5, 3000) if served else 0
    completion = rng.randint(1, 800) if served and model != "embed-small" else 0
    ttft = rng.lognormvariate(4.5, 0.6) if completion else None
    latency = (ttft or 1.0) + completion * rng.uniform(5, 40) if served else rng.uniform(1, 20)
    return RequestRecord(
        id=f"bench{n:08d}",
        key_id=key.id,
        key_name=key.name,
        endpoint="embeddings" if model == "embed-small" else "chat",
        route_model=model,
        model=model,
        backend="cpu",
        prompt_tokens=prompt,
        completion_tokens=completion,
        status=status,
        http_status={"ok": 200, "error": 400, "cancelled": 499, "rate_limited": 429}[status],
        error_code=None,
        latency_ms=round(latency, 3),
        ttft_ms=None if ttft is None else round(ttft, 3),
        started_at=started_at,
        ended_at=started_at + latency / 1000,
        prompt_price=prices.prompt,
        completion_price=prices.completion,
        cost_pusd=prices.cost(prompt, completion),
    )


async def fill(db: Database, path: pathlib.Path, rows: int) -> float:
    """`rows` requests over the year before NOW, written through the Ledger; seconds taken."""
    keys = KeyStore(db)
    made = [await keys.create(f"team-{i:02d}", tier=None) for i in range(20)]
    users = [key for key, _ in made]
    weights = [1 / (i + 1) for i in range(len(users))]  # a few heavy keys, a long tail
    rng = random.Random(42)
    times = sorted(rng.uniform(NOW - YEAR, NOW) for _ in range(rows))
    ledger = Ledger(path)
    ledger.start()
    began = time.perf_counter()
    for start in range(0, rows, CHUNK):
        chunk = [
            make_row(rng, n, rng.choices(users, weights)[0], times[n])
            for n in range(start, min(start + CHUNK, rows))
        ]
        await asyncio.gather(*(ledger.record(row) for row in chunk))
    await ledger.close()
    return time.perf_counter() - began


async def cost_rows(conn: aiosqlite.Connection, window: Window) -> list[CostRow]:
    """As the costs endpoint: summed picodollars, rendered as decimal strings."""
    return [t.cost("model") for t in await totals(conn, window, "model")]


async def timed(runs: int, query: Callable[[], Awaitable[T]]) -> tuple[float, T]:
    """Median milliseconds over `runs`, after one warm-up run; and the last result."""
    result = await query()
    samples = []
    for _ in range(runs):
        began = time.perf_counter()
        result = await query()
        samples.append((time.perf_counter() - began) * 1000)
    return statistics.median(samples), result


async def run(path: pathlib.Path, rows: int, runs: int) -> None:
    db = await open_database(path)
    seconds = await fill(db, path, rows)
    conn = db.reader
    async with conn.execute("SELECT COUNT(*) FROM usage_hourly") as cursor:
        (rollup_rows,) = await cursor.fetchone() or (0,)
    async with conn.execute("SELECT COUNT(*) FROM latency_hourly") as cursor:
        (histogram_rows,) = await cursor.fetchone() or (0,)
    print(
        f"filled {rows:,} ledger rows in {seconds:.1f} s through the Ledger "
        f"({rows / seconds:,.0f} rows/s); {rollup_rows:,} usage_hourly rows, "
        f"{histogram_rows:,} latency_hourly rows"
    )
    print(f"python {platform.python_version()}, sqlite {sqlite3.sqlite_version}\n")

    keys = await KeyStore(db).all()
    last_month = Month.containing(NOW - 31 * 86400)
    print(f"| query | median ms ({runs} runs) | result rows |")
    print("|---|---:|---:|")
    timeframes: tuple[Timeframe, ...] = ("24h", "7d", "30d")
    groups: tuple[GroupBy, ...] = ("key", "model", "day")
    for timeframe in timeframes:
        window = Window.last(timeframe, NOW)
        for group_by in groups:
            ms, fast = await timed(runs, partial(totals, conn, window, group_by))
            print(f"| usage by {group_by}, {timeframe} | {ms:.1f} | {len(fast)} |")
            raw_ms, slow = await timed(runs, partial(raw_totals, conn, window, group_by))
            if slow != fast:
                raise SystemExit(f"rollup and raw totals differ for {group_by} {timeframe}")
            print(f"| same from raw rows only | {raw_ms:.1f} | {len(slow)} |")
    for timeframe in timeframes:
        ms, costs = await timed(runs, partial(cost_rows, conn, Window.last(timeframe, NOW)))
        print(f"| costs by model, {timeframe} | {ms:.1f} | {len(costs)} |")
    for timeframe in timeframes:
        window = Window.last(timeframe, NOW)
        ms, found = await timed(runs, partial(performance, conn, window))
        print(f"| performance per model, {timeframe} | {ms:.1f} | {len(found)} |")
    heavy = Filters(key_id=keys[0].id)  # the busiest key: its histograms come from raw rows
    ms, found = await timed(runs, partial(performance, conn, Window.last("30d", NOW), heavy))
    print(f"| performance of the busiest key, 30d | {ms:.1f} | {len(found)} |")
    ms, billing = await timed(runs, partial(current_period, conn, keys, NOW))
    print(f"| billing, current month | {ms:.1f} | {len(billing)} |")
    ms, statements = await timed(runs, partial(invoices, conn, last_month))
    lines = sum(len(invoice.lines) for invoice in statements)
    print(f"| invoices for {last_month} | {ms:.1f} | {len(statements)} ({lines} lines) |")
    await db.close()
    size_mb = sum(p.stat().st_size for p in path.parent.glob(path.name + "*")) / 1e6
    print(f"\ndatabase file: {size_mb:.0f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--db", type=pathlib.Path, default=pathlib.Path("/tmp/radiance-bench.db"))
    args = parser.parse_args()
    for suffix in ("", "-wal", "-shm"):
        pathlib.Path(f"{args.db}{suffix}").unlink(missing_ok=True)
    asyncio.run(run(args.db, args.rows, args.runs))


if __name__ == "__main__":
    main()
