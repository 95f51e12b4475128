"""The store contract: what every engine guarantees, written against the interface only.

Each contract test runs once per engine in ENGINES; another engine is one more entry there
(a context manager giving the URL of a fresh database, dropped on exit). The tests after the
contract are SQLite's own: its URLs, its migrations, and its writes without a writer thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from functools import partial
from pathlib import Path

import pytest

from oneclickdz.server.store import (
    Conflict,
    EntryType,
    Env,
    LedgerEntry,
    Operation,
    OrderRecord,
    OrderStatus,
    ProductRecord,
    Store,
    StoreUnavailable,
    TimeRange,
    Tx,
    TypeRecord,
    open_store,
)
from oneclickdz.server.store.schema import MIGRATIONS
from oneclickdz.server.store.sqlite import SqliteStore
from oneclickdz.server.testing import free_port
from tests import pg

NOW = "2025-10-29T01:00:00.000Z"


def url(path: Path) -> str:
    return f"sqlite:///{path}"


@contextlib.contextmanager
def sqlite_database(tmp_path: Path) -> Iterator[str]:
    yield url(tmp_path / "contract.db")


@contextlib.contextmanager
def postgres_database(tmp_path: Path) -> Iterator[str]:
    yield pg.fresh_url()  # a fresh schema of the run's database, dropped with it


# Engine name -> a fresh database's URL for one test.
ENGINES: dict[str, Callable[[Path], AbstractContextManager[str]]] = {
    "sqlite": sqlite_database,
    "postgresql": postgres_database,
}


@pytest.fixture(params=sorted(ENGINES))
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A started store on a fresh database of each engine."""
    with ENGINES[request.param](tmp_path) as database:
        store = open_store(database)
        store.start()
        try:
            yield store
        finally:
            store.close()


# -- data the contract tests build on --------------------------------------------------------


def account(store: Store, name: str = "acct", env: Env = "SANDBOX") -> tuple[int, int]:
    """A new account and one key of it in `env`: (account id, key id)."""

    def run(tx: Tx) -> tuple[int, int]:
        account_id = tx.keys.add_account(name, NOW)
        key_hash = f"{name}/{env}".encode().ljust(32, b".")
        return account_id, tx.keys.add(key_hash, "hint", account_id, env, "READ-WRITE", [], NOW)

    return store.write_sync(run)


def product(store: Store, product_id: str = "p1", type_id: str = "t1") -> None:
    def run(tx: Tx) -> None:
        tx.catalog.upsert_product(ProductRecord(product_id, "P", "Cat", True, None), 0)
        tx.catalog.upsert_type(TypeRecord(product_id, type_id, "T", 490, 10), 0)

    store.write_sync(run)


def order(
    order_id: str,
    account_id: int,
    key_id: int,
    env: Env = "SANDBOX",
    ref: str | None = None,
    time: str = NOW,
    due_at: float = 0.0,
) -> OrderRecord:
    return OrderRecord(
        id=order_id, account_id=account_id, env=env, key_id=key_id, ref=ref, product_id="p1",
        type_id="t1", quantity=1, price_cents=490, status=OrderStatus.HANDLING,
        fulfilled_quantity=None, time=time, due_at=due_at,
    )  # fmt: skip


def add_order(tx: Tx, placed: OrderRecord) -> None:
    tx.orders.add(placed)


def entry(kind: EntryType = EntryType.DEPOSIT, note: str = "n") -> LedgerEntry:
    return LedgerEntry(id=f"tx-{note}", type=kind, note=note, time=NOW)


# -- the contract: atomic writes ----------------------------------------------------------------


@pytest.mark.anyio
async def test_a_failing_write_is_rolled_back_alone_in_its_group(engine: Store) -> None:
    def good(name: str) -> Callable[[Tx], int]:
        return lambda tx: tx.keys.add_account(name, NOW)

    def bad(tx: Tx) -> int:
        tx.keys.add_account("half-done", NOW)
        raise ValueError("refused")

    results = await asyncio.gather(
        *(engine.write(good(f"acct{i}")) for i in range(20)),
        engine.write(bad),
        engine.write(good("after")),
        return_exceptions=True,
    )
    assert isinstance(results[20], ValueError)
    assert all(isinstance(r, int) for i, r in enumerate(results) if i != 20)
    names = ["half-done", "after", *(f"acct{i}" for i in range(20))]
    found = await engine.write(lambda tx: {n: tx.keys.account_id(n) for n in names})
    assert found.pop("half-done") is None  # its first statement was undone too
    assert all(account_id is not None for account_id in found.values())


@pytest.mark.anyio
async def test_an_order_refused_by_the_database_in_a_group_undoes_its_debit_alone(
    engine: Store,
) -> None:
    product(engine)
    owner, key_id = account(engine)
    await engine.write(lambda tx: tx.ledger.move(owner, "SANDBOX", 10_000, entry()))
    await engine.write(partial(add_order, placed=order("taken", owner, key_id, ref="r0")))

    def place(order_id: str, ref: str) -> Callable[[Tx], None]:
        def run(tx: Tx) -> None:
            # The debit first, then the order: a refused order must take its debit with it.
            assert tx.ledger.move(owner, "SANDBOX", -490, entry(EntryType.ORDER, order_id))
            tx.orders.add(order(order_id, owner, key_id, ref=ref))

        return run

    writes = [place(f"o{i}", f"r{i + 1}") for i in range(12)]
    writes[5] = place("o5", "r0")  # a ref already used: the unique index refuses it
    writes[9] = place("taken", "r99")  # an id already used
    results = await asyncio.gather(*(engine.write(w) for w in writes), return_exceptions=True)
    assert [i for i, r in enumerate(results) if isinstance(r, Conflict)] == [5, 9]
    assert all(r is None for i, r in enumerate(results) if i not in (5, 9))
    assert await engine.reader().ledger.balance(owner, "SANDBOX") == 10_000 - 10 * 490
    listed, total = await engine.reader().ledger.transactions(owner, "SANDBOX", TimeRange(), 50, 0)
    assert total == 11  # the deposit and ten debits: none for the refused orders
    debits = sorted(
        ((t.old_balance_cents, t.new_balance_cents) for t in listed if t.type is EntryType.ORDER),
        reverse=True,
    )
    assert debits == [(10_000 - i * 490, 10_000 - (i + 1) * 490) for i in range(10)]


# -- the contract: money --------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_debit_never_takes_a_balance_below_zero(engine: Store) -> None:
    account_id, _ = account(engine)
    await engine.write(lambda tx: tx.ledger.move(account_id, "SANDBOX", 500, entry()))

    def debit(i: int) -> Callable[[Tx], object]:
        order_entry = entry(EntryType.ORDER, f"order {i}")
        return lambda tx: tx.ledger.move(account_id, "SANDBOX", -100, order_entry)

    moved = await asyncio.gather(*(engine.write(debit(i)) for i in range(12)))
    assert sum(record is not None for record in moved) == 5  # 5 × 100 of 500, then refused
    reader = engine.reader()
    assert await reader.ledger.balance(account_id, "SANDBOX") == 0
    history, total = await reader.ledger.transactions(account_id, "SANDBOX", TimeRange(), 50, 0)
    assert total == 6  # the deposit and the five debits: a refused debit writes nothing
    assert sum(r.amount_cents if r.operation is Operation.CREDIT else -r.amount_cents
               for r in history) == 0  # fmt: skip


@pytest.mark.anyio
async def test_a_movement_records_both_balances_and_its_kind(engine: Store) -> None:
    account_id, _ = account(engine)
    credit = await engine.write(lambda tx: tx.ledger.move(account_id, "PRODUCTION", 700, entry()))
    refund = LedgerEntry("tx-r", EntryType.REFUND_ORDER, "refund", NOW, objid="o1")
    debit = await engine.write(lambda tx: tx.ledger.move(account_id, "PRODUCTION", -200, refund))
    assert credit is not None and debit is not None
    assert (credit.operation, credit.old_balance_cents, credit.new_balance_cents) == (
        Operation.CREDIT, 0, 700,
    )  # fmt: skip
    assert (debit.operation, debit.amount_cents, debit.new_balance_cents) == (
        Operation.DEBIT, 200, 500,
    )  # fmt: skip
    listed, _ = await engine.reader().ledger.transactions(
        account_id, "PRODUCTION", TimeRange(), 10, 0
    )
    assert [(r.type, r.objid) for r in listed] == [
        (EntryType.REFUND_ORDER, "o1"),
        (EntryType.DEPOSIT, None),
    ]
    assert await engine.reader().ledger.balance(account_id, "SANDBOX") == 0  # untouched


@pytest.mark.anyio
async def test_a_ref_is_unique_per_account_and_environment(engine: Store) -> None:
    product(engine)
    owner, first_key = account(engine, "owner")
    second_key = engine.write_sync(
        lambda tx: tx.keys.add(b"second".ljust(32, b"."), "h", owner, "SANDBOX", "READ-WRITE",
                               [], NOW)
    )  # fmt: skip
    other, other_key = account(engine, "other")
    await engine.write(lambda tx: tx.orders.add(order("o1", owner, first_key, ref="r")))
    with pytest.raises(Conflict):
        await engine.write(lambda tx: tx.orders.add(order("o2", owner, second_key, ref="r")))
    await engine.write(lambda tx: tx.orders.add(order("o3", other, other_key, ref="r")))
    reader = engine.reader()
    assert await reader.orders.get("o2") is None
    assert await reader.orders.id_by_ref(owner, "SANDBOX", "r") == "o1"
    assert await reader.orders.id_by_ref(other, "SANDBOX", "r") == "o3"
    assert await reader.orders.id_by_ref(owner, "PRODUCTION", "r") is None


# -- the contract: inventory and sequences -----------------------------------------------------


@pytest.mark.anyio
async def test_a_card_is_sold_once(engine: Store) -> None:
    product(engine)
    owner, key_id = account(engine, "buyer", "PRODUCTION")
    order_ids = [f"order-{i}" for i in range(4)]

    def stock(tx: Tx) -> None:
        for i in range(5):
            tx.inventory.add("p1", "t1", f"sealed-{i}".encode(), f"fp-{i}".encode(), NOW)
        for order_id in order_ids:
            tx.orders.add(order(order_id, owner, key_id, "PRODUCTION"))

    await engine.write(stock)

    def sell(order_id: str) -> Callable[[Tx], int]:
        return lambda tx: tx.inventory.sell("p1", "t1", order_id, 3)

    sold = await asyncio.gather(*(engine.write(sell(o)) for o in order_ids))
    assert sum(sold) == 5
    reader = engine.reader()
    assert await reader.inventory.unsold_counts("p1") == {}
    cards = await reader.inventory.secrets_for_orders(order_ids)
    delivered = [secret for secrets in cards.values() for secret in secrets]
    assert sorted(delivered) == sorted(f"sealed-{i}".encode() for i in range(5))  # each once
    assert {o: len(cards.get(o, [])) for o in order_ids} == dict(zip(order_ids, sold, strict=True))


@pytest.mark.anyio
async def test_card_serials_only_grow(engine: Store) -> None:
    def reserve(count: int) -> Callable[[Tx], list[int]]:
        return lambda tx: tx.inventory.next_serials(count)

    counts = [1, 3, 2, 5, 1] * 4
    reserved = await asyncio.gather(*(engine.write(reserve(n)) for n in counts))
    assert [len(r) for r in reserved] == counts
    assert all(r == sorted(r) for r in reserved)
    serials = [serial for r in reserved for serial in r]
    assert len(set(serials)) == len(serials) == sum(counts)  # none handed out twice
    [later] = await engine.write(reserve(1))
    assert later > max(serials)
    with pytest.raises(ZeroDivisionError):  # a failed write's serials are not handed out again
        await engine.write(lambda tx: (tx.inventory.next_serials(4), 1 / 0))
    assert (await engine.write(reserve(1)))[0] > later


# -- the contract: catalog ------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_product_and_one_of_its_types_are_read_together(engine: Store) -> None:
    product(engine, "p1", "t1")

    def read(product_id: str, type_id: str) -> Callable[[Tx], object]:
        return lambda tx: tx.catalog.product_and_type(product_id, type_id)

    assert await engine.write(read("p1", "t1")) == (
        ProductRecord("p1", "P", "Cat", True, None),
        TypeRecord("p1", "t1", "T", 490, 10),
    )
    assert await engine.write(read("p1", "t9")) == (
        ProductRecord("p1", "P", "Cat", True, None),
        None,
    )
    assert await engine.write(read("p9", "t1")) is None


# -- the contract: orders -------------------------------------------------------------------------


@pytest.mark.anyio
async def test_an_order_is_finished_once(engine: Store) -> None:
    product(engine)
    owner, key_id = account(engine)
    await engine.write(lambda tx: tx.orders.add(order("o1", owner, key_id)))
    reader = engine.reader()
    assert await reader.orders.next_due(1.0) == 0.0
    finish = engine.write(lambda tx: tx.orders.finish("o1", OrderStatus.REFUNDED, 0, NOW))
    assert await finish is True
    again = engine.write(lambda tx: tx.orders.finish("o1", OrderStatus.FULFILLED, 1, NOW))
    assert await again is False
    found = await reader.orders.with_cards("o1")
    assert found is not None
    assert found[0].status is OrderStatus.REFUNDED and found[1] == []
    assert await reader.orders.next_due(1.0) is None
    assert (await reader.orders.counts())["SANDBOX", "REFUNDED"] == 1


@pytest.mark.anyio
async def test_due_orders_are_claimed_soonest_first_by_one_owner_until_the_lease_ends(
    engine: Store,
) -> None:
    product(engine)
    owner, key_id = account(engine)
    for order_id, due in (("late", 30.0), ("soon", 10.0), ("mid", 20.0), ("later", 99.0)):
        await engine.write(partial(add_order, placed=order(order_id, owner, key_id, due_at=due)))
    reader = engine.reader()
    assert await reader.orders.next_due(0.0) == 10.0

    def claim(now: float, who: str, until: float, limit: int = 10) -> Callable[[Tx], list[str]]:
        return lambda tx: tx.orders.claim_due(now, who, until, limit)

    assert await engine.write(claim(5.0, "a", 100.0)) == []  # nothing due yet
    assert await engine.write(claim(25.0, "a", 40.0, limit=1)) == ["soon"]
    assert await engine.write(claim(25.0, "a", 40.0)) == ["mid"]
    # Leased orders are neither due for another claimant nor counted as due before the lease
    # ends; then they are, with their own due time.
    assert await engine.write(claim(35.0, "b", 50.0)) == ["late"]
    assert await reader.orders.next_due(35.0) == 99.0
    assert await reader.orders.next_due(40.0) == 10.0
    assert await engine.write(claim(41.0, "b", 60.0)) == ["soon", "mid"]
    # A final order is never claimed again, whatever its lease.
    await engine.write(lambda tx: tx.orders.finish("soon", OrderStatus.FULFILLED, 1, NOW))
    assert await engine.write(claim(61.0, "c", 70.0)) == ["mid", "late"]
    locked = await engine.write(lambda tx: tx.orders.lock("mid"))
    assert locked is not None and locked.id == "mid" and locked.status is OrderStatus.HANDLING
    assert await engine.write(lambda tx: tx.orders.lock("nope")) is None


@pytest.mark.anyio
async def test_concurrent_claims_never_share_an_order(engine: Store) -> None:
    product(engine)
    owner, key_id = account(engine)
    ids = [f"o{i:03d}" for i in range(60)]
    for n, order_id in enumerate(ids):
        await engine.write(partial(add_order, placed=order(order_id, owner, key_id, due_at=n)))

    def claim(tx: Tx, who: str) -> list[str]:
        return tx.orders.claim_due(100.0, who, 200.0, 7)

    claims = await asyncio.gather(*(engine.write(partial(claim, who=w)) for w in "abcdefghij"))
    claimed = [order_id for batch in claims for order_id in batch]
    assert sorted(claimed) == ids  # all 60, each once
    assert await engine.write(lambda tx: tx.orders.claim_due(100.0, "z", 200.0, 100)) == []


@pytest.mark.anyio
async def test_orders_of_the_same_millisecond_list_newest_placed_first(engine: Store) -> None:
    product(engine)
    owner, key_id = account(engine)
    ids = ["f" * 24, "0" * 24, "a" * 24]  # placed in this order; ids do not sort that way
    for order_id in ids:
        await engine.write(partial(add_order, placed=order(order_id, owner, key_id)))
    listed, total = await engine.reader().orders.page(owner, "SANDBOX", TimeRange(), 10, 0)
    assert total == 3
    assert [o.id for o in listed] == ids[::-1]


# -- the contract: reads --------------------------------------------------------------------------


@pytest.mark.anyio
async def test_the_reader_only_reads_and_sees_what_was_committed(engine: Store) -> None:
    reader = engine.reader()
    repositories = ("keys", "ledger", "catalog", "inventory", "orders", "settings")
    for name in repositories:
        repo = getattr(reader, name)
        methods = {m for m in dir(repo) if not m.startswith("_")}
        assert methods, name
        assert all(inspect.iscoroutinefunction(getattr(repo, m)) for m in methods), name
        writes = {"add", "add_account", "set_enabled", "move", "upsert_product", "sell", "set",
                  "finish", "next_serials", "upsert_type", "claim_due", "lock"}  # fmt: skip
        assert not methods & writes, name
    assert await reader.settings.get("x") is None
    await engine.write(lambda tx: tx.settings.set("x", "1"))
    assert await reader.settings.get("x") == "1"


# -- SQLite's own -----------------------------------------------------------------------------


def test_migrations_run_once_and_record_the_version(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    open_store(url(db)).close()
    open_store(url(db)).close()  # a second open finds nothing to do
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_database_from_a_newer_version_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    open_store(url(db)).close()
    with sqlite3.connect(db) as conn:
        conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    with pytest.raises(RuntimeError, match="newer than this oneclickdz"):
        open_store(url(db))


@pytest.mark.parametrize("bad", ["mysql://x/y", "sqlite://", "sqlite:///:memory:", "file.db"])
def test_unusable_urls_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match=r"SQLite|scheme|in-memory"):
        open_store(bad)


def test_an_unreachable_postgresql_is_one_clear_error_without_the_password() -> None:
    closed_port = free_port()
    with pytest.raises(StoreUnavailable) as caught:
        open_store(f"postgresql://someone:s3cret-pw@127.0.0.1:{closed_port}/db")
    message = str(caught.value)
    assert message.startswith(
        f"cannot connect to postgresql://someone:***@127.0.0.1:{closed_port}/db: "
    )
    assert "s3cret-pw" not in message and "\n" not in message


def test_write_sync_works_with_and_without_the_writer_thread(tmp_path: Path) -> None:
    store = SqliteStore(url(tmp_path / "a.db"))
    try:
        first = store.write_sync(lambda tx: tx.keys.add_account("direct", "t"))
        store.start()
        second = store.write_sync(lambda tx: tx.keys.add_account("queued", "t"))
        assert second == first + 1
    finally:
        store.close()


def version_2_database(db: Path, refs: tuple[str, str]) -> None:
    """A database as the previous release left it: schema version 2, three cards (one sold),
    and two orders placed with `refs` by two keys of one account."""
    with contextlib.closing(sqlite3.connect(db, isolation_level=None)) as conn:
        for statements in MIGRATIONS[:2]:
            for statement in statements:
                conn.execute(statement)
        conn.execute("PRAGMA user_version = 2")
        conn.execute("INSERT INTO accounts VALUES (1, 'old', 't')")
        conn.execute("INSERT INTO balances VALUES (1, 'SANDBOX', 100)")
        for key_id in (1, 2):
            conn.execute(
                "INSERT INTO api_keys (id, key_hash, key_hint, account_id, env, scope, "
                "created_at) VALUES (?, ?, 'h', 1, 'SANDBOX', 'READ-WRITE', 't')",
                (key_id, bytes([key_id]) * 32),
            )
        for key_id, ref in zip((1, 2), refs, strict=True):
            conn.execute(
                "INSERT INTO orders (id, account_id, env, key_id, ref, product_id, type_id, "
                "quantity, price_cents, status, fulfilled_quantity, time, due_at) "
                "VALUES (?, 1, 'SANDBOX', ?, ?, 'p', 't', 1, 490, 'FULFILLED', 1, 't', 0)",
                (f"old-{key_id}", key_id, ref),
            )
        for card_id in (3, 5, 7):
            conn.execute(
                "INSERT INTO cards (id, product_id, type_id, secret, fingerprint, order_id, "
                "position, added_at) VALUES (?, 'p', 't', x'00', ?, ?, ?, 't')",
                (card_id, bytes([card_id]), "old-1" if card_id == 3 else None,
                 0 if card_id == 3 else None),
            )  # fmt: skip


@pytest.mark.anyio
async def test_a_version_2_database_is_migrated_in_place(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    version_2_database(db, ("ref-a", "ref-b"))
    store = open_store(url(db))
    try:
        with sqlite3.connect(db) as conn:
            assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        reader = store.reader()
        found = await reader.orders.with_cards("old-1")
        assert found is not None and found[0].status is OrderStatus.FULFILLED
        assert found[1] == [b"\x00"]
        assert await reader.ledger.balance(1, "SANDBOX") == 100
        assert await reader.inventory.unsold_counts("p") == {"t": 2}
        # Serials continue past every card id already used: none repeats an old one.
        assert store.write_sync(lambda tx: tx.inventory.next_serials(2)) == [8, 9]
        # Refs are now unique per account: the other key cannot reuse the first key's ref.
        moved = order("new", 1, 2, ref="ref-a")
        with pytest.raises(Conflict):
            store.write_sync(lambda tx: tx.orders.add(moved))
    finally:
        store.close()


def test_a_ref_shared_by_two_keys_of_one_account_stops_the_migration(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    version_2_database(db, ("same", "same"))
    with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
        open_store(url(db))
    with sqlite3.connect(db) as conn:  # rolled back whole: still the old version, still usable
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
        assert conn.execute("SELECT COUNT(*) FROM orders").fetchone()[0] == 2
