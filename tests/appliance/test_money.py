"""Exact money: the USD text of an amount is what Decimal arithmetic writes."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from appliance.accounting.money import PICO, price_micros, usd


def decimal_usd(picodollars: int) -> str:
    """The reference: the amount as a normalized Decimal, whole amounts with two zeros."""
    text = f"{(Decimal(picodollars) / PICO).normalize():f}"
    return text if "." in text else f"{text}.00"


@given(st.integers(min_value=-(10**20), max_value=10**20))
def test_usd_writes_what_decimal_writes(picodollars: int) -> None:
    assert usd(picodollars) == decimal_usd(picodollars)


def test_usd_of_round_and_tiny_amounts() -> None:
    assert usd(0) == "0.00"
    assert usd(PICO) == "1.00"
    assert usd(1234500000) == "0.0012345"
    assert usd(1) == "0.000000000001"
    assert usd(-PICO // 2) == "-0.5"


@given(st.from_regex(r"\A[0-9]{1,9}(\.[0-9]{1,6})?\Z"))
def test_a_price_is_picodollars_per_token(price: str) -> None:
    assert price_micros(price) == int(Decimal(price) * 1_000_000)
