"""Fault injection: each fault as a client sees it, rule targeting and limits, seeded replay."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pytest

from oneclickdz.server.testing import Service, cli, free_port
from tests.server.conftest import Api
from tests.server.helpers import PSN, balance, error, ok, place, wait_final

ORDER = {"productId": PSN, "typeId": "type_001", "quantity": 1}


def test_status_faults_answer_in_the_envelope(
    service_factory: Callable[..., Service], api: Api
) -> None:
    svc = service_factory(
        extra_args=["--faults", "ping:1:503:x1,ping:1:500:x1,ping:1:429=7:x1,validate:1:503"]
    )
    c = api(svc.create_key(sandbox=True), svc=svc)
    err = error(c.get("/ping"), 503, "SERVICE_UNAVAILABLE")
    assert err["details"] == {"injected": True}
    error(c.get("/ping"), 500, "INTERNAL_ERROR")
    limited = c.get("/ping")
    error(limited, 429, "RATE_LIMIT_EXCEEDED")
    assert limited.headers["retry-after"] == "7"
    ok(c.get("/ping"))  # every ping rule used up its one hit
    for _ in range(3):
        error(c.get("/validate"), 503, "SERVICE_UNAVAILABLE")  # no limit: always
    ok(c.get("/account/balance"))  # other routes untouched


def test_reset_drops_the_connection_before_the_order_is_placed(
    service_factory: Callable[..., Service], api: Api
) -> None:
    svc = service_factory(extra_args=["--faults", "placeOrder:1:reset:x1"])
    c = api(svc.create_key(sandbox=True, balance=1000), svc=svc)
    with pytest.raises(httpx.TransportError):
        c.post("/gift-cards/placeOrder", json=ORDER)
    assert ok(c.get("/gift-cards/list"))["items"] == []
    assert balance(c) == 1000
    place(c)  # the next one goes through


def test_reset_after_places_the_order_then_drops_the_connection(
    service_factory: Callable[..., Service], api: Api
) -> None:
    svc = service_factory(extra_args=["--faults", "placeOrder:1:reset-after:x1"])
    c = api(svc.create_key(sandbox=True, balance=1000), svc=svc)
    with pytest.raises(httpx.TransportError):
        c.post("/gift-cards/placeOrder", json={**ORDER, "ref": "lost-answer"})
    (order,) = ok(c.get("/gift-cards/list"))["items"]
    assert order["ref"] == "lost-answer"
    assert balance(c) == 1000 - 490
    # Retrying with the same ref tells the client which order it already has.
    err = error(
        c.post("/gift-cards/placeOrder", json={**ORDER, "ref": "lost-answer"}),
        403,
        "DUPLICATED_REF",
    )
    assert err["details"] == {"orderId": order["_id"]}
    assert wait_final(c, order["_id"])["status"] == "FULFILLED"


def test_empty_and_malformed_bodies(service_factory: Callable[..., Service], api: Api) -> None:
    svc = service_factory(
        extra_args=["--faults", "checkOrder:1:empty:x1,checkOrder:1:malformed:x1"]
    )
    c = api(svc.create_key(sandbox=True, balance=1000), svc=svc)
    order_id = place(c)
    empty = c.get(f"/gift-cards/checkOrder/{order_id}")
    assert (empty.status_code, empty.content) == (200, b"")
    malformed = c.get(f"/gift-cards/checkOrder/{order_id}")
    assert malformed.status_code == 200
    with pytest.raises(ValueError, match=r"Expecting|Unterminated|delimiter"):
        malformed.json()
    assert ok(c.get(f"/gift-cards/checkOrder/{order_id}"))["_id"] == order_id


def test_a_malformed_answer_to_place_order_still_places_it(
    service_factory: Callable[..., Service], api: Api
) -> None:
    svc = service_factory(extra_args=["--faults", "placeOrder:1:malformed:x1"])
    c = api(svc.create_key(sandbox=True, balance=1000), svc=svc)
    broken = c.post("/gift-cards/placeOrder", json=ORDER)
    with pytest.raises(ValueError, match=r"Expecting|Unterminated|delimiter"):
        broken.json()
    assert len(ok(c.get("/gift-cards/list"))["items"]) == 1  # the answer was lost, not the order
    assert balance(c) == 1000 - 490


def test_delay_answers_normally_after_waiting(
    service_factory: Callable[..., Service], api: Api
) -> None:
    svc = service_factory(extra_args=["--faults", "*:1:delay=0.6:x1"])
    c = api(svc=svc)
    started = time.monotonic()
    ok(c.get("/ping"))
    assert time.monotonic() - started >= 0.55  # the delay happened (a lower bound, not speed)
    assert "fault injected" in svc.logs()


def answers(svc: Service, count: int) -> list[int]:
    with httpx.Client(base_url=svc.base_url) as c:
        return [c.get("/ping").status_code for _ in range(count)]


def codes_of_orders(svc: Service, count: int) -> list[str]:
    key = svc.create_key(sandbox=True, balance=10_000)
    with httpx.Client(base_url=svc.base_url, headers={"X-Access-Token": key}) as c:
        return [
            card["value"]
            for _ in range(count)
            for card in wait_final(c, place(c, quantity=2))["cards"]
        ]


def test_the_same_seed_replays_the_same_faults_and_codes(
    service_factory: Callable[..., Service],
) -> None:
    rules = ["--faults", "ping:0.5:503"]
    first = service_factory(seed=7, extra_args=rules)
    second = service_factory(seed=7, extra_args=rules)
    other = service_factory(seed=8, extra_args=rules)
    pattern = answers(first, 40)
    assert set(pattern) == {200, 503}
    assert answers(second, 40) == pattern
    assert answers(other, 40) != pattern
    codes = codes_of_orders(first, 3)
    assert codes_of_orders(second, 3) == codes
    assert codes_of_orders(other, 3) != codes
    assert '"seed":7' in first.logs()


def test_a_random_seed_is_logged_so_the_run_can_be_replayed(
    service_factory: Callable[..., Service],
) -> None:
    svc = service_factory(seed=None)
    assert '"seed":' in svc.logs()


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ("checkOrder:0.2", "expected route:rate:fault"),
        ("nowhere:0.2:503", "unknown route 'nowhere'"),
        ("ping:2:503", "rate must be a number from 0 to 1"),
        ("ping:0.5:418", "fault must be"),
        ("ping:0.5:delay=soon", "fault must be"),
        ("ping:0.5:503:3", "limit must look like x3"),
    ],
)
def test_bad_fault_rules_are_refused_at_start(rules: str, message: str) -> None:
    result = cli(
        "serve",
        "--db",
        "sqlite:////tmp/never-created.db",
        "--port",
        str(free_port()),
        "--faults",
        rules,
    )
    assert result.returncode == 2
    assert message in result.stderr
