"""The SQLite `Reader`: the read methods of the repositories as coroutines, run inline.

A SQLite read is a few microseconds against a local file's page cache and, in WAL mode, never
waits for the writer; handing it to a thread would cost ten times the read itself. So each
coroutine runs its query at once and returns without suspending. A network engine implements
the same coroutines by awaiting a pooled connection instead. The connection behind a reader is
opened `query_only`: even SQL reaching it by mistake cannot write.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from oneclickdz.server.store.base import (
    Env,
    KeyRecord,
    OrderRecord,
    ProductRecord,
    TimeRange,
    TransactionRecord,
    TypeRecord,
)
from oneclickdz.server.store.sqlite_repos import (
    SqliteCatalog,
    SqliteInventory,
    SqliteKeys,
    SqliteLedger,
    SqliteOrders,
    SqliteSettings,
)


class KeyReads:
    __slots__ = ("_r",)

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._r = SqliteKeys(conn)

    async def find(self, key_hash: bytes) -> tuple[bytes, KeyRecord] | None:
        return self._r.find(key_hash)


class LedgerReads:
    __slots__ = ("_r",)

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._r = SqliteLedger(conn)

    async def balance(self, account_id: int, env: Env) -> int:
        return self._r.balance(account_id, env)

    async def transactions(
        self, account_id: int, env: Env, window: TimeRange, limit: int, offset: int
    ) -> tuple[list[TransactionRecord], int]:
        return self._r.transactions(account_id, env, window, limit, offset)


class CatalogReads:
    __slots__ = ("_r",)

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._r = SqliteCatalog(conn)

    async def product(self, product_id: str) -> ProductRecord | None:
        return self._r.product(product_id)

    async def types(self, product_id: str) -> list[TypeRecord]:
        return self._r.types(product_id)

    async def type(self, product_id: str, type_id: str) -> TypeRecord | None:
        return self._r.type(product_id, type_id)

    async def products(self) -> list[ProductRecord]:
        return self._r.products()


class InventoryReads:
    __slots__ = ("_r",)

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._r = SqliteInventory(conn)

    async def unsold_counts(self, product_id: str) -> dict[str, int]:
        return self._r.unsold_counts(product_id)

    async def secrets_for_orders(self, order_ids: Sequence[str]) -> dict[str, list[bytes]]:
        return self._r.secrets_for_orders(order_ids)


class OrderReads:
    __slots__ = ("_r",)

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._r = SqliteOrders(conn)

    async def get(self, order_id: str) -> OrderRecord | None:
        return self._r.get(order_id)

    async def with_cards(self, order_id: str) -> tuple[OrderRecord, list[bytes]] | None:
        return self._r.with_cards(order_id)

    async def id_by_ref(self, account_id: int, env: Env, ref: str) -> str | None:
        return self._r.id_by_ref(account_id, env, ref)

    async def handling(self) -> list[tuple[float, str]]:
        return self._r.handling()

    async def page(
        self, account_id: int, env: Env, window: TimeRange, limit: int, offset: int
    ) -> tuple[list[OrderRecord], int]:
        return self._r.page(account_id, env, window, limit, offset)

    async def counts(self) -> dict[tuple[str, str], int]:
        return self._r.counts()


class SettingsReads:
    __slots__ = ("_r",)

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._r = SqliteSettings(conn)

    async def get(self, name: str) -> str | None:
        return self._r.get(name)


class SqliteReader:
    """Every repository's reads, on one read-only connection (one per thread)."""

    __slots__ = ("catalog", "inventory", "keys", "ledger", "orders", "settings")

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.keys = KeyReads(conn)
        self.ledger = LedgerReads(conn)
        self.catalog = CatalogReads(conn)
        self.inventory = InventoryReads(conn)
        self.orders = OrderReads(conn)
        self.settings = SettingsReads(conn)
