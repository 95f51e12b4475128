"""The tracker against the real service over HTTP: outcomes, uncertain placements, delivery,
stuck orders, adoption, cards at rest."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import pytest

from oneclickdz import Client
from oneclickdz.server.testing import Service
from oneclickdz.tracker import (
    IntentSpec,
    LeaseLostError,
    RunnerActiveError,
    State,
    Tracker,
    TrackerConfig,
    TrackerKeyError,
    open_store,
)
from tests.conftest import fresh_account
from tests.tracker.conftest import Deliveries, raw
from tests.tracker.proxy import RewritingProxy

pytestmark = pytest.mark.anyio

PSN = "507f1f77bcf86cd799439011"
Factory = Callable[..., Tracker]


def service_orders(service: Service, key: str) -> list[Any]:
    with Client(key, base_url=service.base_url) as client:
        return list(client.gift_cards.list_orders())


def service_order(service: Service, key: str, order_id: str) -> Any:
    with Client(key, base_url=service.base_url) as client:
        return client.gift_cards.check_order(order_id)


def new_key(service: Service) -> str:
    return service.create_key(sandbox=True, account=fresh_account(), balance=100_000)


# --------------------------------------------------------------------------- outcomes


async def test_the_three_sandbox_outcomes_are_delivered_with_their_cards_and_amounts(
    service: Service, tracker_factory: Factory, deliveries: Deliveries
) -> None:
    key = new_key(service)
    async with tracker_factory(service, key) as tracker:
        normal = await tracker.place(PSN, "type_001", 2, meta={"shop_order": "A-1"})
        partial = await tracker.place(PSN, "TEST_PARTIAL", 4, meta={"shop_order": "A-2"})
        refund = await tracker.place(PSN, "TEST_REFUND", 2, meta={"shop_order": "A-3"})
        summary = await tracker.run(until_idle=True)
    assert summary.ok
    assert summary.states == {"delivered": 3, "stuck": 0}
    by_intent = {d.intent_id: d for d in deliveries.received}
    assert set(by_intent) == {normal.id, partial.id, refund.id}

    expected = {
        normal.id: ("FULFILLED", 2, "980.00", "0.00"),
        partial.id: ("PARTIALLY_FILLED", 2, "980.00", "980.00"),
        refund.id: ("REFUNDED", 0, "0.00", "980.00"),
    }
    for intent_id, (status, cards, charged, refunded) in expected.items():
        delivery = by_intent[intent_id]
        truth = service_order(service, key, delivery.order_id)
        assert delivery.status == status == truth.status
        assert delivery.delivered == cards
        assert [(c.value, c.serial) for c in delivery.cards] == [
            (c.value, c.serial) for c in truth.cards
        ]
        assert delivery.amount_charged == Decimal(charged)
        assert delivery.amount_refunded == Decimal(refunded)
        assert delivery.delivery_key == f"dlv_{intent_id}"
    assert by_intent[normal.id].meta == {"shop_order": "A-1"}
    # One order per intent on the service, each carrying its intent's ref.
    orders = service_orders(service, key)
    assert sorted(str(o.ref) for o in orders) == sorted(
        str(o.ref) for o in (normal, partial, refund)
    )


async def test_place_many_is_all_or_nothing(tracker_factory: Factory, store_url: str) -> None:
    async with tracker_factory() as tracker:
        with pytest.raises(ValueError, match="quantity"):
            await tracker.place_many(
                [IntentSpec(PSN, "type_001", 1), IntentSpec(PSN, "type_001", 0)]
            )
        assert await tracker.orders() == []
        rows = await tracker.place_many([IntentSpec(PSN, "type_001", 1, {"row": 1})] * 3)
        assert [o.state for o in await tracker.orders()] == [State.INTENT] * 3
        assert len({o.ref for o in rows}) == 3


async def test_the_intent_is_on_disk_before_any_request(
    service: Service, tracker_factory: Factory, store_url: str
) -> None:
    key = new_key(service)
    async with tracker_factory(service, key) as tracker:
        intent = await tracker.place(PSN, "type_001", 1)
        # Written and committed, nothing sent: another connection sees it, the service has none.
        other = open_store(store_url)
        await other.open()
        try:
            row = await other.get(intent.id)
        finally:
            await other.close()
    assert row is not None
    assert (row.state, row.ref) == (State.INTENT, intent.ref)
    assert raw(store_url, "SELECT state, ref FROM {t}orders WHERE id = ?", (intent.id,)) == [
        ("intent", intent.ref)
    ]
    assert service_orders(service, key) == []


# --------------------------------------------------------------------------- uncertain placements


@pytest.mark.parametrize(
    "faults",
    [
        "placeOrder:1:reset-after:x1",  # placed, then the connection dropped: answer lost
        "placeOrder:1:empty:x1",  # placed, then an empty 200
        "placeOrder:1:malformed:x1",  # placed, then truncated JSON
        "placeOrder:1:503:x2",  # refused twice before handling: nothing placed yet
        "placeOrder:1:reset:x1",  # dropped before handling
    ],
)
async def test_a_lost_placement_answer_is_resolved_by_its_ref_never_bought_twice(
    service_factory: Callable[..., Service],
    tracker_factory: Factory,
    deliveries: Deliveries,
    faults: str,
) -> None:
    svc = service_factory(extra_args=["--faults", faults])
    key = new_key(svc)
    async with tracker_factory(svc, key) as tracker:
        intent = await tracker.place(PSN, "type_001", 1)
        summary = await tracker.run(until_idle=True)
        row = await tracker.get(intent.id)
    assert summary.ok
    assert row is not None
    assert row.state is State.DELIVERED
    orders = service_orders(svc, key)
    assert [o.id for o in orders] == [row.order_id]  # exactly one order, the one adopted
    assert orders[0].ref == intent.ref
    assert len(deliveries.received) == 1
    assert deliveries.received[0].order_id == row.order_id


async def test_a_crash_after_sending_is_resolved_by_sending_the_same_ref_again(
    service: Service, tracker_factory: Factory, store_url: str, deliveries: Deliveries
) -> None:
    key = new_key(service)
    async with tracker_factory(service, key) as tracker:
        intent = await tracker.place(PSN, "type_001", 1)
    # The process sent the order and died before writing the answer down: the service has it,
    # the store says `sent`.
    with Client(key, base_url=service.base_url) as client:
        placed = client.gift_cards.place_order(PSN, "type_001", 1, ref=intent.ref)
    raw(store_url, "UPDATE {t}orders SET state = 'sent', sent_at = created_at WHERE id = ?",
        (intent.id,))  # fmt: skip
    async with tracker_factory(service, key) as tracker:
        summary = await tracker.run(until_idle=True)
        row = await tracker.get(intent.id)
    assert summary.ok
    assert row is not None
    assert row.order_id == placed.order_id
    assert [o.id for o in service_orders(service, key)] == [placed.order_id]
    assert [d.order_id for d in deliveries.received] == [placed.order_id]


async def test_duplicated_ref_without_an_order_id_is_found_in_the_list(
    service_factory: Callable[..., Service], tracker_factory: Factory, deliveries: Deliveries
) -> None:
    svc = service_factory(extra_args=["--faults", "placeOrder:1:reset-after:x1"])
    proxy = RewritingProxy(svc.base_url).start()
    try:
        proxy.strip_duplicate_order_id = True
        key = new_key(svc)
        async with tracker_factory(base_url=proxy.base_url, key=key) as tracker:
            intent = await tracker.place(PSN, "TEST_PARTIAL", 2)
            summary = await tracker.run(until_idle=True)
            row = await tracker.get(intent.id)
    finally:
        proxy.stop()
    assert summary.ok
    assert row is not None
    assert row.state is State.DELIVERED
    assert [o.id for o in service_orders(svc, key)] == [row.order_id]
    assert ("GET", "gift-cards/list") in proxy.requests  # found by its ref in the list


async def test_an_unresolvable_intent_goes_to_an_operator_and_is_never_placed_again(
    service_factory: Callable[..., Service], tracker_factory: Factory, deliveries: Deliveries
) -> None:
    svc = service_factory(extra_args=["--faults", "placeOrder:1:reset-after:x1"])
    proxy = RewritingProxy(svc.base_url).start()
    try:
        proxy.strip_duplicate_order_id = True
        proxy.strip_list_refs = True  # an API whose list does not show refs
        key = new_key(svc)
        async with tracker_factory(base_url=proxy.base_url, key=key) as tracker:
            intent = await tracker.place(PSN, "type_001", 1)
            summary = await tracker.run(until_idle=True)
            row = await tracker.get(intent.id)
            placements = sum(1 for m, p in proxy.requests if p == "gift-cards/placeOrder")
    finally:
        proxy.stop()
    assert not summary.ok
    assert summary.states["needs_operator"] == 1
    assert row is not None
    assert row.state is State.NEEDS_OPERATOR
    assert row.last_error is not None and "ref" in row.last_error
    assert len(service_orders(svc, key)) == 1  # the one the lost attempt made; no second
    assert placements == 2  # the lost attempt and the one that met DUPLICATED_REF
    assert deliveries.received == []


async def test_a_refused_placement_is_rejected_and_nothing_is_bought(
    service: Service, tracker_factory: Factory, deliveries: Deliveries
) -> None:
    poor = service.create_key(sandbox=True, account=fresh_account(), balance=100)
    async with tracker_factory(service, poor) as tracker:
        intent = await tracker.place(PSN, "type_001", 2)
        summary = await tracker.run(until_idle=True)
        row = await tracker.get(intent.id)
    assert summary.states["rejected"] == 1
    assert summary.ok  # a refusal is a final answer, nothing to act on
    assert row is not None
    assert row.last_error is not None and "INSUFFICIENT_BALANCE" in row.last_error
    assert service_orders(service, poor) == []
    assert deliveries.received == []


# --------------------------------------------------------------------------- delivery


async def test_a_failing_handler_ends_delivery_failed_then_retry_delivers_it(
    service: Service,
    tracker_factory: Factory,
    deliveries: Deliveries,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    key = new_key(service)
    config = TrackerConfig(interval=0.5, max_delivery_attempts=3, delivery_backoff=0.05)
    deliveries.fail_times = 3
    async with tracker_factory(service, key, config=config) as tracker:
        intent = await tracker.place(PSN, "type_001", 1)
        summary = await tracker.run(until_idle=True)
        failed = await tracker.get(intent.id)
        assert summary.states["delivery_failed"] == 1
        assert not summary.ok
        assert failed is not None
        assert failed.state is State.DELIVERY_FAILED
        assert failed.delivery_attempts == 3
        # The handler's message quoted the code: it is masked in the store.
        codes = [c.value for c in service_order(service, key, failed.order_id or "").cards]
        assert failed.last_error is not None and "mail server down" in failed.last_error
        assert not any(code in failed.last_error for code in codes)
        assert deliveries.received == []

        requeued = await tracker.retry_delivery(intent.id)
        assert requeued.state is State.FINAL
        summary = await tracker.run(until_idle=True)
    assert summary.ok
    assert [d.intent_id for d in deliveries.received] == [intent.id]
    assert [c.value for c in deliveries.received[0].cards] == codes
    assert not any(code in caplog.text for code in codes)


async def test_a_transactional_handler_commits_its_effect_with_the_delivery_marker(
    service: Service, tracker_factory: Factory, store_url: str, engine: str
) -> None:
    key = new_key(service)
    calls: list[str] = []

    async def handler(delivery: Any, tx: Any) -> None:
        """SQLite gives a sqlite3.Connection; PostgreSQL a psycopg.AsyncConnection (awaited)."""
        calls.append(delivery.delivery_key)
        create = "CREATE TABLE IF NOT EXISTS shop_credits (key TEXT PRIMARY KEY, cards INT)"
        insert = "INSERT INTO shop_credits VALUES (?, ?)"
        params = (delivery.delivery_key, delivery.delivered)
        if engine == "sqlite":
            assert isinstance(tx, sqlite3.Connection)
            tx.execute(create)
            tx.execute(insert, params)
        else:
            import psycopg

            assert isinstance(tx, psycopg.AsyncConnection)
            await tx.execute(create)
            await tx.execute(insert.replace("?", "%s"), params)
        if len(calls) == 1:
            raise RuntimeError("crash after writing, before returning")

    config = TrackerConfig(interval=0.5, delivery_backoff=0.05)
    async with tracker_factory(
        service, key, config=config, handler=None, tx_handler=handler
    ) as tracker:
        intent = await tracker.place(PSN, "type_001", 2)
        summary = await tracker.run(until_idle=True)
    assert summary.ok
    assert calls == [f"dlv_{intent.id}"] * 2  # the first attempt failed and was rolled back
    assert raw(store_url, "SELECT key, cards FROM shop_credits") == [(f"dlv_{intent.id}", 2)]
    assert raw(store_url, "SELECT state FROM {t}orders") == [("delivered",)]


# --------------------------------------------------------------------------- following orders


async def test_an_order_past_its_deadline_is_flagged_stuck_and_still_followed(
    service_factory: Callable[..., Service], tracker_factory: Factory, deliveries: Deliveries
) -> None:
    svc = service_factory(fulfill_delay="4-4")
    key = new_key(svc)
    config = TrackerConfig(interval=0.5, deadline=1.0, stuck_interval=1.0, delivery_backoff=0.05)
    async with tracker_factory(svc, key, config=config) as tracker:
        intent = await tracker.place(PSN, "type_001", 1)
        summary = await tracker.run(until_idle=True)  # idle: only a stuck order is left
        row = await tracker.get(intent.id)
        assert row is not None
        assert row.state is State.PLACED
        assert row.stuck
        assert summary.states["stuck"] == 1
        assert not summary.ok
        assert (await tracker.stats()).stuck == [intent.id]
        # Never forgotten: the tracker keeps following it, slowly, to the end.
        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                tg.start_soon(tracker.run)
                following = (State.PLACED, State.FINAL)
                while (row := await tracker.get(intent.id)) is not None and row.state in following:
                    await anyio.sleep(0.1)
                tracker.stop()
    assert row is not None
    assert row.state is State.DELIVERED
    assert not row.stuck
    assert [d.intent_id for d in deliveries.received] == [intent.id]


async def test_an_order_placed_elsewhere_is_adopted_and_delivered(
    service: Service, tracker_factory: Factory, deliveries: Deliveries
) -> None:
    key = new_key(service)
    with Client(key, base_url=service.base_url) as client:
        placed = client.gift_cards.place_order(PSN, "TEST_PARTIAL", 4)
    async with tracker_factory(service, key) as tracker:
        adopted = await tracker.track(placed.order_id, meta={"customer": "c-9"})
        again = await tracker.track(placed.order_id)
        assert again.id == adopted.id  # tracked once
        summary = await tracker.run(until_idle=True)
        row = await tracker.get(placed.order_id)
    assert summary.ok
    assert row is not None
    assert row.adopted
    assert (row.product_id, row.type_id, row.quantity) == (PSN, "TEST_PARTIAL", 4)
    truth = service_order(service, key, placed.order_id)
    [delivery] = deliveries.received
    assert delivery.meta == {"customer": "c-9"}
    assert delivery.status == "PARTIALLY_FILLED"
    assert [c.value for c in delivery.cards] == [c.value for c in truth.cards]


async def test_adopting_an_unknown_order_asks_an_operator(
    service: Service, tracker_factory: Factory
) -> None:
    async with tracker_factory(service) as tracker:
        row = await tracker.track("6b0000000000000000000000")
        summary = await tracker.run(until_idle=True)
        row = await tracker.get(row.id)  # type: ignore[assignment]
    assert summary.states["needs_operator"] == 1
    assert row is not None
    assert row.last_error is not None and "NOT_FOUND" in row.last_error


async def test_many_orders_are_checked_by_sweeping_the_list_and_few_by_checkorder(
    service: Service, tracker_factory: Factory, deliveries: Deliveries
) -> None:
    key = new_key(service)
    async with tracker_factory(service, key) as tracker:
        await tracker.place_many([IntentSpec(PSN, "type_001", 1, {"n": n}) for n in range(60)])
        summary = await tracker.run(until_idle=True)
        stats = await tracker.stats()
    assert summary.ok
    assert len(deliveries.received) == 60
    assert stats.api_calls["placeOrder"] == 60
    assert stats.counters["checked.by_sweep"] >= 60
    # Checking 60 orders one by one would cost 60+ calls; the sweeps cost a few pages.
    assert stats.api_calls["list"] + stats.api_calls["checkOrder"] < 30
    assert stats.placement_to_final.count == 60
    assert stats.final_to_delivered.p99 is not None


async def test_checkorder_mode_never_sweeps(
    service: Service, tracker_factory: Factory, deliveries: Deliveries
) -> None:
    config = TrackerConfig(interval=0.5, check_mode="check", delivery_backoff=0.05)
    async with tracker_factory(service, config=config) as tracker:
        await tracker.place_many([IntentSpec(PSN, "type_001", 1)] * 5)
        summary = await tracker.run(until_idle=True)
        stats = await tracker.stats()
    assert summary.ok
    assert stats.api_calls["list"] == 0
    assert stats.api_calls["checkOrder"] >= 5


async def test_429s_slow_the_tracker_down_and_every_order_still_arrives(
    service_factory: Callable[..., Service], tracker_factory: Factory, deliveries: Deliveries
) -> None:
    svc = service_factory(extra_args=["--faults", "*:0.3:429=1"])
    async with tracker_factory(svc) as tracker:
        await tracker.place_many([IntentSpec(PSN, "type_001", 1)] * 5)
        summary = await tracker.run(until_idle=True)
        stats = await tracker.stats()
    assert summary.ok
    assert len(deliveries.received) == 5
    assert stats.throttled >= 1
    assert tracker.budget.throttled == stats.throttled


# --------------------------------------------------------------------------- at rest


@pytest.mark.parametrize("engine", ["sqlite"])  # files beside the store: SQLite's own
async def test_no_card_code_is_in_the_store_files_in_clear(
    service: Service, tracker_factory: Factory, store_url: str, deliveries: Deliveries
) -> None:
    key = new_key(service)
    async with tracker_factory(service, key) as tracker:
        await tracker.place(PSN, "type_001", 3)
        await tracker.place(PSN, "TEST_PARTIAL", 2)
        summary = await tracker.run(until_idle=True)
        assert summary.ok
        codes = [c for d in deliveries.received for c in d.cards]
        assert len(codes) == 4
        # Read while the store is open, so the WAL still holds the latest pages.
        path = Path(store_url.removeprefix("sqlite:///"))
        files = [p for p in path.parent.iterdir() if p.name.startswith(path.name)]
        assert {p.name for p in files} >= {path.name, path.name + "-wal", path.name + ".key"}
        blob = b"".join(p.read_bytes() for p in files)
        for card in codes:
            assert card.value.encode() not in blob
            assert card.serial is None or f'"{card.serial}"'.encode() not in blob
        modes = {p.name: p.stat().st_mode & 0o777 for p in files}
        assert modes[path.name] == modes[path.name + ".key"] == 0o600
        # ... and the key opens them.
        revealed = [c for d in deliveries.received for c in await tracker.reveal(d.intent_id)]
        assert revealed == codes


async def test_a_wrong_key_is_refused_at_open(tracker_factory: Factory, store_url: str) -> None:
    async with tracker_factory(key=None) as tracker:
        await tracker.place(PSN, "type_001", 1)
    other = Tracker(None, store_url, key=b"\x01" * 32)
    with pytest.raises(TrackerKeyError, match="does not open"):
        await other.open()
    await other.store.close()


@pytest.mark.parametrize("engine", ["sqlite"])  # a PostgreSQL store takes several runners
async def test_one_runner_per_store(
    service: Service, tracker_factory: Factory, store_url: str
) -> None:
    first = tracker_factory(service)
    second = tracker_factory(service)
    async with first, second, anyio.create_task_group() as tg:
        tg.start_soon(first.run)
        await anyio.sleep(0.3)
        with pytest.raises(RunnerActiveError):
            await second.run()
        first.stop()


async def test_handlers_side_by_side_deliver_each_order_once(
    service: Service, tracker_factory: Factory, deliveries: Deliveries, store_url: str
) -> None:
    config = TrackerConfig(interval=0.5, delivery_concurrency=4, delivery_backoff=0.05)
    async with tracker_factory(service, config=config) as tracker:
        rows = await tracker.place_many([IntentSpec(PSN, "type_001", 1)] * 20)
        summary = await tracker.run(until_idle=True)
    assert summary.ok
    assert sorted(d.intent_id for d in deliveries.received) == sorted(o.id for o in rows)
    assert raw(store_url, "SELECT state, COUNT(*) FROM {t}orders GROUP BY state") == [
        ("delivered", 20)
    ]


# --------------------------------------------------------------------------- shared stores


@pytest.mark.parametrize("engine", ["postgresql"])
async def test_a_dead_runners_orders_are_taken_over_once_its_lease_expires(
    service: Service, tracker_factory: Factory, store_url: str, deliveries: Deliveries
) -> None:
    from oneclickdz.tracker.postgres import PostgresTrackerStore

    key = new_key(service)
    dead = PostgresTrackerStore(store_url, lease_seconds=1.5)
    other = PostgresTrackerStore(store_url)
    async with tracker_factory(service, key) as tracker:
        rows = await tracker.place_many([IntentSpec(PSN, "type_001", 1)] * 3)
        await dead.open()
        await other.open()
        try:
            # A runner claims the three intents, then dies without a word.
            claimed = await dead.claim(set())
            assert sorted(o.id for o in claimed) == sorted(o.id for o in rows)
            assert await other.claim(set()) == []  # leased: no one else gets them meanwhile
            # This runner waits for the lease to expire, then places and delivers them.
            summary = await tracker.run(until_idle=True)
            assert summary.ok
            assert summary.states == {"delivered": 3, "stuck": 0}
            # The dead runner's late writes are refused, its effects rolled back.
            stale = claimed[0]
            stale.state = State.FINAL
            assert await dead.save([stale]) == {stale.id}
            assert await dead.deliver_many([stale]) == {stale.id}
            effects: list[object] = []
            with pytest.raises(LeaseLostError):
                await dead.deliver(stale, effects.append)
            assert effects == []
        finally:
            await dead.close()
            await other.close()
    assert sorted(d.intent_id for d in deliveries.received) == sorted(o.id for o in rows)
    assert raw(store_url, "SELECT state, COUNT(*) FROM {t}orders GROUP BY state") == [
        ("delivered", 3)
    ]
    assert sorted(str(o.ref) for o in service_orders(service, key)) == sorted(
        str(o.ref) for o in rows
    )


@pytest.mark.parametrize("engine", ["postgresql"])
async def test_no_card_code_is_in_the_database_in_clear(
    service: Service, tracker_factory: Factory, store_url: str, deliveries: Deliveries
) -> None:
    async with tracker_factory(service) as tracker:
        await tracker.place(PSN, "type_001", 3)
        assert (await tracker.run(until_idle=True)).ok
        codes = [c.value for d in deliveries.received for c in d.cards]
        assert len(codes) == 3
        rows = raw(store_url, "SELECT t::text, sealed_cards FROM {t}orders t")
        text = "".join(row for row, _ in rows) + "".join(
            str(r) for r in raw(store_url, "SELECT * FROM {t}settings")
        )
        sealed = b"".join(bytes(blob) for _, blob in rows if blob is not None)
        assert sealed
        for code in codes:
            assert code not in text
            assert code.encode() not in sealed
        assert [c.value for c in await tracker.reveal(deliveries.received[0].intent_id)] == codes
