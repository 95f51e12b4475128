"""Where the tracker keeps its orders: the `TrackerStore` interface and `open_store(url)`.

The scheduler only ever calls these methods, in batches (one transaction per call), so a
PostgreSQL store can be added beside the SQLite one without touching it. Every method that
writes commits before it returns: what it wrote survives a crash of the process.
"""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

from .model import State, TrackedOrder

__all__ = [
    "DEFAULT_STORE_URL",
    "DuplicateOrderError",
    "RunnerActiveError",
    "TrackerStore",
    "open_store",
]

DEFAULT_STORE_URL = "sqlite:///oneclickdz-tracker.db"

# The handler of a transactional delivery: it receives the store's open transaction (for
# SQLite, the `sqlite3.Connection` inside BEGIN IMMEDIATE) and may write its own rows with it.
TxEffect = Callable[[Any], Awaitable[None] | None]


class RunnerActiveError(Exception):
    """Another process is already running this store's tracker."""


class TrackerStore(abc.ABC):
    """The tracker's durable state: one row per intent (or adopted order), plus counters."""

    url: str

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
    ) -> None:
        """Write these rows as they are now and add to the counters, in one transaction."""

    @abc.abstractmethod
    async def deliver(self, order: TrackedOrder, effect: TxEffect | None = None) -> None:
        """Mark `order` delivered (its state, delivered_at, last_error and delivery attempts)
        after running `effect` in the same transaction.

        If `effect` raises, nothing is written and the exception propagates.
        """

    @abc.abstractmethod
    async def deliver_many(self, orders: Sequence[TrackedOrder]) -> None:
        """Mark these orders delivered in one transaction (handlers that ran side by side)."""

    @abc.abstractmethod
    async def get(self, ident: str) -> TrackedOrder | None:
        """A row by intent id, order id or ref."""

    @abc.abstractmethod
    async def select(
        self, states: Collection[State] | None = None, *, stuck: bool | None = None
    ) -> list[TrackedOrder]:
        """Rows in these states (all when None), oldest first."""

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
    """The store a URL names: `sqlite:///path/to/file.db` (PostgreSQL to follow)."""
    if url.startswith("sqlite:///"):
        from .sqlite import SQLiteTrackerStore

        return SQLiteTrackerStore(url)
    raise ValueError(f"unsupported tracker store URL {url!r} (expected sqlite:///PATH)")
