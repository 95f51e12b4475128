"""The SQLite store: atomic, group-committed writes that fail alone, and versioned migrations."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from oneclickdz.server.store import OrderRecord, TimeRange, Tx, open_store
from oneclickdz.server.store.schema import MIGRATIONS
from oneclickdz.server.store.sqlite import SqliteStore


def url(path: Path) -> str:
    return f"sqlite:///{path}"


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


@pytest.mark.parametrize("bad", ["postgres://x/y", "sqlite://", "sqlite:///:memory:", "file.db"])
def test_unusable_urls_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match=r"SQLite|scheme|in-memory"):
        open_store(bad)


@pytest.mark.anyio
async def test_a_failing_write_is_rolled_back_alone_in_its_group(tmp_path: Path) -> None:
    store = SqliteStore(url(tmp_path / "a.db"))
    store.start()
    try:

        def good(name: str) -> object:
            return lambda tx: tx.insert_account(name, "2025-01-01T00:00:00.000Z")

        def bad(tx: Tx) -> int:
            tx.insert_account("half-done", "2025-01-01T00:00:00.000Z")
            raise ValueError("refused")

        results = await asyncio.gather(
            *(store.write(good(f"acct{i}")) for i in range(20)),  # type: ignore[arg-type]
            store.write(bad),
            store.write(good("after")),  # type: ignore[arg-type]
            return_exceptions=True,
        )
        assert isinstance(results[20], ValueError)
        assert all(isinstance(r, int) for i, r in enumerate(results) if i != 20)
        reader = store.reader()
        assert reader.account_id("half-done") is None  # its first statement was undone too
        assert reader.account_id("after") is not None
        assert all(reader.account_id(f"acct{i}") is not None for i in range(20))
    finally:
        store.close()


def test_write_sync_works_with_and_without_the_writer_thread(tmp_path: Path) -> None:
    store = SqliteStore(url(tmp_path / "a.db"))
    try:
        first = store.write_sync(lambda tx: tx.insert_account("direct", "t"))
        store.start()
        second = store.write_sync(lambda tx: tx.insert_account("queued", "t"))
        assert second == first + 1
    finally:
        store.close()


def test_balance_updates_are_guarded_against_lost_updates(tmp_path: Path) -> None:
    store = SqliteStore(url(tmp_path / "a.db"))
    try:
        account = store.write_sync(lambda tx: tx.insert_account("guarded", "t"))
        store.write_sync(lambda tx: tx.set_balance(account, "SANDBOX", 0, 500))
        with pytest.raises(RuntimeError, match="balance changed"):
            store.write_sync(lambda tx: tx.set_balance(account, "SANDBOX", 0, 100))
        assert store.reader().balance(account, "SANDBOX") == 500
    finally:
        store.close()


def test_orders_of_the_same_millisecond_list_newest_placed_first(tmp_path: Path) -> None:
    store = SqliteStore(url(tmp_path / "a.db"))
    try:
        account = store.write_sync(lambda tx: tx.insert_account("same-ms", "t"))
        key = store.write_sync(
            lambda tx: tx.insert_key(b"h" * 32, "hint", account, "SANDBOX", "READ-WRITE", [], "t")
        )
        same_time = "2025-10-29T01:00:00.000Z"
        ids = ["f" * 24, "0" * 24, "a" * 24]  # placed in this order; ids do not sort that way
        for order_id in ids:
            record = OrderRecord(
                order_id,
                account,
                "SANDBOX",
                key,
                None,
                "p",
                "t",
                1,
                490,
                "HANDLING",
                None,
                same_time,
                0.0,
            )
            store.write_sync(lambda tx, r=record: tx.insert_order(r))  # type: ignore[misc]
        listed, total = store.reader().orders(account, "SANDBOX", TimeRange(), 10, 0)
        assert total == 3
        assert [o.id for o in listed] == ids[::-1]
    finally:
        store.close()
