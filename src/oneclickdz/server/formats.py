"""The wire formats: money as exact cents inside, JSON numbers outside; UTC timestamps; ids."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

_CENT = Decimal("0.01")


def to_cents(amount: Decimal | int | str) -> int:
    """Exact cents of an amount in dinars; refuses more than 2 decimal places or non-numbers."""
    try:
        value = Decimal(amount)
    except InvalidOperation:
        raise ValueError(f"not an amount: {amount!r}") from None
    if not value.is_finite():
        raise ValueError(f"not an amount: {amount!r}")
    if value.quantize(_CENT, rounding=ROUND_HALF_EVEN) != value:
        raise ValueError(f"amounts have at most 2 decimal places: {amount!r}")
    return int(value * 100)


def to_decimal(cents: int) -> Decimal:
    return (Decimal(cents) / 100).quantize(_CENT)


def money(cents: int) -> int | float:
    """The JSON number of an amount, as the API shows it: 490, or 1326.13."""
    whole, part = divmod(cents, 100)
    return whole if part == 0 else cents / 100


def iso(ts: float) -> str:
    """A UTC timestamp as the API writes it: 2025-10-29T01:00:00.000Z."""
    dt = datetime.fromtimestamp(ts, UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


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
    """Normalise an ISO-8601 instant to the wire format (UTC, milliseconds); naive means UTC."""
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return iso(dt.timestamp())


def object_id() -> str:
    """A 24-hex id in the ObjectId style the API uses: 4 bytes of time, 8 random bytes."""
    return f"{int(time.time()):08x}{os.urandom(8).hex()}"
