"""AsyncClient against the real service, over both transports (httpx and aiohttp)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from decimal import Decimal

import pytest

from oneclickdz import (
    AiohttpTransport,
    APIConnectionError,
    APITimeoutError,
    AsyncClient,
    AsyncTransport,
    DuplicateRefError,
    NotFoundError,
    Order,
    OrderStatus,
    PlacementUnknownError,
    PollPolicy,
    PollTimeoutError,
    Transport,
)
from oneclickdz.server.testing import Service, free_port
from tests.conftest import fresh_account
from tests.sdk_fixtures import (  # noqa: F401 - fixtures are found by name
    FAST,
    PSN,
    TRANSPORTS,
    anyio_backend_fixture,
    async_client_fixture,
    faulty,
)

pytestmark = pytest.mark.anyio


def make_transport(name: str) -> AsyncTransport | None:
    return AiohttpTransport() if name == "aiohttp" else None


async def test_reads(async_client: AsyncClient) -> None:
    assert (await async_client.ping()).ok
    assert (await async_client.validate()).api_key.is_sandbox
    assert (await async_client.account.balance()).balance == Decimal(100_000)
    catalog = await async_client.gift_cards.catalog()
    assert catalog.get_product(PSN) is not None
    product = await async_client.gift_cards.check_product(PSN)
    type_001 = product.get_type("type_001")
    assert type_001 is not None
    assert type_001.price == Decimal(490)


async def test_place_check_and_list(async_client: AsyncClient) -> None:
    placed = [
        await async_client.gift_cards.place_order(PSN, "type_001", 1, ref=f"a-{n}")
        for n in range(3)
    ]
    order = await async_client.gift_cards.check_order(placed[0].order_id)
    assert order.quantity == 1
    listed = [o.id async for o in async_client.gift_cards.list_orders(page_size=2)]
    assert sorted(listed) == sorted(p.order_id for p in placed)
    page = await async_client.gift_cards.list_orders_page(2, page_size=2)
    assert len(page.items) == 1
    entries = [t async for t in async_client.account.transactions(page_size=2)]
    assert [t.type for t in entries] == ["ORDER", "ORDER", "ORDER", "DEPOSIT"]  # newest first
    ledger_page = await async_client.account.transactions_page(1, page_size=2)
    assert ledger_page.pagination is not None
    assert ledger_page.pagination.total_results == 4


async def test_three_sandbox_endings_at_once(async_client: AsyncClient) -> None:
    full, partial, refunded = await asyncio.gather(
        async_client.gift_cards.process_order(PSN, "type_002", 2, policy=FAST),
        async_client.gift_cards.process_order(PSN, "TEST_PARTIAL", 3, policy=FAST),
        async_client.gift_cards.process_order(PSN, "TEST_REFUND", 1, policy=FAST),
    )
    assert (full.status, full.delivered, full.amount_charged) == (
        OrderStatus.FULFILLED,
        2,
        Decimal(1960),
    )
    assert (partial.delivered, partial.amount_charged, partial.amount_refunded) == (
        1,
        Decimal(490),
        Decimal(980),
    )
    assert (refunded.status, refunded.amount_refunded) == (OrderStatus.REFUNDED, Decimal(490))
    balance = await async_client.account.balance()
    assert balance.balance == Decimal(100_000 - 1960 - 490)


async def test_placements_without_ref_get_distinct_automatic_refs(
    async_client: AsyncClient,
) -> None:
    placed = await asyncio.gather(
        *(async_client.gift_cards.place_order(PSN, "type_001", 1) for _ in range(3))
    )
    outcome = await async_client.gift_cards.process_order(PSN, "type_001", 1, policy=FAST)
    refs = [p.order_ref for p in placed] + [outcome.order.ref]
    assert all(ref is not None and re.fullmatch(r"auto-[0-9a-f]{32}", ref) for ref in refs)
    assert len(set(refs)) == 4
    for p in placed:
        assert (await async_client.gift_cards.check_order(p.order_id)).ref == p.order_ref


async def test_wait_accepts_a_coroutine_callback(async_client: AsyncClient) -> None:
    placed = await async_client.gift_cards.place_order(PSN, "type_001", 1)
    seen: list[Order] = []

    async def record(order: Order) -> None:
        await asyncio.sleep(0)
        seen.append(order)

    done = await async_client.gift_cards.wait(placed.order_id, policy=FAST, on_update=record)
    assert seen[-1] == done
    assert done.is_final


async def test_wait_for_an_unknown_order_ends_at_once(async_client: AsyncClient) -> None:
    with pytest.raises(NotFoundError):
        await async_client.gift_cards.wait(
            "0123456789abcdef01234567", policy=PollPolicy(interval=0.1, max_attempts=None)
        )


async def test_many_requests_in_flight(async_client: AsyncClient) -> None:
    products = await asyncio.gather(
        *(async_client.gift_cards.check_product(PSN) for _ in range(200))
    )
    assert {p.product_id for p in products} == {PSN}


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_wait_times_out_with_the_last_order(
    service_factory: Callable[..., Service], transport: str
) -> None:
    svc = service_factory(fulfill_delay="30-40")
    key = svc.create_key(balance=10_000)
    async with AsyncClient(key, base_url=svc.base_url, transport=make_transport(transport)) as c:
        placed = await c.gift_cards.place_order(PSN, "type_001", 1)
        with pytest.raises(PollTimeoutError) as info:
            await c.gift_cards.wait(
                placed.order_id, policy=PollPolicy(interval=0.05, max_attempts=2)
            )
    assert info.value.last_order is not None
    assert info.value.last_order.status is OrderStatus.HANDLING


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_transient_failures_are_retried(
    service_factory: Callable[..., Service], transport: str
) -> None:
    svc = faulty(service_factory, "balance:1:503:x1,balance:1:reset:x1,checkProduct:1:429=0.2:x1")
    key = svc.create_key(balance=10_000)
    async with AsyncClient(key, base_url=svc.base_url, transport=make_transport(transport)) as c:
        assert (await c.account.balance()).balance == Decimal(10_000)
        assert (await c.gift_cards.check_product(PSN)).product_id == PSN


@pytest.mark.parametrize("ref", [None, "r-1"])
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_place_order_is_recovered_by_its_automatic_ref_or_by_the_callers(
    service_factory: Callable[..., Service], transport: str, ref: str | None
) -> None:
    """The first two answers are lost; the third attempt meets DUPLICATED_REF: one order."""
    svc = faulty(service_factory, "placeOrder:1:reset-after:x2")
    key = svc.create_key(balance=10_000)
    async with AsyncClient(key, base_url=svc.base_url, transport=make_transport(transport)) as c:
        placed = await c.gift_cards.place_order(PSN, "type_001", 1, ref)
        again = await c.gift_cards.place_order(PSN, "type_001", 1)  # no fault left
        orders = [o.id async for o in c.gift_cards.list_orders()]
        balance = await c.account.balance()
        checked = await c.gift_cards.check_order(placed.order_id)
    assert placed.recovered
    assert placed.order_ref is not None
    if ref is None:
        assert re.fullmatch(r"auto-[0-9a-f]{32}", placed.order_ref)
    else:
        assert placed.order_ref == ref
    assert checked.ref == placed.order_ref
    assert again.order_ref != placed.order_ref
    assert sorted(orders) == sorted([placed.order_id, again.order_id])  # one per call
    assert balance.balance == Decimal(10_000 - 2 * 490)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_place_order_without_ref_that_never_gets_an_answer_names_its_ref(
    service_factory: Callable[..., Service], transport: str
) -> None:
    svc = faulty(service_factory, "placeOrder:1:reset-after:x3")
    key = svc.create_key(balance=10_000)
    async with AsyncClient(key, base_url=svc.base_url, transport=make_transport(transport)) as c:
        with pytest.raises(PlacementUnknownError) as info:
            await c.gift_cards.place_order(PSN, "type_001", 1)
        ref = info.value.request.ref
        assert ref is not None and re.fullmatch(r"auto-[0-9a-f]{32}", ref)
        with pytest.raises(DuplicateRefError) as again:
            await c.gift_cards.place_order(PSN, "type_001", 1, ref=ref)
        orders = [o.id async for o in c.gift_cards.list_orders()]
    assert orders == [again.value.order_id]


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_transport_failures(service_factory: Callable[..., Service], transport: str) -> None:
    dead = f"http://127.0.0.1:{free_port()}/v3"
    async with AsyncClient(
        "k", base_url=dead, max_retries=0, transport=make_transport(transport)
    ) as c:
        with pytest.raises(APIConnectionError) as refused:
            await c.ping()
    assert not refused.value.request_sent
    svc = faulty(service_factory, "balance:1:delay=2")
    async with AsyncClient(
        svc.create_key(),
        base_url=svc.base_url,
        timeout=0.2,
        max_retries=0,
        transport=make_transport(transport),
    ) as c:
        with pytest.raises(APITimeoutError) as slow:
            await c.account.balance()
    assert slow.value.request_sent


async def test_transports_satisfy_their_protocols() -> None:
    transport = AiohttpTransport()
    assert isinstance(transport, AsyncTransport)
    assert not isinstance(transport, Transport)
    await transport.aclose()


async def test_key_from_the_environment(service: Service, monkeypatch: pytest.MonkeyPatch) -> None:
    key = service.create_key(account=fresh_account(), balance=77)
    monkeypatch.setenv("ONECLICKDZ_API_KEY", key)
    monkeypatch.setenv("ONECLICKDZ_BASE_URL", service.base_url)
    async with AsyncClient() as c:
        assert (await c.account.balance()).balance == Decimal(77)
