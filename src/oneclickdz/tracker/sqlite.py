"""The SQLite `TrackerStore`: one file in WAL mode.

What the merchant was told is written — intents, re-queued deliveries — is fsynced before the
call returns (`synchronous=FULL` for those transactions). Everything else (sent, placed, checks,
final states, delivery markers) commits with `synchronous=NORMAL`: it survives a crash of the
process at once, and a power failure can only roll it back to a state the tracker recovers from
by asking the API again (the same ref, the same order's cards) or by delivering again with the
same delivery key. An fsync per delivery would cost more CPU than the rest of an order's life.

The schema carries its version in `PRAGMA user_version`; opening an older file migrates it in
place (version 2 added `kind`, `params` and `details`, for top-ups and payment links).

One connection, used from the tracker's event loop: each method is one short transaction
(`BEGIN IMMEDIATE`), batched by the caller. Other processes (`oneclickdz track place`, `track
retry`) may write to the same file at the same time; SQLite's lock serialises them, and they
bump a revision the running tracker watches. The running tracker holds an exclusive `flock` on
`<file>.lock`, which the kernel releases if the process dies.
"""

from __future__ import annotations

import asyncio
import fcntl
import inspect
import json
import os
import sqlite3
from collections.abc import Collection, Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

from .model import Kind, State, TrackedOrder
from .store import DuplicateOrderError, RunnerActiveError, TrackerStore, TxEffect

__all__ = ["SQLiteTrackerStore"]

_COLUMNS = (
    "id", "ref", "product_id", "type_id", "quantity", "meta", "state", "created_at", "order_id",
    "order_time", "status", "fulfilled_quantity", "price_per_card", "amount_charged",
    "amount_refunded", "sealed_cards", "sent_at", "placed_at", "final_at", "delivered_at",
    "attempts", "started_at", "next_at", "deadline", "stuck", "delivery_attempts", "last_error",
    "adopted", "kind", "params", "details",
)  # fmt: skip
_SELECT = f"SELECT {', '.join(_COLUMNS)} FROM orders"
_INSERT = f"INSERT INTO orders ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' for _ in _COLUMNS)})"
# What changes after the insert (not the id, ref, meta, creation time or adoption flag).
_MUTABLE = (
    "product_id", "type_id", "quantity", "state", "order_id", "order_time", "status",
    "fulfilled_quantity", "price_per_card", "amount_charged", "amount_refunded", "sealed_cards",
    "sent_at", "placed_at", "final_at", "delivered_at", "attempts", "started_at", "next_at",
    "deadline", "stuck", "delivery_attempts", "last_error", "params", "details",
)  # fmt: skip
_SAVE = f"UPDATE orders SET {', '.join(f'{c} = ?' for c in _MUTABLE)} WHERE id = ?"
_SETTLED = tuple(s.value for s in State if s.settled)
_TO_PLACE = tuple(s.value for s in State if s.to_place)
# A row written from outside the run (a payment link just created): only while still unplaced.
_PUBLISH = _SAVE.removesuffix("WHERE id = ?") + (
    f"WHERE id = ? AND state IN ({', '.join('?' for _ in _TO_PLACE)})"
)
SCHEMA_VERSION = 2

_SCHEMA = [
    """CREATE TABLE IF NOT EXISTS orders (
        id TEXT PRIMARY KEY,
        ref TEXT UNIQUE,
        product_id TEXT,
        type_id TEXT,
        quantity INTEGER,
        meta TEXT NOT NULL,
        state TEXT NOT NULL,
        created_at REAL NOT NULL,
        order_id TEXT UNIQUE,
        order_time REAL,
        status TEXT,
        fulfilled_quantity INTEGER,
        price_per_card TEXT,
        amount_charged TEXT,
        amount_refunded TEXT,
        sealed_cards BLOB,
        sent_at REAL,
        placed_at REAL,
        final_at REAL,
        delivered_at REAL,
        attempts INTEGER NOT NULL,
        started_at REAL,
        next_at REAL NOT NULL,
        deadline REAL,
        stuck INTEGER NOT NULL,
        delivery_attempts INTEGER NOT NULL,
        last_error TEXT,
        adopted INTEGER NOT NULL,
        kind TEXT NOT NULL DEFAULT 'gift_card',
        params TEXT NOT NULL DEFAULT '{}',
        details TEXT NOT NULL DEFAULT '{}'
    )""",
    "CREATE INDEX IF NOT EXISTS orders_by_state ON orders (state, created_at)",
    "CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS settings (name TEXT PRIMARY KEY, value BLOB NOT NULL)",
]

# Columns added since version 1 (a file made before them gets them, with these defaults).
_ADDED = [
    ("kind", "TEXT NOT NULL DEFAULT 'gift_card'"),
    ("params", "TEXT NOT NULL DEFAULT '{}'"),
    ("details", "TEXT NOT NULL DEFAULT '{}'"),
]


def _migrate(c: sqlite3.Connection) -> None:
    """Create the schema, or bring an older file's up to `SCHEMA_VERSION` (in a transaction)."""
    version = int(c.execute("PRAGMA user_version").fetchone()[0])
    if version > SCHEMA_VERSION:
        raise ValueError(
            f"the tracker store's schema is version {version}, newer than this oneclickdz "
            f"knows ({SCHEMA_VERSION}): upgrade oneclickdz"
        )
    for statement in _SCHEMA:
        c.execute(statement)
    have = {row[1] for row in c.execute("PRAGMA table_info(orders)")}
    for column, definition in _ADDED:
        if column not in have:
            c.execute(f"ALTER TABLE orders ADD COLUMN {column} {definition}")
    if version != SCHEMA_VERSION:
        c.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def _dump(value: dict[str, Any]) -> str:
    """A top-up's or a link's params or details as JSON; a gift-card order's are always empty,
    and every save writes them: no encoder call for those (its hot path)."""
    return json.dumps(value) if value else "{}"


def _load(text: str) -> dict[str, Any]:
    if text == "{}":
        return {}
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def _dec(value: str | None) -> Decimal | None:
    return None if value is None else Decimal(value)


def _row(order: TrackedOrder) -> tuple[Any, ...]:
    o = order
    return (
        o.id, o.ref, o.product_id, o.type_id, o.quantity, json.dumps(o.meta), o.state.value,
        o.created_at, o.order_id, o.order_time, o.status, o.fulfilled_quantity,
        None if o.price_per_card is None else str(o.price_per_card),
        None if o.amount_charged is None else str(o.amount_charged),
        None if o.amount_refunded is None else str(o.amount_refunded),
        o.sealed_cards, o.sent_at, o.placed_at, o.final_at, o.delivered_at, o.attempts,
        o.started_at, o.next_at, o.deadline, int(o.stuck), o.delivery_attempts, o.last_error,
        int(o.adopted), o.kind.value, _dump(o.params), _dump(o.details),
    )  # fmt: skip


def _changes(o: TrackedOrder) -> tuple[Any, ...]:
    return (
        o.product_id, o.type_id, o.quantity, o.state.value, o.order_id, o.order_time, o.status,
        o.fulfilled_quantity,
        None if o.price_per_card is None else str(o.price_per_card),
        None if o.amount_charged is None else str(o.amount_charged),
        None if o.amount_refunded is None else str(o.amount_refunded),
        o.sealed_cards, o.sent_at, o.placed_at, o.final_at, o.delivered_at, o.attempts,
        o.started_at, o.next_at, o.deadline, int(o.stuck), o.delivery_attempts, o.last_error,
        _dump(o.params), _dump(o.details), o.id,
    )  # fmt: skip


_MARK = (
    "UPDATE orders SET state = ?, delivered_at = ?, last_error = ?, delivery_attempts = ? "
    "WHERE id = ?"
)


def _marker(o: TrackedOrder) -> tuple[Any, ...]:
    return (o.state.value, o.delivered_at, o.last_error, o.delivery_attempts, o.id)


def _order(row: Sequence[Any]) -> TrackedOrder:
    (
        id_, ref, product_id, type_id, quantity, meta, state, created_at, order_id, order_time,
        status, fulfilled_quantity, price, charged, refunded, sealed, sent_at, placed_at,
        final_at, delivered_at, attempts, started_at, next_at, deadline, stuck,
        delivery_attempts, last_error, adopted, kind, params, details,
    ) = row  # fmt: skip
    return TrackedOrder(
        id=id_, ref=ref, product_id=product_id, type_id=type_id, quantity=quantity,
        meta=json.loads(meta), state=State(state), created_at=created_at, order_id=order_id,
        order_time=order_time, status=status, fulfilled_quantity=fulfilled_quantity,
        price_per_card=_dec(price), amount_charged=_dec(charged), amount_refunded=_dec(refunded),
        sealed_cards=sealed, sent_at=sent_at, placed_at=placed_at, final_at=final_at,
        delivered_at=delivered_at, attempts=attempts, started_at=started_at, next_at=next_at,
        deadline=deadline, stuck=bool(stuck), delivery_attempts=delivery_attempts,
        last_error=last_error, adopted=bool(adopted), kind=Kind(kind), params=_load(params),
        details=_load(details),
    )  # fmt: skip


class SQLiteTrackerStore(TrackerStore):
    """`sqlite:///PATH`: the default store."""

    def __init__(self, url: str, *, busy_timeout: float = 10.0) -> None:
        if not url.startswith("sqlite:///"):
            raise ValueError(f"not a SQLite URL: {url!r}")
        self.url = url
        self.path = Path(url.removeprefix("sqlite:///"))
        self._busy_timeout = busy_timeout
        self._conn: sqlite3.Connection | None = None
        self._lock_file: IO[bytes] | None = None
        self._tx_lock = asyncio.Lock()

    @property
    def key_file(self) -> Path | None:
        return self.path.with_name(self.path.name + ".key")

    @property
    def _c(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError("the tracker store is not open")
        return self._conn

    async def open(self) -> None:
        if self._conn is not None:
            return
        if self.path.parent and not self.path.parent.exists():
            raise ValueError(f"no such directory for the tracker store: {self.path.parent}")
        conn = sqlite3.connect(
            self.path, isolation_level=None, timeout=self._busy_timeout, check_same_thread=False
        )
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA wal_autocheckpoint = 10000")  # fewer, larger checkpoints
        self._conn = conn
        try:
            with self._tx():
                _migrate(conn)
        except BaseException:
            conn.close()
            self._conn = None
            raise
        os.chmod(self.path, 0o600)

    async def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        await self.release_runner()

    async def release_runner(self) -> None:
        if self._lock_file is not None:
            self._lock_file.close()  # releases the flock
            self._lock_file = None

    async def acquire_runner(self) -> None:
        if self._lock_file is not None:
            raise RunnerActiveError(f"this process is already running the tracker of {self.path}")
        lock_path = self.path.with_name(self.path.name + ".lock")
        f = lock_path.open("ab")
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.close()
            raise RunnerActiveError(
                f"another `track run` is using {self.path} (it holds {lock_path})"
            ) from None
        self._lock_file = f

    def _tx(self, *, fsync: bool = False) -> _Transaction:
        return _Transaction(self._c, fsync=fsync)

    async def setting(self, name: str, default: bytes) -> bytes:
        with self._tx() as c:
            c.execute("INSERT OR IGNORE INTO settings (name, value) VALUES (?, ?)", (name, default))
            row = c.execute("SELECT value FROM settings WHERE name = ?", (name,)).fetchone()
        return bytes(row[0])

    async def insert(self, orders: Sequence[TrackedOrder]) -> None:
        async with self._tx_lock:
            try:
                with self._tx(fsync=True) as c:
                    c.executemany(_INSERT, [_row(o) for o in orders])
                    self._bump(c)
            except sqlite3.IntegrityError as exc:
                raise self._duplicate(orders, exc) from None

    def _duplicate(self, orders: Sequence[TrackedOrder], exc: sqlite3.IntegrityError) -> Exception:
        for o in orders:
            for column, value in (("order_id", o.order_id), ("ref", o.ref), ("id", o.id)):
                if (
                    value is not None
                    and self._c.execute(
                        f"SELECT 1 FROM orders WHERE {column} = ?", (value,)
                    ).fetchone()
                ):
                    return DuplicateOrderError(value)
        return exc

    @staticmethod
    def _bump(c: sqlite3.Connection) -> None:
        c.execute(
            "INSERT INTO counters (name, value) VALUES ('_revision', 1) "
            "ON CONFLICT (name) DO UPDATE SET value = value + 1"
        )

    async def save(
        self, orders: Sequence[TrackedOrder], counters: Mapping[str, int] | None = None
    ) -> set[str]:
        async with self._tx_lock:
            with self._tx() as c:
                c.executemany(_SAVE, [_changes(o) for o in orders])
                if counters:
                    c.executemany(
                        "INSERT INTO counters (name, value) VALUES (?, ?) "
                        "ON CONFLICT (name) DO UPDATE SET value = value + excluded.value",
                        list(counters.items()),
                    )
        return set()  # one runner per store: nothing is ever taken over

    async def publish(self, order: TrackedOrder) -> bool:
        async with self._tx_lock:
            with self._tx(fsync=True) as c:
                written = c.execute(_PUBLISH, (*_changes(order), *_TO_PLACE)).rowcount
                if written:
                    self._bump(c)
        return written == 1

    async def deliver(self, order: TrackedOrder, effect: TxEffect | None = None) -> None:
        async with self._tx_lock:
            with self._tx() as c:
                if effect is not None:
                    result = effect(c)
                    if inspect.isawaitable(result):
                        await result
                c.execute(_MARK, _marker(order))

    async def deliver_many(self, orders: Sequence[TrackedOrder]) -> set[str]:
        async with self._tx_lock:
            with self._tx() as c:
                c.executemany(_MARK, [_marker(o) for o in orders])
        return set()

    async def get(self, ident: str) -> TrackedOrder | None:
        row = self._c.execute(
            f"{_SELECT} WHERE id = ? OR order_id = ? OR ref = ? LIMIT 1", (ident, ident, ident)
        ).fetchone()
        return None if row is None else _order(row)

    async def select(
        self,
        states: Collection[State] | None = None,
        *,
        stuck: bool | None = None,
        kind: Kind | None = None,
    ) -> list[TrackedOrder]:
        where: list[str] = []
        params: list[Any] = []
        if states is not None:
            where.append(f"state IN ({', '.join('?' for _ in states)})")
            params += [s.value for s in states]
        if stuck is not None:
            where.append("stuck = ?")
            params.append(int(stuck))
        if kind is not None:
            where.append("kind = ?")
            params.append(kind.value)
        sql = _SELECT + (f" WHERE {' AND '.join(where)}" if where else "") + " ORDER BY rowid"
        return [_order(row) for row in self._c.execute(sql, params)]

    async def unsettled_ids(self) -> set[str]:
        marks = ", ".join("?" for _ in _SETTLED)
        rows = self._c.execute(f"SELECT id FROM orders WHERE state NOT IN ({marks})", _SETTLED)
        return {row[0] for row in rows}

    async def load(self, ids: Collection[str]) -> list[TrackedOrder]:
        found: list[TrackedOrder] = []
        ids = list(ids)
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            sql = f"{_SELECT} WHERE id IN ({', '.join('?' for _ in chunk)}) ORDER BY rowid"
            found += [_order(row) for row in self._c.execute(sql, chunk)]
        return found

    async def revision(self) -> int:
        row = self._c.execute("SELECT value FROM counters WHERE name = '_revision'").fetchone()
        return 0 if row is None else int(row[0])

    async def requeue(
        self, ident: str, from_states: Collection[State]
    ) -> tuple[TrackedOrder | None, bool]:
        async with self._tx_lock:
            with self._tx(fsync=True) as c:
                row = c.execute(
                    f"{_SELECT} WHERE id = ? OR order_id = ? OR ref = ? LIMIT 1",
                    (ident, ident, ident),
                ).fetchone()
                if row is None:
                    return None, False
                order = _order(row)
                if order.state not in from_states:
                    return order, False
                order.requeue_for_delivery()
                c.execute(_SAVE, _changes(order))
                self._bump(c)
        return order, True

    async def counters(self) -> dict[str, int]:
        rows = self._c.execute(
            "SELECT name, value FROM counters WHERE name NOT LIKE '\\_%' ESCAPE '\\'"
        )
        return {name: int(value) for name, value in rows}

    async def state_counts(self) -> dict[str, int]:
        counts = {
            state: int(n)
            for state, n in self._c.execute("SELECT state, COUNT(*) FROM orders GROUP BY state")
        }
        stuck = self._c.execute("SELECT COUNT(*) FROM orders WHERE stuck = 1").fetchone()[0]
        counts["stuck"] = int(stuck)
        return counts

    async def latencies(self) -> tuple[list[float], list[float]]:
        rows = self._c.execute(
            "SELECT COALESCE(order_time, placed_at), final_at, delivered_at FROM orders "
            "WHERE state = 'delivered' AND final_at IS NOT NULL"
        ).fetchall()
        to_final = [final - placed for placed, final, _ in rows if placed is not None]
        to_delivered = [done - final for _, final, done in rows if done is not None]
        return to_final, to_delivered


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT (fsynced with `fsync`), or ROLLBACK on any exception."""

    def __init__(self, conn: sqlite3.Connection, *, fsync: bool = False) -> None:
        self._c = conn
        self._fsync = fsync

    def __enter__(self) -> sqlite3.Connection:
        if self._fsync:
            self._c.execute("PRAGMA synchronous = FULL")
        self._c.execute("BEGIN IMMEDIATE")
        return self._c

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        try:
            self._c.execute("COMMIT" if exc_type is None else "ROLLBACK")
        finally:
            if self._fsync:
                self._c.execute("PRAGMA synchronous = NORMAL")
