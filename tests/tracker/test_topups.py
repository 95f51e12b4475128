"""The tracker follows mobile top-ups, internet recharges and OCPay payment links as it follows
gift-card orders: each kind to each final state, delivered once; UNKNOWN_ERROR never delivered
as a refund; QUEUED followed slowly; lost answers and crashes resolved by the ref, never sent
twice; internet card codes sealed at rest; older stores migrated. On both store engines.

The service runs in this process with its top-up delays scaled down 100 times (PENDING and
HANDLING take tenths of a second); the hours of QUEUED and a payment link's 20 minutes are
crossed by moving its fulfilment clock (`advance`), never by sleeping.
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import anyio
import httpx
import pytest

from oneclickdz import AiohttpTransport, AsyncClient
from oneclickdz.errors import ServerError
from oneclickdz.server import admin
from oneclickdz.server.config import ServerConfig
from oneclickdz.server.runtime import RunningService, start_in_thread
from oneclickdz.tracker import Kind, State, TrackedOrder, Tracker, TrackerConfig, open_store
from tests.conftest import fresh_account
from tests.tracker.conftest import Deliveries, raw

pytestmark = pytest.mark.anyio

Factory = Callable[..., Tracker]
TOKEN = re.compile(r'name="token" value="([^"]+)"')
HOUR = 3600.0
# Checks five times a second; the slow schedules an hour apart unless a test says otherwise.
CONFIG = TrackerConfig(
    interval=0.2, deadline=60.0, delivery_backoff=0.05, restart_spread=0.1, create_grace=4.0
)


class Shop:
    """The service in this process: funded sandbox keys, its clock, its operator."""

    def __init__(self, running: RunningService) -> None:
        self.running = running
        self.base_url = running.base_url

    def key(self, balance: int = 100_000) -> str:
        store = self.running.backend.store
        return admin.create_key(store, "SANDBOX", fresh_account(), Decimal(balance), False, ())

    def sdk(self, key: str) -> AsyncClient:
        return AsyncClient(key, base_url=self.base_url, transport=AiohttpTransport())

    def advance(self, seconds: float) -> None:
        self.running.advance(seconds)

    def resolve(self, topup_id: str, *, fulfilled: bool) -> None:
        """`oneclickdz admin resolve-topup ID --fulfilled|--refunded`."""
        admin.resolve_topup(self.running.backend.store, topup_id, fulfilled)


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shop]:
    db = tmp_path_factory.mktemp("topup-service") / "service.db"
    config = ServerConfig(db_url=f"sqlite:///{db}", port=0, seed=11, topup_delay_scale=0.01)
    with start_in_thread(config) as running:
        yield Shop(running)


async def payer(url: str, action: str) -> None:
    """The payer on the link's page: Pay (by CIB) or Cancel."""
    async with httpx.AsyncClient(timeout=10) as web:
        page = await web.get(url)
        token = TOKEN.search(page.text)
        assert token is not None, page.text[:300]
        done = await web.post(url, data={"token": token[1], "action": action, "method": "CIB"})
    assert done.status_code == 200, done.text[:300]


async def run_until(tracker: Tracker, done: Callable[[], Awaitable[bool]]) -> None:
    """Run the tracker until `done()` (a guard of 30 s against a hang, not a timed assertion)."""
    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            tg.start_soon(tracker.run)
            while not await done():
                await anyio.sleep(0.05)
            tracker.stop()


def an_hour_passes(store_url: str, *rows: TrackedOrder) -> None:
    """The tracker's schedule is the wall clock: bring these rows' next check forward to now,
    as an hour's wait would (the service's clock is moved with `advance`)."""
    for row in rows:
        raw(store_url, "UPDATE {t}orders SET next_at = 0 WHERE id = ?", (row.id,))


def store_bytes(store_url: str) -> bytes:
    """Everything the store holds, as bytes: SQLite's files, or PostgreSQL's rows as text."""
    if store_url.startswith("sqlite:///"):
        path = Path(store_url.removeprefix("sqlite:///"))
        files = [path, path.with_name(path.name + "-wal")]
        return b"".join(f.read_bytes() for f in files if f.exists())
    rows = raw(store_url, "SELECT t::text FROM {t}orders t") + raw(
        store_url, "SELECT t::text FROM {t}settings t"
    )
    return "".join(str(r[0]) for r in rows).encode()


# --------------------------------------------------------------------------- every kind


async def test_every_kind_reaches_each_final_state_and_is_delivered_once(
    shop: Shop, tracker_factory: Factory, deliveries: Deliveries, store_url: str
) -> None:
    key = shop.key()
    sdk = shop.sdk(key)
    try:
        async with tracker_factory(base_url=shop.base_url, key=key, config=CONFIG) as tracker:
            ops = {
                "mobile": await tracker.send_mobile("PREPAID_DJEZZY", "0778037340", 1000),
                "mobile-refund": await tracker.send_mobile("PREPAID_MOBILIS", "0600000001", 1000),
                "refused": await tracker.send_mobile("PREPAID_DJEZZY", "0512345678", 1000),
                "mobile-offers": await tracker.send_mobile(
                    "PREPAID_DJEZZY", "0700000002", 500, meta={"shop_order": "M-3"}
                ),
                "adsl": await tracker.send_internet("ADSL", "021000000", 1000),
                "4g": await tracker.send_internet("4G", "213550000000", 500),
                "adsl-refund": await tracker.send_internet("ADSL", "000000001", 2000),
                "paid": await tracker.create_payment("Order 1", 1000, fee_mode="SPLIT_FEE"),
                "cancelled": await tracker.create_payment("Order 2", 800),
                "expired": await tracker.create_payment("Order 3", 600, meta={"shop_order": "P-3"}),
            }
            # Made elsewhere, adopted by their id and ref.
            sent = await sdk.mobile.send("PREPAID_DJEZZY", "0778000001", 1000, ref="shop-A-77")
            ops["adopted-mobile"] = await tracker.track(sent.topup_id, kind="mobile")
            link = await sdk.ocpay.create_link("Made elsewhere", 500)
            ops["adopted-link"] = await tracker.track(link.payment_ref, kind=Kind.PAYMENT)
            assert await tracker.track(link.payment_ref, kind="payment") == ops["adopted-link"]

            # A link's intent and ref are on disk, and its URL known, before any payer acts.
            for name in ("paid", "cancelled", "expired"):
                row = ops[name]
                assert row.state is State.PLACED and row.kind is Kind.PAYMENT
                assert row.payment_url == f"{shop.base_url.removesuffix('/v3')}/pay/{row.order_id}"
                stored = await open_store_get(store_url, row.id)
                assert (stored.state, stored.order_id) == (State.PLACED, row.order_id)
            await payer(str(ops["paid"].payment_url), "pay")
            await payer(str(ops["cancelled"].payment_url), "cancel")
            await payer(link.payment_url, "pay")
            shop.advance(1300)  # the third link's 20 minutes pass, unpaid

            summary = await tracker.run(until_idle=True)
            assert summary.ok
            assert summary.states == {"delivered": 11, "rejected": 1, "stuck": 0}
            # Once each: a second run has nothing left to deliver.
            await tracker.run(until_idle=True)
            got = {d.intent_id: d for d in deliveries.received}
            assert len(deliveries.received) == len(got) == 11
            # The service refused one top-up (a Djezzy plan, an Ooredoo number): nothing bought.
            refused = await tracker.get(ops.pop("refused").id)
            assert refused is not None and refused.state is State.REJECTED
            assert "ERR_VALIDATION" in str(refused.last_error)
            assert set(got) == {row.id for row in ops.values()}
            by = {name: got[row.id] for name, row in ops.items()}
            assert all(d.delivery_key == f"dlv_{d.intent_id}" for d in deliveries.received)

            # Mobile: FULFILLED charged amount x cost; REFUNDED gives it back, never a card.
            m = by["mobile"]
            assert (m.kind, m.status, m.delivered, m.cards) == (Kind.MOBILE, "FULFILLED", 1, ())
            assert (m.amount_charged, m.amount_refunded) == (Decimal("980.00"), Decimal(0))
            assert m.params == {"plan_code": "PREPAID_DJEZZY", "msisdn": "0778037340",
                                "amount": 1000}  # fmt: skip
            for name, charge in (("mobile-refund", "960.00"), ("mobile-offers", "490.00")):
                r = by[name]
                assert (r.status, r.delivered, r.refunded, r.amount_charged) == (
                    "REFUNDED",
                    0,
                    True,
                    Decimal(0),
                )
                # The refund is what a check showed debited, unknown if none saw it.
                assert r.amount_refunded in (None, Decimal(charge))
                assert r.details["refund_message"]
            assert by["mobile-offers"].details["suggested_offers"]
            assert by["mobile-offers"].meta == {"shop_order": "M-3"}

            # Internet: the card code the service shows, to the handler only.
            for name, charge in (("adsl", "980.00"), ("4g", "490.00")):
                d = by[name]
                truth = await sdk.internet.check(d.order_id)
                assert (d.kind, d.status, d.delivered) == (Kind.INTERNET, "FULFILLED", 1)
                assert d.card_code is not None and d.card_code == truth.card_code
                assert re.fullmatch(r"[0-9]{12}", d.card_code)
                assert d.details["num_trans"] == truth.num_trans
                assert d.amount_charged == Decimal(charge)
                assert d.card_code not in repr(d)
                assert [c.value for c in await tracker.reveal(d.intent_id)] == [d.card_code]
            r = by["adsl-refund"]
            assert (r.status, r.cards, r.card_code, r.amount_charged) == (
                "REFUNDED",
                (),
                None,
                Decimal(0),
            )

            # Payments: CONFIRMED with what the merchant nets, FAILED when cancelled or expired.
            p = by["paid"]
            assert (p.kind, p.status, p.delivered) == (Kind.PAYMENT, "CONFIRMED", 1)
            assert (p.details["paid"], p.details["fee"]) == ("1005.00", "10.00")
            assert p.amount_received == Decimal("995.00")
            assert p.details["payment_url"] == ops["paid"].payment_url
            assert p.params["fee_mode"] == "SPLIT_FEE" and p.params["amount"] == 1000
            c = by["cancelled"]
            assert (c.status, c.delivered, c.amount_received) == ("FAILED", 0, Decimal(0))
            assert "expired" not in c.details
            e = by["expired"]
            assert (e.status, e.details["expired"], e.meta) == (
                "FAILED",
                True,
                {"shop_order": "P-3"},
            )

            # Adopted: followed the same way; a top-up's parameters read from its checks.
            a = by["adopted-mobile"]
            assert (a.status, a.order_id) == ("FULFILLED", sent.topup_id)
            assert a.params == {"plan_code": "PREPAID_DJEZZY", "msisdn": "0778000001",
                                "amount": 1000}  # fmt: skip
            assert by["adopted-link"].status == "CONFIRMED"
            assert by["adopted-link"].amount_received == Decimal("495.00")

            # One send per intent, each with its own ref: nothing sent twice.
            stats = await tracker.stats()
            assert stats.api_calls["mobile/send"] == 4  # the refused one included
            assert stats.api_calls["internet/send"] == 3
            assert stats.api_calls["ocpay/createLink"] == 3
            assert "placeOrder" in stats.api_calls  # the gift-card keys stay as they were
            for name, row in ops.items():
                if row.kind.is_topup and not row.adopted:
                    topups = sdk.mobile if row.kind is Kind.MOBILE else sdk.internet
                    assert (await topups.check_ref(str(row.ref))).id == by[name].order_id
            mobiles = await sdk.mobile.list()
            assert len(mobiles.items) == 4  # three sent here, one adopted

            # No card code in the tracker's database, in any file of it.
            at_rest = store_bytes(store_url)
            for name in ("adsl", "4g"):
                assert str(by[name].card_code).encode() not in at_rest
    finally:
        await sdk.close()


async def open_store_get(store_url: str, ident: str) -> TrackedOrder:
    """A row as another process reads it from the store."""
    other = open_store(store_url)
    await other.open()
    try:
        row = await other.get(ident)
    finally:
        await other.close()
    assert row is not None
    return row


# --------------------------------------------------------------------------- slow follows


async def test_unknown_error_is_never_a_refund_and_is_delivered_once_resolved(
    shop: Shop, tracker_factory: Factory, deliveries: Deliveries, store_url: str
) -> None:
    key = shop.key()
    hourly = replace(CONFIG, resolution_interval=HOUR)
    async with tracker_factory(base_url=shop.base_url, key=key, config=hourly) as tracker:
        refund_me = await tracker.send_mobile("PREPAID_OOREDOO", "0500000003", 1000)
        keep_me = await tracker.send_mobile("PREPAID_DJEZZY", "0700000003", 1000)
        summary = await tracker.run(until_idle=True)  # idle: both wait for an operator
        assert summary.states["needs_resolution"] == 2
        assert not summary.ok  # someone must act: it is not a refund
        for row, charge in ((refund_me, "970"), (keep_me, "980")):
            seen = await tracker.get(row.id)
            assert seen is not None
            assert (seen.state, seen.status) == (State.NEEDS_RESOLUTION, "UNKNOWN_ERROR")
            assert seen.amount_charged == Decimal(charge) and seen.amount_refunded is None
            assert seen.next_at > time.time() + HOUR - 600  # checked again in an hour
            assert seen.details["refund_message"]
        assert deliveries.received == []
        assert {o.id for o in await tracker.orders("needs_resolution")} == {
            refund_me.id, keep_me.id
        }  # fmt: skip

    # An hour later, still unresolved: checked again, still not delivered.
    an_hour_passes(store_url, refund_me, keep_me)
    fast = replace(CONFIG, resolution_interval=0.3)
    async with tracker_factory(base_url=shop.base_url, key=key, config=fast) as tracker:
        await tracker.run(until_idle=True)
        calls = (await tracker.stats()).api_calls["mobile/check-id"]
        for row in (refund_me, keep_me):
            seen = await tracker.get(row.id)
            assert seen is not None and seen.state is State.NEEDS_RESOLUTION
        assert deliveries.received == []

    # The operator resolves them; the next slow checks see it and deliver each once.
    shop.resolve(str((await open_store_get(store_url, refund_me.id)).order_id), fulfilled=False)
    shop.resolve(str((await open_store_get(store_url, keep_me.id)).order_id), fulfilled=True)
    async with tracker_factory(base_url=shop.base_url, key=key, config=fast) as tracker:

        async def both_delivered() -> bool:
            return len(deliveries.received) >= 2 and not tracker.in_flight[1]

        await run_until(tracker, both_delivered)
        assert (await tracker.stats()).api_calls["mobile/check-id"] >= calls + 2
        rows = {o.id: o for o in await tracker.orders()}
    got = {d.intent_id: d for d in deliveries.received}
    assert len(deliveries.received) == len(got) == 2
    refunded, fulfilled = got[refund_me.id], got[keep_me.id]
    assert (refunded.status, refunded.refunded) == ("REFUNDED", True)
    assert (refunded.amount_charged, refunded.amount_refunded) == (Decimal(0), Decimal("970"))
    assert (fulfilled.status, fulfilled.delivered, fulfilled.amount_charged) == (
        "FULFILLED", 1, Decimal("980")
    )  # fmt: skip
    assert {o.state for o in rows.values()} == {State.DELIVERED}


async def test_a_queued_recharge_is_followed_slowly_and_delivered_when_it_ends(
    shop: Shop, tracker_factory: Factory, deliveries: Deliveries, store_url: str
) -> None:
    key = shop.key()
    async with tracker_factory(base_url=shop.base_url, key=key, config=CONFIG) as tracker:
        fulfil = await tracker.send_internet("ADSL", "000000002", 1000)
        refund = await tracker.send_internet("4G", "213000000003", 1000)
        summary = await tracker.run(until_idle=True)  # idle: both queued for hours
        assert summary.ok  # on its way: not a failure
        assert summary.states["queued"] == 2
        for row in (fulfil, refund):
            seen = await tracker.get(row.id)
            assert seen is not None
            assert (seen.state, seen.status) == (State.QUEUED, "QUEUED")
            assert seen.amount_charged == Decimal("980")  # QUEUED is charged
            assert seen.next_at > time.time() + HOUR - 600
            assert seen.sealed_cards is None
        assert deliveries.received == []

    shop.advance(48 * HOUR * 0.01)  # the provider's 12-48 h (scaled) pass
    an_hour_passes(store_url, fulfil, refund)
    async with tracker_factory(base_url=shop.base_url, key=key, config=CONFIG) as tracker:
        summary = await tracker.run(until_idle=True)
        assert summary.states == {"delivered": 2, "stuck": 0}
        await tracker.run(until_idle=True)
        got = {d.intent_id: d for d in deliveries.received}
        assert len(deliveries.received) == len(got) == 2
        done, back = got[fulfil.id], got[refund.id]
        assert (done.status, done.delivered) == ("FULFILLED", 1)
        assert done.card_code and re.fullmatch(r"[0-9]{12}", done.card_code)
        assert done.card_code.encode() not in store_bytes(store_url)
        assert (back.status, back.cards, back.amount_refunded) == (
            "REFUNDED", (), Decimal("980")
        )  # fmt: skip


# --------------------------------------------------------------------------- never twice


async def test_lost_answers_and_crashes_are_resolved_by_ref_without_sending_twice(
    shop: Shop, tracker_factory: Factory, deliveries: Deliveries
) -> None:
    key = shop.key(balance=10_000)
    sdk = shop.sdk(key)
    try:
        async with tracker_factory(base_url=shop.base_url, key=key, config=CONFIG) as crashed:
            left = await crashed.send_internet("ADSL", "021000001", 1000)
            never = await crashed.send_mobile("PREPAID_MOBILIS", "0661000000", 500)
            lost = await crashed.send_mobile("PREPAID_DJEZZY", "0771000000", 1000)
            # The process dies with the intents on disk; one request had left (it arrived).
            await sdk.internet.send("ADSL", "021000001", 1000, ref=left.ref)

        # Restarted: and the first answer the service gives is lost on the way back.
        shop.running.set_faults("*:1:reset-after:x1")
        try:
            async with tracker_factory(base_url=shop.base_url, key=key, config=CONFIG) as restarted:
                summary = await restarted.run(until_idle=True)
                stats = await restarted.stats()
        finally:
            shop.running.set_faults("")
        assert summary.ok and summary.states == {"delivered": 3, "stuck": 0}
        got = {d.intent_id: d for d in deliveries.received}
        assert len(deliveries.received) == len(got) == 3
        assert set(got) == {left.id, never.id, lost.id}
        # Each intent sent once by the restarted tracker; the lost answer looked up by its ref
        # (check-ref), not sent again; the one that had left answered DUPLICATED_REF.
        calls = stats.api_calls
        assert calls["mobile/send"] + calls["internet/send"] == 3
        assert calls.get("mobile/check-ref", 0) + calls.get("internet/check-ref", 0) == 1
        # One top-up per ref on the service, each charged once.
        assert len((await sdk.mobile.list()).items) == 2
        assert len((await sdk.internet.list()).items) == 1
        for row in (left, never, lost):
            topups = sdk.mobile if row.kind is Kind.MOBILE else sdk.internet
            assert (await topups.check_ref(str(row.ref))).id == got[row.id].order_id
        balance = await sdk.account.balance()
        assert balance.balance == Decimal(10_000) - Decimal(980 + 480 + 980)
    finally:
        await sdk.close()


async def test_a_payment_link_is_recorded_before_it_is_created_and_never_left_half_made(
    shop: Shop, tracker_factory: Factory, deliveries: Deliveries, store_url: str
) -> None:
    key = shop.key()
    async with tracker_factory(base_url=shop.base_url, key=key, config=CONFIG) as tracker:
        # createLink refused (or unanswered): raised to the caller, the intent closed.
        shop.running.set_faults("*:1:503:x1")
        try:
            with pytest.raises(ServerError):
                await tracker.create_payment("Order 9", 700)
        finally:
            shop.running.set_faults("")
        (refused,) = await tracker.orders(State.REJECTED, kind="payment")
        assert refused.order_id is None and "503" in str(refused.last_error)

        # A process that died between writing the intent and storing the link's ref: its
        # intent (no link was ever handed out) is closed after `create_grace`, nothing sent.
        now = time.time()
        orphan = TrackedOrder(
            id="trk_" + "0" * 24, ref=None, product_id=None, type_id=None, quantity=None,
            meta={}, state=State.INTENT, created_at=now, next_at=now + 0.3,
            kind=Kind.PAYMENT, params={"title": "Order 10", "amount": 900},
        )  # fmt: skip
        await tracker.store.insert([orphan])
        ok = await tracker.create_payment("Order 11", 900)
        await payer(str(ok.payment_url), "pay")
        summary = await tracker.run(until_idle=True)
        assert summary.states == {"delivered": 1, "rejected": 2, "stuck": 0}
        closed = await tracker.get(orphan.id)
        assert closed is not None and closed.state is State.REJECTED
        assert "did not finish" in str(closed.last_error)
        assert [d.intent_id for d in deliveries.received] == [ok.id]
        assert (await tracker.stats()).api_calls["ocpay/createLink"] == 2
        assert raw(store_url, "SELECT kind, COUNT(*) FROM {t}orders GROUP BY kind") == [
            ("payment", 3)
        ]


async def test_a_stored_link_is_never_closed_over_as_abandoned(store_url: str) -> None:
    """A creator storing its link and a runner closing the intent as abandoned both write only
    an unplaced row (`publish`): the second is refused and changes nothing, so a link handed to
    a payer is never overwritten as rejected (and the runner follows it instead)."""
    store = open_store(store_url)
    await store.open()
    try:
        now = time.time()
        intent = TrackedOrder(
            id="trk_" + "1" * 24, ref=None, product_id=None, type_id=None, quantity=None,
            meta={}, state=State.INTENT, created_at=now, next_at=now, kind=Kind.PAYMENT,
            params={"title": "Order 12", "amount": 900},
        )  # fmt: skip
        await store.insert([intent])
        url = "https://pay.example/OCPL-A1B2C3-D4E5"
        placed = replace(
            intent, state=State.PLACED, order_id="OCPL-A1B2C3-D4E5", details={"payment_url": url}
        )
        closed = replace(intent, state=State.REJECTED, last_error="abandoned")
        before = await store.revision()
        assert await store.publish(placed)
        after = await store.revision()
        assert after > before  # a running tracker sees the link
        assert not await store.publish(closed)
        assert await store.revision() == after  # nothing written: nothing to reload
        row = await store.get(intent.id)
        assert row is not None
        assert (row.state, row.order_id, row.last_error, row.payment_url) == (
            State.PLACED, "OCPL-A1B2C3-D4E5", None, url
        )  # fmt: skip
        assert [o.id for o in await store.select(kind=Kind.PAYMENT)] == [intent.id]
        assert await store.select(kind=Kind.MOBILE) == []
    finally:
        await store.close()


# --------------------------------------------------------------------------- migrations

# The SQLite schema before top-ups (version 1: no `kind`, `params`, `details`).
SQLITE_V1 = [
    """CREATE TABLE orders (
        id TEXT PRIMARY KEY, ref TEXT UNIQUE, product_id TEXT, type_id TEXT, quantity INTEGER,
        meta TEXT NOT NULL, state TEXT NOT NULL, created_at REAL NOT NULL, order_id TEXT UNIQUE,
        order_time REAL, status TEXT, fulfilled_quantity INTEGER, price_per_card TEXT,
        amount_charged TEXT, amount_refunded TEXT, sealed_cards BLOB, sent_at REAL,
        placed_at REAL, final_at REAL, delivered_at REAL, attempts INTEGER NOT NULL,
        started_at REAL, next_at REAL NOT NULL, deadline REAL, stuck INTEGER NOT NULL,
        delivery_attempts INTEGER NOT NULL, last_error TEXT, adopted INTEGER NOT NULL
    )""",
    "CREATE INDEX orders_by_state ON orders (state, created_at)",
    "CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL)",
    "CREATE TABLE settings (name TEXT PRIMARY KEY, value BLOB NOT NULL)",
]
OLD_ROW = (
    "INSERT INTO {t}orders (id, ref, product_id, type_id, quantity, meta, state, created_at, "
    "order_id, status, attempts, next_at, stuck, delivery_attempts, adopted) VALUES "
    "('trk_old', 'oct-old', 'P1', 'T1', 2, '{{\"a\": 1}}', 'delivered', 1.0, 'ord-old', "
    "'FULFILLED', 3, 0, ?, 0, ?)"
)


async def test_an_older_store_is_migrated_on_open(
    engine: str, store_url: str, tracker_factory: Factory, shop: Shop
) -> None:
    if engine == "sqlite":
        db = sqlite3.connect(store_url.removeprefix("sqlite:///"))
        with db:
            for statement in SQLITE_V1:
                db.execute(statement)
            db.execute(OLD_ROW.format(t=""), (0, 0))
        db.close()
    else:
        import psycopg

        from oneclickdz.tracker import postgres

        with psycopg.connect(store_url, autocommit=True) as conn:
            conn.execute(
                "CREATE TABLE tracker_schema_version (version integer PRIMARY KEY, "
                "applied_at timestamptz NOT NULL DEFAULT now())"
            )
            for statement in postgres._MIGRATIONS[0][1]:
                conn.execute(statement)
            conn.execute("INSERT INTO tracker_schema_version (version) VALUES (1)")
            conn.execute(OLD_ROW.format(t="tracker_").replace("?", "%s"), (False, False))

    key = shop.key()
    async with tracker_factory(base_url=shop.base_url, key=key, config=CONFIG) as tracker:
        old = await tracker.get("ord-old")
        assert old is not None
        assert (old.kind, old.params, old.details, old.meta) == (
            Kind.GIFT_CARD, {}, {}, {"a": 1}
        )  # fmt: skip
        new = await tracker.send_internet("4G", "213550000001", 500)
        assert (await tracker.run(until_idle=True)).states == {"delivered": 2, "stuck": 0}
        row = await tracker.get(new.id)
        assert row is not None and row.kind is Kind.INTERNET and row.status == "FULFILLED"
    if engine == "sqlite":
        assert raw(store_url, "PRAGMA user_version") == [(2,)]
    else:
        assert raw(store_url, "SELECT MAX(version) FROM {t}schema_version") == [(2,)]
    # The new states are allowed by the migrated schema.
    raw(store_url, "UPDATE {t}orders SET state = 'queued' WHERE id = ?", ("trk_old",))
    assert raw(store_url, "SELECT state, kind FROM {t}orders WHERE id = ?", ("trk_old",)) == [
        ("queued", "gift_card")
    ]
