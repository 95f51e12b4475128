"""Waiting for an order: the schedule, the end of a wait, and what a wait does with failures."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest

from oneclickdz import (
    AuthenticationError,
    Client,
    NotFoundError,
    OneClickDZError,
    Order,
    OrderStatus,
    PollPolicy,
    PollTimeoutError,
    RateLimitError,
    ServerError,
)
from oneclickdz.polling import PollRun
from oneclickdz.server.testing import Service
from tests.sdk_fixtures import (  # noqa: F401 - fixtures are found by name
    FAST,
    PSN,
    StubAPI,
    client_fixture,
    faulty,
    final,
    handling,
    stub_api_fixture,
    stub_server_fixture,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def order(status: str = "HANDLING", **extra: Any) -> Order:
    return Order.model_validate({**handling("o1"), "status": status, **extra})


# ----------------------------------------------------------------- the policy


def test_default_policy_is_the_guides_every_5_s_60_times() -> None:
    policy = PollPolicy()
    assert (policy.interval, policy.max_attempts, policy.timeout) == (5.0, 60, None)
    pauses = list(policy.delays())
    assert pauses == [5.0] * 59  # 60 checks, about 5 minutes


def test_docs_gift_card_policy_caps_at_10_minutes() -> None:
    policy = PollPolicy.docs_gift_cards()
    assert policy.max_attempts == 120
    assert policy.timeout == 600.0
    assert sum(policy.delays()) <= 600.0


def test_backoff_is_opt_in_and_capped() -> None:
    policy = PollPolicy(interval=1.0, backoff=2.0, max_interval=10.0, max_attempts=7)
    assert list(policy.delays()) == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    huge = PollPolicy(interval=1.0, backoff=1e6, max_interval=30.0)
    assert huge.delay(5000) == 30.0


def test_jitter_only_shortens_a_pause() -> None:
    policy = PollPolicy(interval=4.0, jitter=0.5)
    assert policy.delay(1, rand=lambda: 0.0) == 4.0
    assert policy.delay(1, rand=lambda: 1.0) == 2.0


def test_unlimited_policy_yields_forever() -> None:
    pauses = PollPolicy(interval=1.0, max_attempts=None).delays()
    assert [next(pauses) for _ in range(500)] == [1.0] * 500


@pytest.mark.parametrize(
    "kwargs",
    [
        {"interval": 0},
        {"max_attempts": 0},
        {"timeout": 0},
        {"backoff": 0.5},
        {"interval": 10, "max_interval": 5},
        {"jitter": 1.5},
    ],
)
def test_nonsense_policies_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - each message names its own field
        PollPolicy(**kwargs)


# ----------------------------------------------------------------- a wait's bookkeeping


def test_run_ends_after_max_attempts_with_the_last_order() -> None:
    run = PollRun("o1", PollPolicy(interval=1.0, max_attempts=2), clock=FakeClock())
    assert not run.record(order())
    assert run.next_delay() == 1.0
    assert not run.record(order())
    with pytest.raises(PollTimeoutError) as info:
        run.next_delay()
    assert info.value.last_order is not None
    assert info.value.last_order.status is OrderStatus.HANDLING
    assert info.value.attempts == 2
    assert "still HANDLING after 2 check(s)" in str(info.value)


def test_run_checks_once_more_right_at_the_deadline_then_ends() -> None:
    clock = FakeClock()
    run = PollRun("o1", PollPolicy(interval=5.0, max_attempts=None, timeout=12.0), clock=clock)
    run.record(order())
    assert run.next_delay() == 5.0
    clock.now += 10.0
    run.record(order())
    assert run.next_delay() == 2.0  # shortened to reach the deadline, not past it
    clock.now += 2.0
    run.record(order())
    with pytest.raises(PollTimeoutError) as info:
        run.next_delay()
    assert info.value.elapsed == 12.0


def test_transient_errors_use_up_a_check_and_the_wait_goes_on() -> None:
    run = PollRun("o1", PollPolicy(interval=1.0, max_attempts=2), clock=FakeClock())
    run.record_error(ServerError("down", status_code=503))
    assert run.next_delay() == 1.0
    run.record_error(ServerError("down", status_code=503))
    with pytest.raises(PollTimeoutError) as info:
        run.next_delay()
    assert info.value.last_order is None
    assert isinstance(info.value.__cause__, ServerError)
    assert "never read successfully" in str(info.value)


def test_a_rate_limit_stretches_the_next_pause() -> None:
    run = PollRun("o1", PollPolicy(interval=1.0), clock=FakeClock())
    run.record_error(RateLimitError("slow down", status_code=429, retry_after=7.0))
    assert run.next_delay() == 7.0


@pytest.mark.parametrize(
    "fatal",
    [
        AuthenticationError("x", status_code=401),
        NotFoundError("x", status_code=404),
    ],
)
def test_fatal_errors_end_the_wait_at_once(fatal: Exception) -> None:
    run = PollRun("o1", PollPolicy(), clock=FakeClock())
    with pytest.raises(type(fatal)):
        run.record_error(fatal)  # type: ignore[arg-type]


def test_timeout_message_names_an_unknown_status_and_never_a_code() -> None:
    run = PollRun("o1", PollPolicy(interval=1.0, max_attempts=1), clock=FakeClock())
    weird = order("ON_HOLD", cards=[{"value": "SECRET-CODE-0001", "serial": "SECRETSERIAL1"}])
    run.record(weird)
    err = run.timed_out()
    assert "ON_HOLD" in str(err)
    assert "unknown" in str(err)
    for text in (str(err), repr(err), repr(err.last_order)):
        assert "SECRET" not in text


# ----------------------------------------------------------------- against the real service


def test_wait_returns_the_final_order_and_reports_each_state(client: Client) -> None:
    placed = client.gift_cards.place_order(PSN, "type_001", 1)
    seen: list[Order] = []
    done = client.gift_cards.wait(placed.order_id, policy=FAST, on_update=seen.append)
    assert done.status is OrderStatus.FULFILLED
    assert seen[-1] == done
    assert all(o.status is OrderStatus.HANDLING for o in seen[:-1])


def test_wait_times_out_with_the_last_order_attached(
    service_factory: Callable[..., Service],
) -> None:
    svc = service_factory(fulfill_delay="30-40")  # stays HANDLING for the whole test
    with Client(svc.create_key(balance=10_000), base_url=svc.base_url) as c:
        placed = c.gift_cards.place_order(PSN, "type_002", 1)
        with pytest.raises(PollTimeoutError) as info:
            c.gift_cards.wait(placed.order_id, policy=PollPolicy(interval=0.05, max_attempts=3))
        with pytest.raises(PollTimeoutError) as by_time:
            c.gift_cards.wait(placed.order_id, policy=PollPolicy(interval=0.1, timeout=0.3))
    err = info.value
    assert err.order_id == placed.order_id
    assert err.attempts == 3
    assert err.last_order is not None
    assert err.last_order.id == placed.order_id
    assert err.last_order.status is OrderStatus.HANDLING
    assert by_time.value.last_order is not None


def test_wait_rides_out_transient_failures(service_factory: Callable[..., Service]) -> None:
    svc = faulty(service_factory, "checkOrder:1:503:x2,checkOrder:1:reset:x1")
    checks: list[tuple[int, str]] = []

    def on_check(run: PollRun, result: Order | OneClickDZError) -> None:
        checks.append((run.attempts, type(result).__name__))

    with Client(svc.create_key(balance=10_000), base_url=svc.base_url) as c:
        placed = c.gift_cards.place_order(PSN, "type_001", 1)
        done = c.gift_cards.wait(placed.order_id, policy=FAST, on_check=on_check)
    assert done.status is OrderStatus.FULFILLED
    # on_check saw every check, the failed ones too, numbered as the policy counts them.
    assert checks[:3] == [(1, "ServerError"), (2, "ServerError"), (3, "APIConnectionError")]
    assert [n for n, _ in checks] == list(range(1, len(checks) + 1))
    assert checks[-1][1] == "Order"


def test_wait_that_only_meets_failures_times_out_with_the_last_error(
    service_factory: Callable[..., Service],
) -> None:
    svc = faulty(service_factory, "checkOrder:1:503")
    with Client(svc.create_key(balance=10_000), base_url=svc.base_url) as c:
        placed = c.gift_cards.place_order(PSN, "type_001", 1)
        with pytest.raises(PollTimeoutError) as info:
            c.gift_cards.wait(placed.order_id, policy=PollPolicy(interval=0.05, max_attempts=3))
    assert info.value.last_order is None
    assert isinstance(info.value.last_error, ServerError)


def test_wait_for_an_unknown_order_ends_at_once(client: Client) -> None:
    never_ending = PollPolicy(interval=0.1, max_attempts=None)
    with pytest.raises(NotFoundError):
        client.gift_cards.wait("0123456789abcdef01234567", policy=never_ending)


def test_wait_with_a_bad_key_ends_at_once(service_factory: Callable[..., Service]) -> None:
    svc = service_factory()  # wrong keys count towards an IP block: keep them off the shared one
    with Client("wrong", base_url=svc.base_url) as c, pytest.raises(AuthenticationError):
        c.gift_cards.wait("0123456789abcdef01234567", policy=PollPolicy(max_attempts=None))


def test_an_unknown_status_keeps_the_wait_going_and_is_reported(
    stub_api: StubAPI, caplog: pytest.LogCaptureFixture
) -> None:
    stub_api.script(
        "o9",
        handling("o9"),
        {**handling("o9"), "status": "ON_HOLD"},
        {**handling("o9"), "status": "ON_HOLD"},
        final("o9", "FULFILLED", quantity=2, fulfilled=2),
    )
    caplog.set_level(logging.WARNING, logger="oneclickdz")
    seen: list[str] = []
    with Client("k", base_url=stub_api.base_url) as c:
        done = c.gift_cards.wait("o9", policy=FAST, on_update=lambda o: seen.append(str(o.status)))
    assert seen == ["HANDLING", "ON_HOLD", "ON_HOLD", "FULFILLED"]
    assert done.status is OrderStatus.FULFILLED
    warnings = [
        r.getMessage() for r in caplog.records if "unknown_status=ON_HOLD" in r.getMessage()
    ]
    assert len(warnings) == 1
