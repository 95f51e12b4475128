"""Storage for the service, chosen by database URL."""

from __future__ import annotations

from oneclickdz.server.store.base import (
    AttemptRecord,
    Conflict,
    DeliveryJob,
    DeliveryState,
    EndpointRecord,
    EndpointStatus,
    EntryType,
    Env,
    EventRecord,
    FeeMode,
    KeyRecord,
    LedgerEntry,
    Operation,
    OrderRecord,
    OrderStatus,
    PaymentLinkRecord,
    PaymentStatus,
    ProductRecord,
    Reader,
    Scope,
    Store,
    StoreBusy,
    StoreUnavailable,
    TimeRange,
    TopupKind,
    TopupRecord,
    TopupStatus,
    TransactionRecord,
    Tx,
    TypeRecord,
)

__all__ = [
    "AttemptRecord",
    "Conflict",
    "DeliveryJob",
    "DeliveryState",
    "EndpointRecord",
    "EndpointStatus",
    "EntryType",
    "Env",
    "EventRecord",
    "FeeMode",
    "KeyRecord",
    "LedgerEntry",
    "Operation",
    "OrderRecord",
    "OrderStatus",
    "PaymentLinkRecord",
    "PaymentStatus",
    "ProductRecord",
    "Reader",
    "Scope",
    "Store",
    "StoreBusy",
    "StoreUnavailable",
    "TimeRange",
    "TopupKind",
    "TopupRecord",
    "TopupStatus",
    "TransactionRecord",
    "Tx",
    "TypeRecord",
    "is_postgres_url",
    "open_store",
]


def is_postgres_url(url: str) -> bool:
    return url.startswith(("postgresql://", "postgres://"))


def open_store(url: str, busy_timeout: float = 5.0) -> Store:
    """Open (and migrate) the database at `url`: `sqlite:///path/to/file.db` (one machine, the
    embedded default) or `postgresql://user@host:port/dbname` (several processes).

    `busy_timeout`: seconds a write waits for another process's lock before `StoreBusy`.
    """
    if url.startswith("sqlite:"):
        from oneclickdz.server.store.sqlite import SqliteStore

        return SqliteStore(url, busy_timeout)
    if is_postgres_url(url):
        from oneclickdz.server.store.postgres import PgStore

        return PgStore(url, busy_timeout)
    scheme = url.split(":", 1)[0]
    raise ValueError(
        f"unsupported database URL scheme {scheme!r}: use sqlite:///path/to/file.db or "
        "postgresql://user@host:port/dbname"
    )
