"""Retries: transient failures are repeated with backoff, others never; no order is bought twice."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from email.utils import format_datetime

import pytest

from oneclickdz import (
    APIConnectionError,
    APITimeoutError,
    Client,
    DuplicateRefError,
    InvalidRequestError,
    NotFoundError,
    PlacementUnknownError,
    RateLimitError,
    ServerError,
    UnexpectedResponseError,
)
from oneclickdz._base import backoff_delay, parse_retry_after, retry_delay
from oneclickdz._transport import HTTPXTransport, Request, Response
from oneclickdz.server.testing import Service, free_port
from tests.sdk_fixtures import (
    PSN,
    faulty,
)

BALANCE = 100_000


def server_error(status: int = 503) -> ServerError:
    return ServerError("x", status_code=status)


def rate_limited(retry_after: float | None) -> RateLimitError:
    return RateLimitError("x", status_code=429, retry_after=retry_after)


# ----------------------------------------------------------------- the decision, without a server


@pytest.mark.parametrize(
    "exc",
    [
        APIConnectionError("x", request_sent=True),
        APITimeoutError("x", request_sent=True),
        server_error(500),
        server_error(503),
        rate_limited(None),
        UnexpectedResponseError("x", malformed=True, status_code=200),
    ],
)
def test_transient_failures_are_retried(exc: Exception) -> None:
    assert retry_delay(exc, attempt=0, max_retries=2) is not None


@pytest.mark.parametrize(
    "exc",
    [
        InvalidRequestError("x", status_code=400),
        NotFoundError("x", status_code=404),
        UnexpectedResponseError("x", malformed=False, status_code=200),  # same answer next time
    ],
)
def test_other_failures_are_never_retried(exc: Exception) -> None:
    assert retry_delay(exc, attempt=0, max_retries=2) is None


def test_retries_stop_at_max_retries() -> None:
    assert retry_delay(server_error(), attempt=1, max_retries=2) is not None
    assert retry_delay(server_error(), attempt=2, max_retries=2) is None
    assert retry_delay(server_error(), attempt=0, max_retries=0) is None


def test_backoff_is_exponential_with_full_jitter_and_capped() -> None:
    assert [backoff_delay(n, rand=lambda: 1.0) for n in range(6)] == [0.5, 1, 2, 4, 8, 8]
    assert backoff_delay(3, rand=lambda: 0.0) == 0.0
    assert backoff_delay(3, rand=lambda: 0.25) == 1.0


def test_retry_after_is_honoured_exactly_up_to_a_minute() -> None:
    assert retry_delay(rate_limited(3.0), attempt=0, max_retries=2) == 3.0
    assert retry_delay(rate_limited(60.0), attempt=0, max_retries=2) == 60.0
    assert retry_delay(rate_limited(900.0), attempt=0, max_retries=2) is None  # not waited for


def test_retry_after_header_forms() -> None:
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after("0.5") == 0.5
    in_ten = format_datetime(datetime.now(UTC) + timedelta(seconds=10), usegmt=True)
    seconds = parse_retry_after(in_ten)
    assert seconds is not None
    assert 5 < seconds <= 10
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


# ----------------------------------------------------------------- against the real service


def retry_delays(caplog: pytest.LogCaptureFixture) -> list[float]:
    """The pauses the client announced in its retry log lines."""
    return [
        float(m.group(1))
        for r in caplog.records
        if (m := re.search(r"^retry .*delay_s=([\d.]+)", r.getMessage()))
    ]


def orders_of(c: Client) -> list[str]:
    return [o.id for o in c.gift_cards.list_orders()]


@pytest.mark.parametrize("fault", ["500", "503", "reset", "empty", "malformed"])
def test_reads_survive_two_transient_failures(
    service_factory: Callable[..., Service], caplog: pytest.LogCaptureFixture, fault: str
) -> None:
    svc = faulty(service_factory, f"balance:1:{fault}:x2")
    caplog.set_level(logging.INFO, logger="oneclickdz")
    with Client(svc.create_key(balance=BALANCE), base_url=svc.base_url) as c:
        assert c.account.balance().balance == Decimal(BALANCE)
    assert len(retry_delays(caplog)) == 2


def test_a_third_failure_is_raised(service_factory: Callable[..., Service]) -> None:
    svc = faulty(service_factory, "balance:1:503:x3")
    with Client(svc.create_key(), base_url=svc.base_url) as c:
        with pytest.raises(ServerError):
            c.account.balance()
        assert c.account.balance().currency == "DZD"  # the fault is used up: it behaves again


def test_429_waits_what_retry_after_says(
    service_factory: Callable[..., Service], caplog: pytest.LogCaptureFixture
) -> None:
    svc = faulty(service_factory, "balance:1:429=1:x1")
    caplog.set_level(logging.INFO, logger="oneclickdz")
    with Client(svc.create_key(), base_url=svc.base_url) as c:
        c.account.balance()
    assert retry_delays(caplog) == [1.0]


def test_connection_refused_is_retried_then_raised(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="oneclickdz")
    with (
        Client("k", base_url=f"http://127.0.0.1:{free_port()}/v3", max_retries=1) as c,
        pytest.raises(APIConnectionError),
    ):
        c.account.balance()
    assert len(retry_delays(caplog)) == 1


def test_client_errors_are_not_retried(
    client_factory: Callable[[Service], Client], service: Service, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="oneclickdz")
    with client_factory(service) as c, pytest.raises(NotFoundError):
        c.gift_cards.check_order("0123456789abcdef01234567")
    assert retry_delays(caplog) == []


@pytest.fixture
def client_factory() -> Callable[[Service], Client]:
    def make(svc: Service) -> Client:
        return Client(svc.create_key(balance=BALANCE), base_url=svc.base_url)

    return make


# ----------------------------------------------------------------- placeOrder: never twice

AUTO_REF = re.compile(r"auto-[0-9a-f]{32}")


class Recording:
    """The client's own transport, keeping every request it sends (the server stays real)."""

    def __init__(self) -> None:
        self.inner = HTTPXTransport()
        self.sent: list[Request] = []

    def send(self, request: Request) -> Response:
        self.sent.append(request)
        return self.inner.send(request)

    def close(self) -> None:
        self.inner.close()

    def refs(self) -> list[str]:
        return [json.loads(r.content or b"{}")["ref"] for r in self.sent if "placeOrder" in r.url]


@pytest.mark.parametrize(
    ("fault", "recovered"),
    [
        ("reset-after", True),  # handled, answer lost: the retry meets DUPLICATED_REF
        ("empty", True),
        ("malformed", True),
        ("reset", False),  # never handled: the retry places it
        ("503", False),
        ("500", False),
        ("delay=3", None),  # the retry places it; the late first attempt meets DUPLICATED_REF
    ],
)
def test_place_order_without_ref_is_retried_with_an_automatic_ref_and_buys_once(
    service_factory: Callable[..., Service], fault: str, recovered: bool | None
) -> None:
    """The first answer is lost; the retry sends the same automatic ref, so one order exists.

    If the retry sent no ref or another one, it would buy a second time (the fault fires once).
    """
    svc = faulty(service_factory, f"placeOrder:1:{fault}:x1")
    transport = Recording()
    key = svc.create_key(balance=BALANCE)
    with Client(key, base_url=svc.base_url, timeout=1.0, transport=transport) as c:
        placed = c.gift_cards.place_order(PSN, "type_001", 2)
        assert orders_of(c) == [placed.order_id]  # exactly one order on the service
        assert c.account.balance().balance == BALANCE - 980
        assert c.gift_cards.check_order(placed.order_id).ref == placed.order_ref
    assert placed.order_ref is not None
    assert AUTO_REF.fullmatch(placed.order_ref)
    if recovered is not None:
        assert placed.recovered is recovered
    refs = transport.refs()
    assert len(refs) == 2  # the lost attempt and its retry
    assert refs == [placed.order_ref] * 2  # made once per call, the same on every retry


def test_automatic_refs_differ_from_call_to_call_and_stay_on_every_retry(
    service_factory: Callable[..., Service],
) -> None:
    # The rules fire in turn: the 1st attempt's answer is lost, the 2nd meets a 503.
    svc = faulty(service_factory, "placeOrder:1:reset-after:x1,placeOrder:1:503:x1")
    transport = Recording()
    with Client(svc.create_key(balance=BALANCE), base_url=svc.base_url, transport=transport) as c:
        first = c.gift_cards.place_order(PSN, "type_001", 1)  # lost, 503, then DUPLICATED_REF
        second = c.gift_cards.place_order(PSN, "type_001", 1)
        third = c.gift_cards.place_order(PSN, "type_001", 1)
        assert sorted(orders_of(c)) == sorted(p.order_id for p in (first, second, third))
        assert c.account.balance().balance == BALANCE - 3 * 490
    assert (first.recovered, second.recovered, third.recovered) == (True, False, False)
    refs = [p.order_ref for p in (first, second, third)]
    assert all(ref is not None and AUTO_REF.fullmatch(ref) for ref in refs)
    assert len(set(refs)) == 3
    assert transport.refs() == [refs[0]] * 3 + [refs[1], refs[2]]


def test_place_order_without_ref_that_never_gets_an_answer_names_its_ref(
    service_factory: Callable[..., Service],
) -> None:
    """Retries used up: the error carries the automatic ref; placing again with it reconciles."""
    svc = faulty(service_factory, "placeOrder:1:reset-after:x3")  # all 3 attempts lose the answer
    with Client(svc.create_key(balance=BALANCE), base_url=svc.base_url) as c:
        with pytest.raises(PlacementUnknownError) as info:
            c.gift_cards.place_order(PSN, "type_001", 2)
        err = info.value
        request = err.request
        assert (request.product_id, request.type_id, request.quantity) == (PSN, "type_001", 2)
        assert request.ref is not None and AUTO_REF.fullmatch(request.ref)
        assert f"ref {request.ref!r}" in str(err)
        assert "place it again with the same ref" in str(err)
        assert err.__cause__ is err.cause
        with pytest.raises(DuplicateRefError) as again:
            c.gift_cards.place_order(
                request.product_id, request.type_id, request.quantity, ref=request.ref
            )
        assert orders_of(c) == [again.value.order_id]  # it existed, and was not bought twice
        assert c.account.balance().balance == BALANCE - 980


def test_place_order_without_ref_is_retried_when_it_surely_did_not_arrive(
    service_factory: Callable[..., Service],
) -> None:
    """A 429 is a refusal before any handling: repeating it cannot buy twice."""
    svc = faulty(service_factory, "placeOrder:1:429=0.2:x1")
    with Client(svc.create_key(balance=BALANCE), base_url=svc.base_url) as c:
        placed = c.gift_cards.place_order(PSN, "type_001", 1)
        assert orders_of(c) == [placed.order_id]
    assert not placed.recovered


def test_place_order_with_ref_recovers_the_order_through_duplicated_ref(
    service_factory: Callable[..., Service],
) -> None:
    """The first attempt creates the order, its answer is lost, the retry meets DUPLICATED_REF."""
    svc = faulty(service_factory, "placeOrder:1:reset-after:x1")
    with Client(svc.create_key(balance=BALANCE), base_url=svc.base_url) as c:
        placed = c.gift_cards.place_order(PSN, "type_001", 2, ref="order-7781")
        assert placed.recovered
        assert placed.order_ref == "order-7781"
        assert orders_of(c) == [placed.order_id]
        assert c.account.balance().balance == BALANCE - 980
        assert c.gift_cards.check_order(placed.order_id).quantity == 2


def test_place_order_with_ref_is_retried_through_server_errors(
    service_factory: Callable[..., Service],
) -> None:
    svc = faulty(service_factory, "placeOrder:1:503:x2")
    with Client(svc.create_key(balance=BALANCE), base_url=svc.base_url) as c:
        placed = c.gift_cards.place_order(PSN, "type_001", 1, ref="order-1")
        assert not placed.recovered
        assert orders_of(c) == [placed.order_id]


def test_place_order_with_ref_that_never_gets_an_answer_is_unknown(
    service_factory: Callable[..., Service],
) -> None:
    svc = faulty(service_factory, "placeOrder:1:reset")
    with (
        Client(svc.create_key(balance=BALANCE), base_url=svc.base_url) as c,
        pytest.raises(PlacementUnknownError) as info,
    ):
        c.gift_cards.place_order(PSN, "type_001", 1, ref="order-2")
    assert info.value.request.ref == "order-2"
    assert "same ref" in str(info.value)


def test_place_order_without_ref_is_retried_when_the_connection_never_opened(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="oneclickdz")
    with (
        Client("k", base_url=f"http://127.0.0.1:{free_port()}/v3", max_retries=1) as c,
        pytest.raises(APIConnectionError) as info,
    ):
        c.gift_cards.place_order(PSN, "type_001", 1)
    assert not isinstance(info.value, PlacementUnknownError)  # it surely bought nothing
    assert len(retry_delays(caplog)) == 1
