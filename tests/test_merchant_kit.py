"""A merchant's shop tested with the `oneclickdz_service` fixture, as a merchant would test it.

The shop's code comes first, then its tests. They use nothing but the fixture that installing
`oneclickdz[server]` gives pytest (no fixture of this repository), against the real service
running in the test's process. The last tests check the plugin's packaging.
"""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from oneclickdz import APIError, AsyncClient, Client
from oneclickdz.outcome import Outcome
from oneclickdz.server.testing import MerchantService

PSN = "507f1f77bcf86cd799439011"  # PlayStation Network in the service's default catalog
PSN_500 = "type_001"  # 490 DZD a card
PSN_1000 = "type_002"  # 980 DZD a card


# -- the shop ---------------------------------------------------------------------------------


@dataclass
class Sale:
    """What the shop hands its customer: the codes, and the money that goes back."""

    status: str
    codes: list[str]
    refunded: Decimal


def _sale(outcome: Outcome) -> Sale:
    return Sale(
        str(outcome.status), [card.value for card in outcome.cards], outcome.amount_refunded
    )


def sell(client: Client, product: str, type_id: str, quantity: int, ref: str) -> Sale:
    """Buy the cards a customer paid for (`ref`: the shop's invoice), wait, and hand them out."""
    return _sale(client.gift_cards.process_order(product, type_id, quantity, ref))


async def sell_async(
    client: AsyncClient, product: str, type_id: str, quantity: int, ref: str
) -> Sale:
    """`sell` for the shop's async checkout."""
    return _sale(await client.gift_cards.process_order(product, type_id, quantity, ref))


# -- the shop's tests ------------------------------------------------------------------------


def test_the_shop_handles_a_partially_filled_order(oneclickdz_service: MerchantService) -> None:
    outcome = oneclickdz_service.client.gift_cards.process_order(PSN, "TEST_PARTIAL", 4)
    assert outcome.status == "PARTIALLY_FILLED"
    assert (outcome.delivered, outcome.amount_refunded) == (2, 2 * outcome.price_per_card)


def test_a_fulfilled_sale_hands_out_every_code_and_charges_once(
    oneclickdz_service: MerchantService,
) -> None:
    client = oneclickdz_service.client
    sale = sell(client, PSN, PSN_500, 3, ref="invoice-1")
    assert sale.status == "FULFILLED"
    assert len(set(sale.codes)) == 3
    assert sale.refunded == 0
    assert client.account.balance().balance == 1_000_000 - 3 * 490


def test_a_refunded_sale_hands_out_nothing_and_gives_the_money_back(
    oneclickdz_service: MerchantService,
) -> None:
    client = oneclickdz_service.client
    sale = sell(client, PSN, "TEST_REFUND", 2, ref="invoice-2")
    assert (sale.status, sale.codes) == ("REFUNDED", [])
    assert sale.refunded == 2 * 490
    assert client.account.balance().balance == 1_000_000


def test_the_shop_rides_through_503s_while_it_waits(oneclickdz_service: MerchantService) -> None:
    client = oneclickdz_service.client
    oneclickdz_service.set_faults("checkOrder:1:503")
    placed = client.gift_cards.place_order(PSN, PSN_500, 1, ref="invoice-3a")
    with pytest.raises(APIError) as refused:  # the rule is in force: every check fails
        client.with_options(max_retries=0).gift_cards.check_order(placed.order_id)
    assert refused.value.status_code == 503
    oneclickdz_service.set_faults("checkOrder:1:503:x3")  # the next three checks fail
    sale = sell(client, PSN, PSN_500, 1, ref="invoice-3b")
    assert sale.status == "FULFILLED"
    assert len(sale.codes) == 1
    oneclickdz_service.set_faults("")
    client.with_options(max_retries=0).gift_cards.check_order(placed.order_id)


def test_a_lost_answer_to_the_purchase_neither_charges_twice_nor_loses_the_order(
    oneclickdz_service: MerchantService,
) -> None:
    client = oneclickdz_service.client
    # The order is placed, then the connection drops before its answer: the SDK places again
    # with the same invoice ref and gets the first order back.
    oneclickdz_service.set_faults("placeOrder:1:reset-after:x1")
    sale = sell(client, PSN, PSN_1000, 2, ref="invoice-4")
    assert sale.status == "FULFILLED"
    assert len(sale.codes) == 2
    assert [order.ref for order in client.gift_cards.list_orders()] == ["invoice-4"]
    assert client.account.balance().balance == 1_000_000 - 2 * 980


def test_production_codes_are_delivered_exactly_as_imported(
    oneclickdz_service: MerchantService,
) -> None:
    imported = {"PSN-1000-AAAA-0001": "SN-1", "PSN-1000-AAAA-0002": "SN-2"}
    added = oneclickdz_service.import_cards(
        [(PSN, PSN_1000, code, serial) for code, serial in imported.items()]
    )
    assert added == 2
    live = oneclickdz_service.client_for(oneclickdz_service.production_key(balance=5000))
    outcome = live.gift_cards.process_order(PSN, PSN_1000, 2, "invoice-5")
    assert outcome.status == "FULFILLED"
    assert {card.value: card.serial for card in outcome.cards} == imported
    assert live.account.balance().balance == 5000 - 2 * 980
    stock = {t.id: t.quantity for t in live.gift_cards.check_product(PSN).types}
    assert stock[PSN_1000] == 0  # both codes sold: none is ever sold again


@pytest.mark.oneclickdz(fulfill_delay=(30, 30))
def test_advance_finishes_a_slow_order(oneclickdz_service: MerchantService) -> None:
    client = oneclickdz_service.client
    placed = client.gift_cards.place_order(PSN, PSN_500, 1, ref="invoice-6")
    assert client.gift_cards.check_order(placed.order_id).status == "HANDLING"
    assert oneclickdz_service.advance(29) == 0
    assert client.gift_cards.check_order(placed.order_id).status == "HANDLING"
    assert oneclickdz_service.advance(1) == 1
    order = client.gift_cards.check_order(placed.order_id)
    assert order.status == "FULFILLED"
    assert len(order.cards) == 1


@pytest.mark.oneclickdz(fulfill_delay=(30, 30))
def test_finish_makes_a_slow_order_final_now(oneclickdz_service: MerchantService) -> None:
    client = oneclickdz_service.client
    placed = client.gift_cards.place_order(PSN, "TEST_PARTIAL", 6, ref="invoice-7")
    oneclickdz_service.finish(placed.order_id)
    outcome = Outcome.from_order(client.gift_cards.wait(placed.order_id))
    assert (outcome.status, outcome.delivered) == ("PARTIALLY_FILLED", 3)


def test_deposits_and_keys_of_other_accounts(oneclickdz_service: MerchantService) -> None:
    assert oneclickdz_service.deposit(500) == 1_000_500
    other = oneclickdz_service.client_for(
        oneclickdz_service.create_key(account="franchise", balance=100)
    )
    assert other.account.balance().balance == 100
    assert other.validate().api_key.type == "SANDBOX"
    assert oneclickdz_service.client.account.balance().balance == 1_000_500


@pytest.mark.anyio
async def test_the_async_checkout_sells_too(oneclickdz_service: MerchantService) -> None:
    sale = await sell_async(oneclickdz_service.async_client, PSN, PSN_500, 2, ref="invoice-8")
    assert sale.status == "FULFILLED"
    assert len(set(sale.codes)) == 2
    partial = await oneclickdz_service.async_client.gift_cards.process_order(PSN, "TEST_PARTIAL", 2)
    assert (partial.status, partial.delivered) == ("PARTIALLY_FILLED", 1)


# -- the plugin itself ------------------------------------------------------------------------


def test_the_shop_sells_top_ups_and_takes_payments_too(
    oneclickdz_service: MerchantService,
) -> None:
    """A whole shop: a top-up left in UNKNOWN_ERROR is not a refund, a QUEUED recharge ends
    when the clock moves, a payment link is paid on the service's page."""
    client = oneclickdz_service.client
    unknown = client.mobile.process("PREPAID_DJEZZY", "0700000003", amount=500, ref="t-1")
    assert unknown.needs_resolution and not unknown.refunded
    queued = client.internet.process("ADSL", "000000002", 1000, ref="t-2")
    assert queued.queued
    oneclickdz_service.advance(48 * 3600)
    assert client.internet.check(queued.topup_id).status == "FULFILLED"
    link = client.ocpay.create_link("Order 7", 1000)
    before = client.account.balance().balance
    # The payer's browser, in one form post.
    page = httpx.get(link.payment_url, timeout=10)
    token = page.text.split('name="token" value="', 1)[1].split('"', 1)[0]
    httpx.post(link.payment_url, data={"token": token, "action": "pay", "method": "CIB"},
               timeout=10)  # fmt: skip
    assert client.ocpay.check_payment(link.payment_ref).status == "CONFIRMED"
    assert client.account.balance().balance == before + Decimal("990")


def test_the_plugin_is_registered_through_the_pytest11_entry_point(
    pytestconfig: pytest.Config,
) -> None:
    points = importlib.metadata.entry_points(group="pytest11", name="oneclickdz")
    assert [point.value for point in points] == ["oneclickdz.pytest_plugin"]
    plugin = pytestconfig.pluginmanager.get_plugin("oneclickdz")
    assert plugin is not None
    assert plugin.__name__ == "oneclickdz.pytest_plugin"


def test_importing_the_plugin_loads_no_part_of_the_service() -> None:
    probe = (
        "import sys, oneclickdz.pytest_plugin\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('starlette', 'uvicorn')"
        " or m.startswith('oneclickdz.server')))"
    )
    run = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert run.stdout.strip() == "[]"


def test_without_the_server_extra_the_fixture_fails_with_the_install_hint(
    tmp_path: Path,
) -> None:
    # A fresh pytest in which the service's dependencies cannot be imported.
    (tmp_path / "conftest.py").write_text("import sys\nsys.modules['starlette'] = None\n")
    (tmp_path / "test_shop.py").write_text(
        textwrap.dedent(
            """
            def test_uses_the_service(oneclickdz_service):
                pass
            """
        )
    )
    # Only this plugin is loaded (the entry point itself is checked above): a quick start.
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "oneclickdz.pytest_plugin", "-q", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"},
        check=False,
    )
    assert run.returncode == 1, run.stdout
    assert 'pip install "oneclickdz[server]"' in run.stdout
    assert "Traceback" not in run.stdout
