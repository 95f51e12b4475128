"""The tracker's pure parts: the rate budget, sweep windows and cost, the restart spread."""

from __future__ import annotations

import time

import pytest

from oneclickdz.tracker import State, Tracker, TrackerConfig
from oneclickdz.tracker.budget import RateBudget
from oneclickdz.tracker.model import TrackedOrder
from oneclickdz.tracker.sweep import Sweep, Window, covering_window, estimate_pages, order_window


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def spend(budget: RateBudget, clock: Clock, seconds: float) -> int:
    """Calls the budget allows in `seconds`, taking each as soon as it may."""
    calls, end = 0, clock.now + seconds
    while True:
        wait = budget.delay()
        if clock.now + wait > end:
            return calls
        clock.now += wait
        budget.take()
        calls += 1


def test_the_budget_keeps_to_its_rate_after_the_burst() -> None:
    clock = Clock()
    budget = RateBudget(600, burst=10, clock=clock)
    assert spend(budget, clock, 60.0) == 610  # the burst, then 10 a second
    assert spend(budget, clock, 10.0) == 100


def test_a_429_pauses_halves_the_rate_and_it_recovers_gradually() -> None:
    clock = Clock()
    budget = RateBudget(600, burst=10, clock=clock)
    spend(budget, clock, 5.0)
    budget.throttle(3.0)
    assert budget.delay() >= 3.0  # Retry-After honoured
    assert budget.rate == pytest.approx(5.0)  # half of 10/s
    clock.now += 3.0
    first = spend(budget, clock, 10.0)
    assert first < 75  # not the 100 of the full rate: half of it, recovering after 10 s
    rates: list[float] = []
    for _ in range(10):
        clock.now += 10.0
        budget.delay()
        assert budget.rate is not None
        rates.append(budget.rate)
    assert rates == sorted(rates)  # back up step by step
    assert rates[0] < 10.0
    assert rates[-1] == pytest.approx(10.0)  # whole again
    assert budget.throttled == 1


def test_an_unlimited_budget_never_waits_but_honours_retry_after() -> None:
    clock = Clock()
    budget = RateBudget(None, clock=clock)
    for _ in range(1000):
        assert budget.delay() == 0
        budget.take()
    budget.throttle(2.0)
    assert budget.delay() == pytest.approx(2.0)


def row(**kwargs: object) -> TrackedOrder:
    base: dict[str, object] = {
        "id": "trk_1", "ref": "r", "product_id": "p", "type_id": "t", "quantity": 1, "meta": {},
        "state": State.PLACED, "created_at": 0.0,
    }  # fmt: skip
    base.update(kwargs)
    return TrackedOrder(**base)  # type: ignore[arg-type]


def test_an_order_sits_at_its_creation_time_once_seen_else_around_its_send_time() -> None:
    seen = row(order_time=500.0, sent_at=400.0, placed_at=401.0)
    assert order_window(seen, None, 2.0, 120.0) == (500.0, 500.0)
    unseen = row(sent_at=400.0, placed_at=401.0)
    assert order_window(unseen, None, 2.0, 120.0) == (280.0, 521.0)  # offset not learnt: skew
    assert order_window(unseen, 5.0, 2.0, 120.0) == (403.0, 408.0)  # learnt: a tight window
    adopted = row(adopted=True, placed_at=401.0)
    assert order_window(adopted, 5.0, 2.0, 120.0)[0] is None  # no lower bound until seen


def test_a_sweep_is_estimated_from_the_density_of_earlier_ones() -> None:
    window = covering_window([(100.0, 100.0), (150.0, 160.0)])
    assert window == Window(100.0, 160.0)
    assert estimate_pages(window, 50, None, None) == 1
    assert estimate_pages(window, 50, 10.0, None) == 6  # 600 orders in those 60 s
    unbounded = Window(None, 160.0)
    assert estimate_pages(unbounded, 50, 10.0, 5000) == 50
    start, end = Window(100.0, 160.0).params()
    assert start == "1970-01-01T00:01:40.000Z"
    assert end == "1970-01-01T00:02:40.001Z"


def test_a_sweep_hands_out_page_one_first_then_the_rest() -> None:
    sweep = Sweep(Window(0.0, 1.0), {}, 0.0)
    assert sweep.take_page() == 1
    sweep.in_flight = 1
    assert sweep.take_page() is None  # the page count is known only from page 1
    sweep.total_pages = 3
    sweep.in_flight = 0
    assert [sweep.take_page(), sweep.take_page(), sweep.take_page()] == [2, 3, None]
    assert sweep.done


@pytest.mark.anyio
async def test_after_a_restart_the_first_checks_are_spread_out(store_url: str) -> None:
    url = store_url
    async with Tracker(None, url) as tracker:
        for n in range(200):
            await tracker.track(f"order-{n:04d}")
    config = TrackerConfig(restart_spread=5.0)
    async with Tracker(None, url, config=config) as tracker:
        before = time.time()
        await tracker._load_unsettled(spread=True)
        due = sorted(o.next_at - before for o in tracker._orders.values())
    assert len(due) == 200
    assert due[0] < 0.5
    assert due[-1] > 4.5
    assert 2.0 < due[100] < 3.0  # uniform over the spread, not a stampede at once


@pytest.fixture(name="anyio_backend")
def anyio_backend_fixture() -> str:
    return "asyncio"
