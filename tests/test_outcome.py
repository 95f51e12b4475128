"""Outcomes: the guide's three endings with exact money, and refusal of orders that don't add up."""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any

import pytest

from oneclickdz import (
    Client,
    InconsistentOrderError,
    Order,
    OrderStatus,
    Outcome,
)
from oneclickdz.server.testing import Service
from tests.conftest import fresh_account
from tests.sdk_fixtures import (  # noqa: F401 - fixtures are found by name
    FAST,
    PSN,
    StubAPI,
    client_fixture,
    final,
    handling,
    stub_api_fixture,
    stub_server_fixture,
)


def outcome_of(data: dict[str, Any]) -> Outcome:
    return Outcome.from_order(Order.model_validate(data))


# ----------------------------------------------------------------- accounting, without a server


def test_fulfilled_charges_everything_and_refunds_nothing() -> None:
    out = outcome_of(final("o1", "FULFILLED", quantity=2, fulfilled=2))
    assert out.status is OrderStatus.FULFILLED
    assert out.delivered == 2
    assert out.amount_charged == Decimal(980)
    assert out.amount_refunded == Decimal(0)
    assert out.summary == (
        "order o1 FULFILLED: 2/2 cards delivered, charged 980.00 DZD, refunded 0.00 DZD"
    )


def test_partially_filled_refunds_the_undelivered_cards() -> None:
    out = outcome_of(final("o2", "PARTIALLY_FILLED", quantity=5, fulfilled=2, price=490.5))
    assert out.delivered == 2
    assert out.amount_charged == Decimal("981.0")
    assert out.amount_refunded == Decimal("1471.5")  # (5 - 2) x 490.5, exactly


def test_refunded_returns_the_whole_amount() -> None:
    out = outcome_of(final("o3", "REFUNDED", quantity=4, fulfilled=0))
    assert out.cards == ()
    assert out.amount_charged == Decimal(0)
    assert out.amount_refunded == Decimal(1960)


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (final("x", "FULFILLED", quantity=2, fulfilled=1), "fulfilled_quantity == quantity"),
        (final("x", "FULFILLED", quantity=2, fulfilled=2, cards=1), "1 card(s)"),
        (final("x", "FULFILLED", quantity=2, fulfilled=2, cards=3), "3 card(s)"),
        (final("x", "PARTIALLY_FILLED", quantity=2, fulfilled=2), "0 < fulfilled_quantity"),
        (final("x", "PARTIALLY_FILLED", quantity=4, fulfilled=0), "0 < fulfilled_quantity"),
        (final("x", "PARTIALLY_FILLED", quantity=4, fulfilled=2, cards=3), "number of cards"),
        (final("x", "REFUNDED", quantity=2, fulfilled=0, cards=1), "nothing delivered"),
        (final("x", "REFUNDED", quantity=2, fulfilled=1, cards=0), "nothing delivered"),
        (final("x", "FULFILLED", quantity=2, fulfilled=2, amount=490), "fulfilled_amount 490"),
        ({**handling("x"), "status": "FULFILLED"}, "lacks fulfilled_quantity"),
        (
            {**final("x", "FULFILLED", quantity=1, fulfilled=1), "cards": [{"value": ""}]},
            "has no code",
        ),
        (
            {
                **final("x", "FULFILLED", quantity=2, fulfilled=2),
                "cards": [{"value": "SAME-SECRET-CODE"}, {"value": "SAME-SECRET-CODE"}],
            },
            "twice",
        ),
    ],
)
def test_a_final_order_that_breaks_its_invariants_is_refused(
    data: dict[str, Any], problem: str
) -> None:
    with pytest.raises(InconsistentOrderError) as info:
        outcome_of(data)
    assert problem in str(info.value)
    assert "SECRET" not in str(info.value)
    assert info.value.order.id == "x"


def test_a_handling_order_has_no_outcome_yet() -> None:
    with pytest.raises(ValueError, match="not final"):
        outcome_of(handling("o1"))
    with pytest.raises(ValueError, match="not final"):
        outcome_of({**handling("o1"), "status": "ON_HOLD"})


def test_outcome_text_never_shows_a_code() -> None:
    out = outcome_of(final("o1", "FULFILLED", quantity=2, fulfilled=2))
    for text in (out.summary, str(out), repr(out)):
        assert "SECRET" not in text
        assert "998877660000" not in text
    assert out.cards[0].value.endswith("SECRET")  # explicit access still gives the code


# ----------------------------------------------------------------- the sandbox's scenarios


@pytest.mark.parametrize(
    ("type_id", "quantity", "status", "delivered", "charged", "refunded"),
    [
        ("type_001", 3, OrderStatus.FULFILLED, 3, 1470, 0),
        ("TEST_PARTIAL", 5, OrderStatus.PARTIALLY_FILLED, 2, 980, 1470),
        ("TEST_REFUND", 2, OrderStatus.REFUNDED, 0, 0, 980),
    ],
)
def test_process_order_through_each_sandbox_ending(
    service: Service,
    type_id: str,
    quantity: int,
    status: OrderStatus,
    delivered: int,
    charged: int,
    refunded: int,
) -> None:
    key = service.create_key(sandbox=True, account=fresh_account(), balance=10_000)
    with Client(key, base_url=service.base_url) as c:
        out = c.gift_cards.process_order(PSN, type_id, quantity, policy=FAST)
        balance = c.account.balance().balance
        ledger = {(t.type, t.amount) for t in c.account.transactions()}
    assert out.status is status
    assert out.delivered == delivered
    assert all(card.value.startswith("SANDBOX-") for card in out.cards)
    assert out.amount_charged == Decimal(charged)
    assert out.amount_refunded == Decimal(refunded)
    assert balance == Decimal(10_000 - charged)  # the refund came back to the balance
    assert ("ORDER", Decimal(charged + refunded)) in ledger
    if refunded:
        assert ("REFUND-ORDER", Decimal(refunded)) in ledger


def test_process_order_logs_no_card_code(client: Client, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    out = client.gift_cards.process_order(PSN, "type_001", 2, policy=FAST)
    assert out.delivered == 2
    for card in out.cards:
        assert card.value not in caplog.text
        assert card.serial is not None
        assert card.serial not in caplog.text


def test_an_inconsistent_final_order_from_the_server_is_refused(stub_api: StubAPI) -> None:
    """A server that says FULFILLED with one card of two: no Outcome, no card handed out."""
    stub_api.next_order_id = "bad-1"
    stub_api.script(
        "bad-1", handling("bad-1"), final("bad-1", "FULFILLED", quantity=2, fulfilled=2, cards=1)
    )
    with (
        Client("k", base_url=stub_api.base_url) as c,
        pytest.raises(InconsistentOrderError) as info,
    ):
        c.gift_cards.process_order(PSN, "type_001", 2, policy=FAST)
    assert info.value.order.id == "bad-1"
    assert "1 card(s)" in str(info.value)
    assert "SECRET" not in str(info.value)
    assert stub_api.calls.count(("POST", "/v3/gift-cards/placeOrder")) == 1
