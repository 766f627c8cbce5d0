"""How numbers, times and states read in the console's narrow columns."""

from __future__ import annotations

import datetime
from decimal import Decimal, InvalidOperation

from rich.text import Text

NONE = "–"
STATUS_STYLES = {
    "ready": "bold green",
    "ok": "green",
    "loading": "bold yellow",
    "pending": "yellow",
    "downloading": "bold cyan",
    "updating": "bold yellow",
    "draining": "magenta",
    "failed": "bold red",
    "error": "red",
    "stopped": "dim",
    "cancelled": "yellow",
    "rate_limited": "magenta",
    "active": "green",
    "revoked": "red",
    "expired": "dim",
}


def rate(value: float | None) -> str:
    if value is None:
        return NONE
    if value >= 1000:
        return f"{value / 1000:.1f}k"
    if value >= 100:
        return f"{value:.0f}"
    return f"{value:.1f}"


def millis(value: float | None) -> str:
    if value is None:
        return NONE
    if value < 1000:
        return f"{value:.0f}ms"
    if value < 100_000:
        return f"{value / 1000:.1f}s"
    return f"{value / 1000:.0f}s"


def pair(first: float | None, second: float | None) -> str:
    """Two latencies as `p50/p95`, sharing a unit when they can."""
    if first is None and second is None:
        return NONE
    return f"{millis(first)}/{millis(second)}"


def percent(share: float) -> str:
    return "0%" if share == 0 else f"{share * 100:.1f}%" if share < 0.1 else f"{share * 100:.0f}%"


def seconds(value: float | None) -> str:
    return NONE if value is None else f"{value:.1f}s"


def status(name: str) -> Text:
    return Text(name.replace("_", " "), style=STATUS_STYLES.get(name, ""))


def clock(epoch: float, zone: datetime.tzinfo | None) -> str:
    """Hours, minutes and seconds of an epoch time, in `zone` (None: the local zone)."""
    moment = datetime.datetime.fromtimestamp(epoch, datetime.UTC)
    return moment.astimezone(zone).strftime("%H:%M:%S")


def when(iso: str | None, zone: datetime.tzinfo | None, missing: str = NONE) -> str:
    """An ISO time from the API as `2025-03-01 14:05` in `zone`."""
    if iso is None:
        return missing
    try:
        moment = datetime.datetime.fromisoformat(iso)
    except ValueError:
        return iso
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M")


def usd(amount: str) -> str:
    """A decimal USD string, rounded for reading (the API keeps it exact)."""
    try:
        value = Decimal(amount)
    except InvalidOperation:
        return amount
    if value == 0:
        return "$0"
    if value < Decimal("0.01"):
        return f"${value:.4f}"
    return f"${value:,.2f}"


def price(prompt: str, completion: str) -> str:
    """Prices per million tokens as `$in/$out`."""
    return f"${prompt}/${completion}"


def tokens(prompt: int, completion: int) -> str:
    return f"{prompt}→{completion}"


def counted(count: int, noun: str) -> str:
    """`1 replica`, `3 replicas`."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def size(count: int) -> str:
    """Bytes in decimal units, as downloads are usually told: `4.9 GB`."""
    value = float(count)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"


def size_pair(done: int, total: int | None) -> str:
    """How much of a download has come: `2.1 of 4.9 GB`, or `2.1 GB` of an unknown size."""
    if total is None:
        return size(done)
    whole = size(total)
    unit = whole.rsplit(" ", 1)[-1]
    part = size(done)
    if part.endswith(f" {unit}"):
        part = part.rsplit(" ", 1)[0]
    return f"{part} of {whole}"
