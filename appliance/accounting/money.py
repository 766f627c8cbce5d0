"""Exact money: prices are decimal strings, costs are integers of 1e-12 USD (picodollars).

A price has at most six decimals per million tokens (the config enforces it), so the
cost of any token count is an exact integer of picodollars, sums of costs are exact in
SQLite's 64-bit integers, and no float ever touches an amount.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from decimal import Decimal

from appliance.config import Pricing

PICO = 10**12


@functools.lru_cache(maxsize=1024)
def price_micros(price: str) -> int:
    """A price in USD per 1M tokens, as an integer of 1e-6 USD (= picodollars per token).
    Cached: a request prices its tokens with the few prices of the config."""
    value = Decimal(price) * 1_000_000
    if value != value.to_integral_value():
        raise ValueError(f"price {price} has more than six decimals")
    return int(value)


def usd(picodollars: int) -> str:
    """An amount as a plain decimal string in USD: 1234500000 -> "0.0012345", 0 -> "0.00".
    Integer arithmetic (every request's log line has one): the same text as Decimal's."""
    sign = "-" if picodollars < 0 else ""
    whole, part = divmod(abs(picodollars), PICO)
    digits = f"{part:012d}".rstrip("0")
    return f"{sign}{whole}.{digits}" if digits else f"{sign}{whole}.00"


def is_budget(amount: str) -> bool:
    """A positive USD decimal with at most six decimals."""
    try:
        value = Decimal(amount)
    except ArithmeticError:
        return False
    exponent = value.as_tuple().exponent
    return value.is_finite() and value > 0 and isinstance(exponent, int) and exponent >= -6


def picodollars(amount: str) -> int:
    """A USD decimal string (as in a budget) as picodollars."""
    return int(Decimal(amount) * PICO)


@dataclass(frozen=True)
class UnitPrices:
    """The prices in force for one request, kept on its ledger row."""

    prompt: str
    completion: str

    @classmethod
    def of(cls, pricing: Pricing, batch: bool = False) -> UnitPrices:
        """The model's prices; for a batch line its `batch` prices, when it has them."""
        if batch and pricing.batch is not None:
            return cls(pricing.batch.prompt, pricing.batch.completion)
        return cls(pricing.prompt, pricing.completion)

    def cost(self, prompt_tokens: int, completion_tokens: int) -> int:
        """The exact cost in picodollars."""
        return prompt_tokens * price_micros(self.prompt) + completion_tokens * price_micros(
            self.completion
        )
