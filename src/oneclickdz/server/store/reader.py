"""The `Reader` of every engine: the read methods of the repositories, as coroutines.

An engine gives a reader one function, `run(fn)`, that applies `fn` to a read-only unit of
work and returns an awaitable of its result: SQLite runs it at once on the thread's query-only
connection (a read is a few microseconds and never waits for the writer, so handing it to a
thread would cost more than the read); PostgreSQL runs it in a thread with a pooled connection,
so the network round trip never blocks the event loop. The queries themselves are the
engine's repositories: one piece of SQL serves the writes and the reads.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol, TypeVar

from oneclickdz.server.store.base import (
    DeliveryJob,
    EndpointRecord,
    Env,
    KeyRecord,
    OrderRecord,
    PaymentLinkRecord,
    ProductRecord,
    TimeRange,
    TopupKind,
    TopupRecord,
    TransactionRecord,
    Tx,
    TypeRecord,
)

T = TypeVar("T")


class RunRead(Protocol):
    def __call__(self, fn: Callable[[Tx], T], /) -> Awaitable[T]: ...


class _Reads:
    __slots__ = ("_run",)

    def __init__(self, run: RunRead) -> None:
        self._run = run


class KeyReads(_Reads):
    __slots__ = ()

    async def find(self, key_hash: bytes) -> tuple[bytes, KeyRecord] | None:
        return await self._run(lambda tx: tx.keys.find(key_hash))


class LedgerReads(_Reads):
    __slots__ = ()

    async def balance(self, account_id: int, env: Env) -> int:
        return await self._run(lambda tx: tx.ledger.balance(account_id, env))

    async def transactions(
        self, account_id: int, env: Env, window: TimeRange, limit: int, offset: int
    ) -> tuple[list[TransactionRecord], int]:
        return await self._run(
            lambda tx: tx.ledger.transactions(account_id, env, window, limit, offset)
        )


class CatalogReads(_Reads):
    __slots__ = ()

    async def product(self, product_id: str) -> ProductRecord | None:
        return await self._run(lambda tx: tx.catalog.product(product_id))

    async def types(self, product_id: str) -> list[TypeRecord]:
        return await self._run(lambda tx: tx.catalog.types(product_id))

    async def type(self, product_id: str, type_id: str) -> TypeRecord | None:
        return await self._run(lambda tx: tx.catalog.type(product_id, type_id))

    async def products(self) -> list[ProductRecord]:
        return await self._run(lambda tx: tx.catalog.products())


class InventoryReads(_Reads):
    __slots__ = ()

    async def unsold_counts(self, product_id: str) -> dict[str, int]:
        return await self._run(lambda tx: tx.inventory.unsold_counts(product_id))

    async def secrets_for_orders(self, order_ids: Sequence[str]) -> dict[str, list[bytes]]:
        return await self._run(lambda tx: tx.inventory.secrets_for_orders(order_ids))


class OrderReads(_Reads):
    __slots__ = ()

    async def get(self, order_id: str) -> OrderRecord | None:
        return await self._run(lambda tx: tx.orders.get(order_id))

    async def with_cards(self, order_id: str) -> tuple[OrderRecord, list[bytes]] | None:
        return await self._run(lambda tx: tx.orders.with_cards(order_id))

    async def id_by_ref(self, account_id: int, env: Env, ref: str) -> str | None:
        return await self._run(lambda tx: tx.orders.id_by_ref(account_id, env, ref))

    async def next_due(self, now: float) -> float | None:
        return await self._run(lambda tx: tx.orders.next_due(now))

    async def page(
        self, account_id: int, env: Env, window: TimeRange, limit: int, offset: int
    ) -> tuple[list[OrderRecord], int]:
        return await self._run(lambda tx: tx.orders.page(account_id, env, window, limit, offset))

    async def counts(self) -> dict[tuple[str, str], int]:
        return await self._run(lambda tx: tx.orders.counts())


class SettingsReads(_Reads):
    __slots__ = ()

    async def get(self, name: str) -> str | None:
        return await self._run(lambda tx: tx.settings.get(name))


class WebhookReads(_Reads):
    __slots__ = ()

    async def next_due(self, now: float) -> float | None:
        return await self._run(lambda tx: tx.webhooks.next_due(now))

    async def leased(self, event_ids: Sequence[str], owner: str) -> list[DeliveryJob]:
        return await self._run(lambda tx: tx.webhooks.leased(event_ids, owner))

    async def endpoints(self, key_id: int | None = None) -> list[EndpointRecord]:
        return await self._run(lambda tx: tx.webhooks.endpoints(key_id))


class TopupReads(_Reads):
    __slots__ = ()

    async def get(self, topup_id: str) -> TopupRecord | None:
        return await self._run(lambda tx: tx.topups.get(topup_id))

    async def by_ref(
        self, account_id: int, env: Env, kind: TopupKind, ref: str
    ) -> TopupRecord | None:
        return await self._run(lambda tx: tx.topups.by_ref(account_id, env, kind, ref))

    async def next_due(self, now: float) -> float | None:
        return await self._run(lambda tx: tx.topups.next_due(now))

    async def page(
        self, account_id: int, env: Env, kind: TopupKind, window: TimeRange, limit: int,
        offset: int,
    ) -> tuple[list[TopupRecord], int]:  # fmt: skip
        return await self._run(
            lambda tx: tx.topups.page(account_id, env, kind, window, limit, offset)
        )

    async def counts(self) -> dict[tuple[str, str, str], int]:
        return await self._run(lambda tx: tx.topups.counts())


class PaymentReads(_Reads):
    __slots__ = ()

    async def get(self, ref: str) -> PaymentLinkRecord | None:
        return await self._run(lambda tx: tx.payments.get(ref))

    async def page(
        self, account_id: int, env: Env, window: TimeRange, limit: int, offset: int
    ) -> tuple[list[PaymentLinkRecord], int]:
        return await self._run(lambda tx: tx.payments.page(account_id, env, window, limit, offset))


class RepositoryReader:
    """Every repository's reads, each run through `run` on a read-only unit of work."""

    __slots__ = (
        "catalog", "inventory", "keys", "ledger", "orders", "payments", "settings", "topups",
        "webhooks",
    )  # fmt: skip

    def __init__(self, run: RunRead) -> None:
        self.keys = KeyReads(run)
        self.ledger = LedgerReads(run)
        self.catalog = CatalogReads(run)
        self.inventory = InventoryReads(run)
        self.orders = OrderReads(run)
        self.settings = SettingsReads(run)
        self.webhooks = WebhookReads(run)
        self.topups = TopupReads(run)
        self.payments = PaymentReads(run)
