"""The SDK's mobile top-ups, internet recharges and OCPay links, against the real service.

One service for the module (`MerchantService`, in this process); each test that counts money
uses an account of its own. Time is the service's fulfilment clock: a wait's `on_update` moves
it on when it reads a state that is not final, so every wait goes through the documented states
without sleeping. The payer's side of a link is the service's own pay page, over HTTP.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from oneclickdz import (
    AsyncClient,
    Client,
    DuplicateRefError,
    FeeMode,
    InconsistentOrderError,
    InternetTopup,
    InternetTopupStatus,
    InvalidInputError,
    InvalidNumberError,
    InvalidRequestError,
    MobileTopup,
    MobileTopupStatus,
    NotFoundError,
    OutOfStockError,
    PaymentLink,
    PaymentLinkExpiredError,
    PaymentStatus,
    PlacementUnknownError,
    PollPolicy,
    PollTimeoutError,
    TopupOutcome,
    UnexpectedResponseError,
)
from oneclickdz.server.testing import MerchantService, free_port
from tests.sdk_fixtures import (  # noqa: F401 - fixtures are found by name
    StubAPI,
    anyio_backend_fixture,
    envelope,
    stub_api_fixture,
    stub_server_fixture,
)

_accounts = itertools.count(1)
CARD = re.compile(r"[0-9]{12}")


@pytest.fixture(name="svc", scope="module")
def svc_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MerchantService]:
    service = MerchantService.start(Path(tmp_path_factory.mktemp("topups")) / "svc")
    yield service
    service.close()


def account(svc: MerchantService, balance: int = 100_000) -> tuple[Client, str]:
    """A client of a new account holding `balance` DZD, and its key."""
    key = svc.create_key(account=f"topups-{next(_accounts)}", balance=balance)
    return svc.client_for(key), key


def advancing(svc: MerchantService) -> Callable[[Any], None]:
    """An on_update that moves the service's clock on past any state that is not final."""

    def step(state: Any) -> None:
        if not state.is_final:
            svc.advance(60)

    return step


def pay(link: PaymentLink, action: str = "pay") -> None:
    """The payer's side: open the link's page and press Pay (or Cancel)."""
    with httpx.Client() as http:
        page = http.get(link.payment_url)
        token = re.search(r'name="token" value="([^"]+)"', page.text)
        assert page.status_code == 200 and token is not None
        form = {"token": token.group(1), "method": "CIB", "action": action}
        assert http.post(link.payment_url, data=form).status_code == 200


# ----------------------------------------------------------------- catalogs


def test_plans_products_and_number_checks_parse(svc: MerchantService) -> None:
    c = svc.client
    plans = c.mobile.plans()
    djezzy, pixx = plans.get("PREPAID_DJEZZY"), plans.get("PIXX_500")
    assert djezzy is not None and pixx is not None
    assert djezzy.is_dynamic and djezzy.cost == Decimal("0.98") and djezzy.is_enabled
    assert (djezzy.min_amount, djezzy.max_amount) == (Decimal(50), Decimal(5000))
    assert djezzy.accepts(500) and not djezzy.accepts(5001)
    assert not pixx.is_dynamic and pixx.amount == 500
    assert {p.code for p in plans.all()} >= {"GROS_MOBILIS", "GETMENU_Ooredoo", "PIXX_1000"}

    adsl, lte = c.internet.products("ADSL"), c.internet.products("4G")
    assert adsl.type == "ADSL" and [(p.value, p.cost) for p in adsl.products][:2] == [
        (Decimal(500), Decimal(490)),
        (Decimal(1000), Decimal(980)),
    ]
    five_thousand = lte.get(5000)
    assert five_thousand is not None and not five_thousand.available

    line = c.internet.check_number("ADSL", "036362608")
    assert line.type == "ADSL" and line.ncli is not None and line.ncli.endswith("*****")
    assert line.offre
    assert c.internet.check_number("4G", "213472731602").type == "4GLTE"


# ----------------------------------------------------------------- waiting to each ending


@pytest.mark.parametrize(
    ("msisdn", "status", "charged", "refunded"),
    [
        ("0771234567", MobileTopupStatus.FULFILLED, Decimal(490), Decimal(0)),
        ("0700000001", MobileTopupStatus.REFUNDED, Decimal(0), Decimal(490)),
        ("0700000002", MobileTopupStatus.REFUNDED, Decimal(0), Decimal(490)),
        ("0700000003", MobileTopupStatus.UNKNOWN_ERROR, Decimal(490), Decimal(0)),
    ],
)
def test_mobile_process_to_each_final_state(
    svc: MerchantService,
    msisdn: str,
    status: MobileTopupStatus,
    charged: Decimal,
    refunded: Decimal,
) -> None:
    c, _ = account(svc)
    seen: list[MobileTopup] = []
    step = advancing(svc)

    def on_update(topup: MobileTopup) -> None:
        seen.append(topup)
        step(topup)

    out = c.mobile.process("PREPAID_DJEZZY", msisdn, 500, ref=f"inv-{msisdn}", on_update=on_update)
    assert seen[0].status is MobileTopupStatus.PENDING  # went through the lifecycle
    assert out.status is status and out.kind == "mobile" and out.ref == f"inv-{msisdn}"
    assert (out.amount_charged, out.amount_refunded) == (charged, refunded)
    assert c.account.balance().balance == 100_000 - charged
    assert out.delivered is (status is MobileTopupStatus.FULFILLED)
    assert out.refunded is (status is MobileTopupStatus.REFUNDED)
    # UNKNOWN_ERROR is final for polling, flagged, and never a refund
    assert out.needs_resolution is (status is MobileTopupStatus.UNKNOWN_ERROR)
    assert out.card_code is None and not out.queued
    topup = out.topup
    assert isinstance(topup, MobileTopup)
    if status is not MobileTopupStatus.FULFILLED:
        assert topup.refund_message  # Arabic, with REFUNDED and UNKNOWN_ERROR
    assert bool(topup.suggested_offers) is msisdn.endswith("2")
    assert c.mobile.check_ref(f"inv-{msisdn}") == topup
    assert status.value in out.summary and out.topup_id in out.summary


@pytest.mark.parametrize(
    ("type_", "number", "status", "later"),
    [
        ("ADSL", "036362608", InternetTopupStatus.FULFILLED, None),
        ("4G", "213000000001", InternetTopupStatus.REFUNDED, None),
        ("ADSL", "000000002", InternetTopupStatus.QUEUED, InternetTopupStatus.FULFILLED),
        ("ADSL", "000000003", InternetTopupStatus.QUEUED, InternetTopupStatus.REFUNDED),
    ],
)
def test_internet_process_to_each_final_state(
    svc: MerchantService,
    type_: str,
    number: str,
    status: InternetTopupStatus,
    later: InternetTopupStatus | None,
) -> None:
    c, _ = account(svc)
    out = c.internet.process(type_, number, 1000, on_update=advancing(svc))
    assert out.status is status and out.kind == "internet"
    assert out.queued is (status is InternetTopupStatus.QUEUED)  # final, still to be followed
    assert not out.needs_resolution
    if status is InternetTopupStatus.FULFILLED:
        code = out.card_code
        assert code is not None and CARD.fullmatch(code)
        topup = out.topup
        assert isinstance(topup, InternetTopup)
        assert topup.num_trans and topup.num_trans.startswith("AT-")
        assert topup.date_traitement is not None
        for text in (repr(out), repr(topup), str(out), repr(c.internet.list().items)):
            assert code not in text
    else:
        assert out.card_code is None
    refunded = status is InternetTopupStatus.REFUNDED
    assert out.amount_charged == (0 if refunded else 980)
    assert out.amount_refunded == (980 if refunded else 0)
    if later is not None:
        svc.advance(49 * 3600)  # QUEUED is processed within 12-48 h
        final = TopupOutcome.from_topup(c.internet.check(out.topup_id))
        assert final.status is later
        assert (final.card_code is not None) is (later is InternetTopupStatus.FULFILLED)
        assert c.account.balance().balance == (100_000 if final.refunded else 100_000 - 980)


def test_lists_and_a_wait_that_times_out(svc: MerchantService) -> None:
    c, _ = account(svc)
    first = c.mobile.send("PIXX_500", "0661234567")
    c.mobile.send("PREPAID_MOBILIS", "0661234567", 100)
    sent = c.internet.send("4G", "213472731602", 500, ref="net-1")
    assert first.new_balance == 100_000 - 485 and first.topup_ref  # the service's own ref

    page = c.mobile.list(page_size=1)
    assert len(page.items) == 1 and page.pagination is not None
    assert page.pagination.total_results == 2 and page.pagination.total_pages == 2
    internet = c.internet.list()  # the service lists them under `topups`, as the docs do
    assert [t.id for t in internet.items] == [sent.topup_id]
    with pytest.raises(InvalidInputError):
        c.mobile.list(from_="2025-01-01T00:00:00.000Z")  # `to` goes with it

    with pytest.raises(PollTimeoutError) as info:
        c.mobile.wait(first.topup_id, policy=PollPolicy(interval=0.01, max_attempts=2))
    assert info.value.last_order is not None
    assert info.value.last_order.status is MobileTopupStatus.PENDING
    assert f"mobile top-up {first.topup_id} still PENDING" in str(info.value)
    assert PollPolicy.docs_topups() == PollPolicy(interval=5.0, max_attempts=60, timeout=300.0)


# ----------------------------------------------------------------- sending safely


@pytest.mark.parametrize("kind", ["mobile", "internet"])
def test_a_send_with_a_ref_whose_answer_is_lost_recovers_the_topup(
    svc: MerchantService, kind: str
) -> None:
    c, _ = account(svc)
    ref = f"lost-{kind}"

    def send() -> Any:
        if kind == "mobile":
            return c.mobile.send("PREPAID_OOREDOO", "0551234567", 1000, ref=ref)
        return c.internet.send("ADSL", "036362608", 2000, ref=ref)

    svc.set_faults("*:1:reset-after:x1")  # the send is handled, its answer lost
    try:
        sent = send()
    finally:
        svc.set_faults("")
    assert sent.recovered and sent.topup_ref == ref
    group = c.mobile if kind == "mobile" else c.internet
    assert group.check_ref(ref).id == sent.topup_id
    assert len(group.list().items) == 1  # charged once
    with pytest.raises(DuplicateRefError) as info:  # a plain second use is refused
        send()
    assert info.value.topup_id == sent.topup_id


def test_a_send_without_a_ref_is_never_repeated_once_it_may_have_arrived(
    svc: MerchantService,
) -> None:
    c, _ = account(svc)
    svc.set_faults("*:1:reset-after:x1")
    try:
        with pytest.raises(PlacementUnknownError) as info:
            c.mobile.send("PREPAID_DJEZZY", "0771234567", 500)
    finally:
        svc.set_faults("")
    assert info.value.request.ref is None
    assert "client.mobile.list()" in str(info.value)
    assert len(c.mobile.list().items) == 1  # it did arrive, once


# ----------------------------------------------------------------- refusals


def test_inputs_breaking_documented_rules_are_refused_before_any_request() -> None:
    nowhere = Client("k", base_url=f"http://127.0.0.1:{free_port()}/v3", max_retries=0)
    refused: list[Callable[[], object]] = [
        lambda: nowhere.mobile.send("PREPAID_DJEZZY", "0871234567", 500),
        lambda: nowhere.mobile.send("PREPAID_DJEZZY", "077123456", 500),
        lambda: nowhere.mobile.send("PREPAID_DJEZZY", 771234567, 500),  # type: ignore[arg-type]
        lambda: nowhere.mobile.send("PREPAID_DJEZZY", "0771234567", 500.5),  # type: ignore[arg-type]
        lambda: nowhere.mobile.process("PREPAID_DJEZZY", "0771234567", 500, ref=""),
        lambda: nowhere.internet.send("ADSL", "36362608", 500),
        lambda: nowhere.internet.send("4G", "036362608", 500),
        lambda: nowhere.internet.send("5G", "213472731602", 500),
        lambda: nowhere.internet.products("FIBRE"),
        lambda: nowhere.ocpay.create_link("Hat", 499),
        lambda: nowhere.ocpay.create_link("Hat", 500_001),
        lambda: nowhere.ocpay.create_link("Hat", 1500.5),  # type: ignore[arg-type]
        lambda: nowhere.ocpay.create_link("", 1500),
        lambda: nowhere.ocpay.create_link("x" * 201, 1500),
        lambda: nowhere.ocpay.create_link("Hat", 1500, description="d" * 1001),
        lambda: nowhere.ocpay.create_link("Hat", 1500, success_message="m" * 501),
        lambda: nowhere.ocpay.create_link("Hat", 1500, fee_mode="FREE"),
        lambda: nowhere.ocpay.create_link("Hat", 1500, redirect_url="ftp://shop.example/"),
    ]
    with nowhere:
        for call in refused:
            with pytest.raises(InvalidInputError) as info:  # not APIConnectionError: never sent
                call()
            assert isinstance(info.value, ValueError) and info.value.field


def test_service_refusals_are_typed(svc: MerchantService) -> None:
    c = svc.client
    with pytest.raises(InvalidNumberError) as phone:  # ERR_PHONE: the service judges the line
        c.internet.check_number("ADSL", "123456")
    assert isinstance(phone.value, InvalidRequestError)
    assert (phone.value.number, phone.value.service_type) == ("123456", "ADSL")
    assert phone.value.reason
    with pytest.raises(InvalidRequestError) as amount:  # outside the plan's 50..5000
        c.mobile.send("PREPAID_DJEZZY", "0771234567", 6000)
    assert amount.value.field == "amount"
    with pytest.raises(InvalidRequestError) as operator:
        c.mobile.send("PREPAID_DJEZZY", "0661234567", 500)
    assert operator.value.field == "MSSIDN"
    with pytest.raises(NotFoundError):
        c.mobile.send("NO_SUCH_PLAN", "0771234567", 500)
    with pytest.raises(OutOfStockError):
        c.internet.send("4G", "213472731602", 5000)
    with pytest.raises(NotFoundError):
        c.internet.check("0123456789abcdef01234567")


# ----------------------------------------------------------------- OCPay


@pytest.mark.parametrize(
    ("fee_mode", "paid", "net"),
    [
        (FeeMode.NO_FEE, Decimal(1500), Decimal(1485)),
        (FeeMode.SPLIT_FEE, Decimal("1507.5"), Decimal("1492.5")),
        (FeeMode.CUSTOMER_FEE, Decimal(1515), Decimal(1500)),
    ],
)
def test_a_paid_link_is_confirmed_with_its_transaction(
    svc: MerchantService, fee_mode: FeeMode, paid: Decimal, net: Decimal
) -> None:
    c, _ = account(svc, balance=0)
    link = c.ocpay.create_link(
        "Wool hat",
        1500,
        description="**Warm**",
        fee_mode=fee_mode,
        success_message="Thanks!",
        redirect_url="https://shop.example/return?order=7",
    )
    assert re.fullmatch(r"OCPL-[A-Z0-9]{6}-[A-Z0-9]{4}", link.payment_ref)
    assert link.payment_url.endswith(f"/pay/{link.payment_ref}")
    assert link.product_info is not None and link.product_info.amount == 1500
    assert link.fee_mode is fee_mode and link.is_sandbox and link.created_at is not None
    assert (link.success_message, link.redirect_url) == (
        "Thanks!",
        "https://shop.example/return?order=7",
    )

    def payer(payment: Any) -> None:
        if payment.status is PaymentStatus.PENDING:
            pay(link)

    done = c.ocpay.wait(link.payment_ref, policy=svc.poll_policy, on_update=payer)
    assert done.confirmed and done.message
    details = done.transaction_details
    assert details is not None and details.transaction_ref and details.completed_at
    assert (details.amount, details.fee, details.net_amount) == (paid, Decimal(15), net)
    assert c.account.balance().balance == net


def test_a_cancelled_link_fails_and_an_expired_one_is_gone(svc: MerchantService) -> None:
    c = svc.client
    cancelled = c.ocpay.create_link("Scarf", 800)
    pay(cancelled, "cancel")
    failed = c.ocpay.wait(cancelled.payment_ref, policy=svc.poll_policy)
    assert failed.status is PaymentStatus.FAILED and failed.transaction_details is None

    late = c.ocpay.create_link("Gloves", 600)
    assert c.ocpay.check_payment(late.payment_ref).status is PaymentStatus.PENDING
    svc.advance(21 * 60)  # links live 20 minutes
    with pytest.raises(PaymentLinkExpiredError) as info:
        c.ocpay.wait(late.payment_ref, policy=svc.poll_policy)
    assert info.value.status_code == 410 and isinstance(info.value, NotFoundError)
    with pytest.raises(NotFoundError) as unknown:
        c.ocpay.check_payment("OCPL-AAAAAA-BBBB")
    assert not isinstance(unknown.value, PaymentLinkExpiredError)


# ----------------------------------------------------------------- async


@pytest.mark.anyio
async def test_async_groups_share_the_sync_behaviour(svc: MerchantService) -> None:
    key = svc.create_key(account=f"topups-{next(_accounts)}", balance=100_000)
    c: AsyncClient = svc.async_client_for(key)
    updates: list[str] = []

    async def on_update(topup: MobileTopup) -> None:
        updates.append(str(topup.status))
        if not topup.is_final:
            svc.advance(60)

    unknown = await c.mobile.process("PREPAID_DJEZZY", "0700000003", 500, on_update=on_update)
    assert unknown.needs_resolution and not unknown.refunded and unknown.amount_refunded == 0
    assert updates[0] == "PENDING" and updates[-1] == "UNKNOWN_ERROR"
    queued = await c.internet.process("ADSL", "000000002", 500, on_update=advancing(svc))
    assert queued.queued and queued.amount_charged == 490
    assert (await c.internet.check_ref(str(queued.ref))).id == queued.topup_id
    assert len((await c.mobile.list()).items) == 1
    with pytest.raises(InvalidInputError):
        await c.mobile.send("PREPAID_DJEZZY", "0771234567x", 500)

    link = await c.ocpay.create_link("Mug", 500)
    assert (await c.ocpay.check_payment(link.payment_ref)).status is PaymentStatus.PENDING
    pay(link)
    confirmed = await c.ocpay.wait(link.payment_ref, policy=svc.poll_policy)
    assert confirmed.confirmed


# ----------------------------------------------------------------- the documentation's variants


def test_a_malformed_list_is_an_unexpected_response_that_names_no_code(
    stub_api: StubAPI,
) -> None:
    """An internet list whose items break the model is the SDK's own error (not pydantic's),
    and its message names the rule broken, never a value such as a card code."""
    stub_api.raw["internet/list"] = envelope(
        {
            "topups": [{"_id": "t1", "card_code": "SECRET-CODE-1234"}],
            "pagination": {"page": 1, "pageSize": 20, "totalPages": 1, "totalResults": 1},
        }
    )
    with (
        Client("k", base_url=stub_api.base_url) as c,
        pytest.raises(UnexpectedResponseError) as info,
    ):
        c.internet.list()
    assert "SECRET-CODE-1234" not in str(info.value)


def test_the_documented_variants_parse(stub_api: StubAPI) -> None:
    """Shapes other pages of the docs show, served over HTTP by the stub."""
    stub_api.raw["internet/products"] = envelope(
        [{"value": 500, "cost": 450, "available": True}, {"value": 1000, "cost": 900}]
    )
    stub_api.raw["internet/list"] = envelope(
        {
            "items": [{"_id": "t1", "status": "HANDLING", "type": "ADSL", "number": "036362608"}],
            "pagination": {"page": 1, "pageSize": 20, "totalPages": 1, "totalResults": 1},
        }
    )
    stub_api.raw["ocpay/checkPayment/OCPL-A1B2C3-D4E5"] = envelope(
        {
            "status": "CONFIRMED",
            "message": "Payment confirmed successfully",
            "paymentRef": "OCPL-A1B2C3-D4E5",
            "transactionDetails": {
                "amount": 5000,
                "currency": "DZD",
                "isSandbox": False,
                "createdDate": "2025-01-15T10:30:00Z",
            },
        }
    )
    with Client("k", base_url=stub_api.base_url) as c:
        products = c.internet.products("ADSL")
        assert products.type is None and [p.cost for p in products.products] == [450, 900]
        assert [t.id for t in c.internet.list().items] == ["t1"]
        payment = c.ocpay.check_payment("OCPL-A1B2C3-D4E5")
    details = payment.transaction_details
    assert payment.confirmed and details is not None
    assert details.amount == 5000 and details.created_date is not None and details.fee is None

    # createLink as the docs' example writes it: `ref`, `time`, `uid` inside `paymentLink`
    link = PaymentLink.model_validate(
        {
            "paymentLink": {
                "uid": "user_123456789",
                "ref": "OCPL-A1B2C3-D4E5",
                "isSandbox": False,
                "productInfo": {"title": "Premium", "description": "1 year", "amount": 5000},
                "feeMode": "NO_FEE",
                "time": "2025-01-15T10:30:00Z",
            },
            "paymentUrl": "https://pay.ocdz.link/pay/OCPL-A1B2C3-D4E5",
            "paymentRef": "OCPL-A1B2C3-D4E5",
        }
    )
    assert link.payment_ref == "OCPL-A1B2C3-D4E5" and link.uid == "user_123456789"
    assert link.payment_url.startswith("https://pay.ocdz.link/") and link.created_at is not None


# ----------------------------------------------------------------- outcome invariants


def test_final_topups_that_do_not_add_up_are_refused() -> None:
    mobile = {
        "_id": "m1",
        "status": "REFUNDED",
        "plan_code": "PREPAID_DJEZZY",
        "MSSIDN": "0771234567",
        "topup_amount": 500,
        "balance_amount": 490,  # a refunded top-up shows 0
        "created_at": "2025-10-29T00:35:59.378Z",
    }
    internet = {"_id": "i1", "status": "FULFILLED", "type": "ADSL", "topup_amount": 1000}
    for topup in (MobileTopup.model_validate(mobile), InternetTopup.model_validate(internet)):
        with pytest.raises(InconsistentOrderError) as info:
            TopupOutcome.from_topup(topup)
        assert info.value.order is topup and "top-up" in str(info.value)
    with pytest.raises(ValueError, match="not final"):
        TopupOutcome.from_topup(MobileTopup.model_validate({**mobile, "status": "HANDLING"}))
