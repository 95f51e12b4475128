"""Where the tracker keeps its orders: the `TrackerStore` interface and `open_store(url)`.

The scheduler only ever calls these methods, in batches (one transaction per call). Every
method that writes commits before it returns: what it wrote survives a crash of the process.

Two engines: SQLite (`sqlite:///PATH`, one runner per store, held by a file lock) and
PostgreSQL (`postgresql://…`, `shared`: several runners, each open order leased to one).
"""

from __future__ import annotations

import abc
import sqlite3
import sys
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

from .model import Kind, State, TrackedOrder

__all__ = [
    "DEFAULT_STORE_URL",
    "DuplicateOrderError",
    "LeaseLostError",
    "RunnerActiveError",
    "TrackerStore",
    "open_store",
]

DEFAULT_STORE_URL = "sqlite:///oneclickdz-tracker.db"

# The handler of a transactional delivery: it receives the store's open transaction and may
# write its own rows with it. SQLite: the `sqlite3.Connection` inside BEGIN IMMEDIATE.
# PostgreSQL: a `psycopg.AsyncConnection` inside the transaction (`await tx.execute(...)`).
TxEffect = Callable[[Any], Awaitable[None] | None]


class RunnerActiveError(Exception):
    """Another process is already running this store's tracker."""


class LeaseLostError(Exception):
    """Another runner took these orders over (this one's lease expired): stop working them."""

    def __init__(self, ids: Collection[str]) -> None:
        super().__init__(f"lease lost on {len(ids)} order(s): another runner has them")
        self.ids = set(ids)


class TrackerStore(abc.ABC):
    """The tracker's durable state: one row per intent (or adopted operation), plus counters.

    A row is a gift-card order, a mobile top-up, an internet recharge or a payment link (its
    `kind`); every engine stores what `TrackedOrder` holds, and migrates older schemas on open.
    """

    url: str
    # False: one runner per store (acquire_runner). True: several runners at once, each open
    # order leased to one of them (claim, renew); writes of a lost lease are not made.
    shared: bool = False
    lease_seconds: float = 0.0

    @property
    @abc.abstractmethod
    def key_file(self) -> Path | None:
        """Where the card key is kept when $ONECLICKDZ_TRACKER_KEY is not set (None: nowhere)."""

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect and create or migrate the schema."""

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def acquire_runner(self) -> None:
        """Become the one process that places and follows this store's orders, until close().

        Raises RunnerActiveError while another process holds it; a crashed holder releases it.
        """

    @abc.abstractmethod
    async def release_runner(self) -> None:
        """Stop being the runner (the end of `run()`)."""

    @abc.abstractmethod
    async def setting(self, name: str, default: bytes) -> bytes:
        """The value of a setting, stored as `default` first if it has none."""

    @abc.abstractmethod
    async def insert(self, orders: Sequence[TrackedOrder]) -> None:
        """Add new rows, all or none. Raises `DuplicateOrderError` naming a known order id."""

    @abc.abstractmethod
    async def save(
        self, orders: Sequence[TrackedOrder], counters: Mapping[str, int] | None = None
    ) -> set[str]:
        """Write these rows as they are now and add to the counters, in one transaction.

        Returns the ids not written because this runner no longer holds them (shared stores).
        """

    @abc.abstractmethod
    async def publish(self, order: TrackedOrder) -> bool:
        """Write a row that was changed outside the run (a payment link just created for its
        intent, or refused; or an abandoned intent closed), fsynced, and bump the revision so
        that a running tracker sees it.

        Written only while the stored row is still to be placed (whoever holds its lease: the
        runner that holds it reloads it when it comes due); False (nothing written, no bump)
        when it was not: of a creator and a runner closing the same intent, the second loses.
        """

    @abc.abstractmethod
    async def deliver(self, order: TrackedOrder, effect: TxEffect | None = None) -> None:
        """Mark `order` delivered (its state, delivered_at, last_error and delivery attempts)
        after running `effect` in the same transaction.

        If `effect` raises, nothing is written and the exception propagates. A shared store
        raises `LeaseLostError` (and runs no effect, or rolls it back) when the lease is lost.
        """

    @abc.abstractmethod
    async def deliver_many(self, orders: Sequence[TrackedOrder]) -> set[str]:
        """Mark these orders delivered in one transaction (handlers that ran side by side).

        Returns the ids not marked because this runner no longer holds them (shared stores).
        """

    async def claim(self, held: Collection[str]) -> list[TrackedOrder]:
        """The unsettled rows this runner should work, beside `held` (those it has already).

        One runner per store: all of them. A shared store leases them to this runner.
        """
        return await self.load((await self.unsettled_ids()) - set(held))

    async def renew(self, held: Collection[str]) -> set[str]:
        """Extend this runner's leases on `held`; returns the ids it lost (none: not shared)."""
        return set()

    async def pending_elsewhere(self, delivers: bool) -> int:
        """Open rows (not stuck, not followed slowly) that other runners hold: 0 when the store
        is not shared."""
        return 0

    @abc.abstractmethod
    async def get(self, ident: str) -> TrackedOrder | None:
        """A row by intent id, order id or ref."""

    @abc.abstractmethod
    async def select(
        self,
        states: Collection[State] | None = None,
        *,
        stuck: bool | None = None,
        kind: Kind | None = None,
    ) -> list[TrackedOrder]:
        """Rows in these states (all when None), of this kind (any when None), oldest first."""

    @abc.abstractmethod
    async def unsettled_ids(self) -> set[str]:
        """Ids of every row still to be placed, followed or delivered."""

    @abc.abstractmethod
    async def load(self, ids: Collection[str]) -> list[TrackedOrder]:
        """These rows (missing ids are skipped)."""

    @abc.abstractmethod
    async def revision(self) -> int:
        """A number that changes whenever rows are inserted or re-queued from outside the run."""

    @abc.abstractmethod
    async def requeue(
        self, ident: str, from_states: Collection[State]
    ) -> tuple[TrackedOrder | None, bool]:
        """Put a row in one of `from_states` back to `final` for delivery now.

        Returns the row (None: unknown) and whether it was requeued.
        """

    @abc.abstractmethod
    async def counters(self) -> dict[str, int]: ...

    @abc.abstractmethod
    async def state_counts(self) -> dict[str, int]:
        """Rows by state, plus `stuck` for the placed orders flagged stuck."""

    @abc.abstractmethod
    async def latencies(self) -> tuple[list[float], list[float]]:
        """(placement-to-final, final-to-delivered) seconds of every delivered order."""


class DuplicateOrderError(Exception):
    """An order id (or ref) that the store already tracks."""

    def __init__(self, ident: str) -> None:
        super().__init__(f"{ident} is already tracked")
        self.ident = ident


def open_store(url: str = DEFAULT_STORE_URL) -> TrackerStore:
    """The store a URL names: `sqlite:///path/to/file.db` or `postgresql://user@host/db`."""
    if url.startswith("sqlite:///"):
        from .sqlite import SQLiteTrackerStore

        return SQLiteTrackerStore(url)
    if url.startswith(("postgresql://", "postgres://")):
        from .postgres import PostgresTrackerStore

        return PostgresTrackerStore(url)
    raise ValueError(
        f"unsupported tracker store URL {redact_url(url)!r} "
        "(expected sqlite:///PATH or postgresql://USER@HOST/DB)"
    )


def store_errors() -> tuple[type[Exception], ...]:
    """The database errors a store may raise (psycopg's only once it is imported)."""
    errors: tuple[type[Exception], ...] = (sqlite3.Error,)
    psycopg = sys.modules.get("psycopg")
    if psycopg is not None:
        errors += (psycopg.Error,)
    return errors


def redact_url(url: str) -> str:
    """The URL without a password (`scheme://user:secret@host` → `scheme://user:***@host`)."""
    head, sep, tail = url.partition("://")
    if sep and "@" in tail:
        auth, _, rest = tail.rpartition("@")
        if ":" in auth:
            auth = auth.split(":", 1)[0] + ":***"
        return f"{head}://{auth}@{rest}"
    return url
