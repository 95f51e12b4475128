"""The storage interface the service is written against, and the records it exchanges.

Routes and workers never see SQL. A write is a function of a `Tx`, a unit of work holding one
repository per aggregate (keys, ledger, catalog, inventory, orders, settings), run atomically
by `Store.write(fn)`. Reads go through `Store.reader()`, a `Reader` offering only the read
methods of those repositories, as coroutines: a network engine awaits its connection pool
there and never blocks the event loop. Every engine implements these protocols; nothing above
this package changes with the engine.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal, Protocol, TypeVar

Env = Literal["SANDBOX", "PRODUCTION"]
Scope = Literal["READ-WRITE", "READ-ONLY"]
T = TypeVar("T")


class OrderStatus(StrEnum):
    """An order's state: HANDLING until fulfilment makes it one of the three final ones."""

    HANDLING = "HANDLING"
    FULFILLED = "FULFILLED"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    REFUNDED = "REFUNDED"


class EntryType(StrEnum):
    """Why money moved: the `type` of a ledger transaction, as listTransactions shows it."""

    ORDER = "ORDER"
    REFUND_ORDER = "REFUND-ORDER"
    DEPOSIT = "DEPOSIT"
    WITHDRAW = "WITHDRAW"
    FLEXY = "FLEXY"
    REFUND_FLEXY = "REFUND-FLEXY"
    ADSL = "ADSL"
    REFUND_ADSL = "REFUND-ADSL"
    RECEIVE = "RECEIVE"


class Operation(StrEnum):
    """Which way money moved: the `operation` of a ledger transaction."""

    CREDIT = "CREDIT"
    DEBIT = "DEBIT"


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
    status: OrderStatus
    fulfilled_quantity: int | None
    time: str
    due_at: float


class TopupKind(StrEnum):
    """Which service a top-up belongs to: `/v3/mobile` or `/v3/internet`."""

    MOBILE = "MOBILE"
    INTERNET = "INTERNET"


class TopupStatus(StrEnum):
    """A top-up's state. Mobile: PENDING -> HANDLING -> FULFILLED | REFUNDED | UNKNOWN_ERROR
    (the last resolved by an operator). Internet: HANDLING -> FULFILLED | REFUNDED | QUEUED
    (QUEUED moves on to FULFILLED or REFUNDED hours later)."""

    PENDING = "PENDING"
    HANDLING = "HANDLING"
    FULFILLED = "FULFILLED"
    REFUNDED = "REFUNDED"
    UNKNOWN_ERROR = "UNKNOWN_ERROR"
    QUEUED = "QUEUED"


@dataclass(frozen=True, slots=True)
class TopupRecord:
    """A mobile top-up or an internet recharge. `plan_code` is the mobile plan or the internet
    type (ADSL, 4G); `number` the MSSIDN or the line; `amount_cents` what the line receives and
    `charge_cents` what the balance paid. `outcome` is the final state chosen at placement (the
    sandbox triggers, or the simulated operator); `due_at` when the top-up next moves (None:
    it will not move by itself). An internet card is sealed (`card_secret`)."""

    id: str
    kind: TopupKind
    account_id: int
    env: Env
    key_id: int
    ref: str
    plan_code: str
    number: str
    amount_cents: int
    charge_cents: int
    status: TopupStatus
    outcome: TopupStatus
    created_at: str
    due_at: float | None
    final_at: str | None = None
    card_secret: bytes | None = None
    num_trans: str | None = None
    date_traitement: str | None = None


class PaymentStatus(StrEnum):
    """An OCPay link's payment: PENDING until the payer pays (CONFIRMED) or cancels (FAILED)."""

    PENDING = "PENDING"
    CONFIRMED = "CONFIRMED"
    FAILED = "FAILED"


class FeeMode(StrEnum):
    """Who bears OCPay's fee: the merchant (NO_FEE), both halves (SPLIT_FEE), the payer."""

    NO_FEE = "NO_FEE"
    SPLIT_FEE = "SPLIT_FEE"
    CUSTOMER_FEE = "CUSTOMER_FEE"


@dataclass(frozen=True, slots=True)
class PaymentLinkRecord:
    """An OCPay payment link and, once paid, its transaction (`paid_cents`: what the payer paid;
    `net_cents`: what the merchant's balance received). `expires_at`: seconds since the epoch."""

    ref: str
    account_id: int
    env: Env
    key_id: int
    title: str
    description: str | None
    amount_cents: int
    fee_mode: FeeMode
    success_message: str | None
    redirect_url: str | None
    status: PaymentStatus
    created_at: str
    expires_at: float
    transaction_ref: str | None = None
    paid_cents: int | None = None
    fee_cents: int | None = None
    net_cents: int | None = None
    payment_method: str | None = None
    completed_at: str | None = None


@dataclass(frozen=True, slots=True)
class TransactionRecord:
    id: str
    type: EntryType
    operation: Operation
    amount_cents: int
    old_balance_cents: int
    new_balance_cents: int
    objid: str | None
    note: str
    time: str


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """What the caller of `Ledger.move` decides about a movement; the store adds the amounts."""

    id: str
    type: EntryType
    note: str
    time: str
    objid: str | None = None


@dataclass(frozen=True, slots=True)
class TimeRange:
    """An inclusive range of wire-format timestamps; either end may be open."""

    start: str | None = None
    end: str | None = None


class EndpointStatus(StrEnum):
    """A webhook endpoint's state: sent to while ENABLED; DISABLED by a 410 (or an operator);
    REMOVED by its owner (kept for the delivery log, never sent to again)."""

    ENABLED = "ENABLED"
    DISABLED = "DISABLED"
    REMOVED = "REMOVED"


class DeliveryState(StrEnum):
    """One event's delivery to one endpoint: PENDING until a 2xx (DELIVERED), until its retries
    run out (FAILED), or until its endpoint is disabled or removed (CANCELLED)."""

    PENDING = "PENDING"
    DELIVERED = "DELIVERED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


@dataclass(frozen=True, slots=True)
class EndpointRecord:
    """A webhook endpoint of one API key. Secrets are sealed by the vault; during a rotation
    `previous_secret` still signs until `previous_until` (seconds since the epoch)."""

    id: int
    key_id: int
    url: str
    events: tuple[str, ...]
    secret: bytes
    previous_secret: bytes | None
    previous_until: float | None
    status: EndpointStatus
    disabled_reason: str | None
    created_at: str


@dataclass(frozen=True, slots=True)
class EventRecord:
    """An event in the outbox: `payload` is the exact JSON body every delivery sends."""

    id: str
    key_id: int
    order_id: str
    type: str
    payload: bytes
    created_at: float


@dataclass(frozen=True, slots=True)
class DeliveryJob:
    """A claimed delivery: what the dispatcher needs to send one event to one endpoint."""

    event: EventRecord
    endpoint: EndpointRecord
    attempts: int  # attempts made before this one


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    """One attempt to deliver an event to an endpoint, as the delivery log shows it."""

    event_id: str
    endpoint_id: int
    attempt: int
    time: str
    outcome: str  # delivered, failed, dropped (fault), refused (address), gone (410)
    status_code: int | None
    latency_ms: float | None
    error: str | None


class StoreBusy(Exception):
    """The database could not take the write lock in time (another process holds it)."""


class StoreUnavailable(RuntimeError):
    """The database cannot be reached (or refused us) when the store opens."""


class Conflict(Exception):
    """A write broke a uniqueness rule of the database (an order's id or ref already used)."""


# -- repositories inside a unit of work (synchronous: they run in the write transaction) --------


class Keys(Protocol):
    """Accounts and their API keys (only a key's hash is stored)."""

    def account_id(self, name: str) -> int | None: ...
    def add_account(self, name: str, now: str) -> int:
        """A new account with a zero balance in each environment; returns its id."""
        ...

    def add(
        self,
        key_hash: bytes,
        hint: str,
        account_id: int,
        env: Env,
        scope: Scope,
        allowed_ips: Sequence[str],
        now: str,
    ) -> int: ...
    def find(self, key_hash: bytes) -> tuple[bytes, KeyRecord] | None:
        """The stored hash (compare it in constant time) and the key, or None."""
        ...

    def set_enabled(self, key_hash: bytes, enabled: bool) -> bool:
        """False when there is no such key."""
        ...


class Ledger(Protocol):
    """Balances and the transactions that moved them."""

    def balance(self, account_id: int, env: Env) -> int: ...
    def move(
        self, account_id: int, env: Env, delta_cents: int, entry: LedgerEntry
    ) -> TransactionRecord | None:
        """Add `delta_cents` (negative: a debit) to the balance and record the transaction, as
        one conditional update: None, and nothing written, if the balance would go below zero
        (or the account has none)."""
        ...

    def transactions(
        self, account_id: int, env: Env, window: TimeRange, limit: int, offset: int
    ) -> tuple[list[TransactionRecord], int]:
        """A page of transactions, newest first, and how many the window holds."""
        ...


class Catalog(Protocol):
    """Products and their types, in the catalog's order."""

    def upsert_product(self, product: ProductRecord, position: int) -> None: ...
    def upsert_type(self, ptype: TypeRecord, position: int) -> None: ...
    def product(self, product_id: str) -> ProductRecord | None: ...
    def types(self, product_id: str) -> list[TypeRecord]: ...
    def type(self, product_id: str, type_id: str) -> TypeRecord | None: ...
    def product_and_type(
        self, product_id: str, type_id: str
    ) -> tuple[ProductRecord, TypeRecord | None] | None:
        """The product and its type `type_id` (None if it has no such type), in one read;
        None if there is no such product. (placeOrder's read: one round trip, not two.)"""
        ...

    def products(self) -> list[ProductRecord]: ...


class Inventory(Protocol):
    """Cards, sealed: imported ones waiting to be sold, and every card delivered."""

    def add(
        self,
        product_id: str,
        type_id: str,
        secret: bytes,
        fingerprint: bytes,
        now: str,
        order_id: str | None = None,
        position: int | None = None,
    ) -> None:
        """Store a card (already sold to `order_id` at `position` when given)."""
        ...

    def fingerprints_present(self, fingerprints: Sequence[bytes]) -> set[bytes]: ...
    def unsold_counts(self, product_id: str) -> dict[str, int]:
        """Unsold cards of a product, by type id (types with none are absent)."""
        ...

    def sell(self, product_id: str, type_id: str, order_id: str, count: int) -> int:
        """Sell up to `count` unsold cards to the order, oldest first; returns how many.
        A card is sold once: to one order, whatever runs concurrently."""
        ...

    def next_serials(self, count: int) -> list[int]:
        """Reserve `count` card serials from a sequence, in increasing order. Serials only
        grow and none is handed out twice, across processes too (they need not be contiguous;
        one reserved by a write that failed is not reused)."""
        ...

    def secrets_for_orders(self, order_ids: Sequence[str]) -> dict[str, list[bytes]]:
        """The sealed cards of each order, in delivery order (orders without any are absent)."""
        ...


class Orders(Protocol):
    """Gift-card orders."""

    def add(self, order: OrderRecord) -> None:
        """Store a new order; `Conflict` if its id, or its ref within its account and
        environment, is already used."""
        ...

    def get(self, order_id: str) -> OrderRecord | None: ...
    def with_cards(self, order_id: str) -> tuple[OrderRecord, list[bytes]] | None:
        """The order and its sealed cards, in delivery order (one read: checkOrder's)."""
        ...

    def id_by_ref(self, account_id: int, env: Env, ref: str) -> str | None: ...
    def lock(self, order_id: str) -> OrderRecord | None:
        """The order, locked against every other writer until this unit of work ends."""
        ...

    def finish(self, order_id: str, status: OrderStatus, fulfilled: int, now: str) -> bool:
        """Make a HANDLING order final; False (nothing changed) if it was not HANDLING."""
        ...

    def claim_due(self, now: float, owner: str, until: float, limit: int) -> list[str]:
        """Lease to `owner` until `until` up to `limit` HANDLING orders due by `now` whose lease
        is free or ended; their ids, soonest due first. Rows another unit of work is claiming
        are skipped, never waited for, so claimants in several processes never block each
        other and never get the same order while its lease runs."""
        ...

    def next_due(self, now: float) -> float | None:
        """The due time of the soonest HANDLING order not leased beyond `now` (None if none):
        when a fulfilment worker has something to claim."""
        ...

    def page(
        self, account_id: int, env: Env, window: TimeRange, limit: int, offset: int
    ) -> tuple[list[OrderRecord], int]:
        """A page of orders, newest first (in placement order within a millisecond), and how
        many the window holds."""
        ...

    def counts(self) -> dict[tuple[str, str], int]:
        """Orders by (env, status)."""
        ...


class Webhooks(Protocol):
    """Webhook endpoints, the outbox of order events, their deliveries and the attempts log."""

    def add_endpoint(
        self, key_id: int, url: str, events: Sequence[str], secret: bytes, now: str
    ) -> int: ...
    def endpoint(self, endpoint_id: int) -> EndpointRecord | None: ...
    def endpoints(self, key_id: int | None = None) -> list[EndpointRecord]:
        """Endpoints not removed (of one key, or all), oldest first."""
        ...

    def rotate(
        self, endpoint_id: int, secret: bytes, previous: bytes, previous_until: float
    ) -> bool: ...
    def set_status(self, endpoint_id: int, status: EndpointStatus, reason: str | None) -> bool:
        """Enable, disable or remove an endpoint; disabling or removing cancels its pending
        deliveries. False if there is no such endpoint (or it was removed)."""
        ...

    def enqueue(
        self, event: EventRecord, owner: str | None = None, until: float | None = None
    ) -> None:
        """Put an event in the outbox with one delivery, due at its creation, per enabled
        endpoint of its key that takes its type; nothing when none does. `owner` (until
        `until`) holds their lease from the start: the process that made the event sends it
        without claiming it first. (No answer is awaited: a batch on a network engine sends
        it along with the next statement.)"""
        ...

    def claim_due(self, now: float, owner: str, until: float, limit: int) -> list[DeliveryJob]:
        """Lease to `owner` until `until` up to `limit` pending deliveries due by `now` whose
        lease is free or ended, soonest first; like `Orders.claim_due`, claimants never share."""
        ...

    def leased(self, event_ids: Sequence[str], owner: str) -> list[DeliveryJob]:
        """The pending deliveries of these events leased to `owner`."""
        ...

    def next_due(self, now: float) -> float | None: ...
    def extend(self, event_id: str, endpoint_id: int, owner: str, until: float) -> bool:
        """Keep a delivery leased to `owner` until `until` (a held send); False if the lease
        was lost meanwhile."""
        ...

    def record(self, attempt: AttemptRecord, state: DeliveryState, next_at: float | None) -> None:
        """Log an attempt and move its delivery to `state` (PENDING again: due at `next_at`),
        releasing its lease."""
        ...

    def event(self, event_id: str) -> EventRecord | None: ...
    def replay(self, event_id: str, now: float) -> int:
        """Make every delivery of the event to an enabled endpoint pending and due now; how
        many."""
        ...

    def attempts(self, event_id: str | None, limit: int) -> list[AttemptRecord]:
        """The latest attempts (of one event, or all), newest first."""
        ...


class Topups(Protocol):
    """Mobile top-ups and internet recharges."""

    def add(self, topup: TopupRecord) -> None:
        """Store a new top-up; `Conflict` if its id, or its ref within its account,
        environment and kind, is already used."""
        ...

    def get(self, topup_id: str) -> TopupRecord | None: ...
    def by_ref(
        self, account_id: int, env: Env, kind: TopupKind, ref: str
    ) -> TopupRecord | None: ...
    def lock(self, topup_id: str) -> TopupRecord | None:
        """The top-up, locked against every other writer until this unit of work ends."""
        ...

    def update(self, topup: TopupRecord) -> None:
        """Write the top-up's moving parts (status, due_at, final_at, card and trace fields),
        releasing its lease."""
        ...

    def claim_due(self, now: float, owner: str, until: float, limit: int) -> list[str]:
        """Lease to `owner` until `until` up to `limit` top-ups due by `now` whose lease is
        free or ended, soonest due first; like `Orders.claim_due`, claimants never share."""
        ...

    def next_due(self, now: float) -> float | None: ...
    def page(
        self,
        account_id: int,
        env: Env,
        kind: TopupKind,
        window: TimeRange,
        limit: int,
        offset: int,
    ) -> tuple[list[TopupRecord], int]:
        """A page of one kind's top-ups, newest first, and how many the window holds."""
        ...

    def counts(self) -> dict[tuple[str, str, str], int]:
        """Top-ups by (kind, env, status)."""
        ...


class PaymentLinks(Protocol):
    """OCPay payment links."""

    def add(self, link: PaymentLinkRecord) -> None:
        """Store a new link; `Conflict` if its ref is already used."""
        ...

    def get(self, ref: str) -> PaymentLinkRecord | None: ...
    def lock(self, ref: str) -> PaymentLinkRecord | None:
        """The link, locked against every other writer until this unit of work ends."""
        ...

    def update(self, link: PaymentLinkRecord) -> None:
        """Write the link's status and transaction fields."""
        ...

    def page(
        self, account_id: int, env: Env, window: TimeRange, limit: int, offset: int
    ) -> tuple[list[PaymentLinkRecord], int]:
        """A page of links, newest first, and how many the window holds."""
        ...


class Settings(Protocol):
    """Named values the service keeps about its database (vault check, catalog seeded)."""

    def get(self, name: str) -> str | None: ...
    def set(self, name: str, value: str) -> None: ...


class Tx(Protocol):
    """One unit of work: every repository, inside one atomic transaction."""

    @property
    def keys(self) -> Keys: ...
    @property
    def ledger(self) -> Ledger: ...
    @property
    def catalog(self) -> Catalog: ...
    @property
    def inventory(self) -> Inventory: ...
    @property
    def orders(self) -> Orders: ...
    @property
    def settings(self) -> Settings: ...
    @property
    def webhooks(self) -> Webhooks: ...
    @property
    def topups(self) -> Topups: ...
    @property
    def payments(self) -> PaymentLinks: ...


# -- the read-only side (asynchronous: a read never blocks the event loop) ----------------------


class KeyReads(Protocol):
    async def find(self, key_hash: bytes) -> tuple[bytes, KeyRecord] | None: ...


class LedgerReads(Protocol):
    async def balance(self, account_id: int, env: Env) -> int: ...
    async def transactions(
        self, account_id: int, env: Env, window: TimeRange, limit: int, offset: int
    ) -> tuple[list[TransactionRecord], int]: ...


class CatalogReads(Protocol):
    async def product(self, product_id: str) -> ProductRecord | None: ...
    async def types(self, product_id: str) -> list[TypeRecord]: ...
    async def type(self, product_id: str, type_id: str) -> TypeRecord | None: ...
    async def products(self) -> list[ProductRecord]: ...


class InventoryReads(Protocol):
    async def unsold_counts(self, product_id: str) -> dict[str, int]: ...
    async def secrets_for_orders(self, order_ids: Sequence[str]) -> dict[str, list[bytes]]: ...


class OrderReads(Protocol):
    async def get(self, order_id: str) -> OrderRecord | None: ...
    async def with_cards(self, order_id: str) -> tuple[OrderRecord, list[bytes]] | None: ...
    async def id_by_ref(self, account_id: int, env: Env, ref: str) -> str | None: ...
    async def next_due(self, now: float) -> float | None: ...
    async def page(
        self, account_id: int, env: Env, window: TimeRange, limit: int, offset: int
    ) -> tuple[list[OrderRecord], int]: ...
    async def counts(self) -> dict[tuple[str, str], int]: ...


class SettingsReads(Protocol):
    async def get(self, name: str) -> str | None: ...


class WebhookReads(Protocol):
    async def next_due(self, now: float) -> float | None: ...
    async def leased(self, event_ids: Sequence[str], owner: str) -> list[DeliveryJob]: ...
    async def endpoints(self, key_id: int | None = None) -> list[EndpointRecord]: ...


class TopupReads(Protocol):
    async def get(self, topup_id: str) -> TopupRecord | None: ...
    async def by_ref(
        self, account_id: int, env: Env, kind: TopupKind, ref: str
    ) -> TopupRecord | None: ...
    async def next_due(self, now: float) -> float | None: ...
    async def page(
        self,
        account_id: int,
        env: Env,
        kind: TopupKind,
        window: TimeRange,
        limit: int,
        offset: int,
    ) -> tuple[list[TopupRecord], int]: ...
    async def counts(self) -> dict[tuple[str, str, str], int]: ...


class PaymentReads(Protocol):
    async def get(self, ref: str) -> PaymentLinkRecord | None: ...
    async def page(
        self, account_id: int, env: Env, window: TimeRange, limit: int, offset: int
    ) -> tuple[list[PaymentLinkRecord], int]: ...


class Reader(Protocol):
    """The read methods of every repository, and nothing that writes; each read sees committed
    data."""

    @property
    def keys(self) -> KeyReads: ...
    @property
    def ledger(self) -> LedgerReads: ...
    @property
    def catalog(self) -> CatalogReads: ...
    @property
    def inventory(self) -> InventoryReads: ...
    @property
    def orders(self) -> OrderReads: ...
    @property
    def settings(self) -> SettingsReads: ...
    @property
    def webhooks(self) -> WebhookReads: ...
    @property
    def topups(self) -> TopupReads: ...
    @property
    def payments(self) -> PaymentReads: ...


class Store(Protocol):
    """A database: atomic writes (group-committed where the engine allows) and async reads."""

    def reader(self) -> Reader:
        """The read-only view, for the calling thread's event loop."""
        ...

    async def write(self, fn: Callable[[Tx], T]) -> T:
        """Run `fn` atomically; its effects are durable when this returns, gone if it raised."""
        ...

    def write_sync(self, fn: Callable[[Tx], T]) -> T:
        """`write` for code without an event loop (admin commands, start-up)."""
        ...

    def start(self) -> None: ...

    def close(self) -> None: ...
