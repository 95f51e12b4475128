"""The wire formats: money as exact cents inside, JSON numbers outside; UTC timestamps; ids."""

from __future__ import annotations

import os
import re
import time
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal

_CENT = Decimal("0.01")
MAX_AMOUNT_CENTS = 100_000_000_000  # one amount (a deposit, a price): at most 1,000,000,000 DZD
_PLAIN_AMOUNT = re.compile(r"[0-9]+(?:\.[0-9]+)?", re.ASCII)


def to_cents(amount: Decimal | int | str) -> int:
    """Exact cents of an amount in dinars, at most MAX_AMOUNT_CENTS.

    Text must be a plain ASCII decimal (`5000`, `1250.50`): no sign, exponent, underscore or
    other script's digits, which `Decimal` would take. Numbers may be negative (callers decide).
    """
    if isinstance(amount, str) and not _PLAIN_AMOUNT.fullmatch(amount):
        raise ValueError(f"not an amount: {_shown(amount)} (plain digits, e.g. 5000 or 1250.50)")
    value = Decimal(amount)
    if not value.is_finite():
        raise ValueError(f"not an amount: {_shown(str(amount))}")
    if abs(value) > Decimal(MAX_AMOUNT_CENTS) / 100:
        raise ValueError(f"an amount is at most {MAX_AMOUNT_CENTS // 100} DZD")
    if value.quantize(_CENT, rounding=ROUND_HALF_EVEN) != value:
        raise ValueError(f"amounts have at most 2 decimal places: {_shown(str(amount))}")
    return int(value * 100)


def _shown(text: str) -> str:
    """An amount as an error message quotes it: repr, cut short (it may be a megabyte)."""
    return repr(text) if len(text) <= 40 else repr(text[:40]) + "..."


def to_decimal(cents: int) -> Decimal:
    return (Decimal(cents) / 100).quantize(_CENT)


def money(cents: int) -> int | float:
    """The JSON number of an amount, as the API shows it: 490, or 1326.13."""
    whole, part = divmod(cents, 100)
    return whole if part == 0 else cents / 100


def iso(ts: float) -> str:
    """A UTC timestamp as the API writes it: 2025-10-29T01:00:00.000Z."""
    return _wire(datetime.fromtimestamp(ts, UTC))


def _wire(dt: datetime) -> str:
    """An aware UTC datetime in wire format, the year always 4 digits (0999, not 999), so that
    timestamps compare as strings in the order of time (strftime's %Y does not pad on Linux)."""
    return (
        f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d}T{dt.hour:02d}:{dt.minute:02d}:"
        f"{dt.second:02d}.{dt.microsecond // 1000:03d}Z"
    )


_last_ms = -1
_last_text = ""


def now_iso() -> str:
    """The current time in wire format; formatted once per millisecond (it is on every response)."""
    global _last_ms, _last_text
    ts = time.time()
    ms = int(ts * 1000)
    if ms != _last_ms:
        _last_ms, _last_text = ms, iso(ts)
    return _last_text


def parse_iso(text: str) -> str:
    """Normalise an ISO-8601 instant to the wire format (UTC, milliseconds); naive means UTC.

    An instant whose UTC year falls outside 0001-9999 (`0001-01-01T00:00:00+01:00`) cannot be
    written in the wire format: it is a `ValueError` like any other unreadable instant.
    """
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    try:
        return _wire(dt.astimezone(UTC))
    except OverflowError:
        raise ValueError(f"instant outside the years 0001-9999 in UTC: {text!r}") from None


def object_id() -> str:
    """A 24-hex id in the ObjectId style the API uses: 4 bytes of time, 8 random bytes."""
    return f"{int(time.time()):08x}{os.urandom(8).hex()}"
