"""Every error kind the API returns reaches the caller as its own typed error, with its details."""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal

import pytest

from oneclickdz import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    AuthenticationError,
    Client,
    DuplicateRefError,
    InsufficientBalanceError,
    InvalidRequestError,
    IPBlockedError,
    NotFoundError,
    OneClickDZError,
    OutOfStockError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    UnexpectedResponseError,
)
from oneclickdz import errors as errors_module
from oneclickdz._base import error_class, error_from_response
from oneclickdz._transport import Response
from oneclickdz.server.testing import Service, free_port
from tests.conftest import fresh_account
from tests.sdk_fixtures import (  # noqa: F401 - fixtures are found by name
    PSN,
    client_fixture,
    faulty,
)

UNKNOWN_ORDER = "0123456789abcdef01234567"


# ----------------------------------------------------------------- mapping, without a server


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (401, "MISSING_ACCESS_TOKEN", AuthenticationError),
        (400, "MISSING_ACCESS_TOKEN", AuthenticationError),  # the docs' other status for it
        (401, "INVALID_ACCESS_TOKEN", AuthenticationError),
        (403, "IP_BLOCKED", IPBlockedError),
        (403, "KEY_DISABLED", PermissionDeniedError),
        (403, "IP_NOT_ALLOWED", PermissionDeniedError),
        (403, "INSUFFICIENT_SCOPE", PermissionDeniedError),
        (404, "NOT_FOUND", NotFoundError),
        (400, "ERR_VALIDATION", InvalidRequestError),
        (405, "METHOD_NOT_ALLOWED", InvalidRequestError),
        (413, "PAYLOAD_TOO_LARGE", InvalidRequestError),
        (403, "INSUFFICIENT_BALANCE", InsufficientBalanceError),
        (403, "NO_BALANCE", InsufficientBalanceError),
        (403, "OUT_OF_STOCK", OutOfStockError),
        (403, "DUPLICATED_REF", DuplicateRefError),
        (429, "RATE_LIMIT_EXCEEDED", RateLimitError),
        (500, "INTERNAL_ERROR", ServerError),
        (503, "SERVICE_UNAVAILABLE", ServerError),
        # unknown codes fall back on the status
        (401, "SOMETHING_NEW", AuthenticationError),
        (403, "SOMETHING_NEW", PermissionDeniedError),
        (404, None, NotFoundError),
        (422, None, InvalidRequestError),
        (429, None, RateLimitError),
        (502, None, ServerError),
        (302, None, APIError),
    ],
)
def test_error_class_by_code_then_status(
    status: int, code: str | None, expected: type[APIError]
) -> None:
    assert error_class(status, code) is expected


def test_an_error_without_an_envelope_still_maps_by_status() -> None:
    err = error_from_response(Response(502, {"x-request-id": "req_9"}, b"<html>Bad gateway</html>"))
    assert isinstance(err, ServerError)
    assert err.status_code == 502
    assert err.code is None
    assert err.request_id == "req_9"


def test_rate_limit_reads_retry_after_from_the_header() -> None:
    body = json.dumps({"success": False, "error": {"code": "RATE_LIMIT_EXCEEDED", "message": "x"}})
    err = error_from_response(Response(429, {"retry-after": "7"}, body.encode()))
    assert isinstance(err, RateLimitError)
    assert err.retry_after == 7.0


def test_every_error_is_a_oneclickdz_error_and_the_tree_is_documented() -> None:
    for name in errors_module.__all__:
        cls = getattr(errors_module, name)
        assert issubclass(cls, OneClickDZError)
        assert name in (errors_module.__doc__ or ""), f"{name} missing from the drawn tree"
    assert issubclass(APITimeoutError, APIConnectionError)
    assert not issubclass(APIConnectionError, APIError)


# ----------------------------------------------------------------- against the real service


def test_missing_key(service: Service, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ONECLICKDZ_API_KEY", raising=False)
    with Client(base_url=service.base_url) as anonymous:
        assert anonymous.ping().ok  # ping needs no key
        with pytest.raises(AuthenticationError) as info:
            anonymous.account.balance()
    assert info.value.status_code == 401
    assert info.value.code == "MISSING_ACCESS_TOKEN"
    assert "ONECLICKDZ_API_KEY" in str(info.value)


def test_invalid_key_then_ip_blocked(service_factory: Callable[..., Service]) -> None:
    svc = service_factory()  # its own lockout counter: the shared service must not block us
    with Client("not-a-real-key", base_url=svc.base_url, max_retries=0) as bad:
        with pytest.raises(AuthenticationError) as first:
            bad.account.balance()
        assert first.value.code == "INVALID_ACCESS_TOKEN"
        assert first.value.attempts_left == 4
        for _ in range(4):
            with pytest.raises(AuthenticationError):
                bad.account.balance()
        with pytest.raises(IPBlockedError) as blocked:
            bad.account.balance()
    assert blocked.value.status_code == 403
    assert blocked.value.code == "IP_BLOCKED"


def test_disabled_key(service: Service) -> None:
    key = service.create_key(account=fresh_account())
    service.admin("disable-key", key)
    with Client(key, base_url=service.base_url) as c, pytest.raises(PermissionDeniedError) as info:
        c.account.balance()
    assert info.value.code == "KEY_DISABLED"


def test_ip_not_allowed(service: Service) -> None:
    key = service.create_key(account=fresh_account(), allow_ips=["10.9.8.7"])
    with Client(key, base_url=service.base_url) as c, pytest.raises(PermissionDeniedError) as info:
        c.validate()
    assert info.value.code == "IP_NOT_ALLOWED"
    assert not isinstance(info.value, IPBlockedError)


def test_read_only_key_may_read_but_not_order(service: Service) -> None:
    key = service.create_key(account=fresh_account(), balance=5000, read_only=True)
    with Client(key, base_url=service.base_url) as c:
        assert c.account.balance().balance == Decimal(5000)
        with pytest.raises(PermissionDeniedError) as info:
            c.gift_cards.place_order(PSN, "type_001", 1)
    assert info.value.code == "INSUFFICIENT_SCOPE"


def test_not_found(client: Client) -> None:
    with pytest.raises(NotFoundError) as order:
        client.gift_cards.check_order(UNKNOWN_ORDER)
    with pytest.raises(NotFoundError):
        client.gift_cards.check_product("ffffffffffffffffffffffff")
    assert order.value.status_code == 404
    assert order.value.code == "NOT_FOUND"
    assert order.value.request_id is not None
    assert order.value.request_id.startswith("req_")


def test_validation_error_names_the_field(client: Client) -> None:
    with pytest.raises(InvalidRequestError) as info:
        client.gift_cards.place_order(PSN, "type_001", 0)
    assert info.value.code == "ERR_VALIDATION"
    assert info.value.field == "quantity"
    assert info.value.value == 0
    with pytest.raises(InvalidRequestError):
        client.gift_cards.place_order(PSN, "TEST_PARTIAL", 1)  # no partial fill of one card


def test_insufficient_balance_carries_required_and_available(service: Service) -> None:
    key = service.create_key(account=fresh_account(), balance=1000)
    with Client(key, base_url=service.base_url) as c:
        with pytest.raises(InsufficientBalanceError) as info:
            c.gift_cards.place_order(PSN, "type_002", 2)
        assert c.account.balance().balance == Decimal(1000)  # nothing was charged
    assert info.value.required == Decimal(1960)
    assert info.value.available == Decimal(1000)


def test_out_of_stock_carries_requested_and_available(client: Client) -> None:
    with pytest.raises(OutOfStockError) as info:
        client.gift_cards.place_order(PSN, "type_003", 1)
    assert (info.value.requested, info.value.available) == (1, 0)


def test_reusing_a_ref_names_the_order_that_holds_it(client: Client) -> None:
    first = client.gift_cards.place_order(PSN, "type_001", 1, ref="invoice-42")
    assert first.order_ref == "invoice-42"
    assert not first.recovered
    with pytest.raises(DuplicateRefError) as info:
        client.gift_cards.place_order(PSN, "type_002", 1, ref="invoice-42")
    assert info.value.order_id == first.order_id


def test_rate_limit_error_says_when_to_retry(service_factory: Callable[..., Service]) -> None:
    svc = service_factory(extra_args=["--rate-limit", "2"])
    key = svc.create_key()
    with Client(key, base_url=svc.base_url, max_retries=0) as c:
        c.account.balance()
        c.account.balance()
        with pytest.raises(RateLimitError) as info:
            c.account.balance()
    assert info.value.status_code == 429
    assert info.value.code == "RATE_LIMIT_EXCEEDED"
    assert info.value.retry_after is not None
    assert info.value.retry_after > 0


@pytest.mark.parametrize(
    ("fault", "code"), [("500", "INTERNAL_ERROR"), ("503", "SERVICE_UNAVAILABLE")]
)
def test_server_errors(service_factory: Callable[..., Service], fault: str, code: str) -> None:
    svc = faulty(service_factory, f"balance:1:{fault}")
    with (
        Client(svc.create_key(), base_url=svc.base_url, max_retries=0) as c,
        pytest.raises(ServerError) as info,
    ):
        c.account.balance()
    assert info.value.status_code == int(fault)
    assert info.value.code == code


@pytest.mark.parametrize("fault", ["empty", "malformed"])
def test_unreadable_answer(service_factory: Callable[..., Service], fault: str) -> None:
    svc = faulty(service_factory, f"balance:1:{fault}")
    with (
        Client(svc.create_key(), base_url=svc.base_url, max_retries=0) as c,
        pytest.raises(UnexpectedResponseError) as info,
    ):
        c.account.balance()
    assert info.value.malformed
    assert info.value.status_code == 200


def test_connection_refused_is_a_connection_error_that_never_sent() -> None:
    with (
        Client("k", base_url=f"http://127.0.0.1:{free_port()}/v3", max_retries=0) as c,
        pytest.raises(APIConnectionError) as info,
    ):
        c.ping()
    assert not info.value.request_sent
    assert not isinstance(info.value, APITimeoutError)


def test_slow_answer_is_a_timeout(service_factory: Callable[..., Service]) -> None:
    svc = faulty(service_factory, "balance:1:delay=3")
    with (
        Client(svc.create_key(), base_url=svc.base_url, timeout=0.3, max_retries=0) as c,
        pytest.raises(APITimeoutError) as info,
    ):
        c.account.balance()
    assert info.value.request_sent
