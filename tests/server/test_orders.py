"""Placing orders: the sandbox outcomes with their money, refusals, and concurrency."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable

import httpx
import pytest

from oneclickdz.server.testing import Service
from tests.server.conftest import Api
from tests.server.helpers import PSN, balance, error, ok, place, wait_final, writes_blocked

# The HTTP tests run on SQLite and on PostgreSQL (see tests/conftest.py).
BOTH_ENGINES = True

ORDER = {"productId": PSN, "typeId": "type_001", "quantity": 1}
SANDBOX_CODE = re.compile(r"^SANDBOX-[A-Z2-7]{4}-[A-Z2-7]{4}-[A-Z2-7]{4}$")


def test_sandbox_order_is_fulfilled_with_unique_cards(api: Api, sandbox_key: str) -> None:
    c = api(sandbox_key)
    order = wait_final(c, place(c, "type_001", 2))
    assert order["status"] == "FULFILLED"
    assert order["fulfilled_quantity"] == 2
    assert order["price_per_card"] == 490
    assert order["fulfilled_amount"] == 980
    codes = [card["value"] for card in order["cards"]]
    serials = [card["serial"] for card in order["cards"]]
    assert all(SANDBOX_CODE.match(code) for code in codes)
    assert all(serial.isdigit() for serial in serials)
    assert len(set(codes)) == len(set(serials)) == 2
    assert balance(c) == 100_000 - 980
    # Every later order gets cards nobody got before.
    again = wait_final(c, place(c, "type_001", 3))
    assert not {card["value"] for card in again["cards"]} & set(codes)
    assert not {card["serial"] for card in again["cards"]} & set(serials)


def test_test_refund_refunds_everything(api: Api, sandbox_key: str) -> None:
    c = api(sandbox_key)
    order_id = place(c, "TEST_REFUND", 2)
    assert balance(c) == 100_000 - 980  # charged at placement, at the first type's price
    order = wait_final(c, order_id)
    assert order["status"] == "REFUNDED"
    assert order["fulfilled_quantity"] == 0
    assert order["fulfilled_amount"] == 0
    assert order["price_per_card"] == 490
    assert order["cards"] == []
    assert balance(c) == 100_000
    items = ok(c.get("/account/transactions"))["items"]
    assert [(t["type"], t["amount"]) for t in items[:2]] == [("REFUND-ORDER", 980), ("ORDER", 980)]


def test_test_partial_fills_half_and_refunds_the_rest(api: Api, sandbox_key: str) -> None:
    c = api(sandbox_key)
    order = wait_final(c, place(c, "TEST_PARTIAL", 4))
    assert order["status"] == "PARTIALLY_FILLED"
    assert order["quantity"] == 4
    assert order["fulfilled_quantity"] == 2
    assert len(order["cards"]) == 2
    assert order["fulfilled_amount"] == 980
    assert order["price_per_card"] == 490
    assert balance(c) == 100_000 - 980
    refund = ok(c.get("/account/transactions"))["items"][0]
    assert (refund["type"], refund["amount"], refund["objid"]) == (
        "REFUND-ORDER",
        980,
        order["_id"],
    )


def test_test_partial_of_an_odd_quantity_rounds_down(api: Api, sandbox_key: str) -> None:
    c = api(sandbox_key)
    order = wait_final(c, place(c, "TEST_PARTIAL", 5))
    assert (order["fulfilled_quantity"], order["fulfilled_amount"]) == (2, 980)
    assert balance(c) == 100_000 - 980


def test_test_partial_of_one_card_is_refused(api: Api, sandbox_key: str) -> None:
    c = api(sandbox_key)
    body = {"productId": PSN, "typeId": "TEST_PARTIAL", "quantity": 1}
    err = error(c.post("/gift-cards/placeOrder", json=body), 400, "ERR_VALIDATION")
    assert err["details"] == {"field": "quantity", "value": 1}
    assert balance(c) == 100_000


def test_test_types_do_not_exist_in_production(api: Api, production_key: str) -> None:
    c = api(production_key)
    for type_id in ("TEST_REFUND", "TEST_PARTIAL"):
        body = {"productId": PSN, "typeId": type_id, "quantity": 2}
        error(c.post("/gift-cards/placeOrder", json=body), 404, "NOT_FOUND")
    assert balance(c) == 100_000


def test_unknown_product_type_and_order_are_not_found(api: Api, sandbox_key: str) -> None:
    c = api(sandbox_key)
    unknown = "5" * 24
    error(c.get(f"/gift-cards/checkProduct/{unknown}"), 404, "NOT_FOUND")
    body = {"productId": unknown, "typeId": "type_001", "quantity": 1}
    error(c.post("/gift-cards/placeOrder", json=body), 404, "NOT_FOUND")
    body = {"productId": PSN, "typeId": "type_999", "quantity": 1}
    error(c.post("/gift-cards/placeOrder", json=body), 404, "NOT_FOUND")
    error(c.get(f"/gift-cards/checkOrder/{unknown}"), 404, "NOT_FOUND")
    assert balance(c) == 100_000


def test_out_of_stock_names_what_is_available(api: Api, sandbox_key: str) -> None:
    c = api(sandbox_key)
    body = {"productId": PSN, "typeId": "type_003", "quantity": 1}
    err = error(c.post("/gift-cards/placeOrder", json=body), 403, "OUT_OF_STOCK")
    assert err["details"] == {"requested": 1, "available": 0}
    body = {"productId": PSN, "typeId": "type_002", "quantity": 88}
    err = error(c.post("/gift-cards/placeOrder", json=body), 403, "OUT_OF_STOCK")
    assert err["details"] == {"requested": 88, "available": 87}
    assert balance(c) == 100_000


def test_insufficient_balance_names_required_and_available(service: Service, api: Api) -> None:
    c = api(service.create_key(sandbox=True, account="poor", balance="500.50"))
    body = {"productId": PSN, "typeId": "type_002", "quantity": 1}
    err = error(c.post("/gift-cards/placeOrder", json=body), 403, "INSUFFICIENT_BALANCE")
    assert err["details"] == {"required": 980, "available": 500.5}
    assert balance(c) == 500.5
    assert ok(c.get("/gift-cards/list"))["items"] == []


def test_a_reused_ref_is_refused_with_the_existing_order(api: Api, sandbox_key: str) -> None:
    c = api(sandbox_key)
    first = place(c, ref="merchant-42")
    body = {"productId": PSN, "typeId": "type_001", "quantity": 1, "ref": "merchant-42"}
    err = error(c.post("/gift-cards/placeOrder", json=body), 403, "DUPLICATED_REF")
    assert err["details"] == {"orderId": first}
    assert balance(c) == 100_000 - 490  # charged once


def test_a_ref_is_the_accounts_whichever_key_retries_it(service: Service, api: Api) -> None:
    """A retry through another key of the same account finds the order: never a second charge."""
    first_key = api(service.create_key(sandbox=True, account="two-tills", balance=10_000))
    second_key = api(service.create_key(sandbox=True, account="two-tills"))
    order_id = place(first_key, ref="till-7")
    body = {**ORDER, "ref": "till-7"}
    err = error(second_key.post("/gift-cards/placeOrder", json=body), 403, "DUPLICATED_REF")
    assert err["details"] == {"orderId": order_id}
    assert balance(second_key) == 10_000 - 490  # charged once


def test_orders_belong_to_their_account_and_environment(service: Service, api: Api) -> None:
    sandbox = api(service.create_key(sandbox=True, account="owner", balance=10_000))
    production = api(service.create_key(sandbox=False, account="owner", balance=3_000))
    stranger = api(service.create_key(sandbox=True, account="stranger", balance=10_000))
    order_id = place(sandbox)
    assert balance(sandbox) == 10_000 - 490
    assert balance(production) == 3_000  # the sandbox never moves production money
    error(production.get(f"/gift-cards/checkOrder/{order_id}"), 404, "NOT_FOUND")
    error(stranger.get(f"/gift-cards/checkOrder/{order_id}"), 404, "NOT_FOUND")
    assert ok(production.get("/gift-cards/list"))["items"] == []
    assert ok(stranger.get("/gift-cards/list"))["items"] == []
    # A second sandbox key of the same account sees the same history and balance.
    sibling = api(service.create_key(sandbox=True, account="owner"))
    assert ok(sibling.get(f"/gift-cards/checkOrder/{order_id}"))["_id"] == order_id
    assert balance(sibling) == 10_000 - 490


@pytest.mark.anyio
async def test_concurrent_orders_never_overdraw(service: Service) -> None:
    """50 orders at once against a balance for 20: exactly 20 pass, and the books add up."""
    key = service.create_key(sandbox=True, account="rush", balance=20 * 490)
    body = {"productId": PSN, "typeId": "type_001", "quantity": 1}
    limits = httpx.Limits(max_connections=50)
    async with httpx.AsyncClient(
        base_url=service.base_url, headers={"X-Access-Token": key}, limits=limits, timeout=30
    ) as c:
        responses = await asyncio.gather(
            *(c.post("/gift-cards/placeOrder", json=body) for _ in range(50))
        )
        accepted = [r.json()["data"]["orderId"] for r in responses if r.status_code == 200]
        refused = [r.json()["error"] for r in responses if r.status_code != 200]
        assert len(accepted) == 20
        assert len(refused) == 30
        assert {e["code"] for e in refused} == {"INSUFFICIENT_BALANCE"}
        assert len(set(accepted)) == 20
        assert (await c.get("/account/balance")).json()["data"]["balance"] == 0
        history = (await c.get("/account/transactions", params={"pageSize": 100})).json()["data"]
    debits = [t for t in history["items"] if t["type"] == "ORDER"]
    assert sorted(t["objid"] for t in debits) == sorted(accepted)
    # Each debit starts where another ended: from 9800 down to 0, no dinar lost or doubled.
    steps = sorted(((t["oldBalance"], t["newBalance"]) for t in debits), reverse=True)
    assert steps == [((i + 1) * 490, i * 490) for i in reversed(range(20))]
    assert history["pagination"]["totalResults"] == 21  # the deposit and 20 debits


def test_an_order_blocked_by_another_writer_is_answered_503_and_not_placed(
    service_factory: Callable[..., Service], api: Api
) -> None:
    svc = service_factory(extra_args=["--busy-timeout", "0.3"])
    c = api(svc.create_key(sandbox=True, balance=1000), svc=svc)
    with writes_blocked(svc):  # e.g. a long card import in another process
        response = c.post("/gift-cards/placeOrder", json=ORDER)
        error(response, 503, "SERVICE_UNAVAILABLE")
        assert response.headers["retry-after"] == "1"
        assert balance(c) == 1000  # reads go on meanwhile
    assert ok(c.get("/gift-cards/list"))["items"] == []
    place(c)
    assert balance(c) == 1000 - 490
