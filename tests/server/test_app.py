"""Every endpoint, its documented shape, and the envelope of every kind of response."""

from __future__ import annotations

import re
import time

import pytest

from oneclickdz.server.testing import Service
from tests.server.conftest import Api
from tests.server.helpers import PSN, error, ok, place, wait_final

# The HTTP tests run on SQLite and on PostgreSQL (see tests/conftest.py).
BOTH_ENGINES = True

OBJECT_ID = re.compile(r"^[0-9a-f]{24}$")
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def test_ping_answers_without_a_key(api: Api, service: Service) -> None:
    data = ok(api().get("/ping"))
    assert data == {
        "api": "ok",
        "operators": {"mobilis": "up", "ooredoo": "up", "djezzy": "up", "mobilisFixedPlans": "up"},
    }


def test_validate_describes_the_key_without_revealing_it(api: Api, service: Service) -> None:
    key = service.create_key(sandbox=True, account="validate-me")
    data = ok(api(key).get("/validate"))
    assert data["username"] == "validate-me"
    api_key = data["apiKey"]
    assert api_key["type"] == "SANDBOX"
    assert api_key["scope"] == "READ-WRITE"
    assert api_key["isEnabled"] is True
    assert api_key["allowedips"] == []
    assert api_key["key"].endswith(key[-4:])
    assert key[:-4] not in api_key["key"]


def test_balance_and_currency(api: Api, service: Service) -> None:
    key = service.create_key(sandbox=False, account="balance-check", balance="1326.13")
    assert ok(api(key).get("/account/balance")) == {
        "balance": 1326.13,
        "currency": "DZD",
    }


def test_catalog_lists_the_documented_products(
    api: Api, service: Service, sandbox_key: str
) -> None:
    response = api(sandbox_key).get("/gift-cards/catalog")
    data = ok(response)
    body = response.json()
    products = {p["id"]: p for c in data["categories"] for p in c["products"]}
    assert products[PSN] == {
        "id": PSN,
        "title": "PlayStation Network",
        "enabled": True,
        "region": "dz",
    }
    assert "507f1f77bcf86cd799439012" in products
    assert "507f1f77bcf86cd799439014" in products
    for category in data["categories"]:
        assert category["name"] == category["title"]
    # Totals, in meta (the guide) and beside `success` (the API reference).
    assert body["meta"]["totalProducts"] == body["totalProducts"] == len(products)
    assert body["meta"]["totalCategories"] == body["totalCategories"] == len(data["categories"])


def test_check_product_shows_types_prices_and_sandbox_stock(
    api: Api, service: Service, sandbox_key: str
) -> None:
    data = ok(api(sandbox_key).get(f"/gift-cards/checkProduct/{PSN}"))
    assert data == {
        "productId": PSN,
        "productTitle": "PlayStation Network",
        "types": [
            {"id": "type_001", "name": "PSN 500 DA", "price": 490, "quantity": 150},
            {"id": "type_002", "name": "PSN 1000 DA", "price": 980, "quantity": 87},
            {"id": "type_003", "name": "PSN 2000 DA", "price": 1960, "quantity": 0},
        ],
    }


def test_hyphenated_aliases_answer_like_the_canonical_paths(
    api: Api, service: Service, sandbox_key: str
) -> None:
    c = api(sandbox_key)
    assert ok(c.get(f"/gift-cards/check-product/{PSN}")) == ok(
        c.get(f"/gift-cards/checkProduct/{PSN}")
    )
    body = {"productId": PSN, "typeId": "type_001", "quantity": 1}
    order_id = ok(c.post("/gift-cards/place-order", json=body))["orderId"]
    assert ok(c.get(f"/gift-cards/check-order/{order_id}"))["_id"] == order_id


def test_place_and_check_order_shapes(api: Api, service: Service, sandbox_key: str) -> None:
    c = api(sandbox_key)
    placed = ok(
        c.post(
            "/gift-cards/placeOrder", json={"productId": PSN, "typeId": "type_001", "quantity": 2}
        )
    )
    assert set(placed) == {"orderId"}
    assert OBJECT_ID.match(placed["orderId"])

    handling = ok(c.get(f"/gift-cards/checkOrder/{placed['orderId']}"))
    assert handling["status"] == "HANDLING"
    assert set(handling) == {"_id", "status", "quantity", "product", "type", "time"}
    assert handling["_id"] == placed["orderId"]
    assert (handling["quantity"], handling["product"], handling["type"]) == (2, PSN, "type_001")
    assert TIMESTAMP.match(handling["time"])

    final = wait_final(c, placed["orderId"])
    assert set(final) == {
        "_id",
        "status",
        "quantity",
        "product",
        "type",
        "time",
        "fulfilled_quantity",
        "fulfilled_amount",
        "price_per_card",
        "cards",
    }
    assert final["time"] == handling["time"]


def test_place_order_echoes_the_ref(api: Api, service: Service, sandbox_key: str) -> None:
    c = api(sandbox_key)
    body = {"productId": PSN, "typeId": "type_001", "quantity": 1, "ref": "order-123456"}
    data = ok(c.post("/gift-cards/placeOrder", json=body))
    assert data["orderRef"] == "order-123456"
    assert ok(c.get(f"/gift-cards/checkOrder/{data['orderId']}"))["ref"] == "order-123456"


def test_list_orders_is_paginated_newest_first(
    api: Api, service: Service, sandbox_key: str
) -> None:
    c = api(sandbox_key)
    ids = [place(c) for _ in range(5)]
    page1 = ok(c.get("/gift-cards/list", params={"page": 1, "pageSize": 2}))
    assert page1["pagination"] == {"page": 1, "pageSize": 2, "totalPages": 3, "totalResults": 5}
    page3 = ok(c.get("/gift-cards/list", params={"page": 3, "pageSize": 2}))
    listed = [o["_id"] for o in page1["items"]] + [o["_id"] for o in page3["items"]]
    assert listed == [ids[4], ids[3], ids[0]]
    everything = ok(c.get("/gift-cards/list"))
    assert everything["pagination"]["pageSize"] == 20
    assert [o["_id"] for o in everything["items"]] == ids[::-1]


def test_list_orders_shows_final_orders_with_their_cards(
    api: Api, service: Service, sandbox_key: str
) -> None:
    c = api(sandbox_key)
    order_id = place(c, quantity=2)
    final = wait_final(c, order_id)
    (listed,) = ok(c.get("/gift-cards/list"))["items"]
    assert listed == final


def test_list_orders_filters_by_time(api: Api, service: Service, sandbox_key: str) -> None:
    c = api(sandbox_key)
    first = place(c)
    time_of_first = ok(c.get(f"/gift-cards/checkOrder/{first}"))["time"]
    time.sleep(0.01)  # distinct milliseconds
    second = place(c)
    time_of_second = ok(c.get(f"/gift-cards/checkOrder/{second}"))["time"]
    assert time_of_first < time_of_second
    after = ok(c.get("/gift-cards/list", params={"from": time_of_second}))
    assert [o["_id"] for o in after["items"]] == [second]
    until = {"from": "2020-01-01T00:00:00Z", "to": time_of_first}
    assert [o["_id"] for o in ok(c.get("/gift-cards/list", params=until))["items"]] == [first]
    # A naive instant means UTC; an offset is converted.
    shifted = time_of_second.replace("Z", "+00:00")
    assert (
        ok(c.get("/gift-cards/list", params={"from": shifted}))["pagination"]["totalResults"] == 1
    )


def test_transactions_record_every_movement(api: Api, service: Service) -> None:
    key = service.create_key(sandbox=True, account="tx-history", balance=5000)
    c = api(key)
    order_id = place(c, "TEST_REFUND", 2)
    wait_final(c, order_id)
    data = ok(c.get("/account/transactions"))
    assert data["pagination"] == {"page": 1, "pageSize": 20, "totalPages": 1, "totalResults": 3}
    refund, debit, deposit = data["items"]
    assert deposit["type"] == "DEPOSIT" and deposit["amount"] == 5000
    assert (deposit["oldBalance"], deposit["newBalance"]) == (0, 5000)
    assert debit["type"] == "ORDER" and debit["objid"] == order_id
    assert (debit["amount"], debit["oldBalance"], debit["newBalance"]) == (980, 5000, 4020)
    assert refund["type"] == "REFUND-ORDER" and refund["objid"] == order_id
    assert (refund["amount"], refund["oldBalance"], refund["newBalance"]) == (980, 4020, 5000)
    for item in data["items"]:
        assert set(item) == {
            "_id",
            "type",
            "operation",
            "amount",
            "oldBalance",
            "newBalance",
            "objid",
            "note",
            "time",
        }
        assert OBJECT_ID.match(item["_id"]) and TIMESTAMP.match(item["time"])


def test_transactions_from_and_to_must_come_together(
    api: Api, service: Service, sandbox_key: str
) -> None:
    c = api(sandbox_key)
    err = error(
        c.get("/account/transactions", params={"from": "2025-01-01T00:00:00Z"}),
        400,
        "ERR_VALIDATION",
    )
    assert err["details"]["field"] == "to"
    window = {"from": "2020-01-01T00:00:00Z", "to": "2099-01-01T00:00:00.000Z"}
    assert ok(c.get("/account/transactions", params=window))["pagination"]["totalResults"] == 1
    empty = {"from": "2020-01-01T00:00:00Z", "to": "2020-01-02T00:00:00Z"}
    assert ok(c.get("/account/transactions", params=empty))["items"] == []


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"page": 0}, "page"),
        ({"page": "x"}, "page"),
        ({"pageSize": 101}, "pageSize"),
        ({"pageSize": 0}, "pageSize"),
        ({"from": "yesterday", "to": "today"}, "from"),
    ],
)
def test_bad_pagination_is_a_validation_error(
    api: Api, service: Service, sandbox_key: str, params: dict[str, str | int], field: str
) -> None:
    c = api(sandbox_key)
    for path in ("/gift-cards/list", "/account/transactions"):
        err = error(c.get(path, params=params), 400, "ERR_VALIDATION")
        assert err["details"]["field"] == field


def test_unknown_path_and_wrong_method_are_enveloped(api: Api, service: Service) -> None:
    c = api()
    error(c.get("/nowhere"), 404, "NOT_FOUND")
    error(c.get(f"http://127.0.0.1:{service.port}/"), 404, "NOT_FOUND")
    error(c.post("/ping"), 405, "METHOD_NOT_ALLOWED")
    error(c.get("/gift-cards/placeOrder"), 405, "METHOD_NOT_ALLOWED")


def test_malformed_json_is_a_validation_error(api: Api, service: Service, sandbox_key: str) -> None:
    c = api(sandbox_key)
    for raw in (b"{not json", b"", b'{"productId": "x",'):
        err = error(
            c.post(
                "/gift-cards/placeOrder", content=raw, headers={"content-type": "application/json"}
            ),
            400,
            "ERR_VALIDATION",
        )
        assert err["details"]["field"] == "body"


def test_oversize_body_is_refused_before_it_is_read(
    api: Api, service: Service, sandbox_key: str
) -> None:
    c = api(sandbox_key)
    huge = b'{"pad": "' + b"x" * 200_000 + b'"}'
    error(c.post("/gift-cards/placeOrder", content=huge), 413, "PAYLOAD_TOO_LARGE")

    def chunks() -> object:
        yield b'{"pad": "'
        for _ in range(100):
            yield b"x" * 4096
        yield b'"}'

    # Without a Content-Length (chunked), the limit applies while reading.
    error(c.post("/gift-cards/placeOrder", content=chunks()), 413, "PAYLOAD_TOO_LARGE")  # type: ignore[arg-type]
    assert ok(c.get("/gift-cards/list"))["items"] == []


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"typeId": "type_001", "quantity": 1}, "productId", "required property 'productId'"),
        ({"productId": PSN, "quantity": 1}, "typeId", "required property 'typeId'"),
        ({"productId": PSN, "typeId": "type_001"}, "quantity", "required property 'quantity'"),
        ({"productId": 7, "typeId": "type_001", "quantity": 1}, "productId", "must be string"),
        ({"productId": PSN, "typeId": "type_001", "quantity": 0}, "quantity", "must be >= 1"),
        ({"productId": PSN, "typeId": "type_001", "quantity": 101}, "quantity", "must be <= 100"),
        ({"productId": PSN, "typeId": "type_001", "quantity": 1.5}, "quantity", "must be integer"),
        ({"productId": PSN, "typeId": "type_001", "quantity": "2"}, "quantity", "must be integer"),
        ({"productId": PSN, "typeId": "type_001", "quantity": True}, "quantity", "must be integer"),
        ({"productId": PSN, "typeId": "type_001", "quantity": 1, "ref": ""}, "ref", "characters"),
        (
            {"productId": PSN, "typeId": "type_001", "quantity": 1, "ref": "r" * 101},
            "ref",
            "characters",
        ),
        (
            {"productId": PSN, "typeId": "type_001", "quantity": 1, "ref": 5},
            "ref",
            "must be string",
        ),
    ],
)
def test_place_order_validation_names_the_field(
    api: Api, service: Service, sandbox_key: str, body: dict[str, object], field: str, message: str
) -> None:
    c = api(sandbox_key)
    err = error(c.post("/gift-cards/placeOrder", json=body), 400, "ERR_VALIDATION")
    assert err["details"]["field"] == field
    assert message in err["message"]
    assert ok(c.get("/account/balance"))["balance"] == 100_000  # nothing was charged


def test_body_that_is_not_an_object_is_refused(
    api: Api, service: Service, sandbox_key: str
) -> None:
    c = api(sandbox_key)
    err = error(c.post("/gift-cards/placeOrder", json=[1, 2]), 400, "ERR_VALIDATION")
    assert err["details"]["field"] == "body"
