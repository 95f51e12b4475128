"""The storage interface the service is written against, and the records it exchanges.

Routes and workers never see SQL: they call `Store.write(fn)` with a function of a `Tx`
(run atomically) or read through `Store.reader()`. A PostgreSQL store implements the same
two protocols; nothing above this module changes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, TypeVar

Env = Literal["SANDBOX", "PRODUCTION"]
Scope = Literal["READ-WRITE", "READ-ONLY"]
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class KeyRecord:
    id: int
    account_id: int
    account_name: str
    env: Env
    scope: Scope
    enabled: bool
    allowed_ips: tuple[str, ...]
    hint: str


@dataclass(frozen=True, slots=True)
class ProductRecord:
    id: str
    title: str
    category: str
    enabled: bool
    region: str | None


@dataclass(frozen=True, slots=True)
class TypeRecord:
    product_id: str
    id: str
    name: str
    price_cents: int
    sandbox_stock: int


@dataclass(frozen=True, slots=True)
class OrderRecord:
    id: str
    account_id: int
    env: Env
    key_id: int
    ref: str | None
    product_id: str
    type_id: str
    quantity: int
    price_cents: int
    status: str
    fulfilled_quantity: int | None
    time: str
    due_at: float


@dataclass(frozen=True, slots=True)
class TransactionRecord:
    id: str
    type: str
    operation: str
    amount_cents: int
    old_balance_cents: int
    new_balance_cents: int
    objid: str | None
    note: str
    time: str


@dataclass(frozen=True, slots=True)
class TimeRange:
    """An inclusive range of wire-format timestamps; either end may be open."""

    start: str | None = None
    end: str | None = None


class StoreBusy(Exception):
    """The database could not take the write lock in time (another process holds it)."""


class Tx(Protocol):
    """The operations of one transaction (or of a read-only view when used as a reader)."""

    # accounts and keys
    def account_id(self, name: str) -> int | None: ...
    def insert_account(self, name: str, now: str) -> int: ...
    def insert_key(
        self,
        key_hash: bytes,
        hint: str,
        account_id: int,
        env: Env,
        scope: Scope,
        allowed_ips: Sequence[str],
        now: str,
    ) -> int: ...
    def find_key(self, key_hash: bytes) -> tuple[bytes, KeyRecord] | None: ...
    def set_key_enabled(self, key_hash: bytes, enabled: bool) -> bool: ...

    # ledger
    def balance(self, account_id: int, env: Env) -> int: ...
    def set_balance(self, account_id: int, env: Env, old_cents: int, new_cents: int) -> None: ...
    def insert_transaction(self, account_id: int, env: Env, record: TransactionRecord) -> None: ...
    def transactions(
        self, account_id: int, env: Env, window: TimeRange, limit: int, offset: int
    ) -> tuple[list[TransactionRecord], int]: ...

    # catalog
    def upsert_product(self, product: ProductRecord, position: int) -> None: ...
    def upsert_type(self, ptype: TypeRecord, position: int) -> None: ...
    def product(self, product_id: str) -> ProductRecord | None: ...
    def product_types(self, product_id: str) -> list[TypeRecord]: ...
    def product_type(self, product_id: str, type_id: str) -> TypeRecord | None: ...
    def catalog(self) -> list[ProductRecord]: ...

    # inventory
    def insert_card(
        self,
        product_id: str,
        type_id: str,
        secret: bytes,
        fingerprint: bytes,
        now: str,
        order_id: str | None = None,
        position: int | None = None,
    ) -> int: ...
    def fingerprints_present(self, fingerprints: Sequence[bytes]) -> set[bytes]: ...
    def unsold_counts(self, product_id: str) -> dict[str, int]: ...
    def sell_cards(self, product_id: str, type_id: str, order_id: str, count: int) -> int: ...
    def next_card_id(self) -> int: ...
    def cards_secrets_for_orders(self, order_ids: Sequence[str]) -> dict[str, list[bytes]]: ...

    # orders
    def insert_order(self, order: OrderRecord) -> None: ...
    def order(self, order_id: str) -> OrderRecord | None: ...
    def order_with_cards(self, order_id: str) -> tuple[OrderRecord, list[bytes]] | None:
        """The order and its sealed cards, in delivery order."""
        ...

    def order_id_by_ref(self, key_id: int, ref: str) -> str | None: ...
    def finish_order(self, order_id: str, status: str, fulfilled: int, now: str) -> bool: ...
    def handling_orders(self) -> list[tuple[float, str]]: ...
    def orders(
        self, account_id: int, env: Env, window: TimeRange, limit: int, offset: int
    ) -> tuple[list[OrderRecord], int]: ...

    # settings
    def setting(self, name: str) -> str | None: ...
    def set_setting(self, name: str, value: str) -> None: ...


class Store(Protocol):
    """A database: atomic writes (group-committed where the engine allows) and fast reads."""

    def reader(self) -> Tx:
        """A view for reads on the calling thread; each statement sees committed data."""
        ...

    async def write(self, fn: Callable[[Tx], T]) -> T:
        """Run `fn` atomically; its effects are durable when this returns, gone if it raised."""
        ...

    def write_sync(self, fn: Callable[[Tx], T]) -> T:
        """`write` for code without an event loop (admin commands, start-up)."""
        ...

    def start(self) -> None: ...

    def close(self) -> None: ...
