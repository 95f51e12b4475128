"""The service's pure parts: money and time formats, delays, lockout and rate limit clocks."""

from __future__ import annotations

from decimal import Decimal

import pytest

from oneclickdz.server.auth import Lockout, RateLimiter
from oneclickdz.server.config import parse_delay
from oneclickdz.server.formats import iso, money, parse_iso, to_cents, to_decimal
from oneclickdz.server.orders import final_status, sandbox_card, sandbox_quantity


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("amount", "cents"), [("490", 49000), ("1326.13", 132613), (Decimal("0.1"), 10), (500, 50000)]
)
def test_amounts_are_exact_cents(amount: str, cents: int) -> None:
    assert to_cents(amount) == cents


@pytest.mark.parametrize("amount", ["1.234", "abc", "NaN", "Infinity", "", "5e2", "-1"])
def test_inexact_or_non_amounts_are_refused(amount: str) -> None:
    with pytest.raises(ValueError, match=r"amount|decimal places"):
        to_cents(amount)


def test_money_is_shown_as_the_api_shows_it() -> None:
    assert money(49000) == 490 and isinstance(money(49000), int)
    assert money(132613) == 1326.13
    assert money(5) == 0.05
    assert to_decimal(132613) == Decimal("1326.13")


def test_timestamps_are_utc_with_milliseconds() -> None:
    assert iso(1761699600.0) == "2025-10-29T01:00:00.000Z"
    assert iso(1761699600.2569) == "2025-10-29T01:00:00.256Z"
    assert parse_iso("2025-10-29T02:00:00+01:00") == "2025-10-29T01:00:00.000Z"
    assert parse_iso("2025-10-29T01:00:00") == "2025-10-29T01:00:00.000Z"
    assert parse_iso("2025-10-29T01:00:00.5Z") == "2025-10-29T01:00:00.500Z"


@pytest.mark.parametrize(
    ("text", "value"), [("2-10", (2.0, 10.0)), ("0.5", (0.5, 0.5)), ("0-40", (0.0, 40.0))]
)
def test_fulfil_delays(text: str, value: tuple[float, float]) -> None:
    assert parse_delay(text) == value


@pytest.mark.parametrize("text", ["10-2", "-1", "0-41", "fast", "1-x"])
def test_bad_fulfil_delays(text: str) -> None:
    with pytest.raises(ValueError, match="fulfil delay"):
        parse_delay(text)


def test_lockout_blocks_after_five_failures_in_the_window_then_expires() -> None:
    clock = Clock()
    lockout = Lockout(attempts=5, window=900, duration=900, clock=clock)
    assert [lockout.fail("1.2.3.4") for _ in range(4)] == [4, 3, 2, 1]
    assert not lockout.blocked("1.2.3.4")
    assert lockout.fail("1.2.3.4") == 0
    assert lockout.blocked("1.2.3.4") and not lockout.blocked("5.6.7.8")
    clock.now += 899
    assert lockout.blocked("1.2.3.4")
    clock.now += 2
    assert not lockout.blocked("1.2.3.4")
    assert lockout.fail("1.2.3.4") == 4  # a fresh count after the block


def test_lockout_forgets_failures_older_than_the_window() -> None:
    clock = Clock()
    lockout = Lockout(clock=clock)
    for _ in range(4):
        lockout.fail("ip")
    clock.now += 901
    assert lockout.fail("ip") == 4
    assert not lockout.blocked("ip")


def test_rate_limiter_allows_a_burst_then_refills() -> None:
    clock = Clock()
    limiter = RateLimiter(per_minute=600, clock=clock)
    assert all(limiter.take(1) == 0 for _ in range(600))
    assert limiter.take(1) == 1  # one token every 0.1 s: wait a second at most
    assert limiter.take(2) == 0  # another key has its own bucket
    clock.now += 0.1
    assert limiter.take(1) == 0
    assert limiter.take(1) == 1
    assert RateLimiter(per_minute=0, clock=clock).take(1) == 0  # off


def test_sandbox_outcomes() -> None:
    assert [sandbox_quantity(t, 5) for t in ("type_001", "TEST_PARTIAL", "TEST_REFUND")] == [
        5,
        2,
        0,
    ]
    assert [final_status(4, n) for n in (4, 2, 0)] == ["FULFILLED", "PARTIALLY_FILLED", "REFUNDED"]


def test_sandbox_cards_depend_on_seed_and_serial_only() -> None:
    assert sandbox_card(1, 0, 7) == sandbox_card(1, 0, 7)
    assert sandbox_card(1, 0, 7)[0] != sandbox_card(1, 0, 8)[0]
    assert sandbox_card(1, 0, 7)[0] != sandbox_card(2, 0, 7)[0]
    assert sandbox_card(1, 0, 7)[1] == "0000000007"
