"""The HTTP edges: trailing slashes, ancient dates, padded tokens, log hygiene, injected 503s."""

from __future__ import annotations

import http.client
import json
from collections.abc import Callable
from typing import Any

from oneclickdz.server.testing import Service
from tests.conftest import fresh_account
from tests.server.conftest import Api
from tests.server.helpers import PSN, error, ok, place


def raw_get(svc: Service, path: str, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    """GET with header values sent exactly as given (httpx refuses surrounding whitespace)."""
    conn = http.client.HTTPConnection("127.0.0.1", svc.port, timeout=10)
    try:
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        body: dict[str, Any] = json.loads(response.read())
        assert response.getheader("x-request-id") == body["requestId"]
        return response.status, body
    finally:
        conn.close()


def test_trailing_slash_is_not_found_not_a_redirect(api: Api, sandbox_key: str) -> None:
    c = api(sandbox_key)
    for response in (
        c.get("/ping/"),
        c.post("/gift-cards/placeOrder/", json={"productId": PSN, "typeId": "type_001"}),
        c.get("/gift-cards/checkOrder/%2e%2e%2f"),
        c.get("/account/balance/"),
    ):
        assert response.status_code == 404, response.headers
        assert "location" not in response.headers
        error(response, 404, "NOT_FOUND")
    assert ok(c.get("/gift-cards/list"))["items"] == []  # the POST placed nothing


def test_ranges_before_year_1000_compare_as_dates(api: Api, service: Service) -> None:
    c = api(service.create_key(sandbox=True, account=fresh_account(), balance=10_000))
    order_id = place(c)
    for path in ("/gift-cards/list", "/account/transactions"):
        # A valid range from year 999 to year 2999 holds the order placed now.
        within = ok(c.get(path, params={"from": "0999-01-01T00:00:00Z", "to": "2999-01-01"}))
        assert within["items"], path
        # One that ends before year 1000 holds nothing, and is valid too.
        early = ok(c.get(path, params={"from": "0001-01-01", "to": "0999-12-31T23:59:59Z"}))
        assert early["items"] == [], path
        # An inverted range is refused, whatever the number of digits in the years.
        err = error(
            c.get(path, params={"from": "2000-01-01T00:00:00Z", "to": "0999-01-01T00:00:00Z"}),
            400,
            "ERR_VALIDATION",
        )
        assert err["details"]["field"] == "from"
    (listed,) = ok(c.get("/gift-cards/list", params={"from": "0100-06-01", "to": "9999-12-31"}))[
        "items"
    ]
    assert listed["_id"] == order_id


def test_instants_outside_the_wire_years_are_a_validation_error(api: Api, sandbox_key: str) -> None:
    c = api(sandbox_key)
    # In UTC these fall in year 0 and year 10000, which the wire format cannot write.
    for start, end in (
        ("0001-01-01T00:00:00+01:00", "2000-01-01T00:00:00Z"),
        ("2000-01-01T00:00:00Z", "9999-12-31T23:59:59-01:00"),
    ):
        response = c.get("/gift-cards/list", params={"from": start, "to": end})
        error(response, 400, "ERR_VALIDATION")


def test_access_token_padded_with_whitespace_is_accepted(
    service_factory: Callable[..., Service],
) -> None:
    svc = service_factory(extra_args=["--lockout-attempts", "2"])
    key = svc.create_key(sandbox=True)
    for padded in (f"  {key}", f"{key}\t", f" \t{key} \t "):
        status, body = raw_get(svc, "/v3/validate", {"X-Access-Token": padded})
        assert (status, body["success"]) == (200, True), body
    # A token of whitespace only is a missing token: refused, and never counted toward the
    # lockout (two invalid tokens would block this IP).
    for blank in (" ", "\t", "  \t "):
        status, body = raw_get(svc, "/v3/validate", {"X-Access-Token": blank})
        assert status == 401, body
        assert body["error"]["code"] == "MISSING_ACCESS_TOKEN"
    status, body = raw_get(svc, "/v3/validate", {"X-Access-Token": key})
    assert status == 200, body


def test_logs_carry_no_ansi_escapes_or_color_message(
    service_factory: Callable[..., Service], api: Api
) -> None:
    svc = service_factory()
    ok(api(svc=svc).get("/ping"))
    svc.stop()  # the shutdown lines too
    text = svc.logs()
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    assert any("Started server process" in line["event"] for line in lines), text
    assert "color_message" not in text
    assert "\x1b" not in text and "\\u001b" not in text


def test_injected_503_says_when_to_retry(service_factory: Callable[..., Service], api: Api) -> None:
    svc = service_factory(extra_args=["--faults", "ping:1:503:x1"])
    response = api(svc=svc).get("/ping")
    error(response, 503, "SERVICE_UNAVAILABLE")
    assert response.headers["retry-after"] == "1"
