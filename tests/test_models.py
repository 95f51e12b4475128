"""The response models read every documented shape, keep what they don't know, and mask secrets."""

from __future__ import annotations

import json
import pickle
from decimal import Decimal
from typing import Any

import pydantic
import pytest

import oneclickdz
from oneclickdz import (
    Balance,
    Card,
    Catalog,
    Client,
    KeyInfo,
    Order,
    OrderStatus,
    PlaceOrderRequest,
    Product,
    TokenInfo,
    Transaction,
)
from oneclickdz import _endpoints as api
from oneclickdz._base import decoder
from oneclickdz._transport import Response
from tests.sdk_fixtures import (  # noqa: F401 - fixtures are found by name
    PSN,
    StubAPI,
    envelope,
    stub_api_fixture,
    stub_server_fixture,
)

# The documentation's own examples, verbatim (oneclickdz-api.md §3-5).
DOC_HANDLING = {
    "_id": "6901616fe9e88196b4eb64b3",
    "status": "HANDLING",
    "quantity": 2,
    "product": "507f1f77bcf86cd799439011",
    "type": "type_001",
    "time": "2025-10-29T01:00:00.000Z",
}
DOC_FULFILLED = {
    "_id": "6901616fe9e88196b4eb64b3",
    "status": "FULFILLED",
    "quantity": 2,
    "fulfilled_quantity": 2,
    "fulfilled_amount": 980,
    "price_per_card": 490,
    "cards": [
        {"value": "XXXX-XXXX-XXXX-XXXX", "serial": "123456789"},
        {"value": "YYYY-YYYY-YYYY-YYYY", "serial": "987654321"},
    ],
    "time": "2025-10-29T01:00:00.000Z",
}
DOC_CATALOG_GUIDE = {
    "success": True,
    "data": {
        "categories": [
            {
                "name": "Gaming Cards",
                "products": [
                    {"id": PSN, "title": "PlayStation Network", "enabled": True, "region": "dz"},
                    {"id": "507f1f77bcf86cd799439012", "title": "Google Play", "enabled": True},
                ],
            },
            {
                "name": "Streaming Services",
                "products": [
                    {"id": "507f1f77bcf86cd799439014", "title": "Netflix", "enabled": True}
                ],
            },
        ]
    },
    "meta": {"totalCategories": 8, "totalProducts": 127},
}


def decode(model: Any, body: bytes | str, headers: dict[str, str] | None = None) -> Any:
    """Decode an answer as the client does (the catalog's decoder folds in its totals)."""
    raw = body.encode() if isinstance(body, str) else body
    decode = api.catalog().decode if model is Catalog else decoder(model)
    return decode(Response(200, headers or {}, raw))


def test_handling_order_lacks_final_fields_and_is_not_final() -> None:
    order = Order.model_validate(DOC_HANDLING)
    assert order.id == "6901616fe9e88196b4eb64b3"
    assert order.status is OrderStatus.HANDLING
    assert not order.is_final
    assert order.fulfilled_quantity is None
    assert order.price_per_card is None
    assert order.cards == ()


def test_fulfilled_order_from_the_docs() -> None:
    order = Order.model_validate(DOC_FULFILLED)
    assert order.is_final
    assert order.fulfilled_amount == Decimal(980)
    assert [c.value for c in order.cards] == ["XXXX-XXXX-XXXX-XXXX", "YYYY-YYYY-YYYY-YYYY"]
    assert order.cards[1].serial == "987654321"
    assert order.product is None  # the FULFILLED example omits product and type


def test_order_id_is_read_from_id_or__id() -> None:
    with_id = Order.model_validate({**DOC_HANDLING, "id": "abc"} | {"_id": "abc"})
    only_id = Order.model_validate(
        {k: v for k, v in DOC_HANDLING.items() if k != "_id"} | {"id": "x"}
    )
    assert with_id.id == "abc"
    assert only_id.id == "x"


@pytest.mark.parametrize("status", ["FULFILLED", "PARTIALLY_FILLED", "REFUNDED"])
def test_final_statuses_are_final(status: str) -> None:
    assert OrderStatus(status).is_final
    assert not OrderStatus.HANDLING.is_final


def test_unknown_status_is_kept_as_its_string_and_not_final() -> None:
    order = Order.model_validate({**DOC_HANDLING, "status": "ON_HOLD"})
    assert order.status == "ON_HOLD"
    assert not isinstance(order.status, OrderStatus)
    assert not order.is_final
    assert not order.has_known_status


def test_unknown_fields_are_kept_not_rejected() -> None:
    order = Order.model_validate({**DOC_FULFILLED, "currency": "DZD", "note": "new field"})
    assert order.model_extra == {"currency": "DZD", "note": "new field"}
    card = Card.model_validate({"value": "AAAA-BBBB-CCCC-DDDD", "expiry": "2027-01"})
    assert card.model_extra == {"expiry": "2027-01"}


def test_amounts_are_exact_decimals_read_from_the_json_text() -> None:
    balance = decode(Balance, '{"success":true,"data":{"balance":1326.13}}')
    assert balance.balance == Decimal("1326.13")
    assert balance.currency == "DZD"
    order = decode(Order, json.dumps(envelope({**DOC_FULFILLED, "price_per_card": 0.1})))
    assert order.price_per_card == Decimal("0.1")


def test_a_placement_keeps_its_request_id_from_the_envelope_or_the_header() -> None:
    decode = api.place_order(PlaceOrderRequest(PSN, "type_001", 1)).decode
    body = b'{"success":true,"data":{"orderId":"o1"},"requestId":"req_1_a"}'
    assert decode(Response(200, {}, body)).request_id == "req_1_a"
    without = b'{"success":true,"data":{"orderId":"o1"}}'
    assert decode(Response(200, {"x-request-id": "req_2_b"}, without)).request_id == "req_2_b"
    assert decode(Response(200, {}, without)).request_id is None


def test_card_repr_and_str_mask_codes_and_serials() -> None:
    card = Card(value="ABCD-EFGH-IJKL-MNOP", serial="123456789")
    for text in (repr(card), str(card), repr(Order.model_validate(DOC_FULFILLED))):
        assert "ABCD-EFGH" not in text
        assert "XXXX-XXXX-XXXX-XXXX" not in text
        assert "123456789" not in text
    assert "MNOP" in repr(card)  # the last 4 characters identify a card
    assert card.value == "ABCD-EFGH-IJKL-MNOP"  # explicit access gives the code


def test_unknown_fields_of_cards_and_orders_are_masked_in_repr() -> None:
    card = Card.model_validate({"value": "AAAA-BBBB-CCCC-DDDD", "pin": "SECRETPIN1234"})
    order = Order.model_validate({**DOC_HANDLING, "voucher": "SECRETVOUCHER9"})
    assert "SECRETPIN" not in repr(card)
    assert "SECRETVOUCHER" not in repr(order)


def test_a_bad_answer_never_echoes_its_input_in_the_validation_error() -> None:
    with pytest.raises(pydantic.ValidationError) as info:
        Order.model_validate({**DOC_FULFILLED, "quantity": "two"})
    assert "XXXX-XXXX" not in str(info.value)


def test_catalog_from_the_guide_with_totals_in_meta() -> None:
    catalog = decode(Catalog, json.dumps(DOC_CATALOG_GUIDE))
    assert [c.name for c in catalog.categories] == ["Gaming Cards", "Streaming Services"]
    assert catalog.total_categories == 8
    assert catalog.total_products == 127
    assert len(list(catalog.products())) == 3
    psn = catalog.get_product(PSN)
    assert psn is not None
    assert psn.region == "dz"
    assert catalog.get_product("nope") is None


def test_catalog_from_the_reference_with_title_and_top_level_totals() -> None:
    body = {
        "success": True,
        "totalCategories": 1,
        "totalProducts": 1,
        "data": {"categories": [{"title": "PSN", "products": [{"id": PSN, "title": "PSN"}]}]},
    }
    catalog = decode(Catalog, json.dumps(body))
    assert catalog.categories[0].name == "PSN"
    assert catalog.total_products == 1
    assert catalog.categories[0].products[0].enabled  # absent means enabled


def test_check_product_in_both_documented_spellings() -> None:
    en = Product.model_validate(
        {
            "productId": PSN,
            "productTitle": "PlayStation Network",
            "types": [{"id": "type_001", "name": "PSN 500 DA", "price": 490, "quantity": 150}],
        }
    )
    ar = Product.model_validate(
        {
            "_id": PSN,
            "productTitle": "PlayStation Store",
            "types": [{"_id": "type_10", "name": "PSN 10 USD", "price": 1450, "quantity": 0}],
        }
    )
    assert en.product_id == ar.product_id == PSN
    first = en.get_type("type_001")
    assert first is not None
    assert first.price == Decimal(490)
    assert first.in_stock
    ten = ar.get_type("type_10")
    assert ten is not None
    assert not ten.in_stock
    assert ar.get_type("missing") is None


def test_transaction_and_validate_shapes() -> None:
    entry = Transaction.model_validate(
        {
            "_id": "t1",
            "type": "REFUND-ORDER",
            "operation": "CREDIT",
            "amount": 980.5,
            "oldBalance": 100,
            "newBalance": 1080.5,
            "objid": "o1",
            "note": "refund from cancelled gift card order",
            "time": "2025-10-29T01:00:00.000Z",
        }
    )
    assert entry.new_balance == Decimal("1080.5")
    info = TokenInfo.model_validate(
        {
            "username": "+213665983439",
            "apiKey": {
                "key": "ea27b376-9f5c-4b09-883f-1b96cd7b541c",
                "isEnabled": True,
                "type": "SANDBOX",
                "allowedips": [],
                "scope": "READ-WRITE",
            },
        }
    )
    assert info.api_key.is_sandbox
    assert info.api_key.key == "ea27b376-9f5c-4b09-883f-1b96cd7b541c"
    assert "ea27b376" not in repr(info)
    short = TokenInfo.model_validate({"apiKey": {"type": "SANDBOX", "scope": "READ-WRITE"}})
    assert short.api_key == KeyInfo(type="SANDBOX", scope="READ-WRITE")


def test_public_names_live_in_the_package_and_models_pickle() -> None:
    assert oneclickdz.Order.__module__ == "oneclickdz"
    assert oneclickdz.Client.__module__ == "oneclickdz"
    assert oneclickdz.AiohttpTransport.__module__ == "oneclickdz"
    assert set(oneclickdz.__all__) <= set(dir(oneclickdz)) | {"AiohttpTransport"}
    order = Order.model_validate(DOC_FULFILLED)
    assert pickle.loads(pickle.dumps(order)) == order  # noqa: S301 - our own bytes


def test_documented_variants_over_http(stub_api: StubAPI) -> None:
    """The docs' other spellings, served over HTTP, read the same as ours."""
    stub_api.raw["validate"] = {  # no meta, no requestId, as the docs' example
        "success": True,
        "data": {"username": "u", "apiKey": {"type": "PRODUCTION", "scope": "READ-ONLY"}},
    }
    stub_api.raw["account/balance"] = {"success": True, "data": {"balance": 1326.13}}
    stub_api.raw["gift-cards/catalog"] = DOC_CATALOG_GUIDE
    stub_api.script("6901616fe9e88196b4eb64b3", DOC_FULFILLED)
    with Client("k", base_url=stub_api.base_url) as client:
        assert client.validate().api_key.scope == "READ-ONLY"
        assert client.account.balance().balance == Decimal("1326.13")
        assert client.gift_cards.catalog().total_products == 127
        order = client.gift_cards.check_order("6901616fe9e88196b4eb64b3")
    assert order.fulfilled_amount == Decimal(980)
