"""The sync Client against the real service: every endpoint, configuration, timeouts, secrets."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from oneclickdz import (
    APITimeoutError,
    AuthenticationError,
    Client,
    NotFoundError,
    OneClickDZError,
    OrderStatus,
    PermissionDeniedError,
    PollPolicy,
    PollTimeoutError,
)
from oneclickdz.server.testing import Service, free_port
from tests.conftest import fresh_account
from tests.sdk_fixtures import (  # noqa: F401 - fixtures are found by name
    FAST,
    PSN,
    StubAPI,
    client_fixture,
    faulty,
    stub_api_fixture,
    stub_server_fixture,
)

README = Path(__file__).parent.parent / "README.md"


def test_ping_needs_no_key(service: Service) -> None:
    with Client(base_url=service.base_url) as c:
        health = c.ping()
    assert health.ok


def test_validate_describes_the_key(service: Service) -> None:
    key = service.create_key(sandbox=True, account=fresh_account(), read_only=True)
    with Client(key, base_url=service.base_url) as c:
        info = c.validate()
    assert info.api_key.is_sandbox
    assert info.api_key.scope == "READ-ONLY"
    assert info.api_key.is_enabled
    assert info.api_key.key is not None
    assert info.api_key.key.endswith(key[-4:])  # our service shows it masked


def test_balance(client: Client) -> None:
    balance = client.account.balance()
    assert balance.balance == Decimal(100_000)
    assert balance.currency == "DZD"


def test_catalog_lists_the_documented_products(client: Client) -> None:
    catalog = client.gift_cards.catalog()
    products = list(catalog.products())
    assert catalog.total_products == len(products)
    assert catalog.total_categories == len(catalog.categories)
    psn = catalog.get_product(PSN)
    assert psn is not None
    assert psn.title == "PlayStation Network"


def test_check_product_gives_prices_and_stock(client: Client) -> None:
    product = client.gift_cards.check_product(PSN)
    assert product.product_title == "PlayStation Network"
    prices = {t.id: (t.price, t.quantity) for t in product.types}
    assert prices["type_001"][0] == Decimal(490)
    assert prices["type_002"][0] == Decimal(980)
    assert prices["type_003"] == (Decimal(1960), 0)


def test_place_then_check_an_order(client: Client) -> None:
    placed = client.gift_cards.place_order(PSN, "type_002", 1, ref="check-me")
    assert placed.order_ref == "check-me"
    assert placed.request_id is not None
    first = client.gift_cards.check_order(placed.order_id)
    assert first.id == placed.order_id
    assert (first.product, first.type, first.quantity) == (PSN, "type_002", 1)
    done = client.gift_cards.wait(placed.order_id, policy=FAST)
    assert done.status is OrderStatus.FULFILLED
    assert done.price_per_card == Decimal(980)
    assert done.ref == "check-me"


def test_place_order_without_ref_gets_an_automatic_ref_per_call(client: Client) -> None:
    """No ref given: one is made up for each call, sent, stored by the service and returned."""
    placed = [client.gift_cards.place_order(PSN, "type_001", 1) for _ in range(3)]
    outcome = client.gift_cards.process_order(PSN, "type_001", 1, policy=FAST)
    refs = [p.order_ref for p in placed] + [outcome.order.ref]
    assert all(ref is not None and re.fullmatch(r"auto-[0-9a-f]{32}", ref) for ref in refs)
    assert len(set(refs)) == 4  # distinct across calls
    for p in placed:
        assert client.gift_cards.check_order(p.order_id).ref == p.order_ref
    listed = {o.id: o.ref for o in client.gift_cards.list_orders()}
    assert listed == {p.order_id: p.order_ref for p in placed} | {outcome.order_id: refs[-1]}


def test_order_ref_is_the_ref_sent_when_the_answer_does_not_echo_it(stub_api: StubAPI) -> None:
    """The docs' placeOrder answer may hold only `orderId` (the stub's): the ref is still known."""
    with Client("k", base_url=stub_api.base_url) as c:
        automatic = c.gift_cards.place_order(PSN, "type_001", 1)
        own = c.gift_cards.place_order(PSN, "type_001", 1, ref="inv-9")
    assert automatic.order_ref is not None
    assert re.fullmatch(r"auto-[0-9a-f]{32}", automatic.order_ref)
    assert own.order_ref == "inv-9"


def test_list_orders_walks_every_page(client: Client) -> None:
    placed = {client.gift_cards.place_order(PSN, "type_001", 1).order_id for _ in range(5)}
    page = client.gift_cards.list_orders_page(1, page_size=2)
    assert page.pagination is not None
    assert (page.pagination.total_pages, page.pagination.total_results) == (3, 5)
    assert len(page.items) == 2
    listed = [o.id for o in client.gift_cards.list_orders(page_size=2)]
    assert sorted(listed) == sorted(placed)


def test_list_orders_between_dates(client: Client) -> None:
    placed = client.gift_cards.place_order(PSN, "type_001", 1)
    now = datetime.now(UTC)
    around = list(
        client.gift_cards.list_orders(from_=now - timedelta(hours=1), to=now + timedelta(hours=1))
    )
    before = list(
        client.gift_cards.list_orders(
            from_="2020-01-01T00:00:00.000Z", to="2020-01-02T00:00:00.000Z"
        )
    )
    assert [o.id for o in around] == [placed.order_id]
    assert before == []
    with pytest.raises(ValueError, match="timezone-aware"):
        client.gift_cards.list_orders_page(from_=datetime(2025, 1, 1), to=datetime(2025, 1, 2))


def test_transactions_record_the_charge_and_the_refund(client: Client) -> None:
    out = client.gift_cards.process_order(PSN, "TEST_PARTIAL", 4, policy=FAST)
    entries = list(client.account.transactions(page_size=1))
    by_type = {t.type: t for t in entries}
    assert by_type["ORDER"].amount == Decimal(1960)
    assert by_type["ORDER"].objid == out.order_id
    assert by_type["REFUND-ORDER"].amount == out.amount_refunded == Decimal(980)
    assert by_type["REFUND-ORDER"].new_balance == client.account.balance().balance
    page = client.account.transactions_page(1, page_size=1)
    assert page.pagination is not None
    assert page.pagination.total_results == len(entries)


def test_configuration_from_the_environment(
    service: Service, sandbox_key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ONECLICKDZ_API_KEY", sandbox_key)
    monkeypatch.setenv("ONECLICKDZ_BASE_URL", service.base_url + "/")
    with Client() as c:
        assert c.account.balance().balance == Decimal(100_000)
    monkeypatch.setenv("ONECLICKDZ_BASE_URL", f"http://127.0.0.1:{free_port()}/v3")
    with Client(base_url=service.base_url) as c:  # arguments beat the environment
        assert c.account.balance().balance == Decimal(100_000)


def test_default_base_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ONECLICKDZ_BASE_URL", raising=False)
    with Client("k") as c:
        assert c.base_url == "https://api.oneclickdz.com/v3"


def test_per_call_timeout_overrides_the_clients(service_factory: Callable[..., Service]) -> None:
    svc = faulty(service_factory, "balance:1:delay=1")
    key = svc.create_key(balance=10)
    with (
        Client(key, base_url=svc.base_url, max_retries=0) as patient,
        pytest.raises(APITimeoutError),
    ):
        patient.account.balance(timeout=0.2)
    with Client(key, base_url=svc.base_url, timeout=0.2, max_retries=0) as hasty:
        assert hasty.account.balance(timeout=5).balance == Decimal(10)
        with pytest.raises(APITimeoutError):
            hasty.account.balance()
        relaxed = hasty.with_options(timeout=5)
        assert relaxed.account.balance().balance == Decimal(10)
        relaxed.close()  # shares hasty's connections and leaves them open
        assert hasty.ping().ok


def test_a_client_wide_poll_policy_paces_every_wait_unless_a_call_says_otherwise(
    service_factory: Callable[..., Service],
) -> None:
    svc = service_factory(fulfill_delay="30-40")  # the order stays HANDLING throughout
    key = svc.create_key(balance=10_000)
    brisk = PollPolicy(interval=0.01, max_attempts=3)
    with Client(key, base_url=svc.base_url, poll_policy=brisk) as client:
        order_id = client.gift_cards.place_order(PSN, "type_001", 1).order_id
        with pytest.raises(PollTimeoutError) as waited:
            client.gift_cards.wait(order_id)
        assert waited.value.attempts == 3
        with pytest.raises(PollTimeoutError) as once:
            client.gift_cards.wait(order_id, policy=PollPolicy(interval=0.01, max_attempts=1))
        assert once.value.attempts == 1
        twin = client.with_options(timeout=5)
        assert twin.poll_policy is brisk
        with pytest.raises(PollTimeoutError) as again:
            twin.gift_cards.process_order(PSN, "type_001", 1)
        assert again.value.attempts == 3
        twin.close()


def test_the_key_never_shows_in_reprs_logs_or_errors(
    service_factory: Callable[..., Service], caplog: pytest.LogCaptureFixture
) -> None:
    svc = faulty(service_factory, "balance:1:503:x1,checkOrder:1:delay=1")
    key = svc.create_key(balance=10_000, read_only=True)
    caplog.set_level(logging.DEBUG)  # every logger: ours, httpx's, httpcore's
    errors: list[OneClickDZError] = []
    with Client(key, base_url=svc.base_url, timeout=0.3) as c:
        texts = [repr(c), repr(c.validate()), str(c.validate()), repr(c.account.balance())]
        for action in (
            lambda: c.gift_cards.place_order(PSN, "type_001", 1),
            lambda: c.gift_cards.check_order("0123456789abcdef01234567"),
        ):
            with pytest.raises(OneClickDZError) as info:
                action()
            errors.append(info.value)
    with (
        Client(key + "x", base_url=svc.base_url) as wrong,
        pytest.raises(AuthenticationError) as bad,
    ):
        wrong.account.balance()
    errors.append(bad.value)
    assert [type(e) for e in errors] == [
        PermissionDeniedError,
        APITimeoutError,
        AuthenticationError,
    ]
    texts += [text for e in errors for text in (str(e), repr(e))]
    for text in [*texts, caplog.text]:
        assert key not in text
        assert key[:-4] not in text


def test_an_unknown_order_raises_not_found(client: Client) -> None:
    with pytest.raises(NotFoundError):
        client.gift_cards.check_order("0123456789abcdef01234567")


def readme_examples() -> list[str]:
    """The Python examples of the README's SDK section, in order."""
    text = README.read_text()
    section = text.split("<!-- section: sdk -->")[1].split("<!-- end section: sdk -->")[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)


def test_the_readme_quickstart_runs_as_is_against_a_fresh_service(
    service_factory: Callable[..., Service],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The docs' usage: process_order(PSN, "type_001", 2) -> FULFILLED, 2 cards, 980 DZD."""
    svc = service_factory()
    monkeypatch.setenv("ONECLICKDZ_API_KEY", svc.create_key(sandbox=True, balance=5000))
    monkeypatch.setenv("ONECLICKDZ_BASE_URL", svc.base_url)
    quickstart = readme_examples()[0]
    assert 'process_order("507f1f77bcf86cd799439011", "type_001", 2)' in quickstart
    namespace: dict[str, object] = {}
    exec(compile(quickstart, "README.md", "exec"), namespace)  # noqa: S102 - our own README
    outcome = namespace["outcome"]
    assert getattr(outcome, "status", None) is OrderStatus.FULFILLED
    assert len(getattr(outcome, "cards", ())) == 2
    assert getattr(outcome, "amount_charged", None) == Decimal(980)
    assert "FULFILLED: 2/2 cards delivered, charged 980.00 DZD" in capsys.readouterr().out


def test_every_readme_example_runs(
    service_factory: Callable[..., Service], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Top-ups 20 times faster than documented: the examples follow them to the end.
    svc = service_factory(extra_args=["--topup-delay-scale", "0.05"])
    monkeypatch.setenv("ONECLICKDZ_API_KEY", svc.create_key(sandbox=True, balance=50_000))
    monkeypatch.setenv("ONECLICKDZ_BASE_URL", svc.base_url)
    for number, example in enumerate(readme_examples()[1:], start=2):
        exec(compile(example, f"README.md example {number}", "exec"), {})  # noqa: S102
