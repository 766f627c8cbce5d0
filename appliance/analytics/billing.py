"""Billing: what each key owes for the current calendar month (UTC), and monthly statements.

Months start on a UTC hour, so both read only the hourly rollups (through
``appliance.state.key_usage``) and are exact: a statement line is one (model, prompt price,
completion price), and its amounts are the token counts times the unit prices, in integer
picodollars, so anyone can check them by multiplication. No payment methods: the appliance
bills internally.
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass

import msgspec

from appliance.accounting.money import picodollars, price_micros, usd
from appliance.accounting.spending import period_end, period_start
from appliance.analytics.window import HOUR, iso
from appliance.state.database import Reader
from appliance.state.key_usage import KeyTotals, priced_usage, totals_since
from appliance.state.keys import ApiKey

_MONTH = re.compile(r"(\d{4})-(\d{2})")


@dataclass(frozen=True)
class Month:
    """A calendar month, UTC: hours ``[first_hour, end_hour)``."""

    year: int
    month: int

    @classmethod
    def parse(cls, text: str) -> Month:
        """``YYYY-MM``; ValueError otherwise."""
        match = _MONTH.fullmatch(text)
        if match is None or not 1 <= int(match[2]) <= 12 or int(match[1]) < 1970:
            raise ValueError(f"`month` must be YYYY-MM, like 2025-01; got {text!r}")
        return cls(int(match[1]), int(match[2]))

    @classmethod
    def containing(cls, now: float) -> Month:
        moment = datetime.datetime.fromtimestamp(now, datetime.UTC)
        return cls(moment.year, moment.month)

    @property
    def first_hour(self) -> int:
        start = datetime.datetime(self.year, self.month, 1, tzinfo=datetime.UTC)
        return int(start.timestamp()) // HOUR

    @property
    def end_hour(self) -> int:
        return int(period_end("month", self.first_hour * HOUR)) // HOUR

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"


class BudgetStatus(msgspec.Struct, kw_only=True):
    usd: str  # the cap
    period: str  # day or month (UTC)
    spent: str  # in the budget's current period
    remaining: str  # never below 0.00
    resets_at: str  # ISO 8601, UTC


class KeyBilling(msgspec.Struct, kw_only=True):
    """One key's totals for the current month."""

    key_id: str
    key: str
    month: str  # YYYY-MM
    requests: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cost: str  # USD, exact decimal string
    budget: BudgetStatus | None  # null for a key without a budget


class InvoiceLine(msgspec.Struct, kw_only=True):
    """Usage of one model at one pair of prices (USD per 1M tokens)."""

    model: str
    requests: int
    prompt_tokens: int
    completion_tokens: int
    prompt_price: str
    completion_price: str
    prompt_amount: str
    completion_amount: str
    amount: str


class Invoice(msgspec.Struct, kw_only=True):
    """One key's statement for one month."""

    key_id: str
    key: str
    month: str  # YYYY-MM
    period_start: str  # ISO 8601, UTC, inclusive
    period_end: str  # exclusive
    currency: str
    lines: list[InvoiceLine]
    total: str


def _budget(budget_usd: str, period: str, spent: int, now: float) -> BudgetStatus:
    cap = picodollars(budget_usd)
    return BudgetStatus(
        usd=usd(cap),
        period=period,
        spent=usd(spent),
        remaining=usd(max(cap - spent, 0)),
        resets_at=iso(period_end(period, now)),
    )


async def current_period(conn: Reader, keys: list[ApiKey], now: float) -> list[KeyBilling]:
    """Every active key, and any other (revoked, admin) that used the server this month."""
    month = Month.containing(now)
    totals = await totals_since(conn, month.first_hour, month.end_hour)
    day = period_start("day", now)
    today = await totals_since(conn, day, day + 24)
    known = {key.id: key for key in keys}
    result = []
    for key_id in {key.id for key in keys if key.revoked_at is None} | set(totals):
        key = known.get(key_id)
        spent = totals.get(key_id) or KeyTotals(name=key.name if key else key_id)
        budget = None
        if key is not None and key.budget_usd is not None:
            period = key.budget_period or "month"
            in_period = today.get(key_id, KeyTotals()) if period == "day" else spent
            budget = _budget(key.budget_usd, period, in_period.cost_pusd, now)
        result.append(
            KeyBilling(
                key_id=key_id,
                key=key.name if key else spent.name,
                month=str(month),
                requests=spent.requests,
                prompt_tokens=spent.prompt_tokens,
                completion_tokens=spent.completion_tokens,
                total_tokens=spent.prompt_tokens + spent.completion_tokens,
                cost=usd(spent.cost_pusd),
                budget=budget,
            )
        )
    return sorted(result, key=lambda row: row.key)


@dataclass
class _Statement:
    key: str
    lines: list[InvoiceLine]
    total_pusd: int = 0


async def invoices(conn: Reader, month: Month) -> list[Invoice]:
    """One statement per key that was billed tokens in the month, ordered by key name."""
    statements: dict[str, _Statement] = {}
    for used in await priced_usage(conn, month.first_hour, month.end_hour):
        prompt_amount = used.prompt_tokens * price_micros(used.prompt_price)
        completion_amount = used.completion_tokens * price_micros(used.completion_price)
        statement = statements.setdefault(used.key_id, _Statement(used.key_name, []))
        statement.lines.append(
            InvoiceLine(
                model=used.model,
                requests=used.requests,
                prompt_tokens=used.prompt_tokens,
                completion_tokens=used.completion_tokens,
                prompt_price=used.prompt_price,
                completion_price=used.completion_price,
                prompt_amount=usd(prompt_amount),
                completion_amount=usd(completion_amount),
                amount=usd(prompt_amount + completion_amount),
            )
        )
        statement.total_pusd += prompt_amount + completion_amount
    result = [
        Invoice(
            key_id=key_id,
            key=statement.key,
            month=str(month),
            period_start=iso(month.first_hour * HOUR),
            period_end=iso(month.end_hour * HOUR),
            currency="USD",
            lines=statement.lines,
            total=usd(statement.total_pusd),
        )
        for key_id, statement in statements.items()
    ]
    return sorted(result, key=lambda invoice: invoice.key)
