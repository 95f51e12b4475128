"""The SQLite store: WAL mode, durable commits, and group commit through one writer thread.

Every write runs in `BEGIN IMMEDIATE` (the write lock is taken before the first read, so a
read-then-write decision cannot be invalidated by another writer, in this process or another).
Writes submitted together share one transaction and one fsync; each runs inside its own
SAVEPOINT, so one that fails is rolled back alone. Reads go through a per-thread connection and
never wait for the writer (WAL readers see the last committed state).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

from oneclickdz.server.store.base import (
    Env,
    KeyRecord,
    OrderRecord,
    ProductRecord,
    Scope,
    StoreBusy,
    TimeRange,
    TransactionRecord,
    Tx,
    TypeRecord,
)
from oneclickdz.server.store.schema import MIGRATIONS

T = TypeVar("T")
log = logging.getLogger("oneclickdz.server.store")

MAX_BATCH = 512
DEFAULT_BUSY_TIMEOUT = 5.0  # seconds a write waits for another process's lock


def sqlite_path(url: str) -> Path:
    """The file of a `sqlite:///relative/path` or `sqlite:////absolute/path` URL."""
    parts = urlsplit(url)
    if parts.scheme != "sqlite" or parts.netloc or not parts.path.startswith("/"):
        raise ValueError(f"not a SQLite URL (expected sqlite:///path/to/file.db): {url!r}")
    path = parts.path[1:]
    if not path or path == ":memory:":
        raise ValueError("the service needs a database file; in-memory SQLite is not supported")
    return Path(path)


def _connect(path: Path, busy_timeout: float) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
    conn.execute("PRAGMA synchronous = FULL")  # a commit is on disk when it returns
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


class SqliteStore:
    """A `Store` on one SQLite file."""

    def __init__(self, url: str, busy_timeout: float = DEFAULT_BUSY_TIMEOUT) -> None:
        self.path = sqlite_path(url)
        self.busy_timeout = busy_timeout
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._direct_lock = threading.Lock()
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        conn = self._connection()
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode != "wal":
            raise RuntimeError(f"could not put {self.path} in WAL mode (got {mode!r})")
        self._migrate(conn)

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Start the writer thread; until then writes run directly on the caller's thread."""
        if self._writer is None:
            self._writer = threading.Thread(
                target=self._write_loop, name="oneclickdz-db-writer", daemon=True
            )
            self._writer.start()

    def close(self) -> None:
        """Finish every queued write, then close all connections."""
        if self._writer is not None:
            self._queue.put(None)
            self._writer.join()
            self._writer = None
        with self._connections_lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()
        self._local = threading.local()

    def _connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = _connect(self.path, self.busy_timeout)
            self._local.conn = conn
            with self._connections_lock:
                self._connections.append(conn)
        return conn

    def _migrate(self, conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            if version > len(MIGRATIONS):
                raise RuntimeError(
                    f"{self.path} is at schema version {version}, newer than this "
                    f"oneclickdz ({len(MIGRATIONS)}); upgrade oneclickdz"
                )
            for number, statements in enumerate(MIGRATIONS[version:], start=version + 1):
                for statement in statements:
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {number}")
                log.info("schema migrated", extra={"version": number})
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    # -- reads and writes ------------------------------------------------------------------

    def reader(self) -> Tx:
        return SqliteTx(self._connection())

    async def write(self, fn: Callable[[Tx], T]) -> T:
        if self._writer is None:
            return self.write_sync(fn)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._queue.put(_Job(fn, loop, future))
        return cast(T, await future)

    def write_sync(self, fn: Callable[[Tx], T]) -> T:
        if self._writer is not None and threading.current_thread() is not self._writer:
            future: concurrent.futures.Future[Any] = concurrent.futures.Future()
            self._queue.put(_Job(fn, None, future))
            return cast(T, future.result())
        with self._direct_lock:
            conn = self._connection()
            _begin(conn)
            try:
                result = fn(SqliteTx(conn))
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return result

    # -- read-only figures for the metrics -------------------------------------------------

    def write_queue_depth(self) -> int:
        """Writes submitted and not yet taken by the writer thread (approximate, lock-free)."""
        return self._queue.qsize()

    def order_counts(self) -> dict[tuple[str, str], int]:
        """Orders by (env, status), counted now on the calling thread's connection."""
        rows = self._connection().execute(
            "SELECT env, status, COUNT(*) FROM orders GROUP BY env, status"
        )
        return {(str(env), str(status)): int(count) for env, status, count in rows}

    def _write_loop(self) -> None:
        conn = self._connection()
        tx = SqliteTx(conn)
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is None:
                break
            batch = [first]
            while len(batch) < MAX_BATCH:
                try:
                    job = self._queue.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    stopping = True
                    break
                batch.append(job)
            self._run_batch(conn, tx, batch)

    def _run_batch(self, conn: sqlite3.Connection, tx: SqliteTx, batch: list[_Job]) -> None:
        outcomes: list[tuple[_Job, Any, BaseException | None]] = []
        try:
            _begin(conn)
            for job in batch:
                conn.execute("SAVEPOINT job")
                try:
                    result = job.fn(tx)
                except Exception as exc:
                    conn.execute("ROLLBACK TO job")
                    conn.execute("RELEASE job")
                    outcomes.append((job, None, exc))
                else:
                    conn.execute("RELEASE job")
                    outcomes.append((job, result, None))
            conn.execute("COMMIT")
        except Exception as exc:  # the batch as a whole did not commit: nothing of it happened
            if isinstance(exc, StoreBusy):
                log.warning("database busy", extra={"jobs": len(batch)})
            else:
                log.exception("write batch failed", extra={"jobs": len(batch)})
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            outcomes = [(job, None, exc) for job in batch]
        _settle(outcomes)


def _begin(conn: sqlite3.Connection) -> None:
    """Take the write lock now, or say the database is busy once the wait runs out."""
    try:
        conn.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc) or "busy" in str(exc):
            raise StoreBusy("the database is locked by another writer") from exc
        raise


class _Job:
    __slots__ = ("fn", "future", "loop")

    def __init__(
        self,
        fn: Callable[[Tx], Any],
        loop: asyncio.AbstractEventLoop | None,
        future: asyncio.Future[Any] | concurrent.futures.Future[Any],
    ) -> None:
        self.fn = fn
        self.loop = loop
        self.future = future


def _settle(outcomes: list[tuple[_Job, Any, BaseException | None]]) -> None:
    """Hand results back: one wake-up per event loop for the whole batch."""
    per_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], Any, Any]]] = {}
    for job, result, exc in outcomes:
        if job.loop is None:
            sync_future = cast("concurrent.futures.Future[Any]", job.future)
            if exc is None:
                sync_future.set_result(result)
            else:
                sync_future.set_exception(exc)
        else:
            per_loop.setdefault(job.loop, []).append(
                (cast("asyncio.Future[Any]", job.future), result, exc)
            )
    for loop, items in per_loop.items():
        try:
            loop.call_soon_threadsafe(_settle_async, items)
        except RuntimeError:  # the loop is closed: its callers are gone
            log.warning("write results dropped: event loop closed", extra={"jobs": len(items)})


def _settle_async(items: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    for future, result, exc in items:
        if future.cancelled():
            continue
        if exc is None:
            future.set_result(result)
        else:
            future.set_exception(exc)


_ORDER_COLUMNS = (
    "id, account_id, env, key_id, ref, product_id, type_id, quantity, price_cents, status, "
    "fulfilled_quantity, time, due_at"
)
# One statement for checkOrder, the hottest read: the order and its cards in delivery order.
_ORDER_WITH_CARDS = (
    "SELECT o.id, o.account_id, o.env, o.key_id, o.ref, o.product_id, o.type_id, o.quantity, "
    "o.price_cents, o.status, o.fulfilled_quantity, o.time, o.due_at, c.secret "
    "FROM orders o LEFT JOIN cards c ON c.order_id = o.id WHERE o.id = ? ORDER BY c.position"
)
_TX_COLUMNS = (
    "id, type, operation, amount_cents, old_balance_cents, new_balance_cents, objid, note, time"
)


def _window_sql(window: TimeRange) -> tuple[str, dict[str, str]]:
    clauses, params = "", {}
    if window.start is not None:
        clauses += " AND time >= :start"
        params["start"] = window.start
    if window.end is not None:
        clauses += " AND time <= :end"
        params["end"] = window.end
    return clauses, params


class SqliteTx:
    """The `Tx` operations as SQL on one connection."""

    __slots__ = ("_c",)

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._c = conn

    # accounts and keys
    def account_id(self, name: str) -> int | None:
        row = self._c.execute("SELECT id FROM accounts WHERE name = ?", (name,)).fetchone()
        return None if row is None else int(row[0])

    def insert_account(self, name: str, now: str) -> int:
        cur = self._c.execute("INSERT INTO accounts (name, created_at) VALUES (?, ?)", (name, now))
        account_id = cast(int, cur.lastrowid)
        self._c.executemany(
            "INSERT INTO balances (account_id, env, balance_cents) VALUES (?, ?, 0)",
            [(account_id, "SANDBOX"), (account_id, "PRODUCTION")],
        )
        return account_id

    def insert_key(
        self,
        key_hash: bytes,
        hint: str,
        account_id: int,
        env: Env,
        scope: Scope,
        allowed_ips: Sequence[str],
        now: str,
    ) -> int:
        cur = self._c.execute(
            "INSERT INTO api_keys (key_hash, key_hint, account_id, env, scope, allowed_ips, "
            "created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (key_hash, hint, account_id, env, scope, json.dumps(list(allowed_ips)), now),
        )
        return cast(int, cur.lastrowid)

    def find_key(self, key_hash: bytes) -> tuple[bytes, KeyRecord] | None:
        row = self._c.execute(
            "SELECT k.key_hash, k.id, k.account_id, a.name, k.env, k.scope, k.enabled, "
            "k.allowed_ips, k.key_hint FROM api_keys k JOIN accounts a ON a.id = k.account_id "
            "WHERE k.key_hash = ?",
            (key_hash,),
        ).fetchone()
        if row is None:
            return None
        return bytes(row[0]), KeyRecord(
            id=row[1],
            account_id=row[2],
            account_name=row[3],
            env=row[4],
            scope=row[5],
            enabled=bool(row[6]),
            allowed_ips=tuple(json.loads(row[7])),
            hint=row[8],
        )

    def set_key_enabled(self, key_hash: bytes, enabled: bool) -> bool:
        cur = self._c.execute(
            "UPDATE api_keys SET enabled = ? WHERE key_hash = ?", (int(enabled), key_hash)
        )
        return cur.rowcount == 1

    # ledger
    def balance(self, account_id: int, env: Env) -> int:
        row = self._c.execute(
            "SELECT balance_cents FROM balances WHERE account_id = ? AND env = ?",
            (account_id, env),
        ).fetchone()
        return 0 if row is None else int(row[0])

    def set_balance(self, account_id: int, env: Env, old_cents: int, new_cents: int) -> None:
        cur = self._c.execute(
            "UPDATE balances SET balance_cents = ? "
            "WHERE account_id = ? AND env = ? AND balance_cents = ?",
            (new_cents, account_id, env, old_cents),
        )
        if cur.rowcount != 1:  # someone moved the balance under us: refuse, never overwrite
            raise RuntimeError("balance changed during the transaction")

    def insert_transaction(self, account_id: int, env: Env, record: TransactionRecord) -> None:
        self._c.execute(
            "INSERT INTO transactions (id, account_id, env, type, operation, amount_cents, "
            "old_balance_cents, new_balance_cents, objid, note, time) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                record.id,
                account_id,
                env,
                record.type,
                record.operation,
                record.amount_cents,
                record.old_balance_cents,
                record.new_balance_cents,
                record.objid,
                record.note,
                record.time,
            ),
        )

    def transactions(
        self, account_id: int, env: Env, window: TimeRange, limit: int, offset: int
    ) -> tuple[list[TransactionRecord], int]:
        where, params = _window_sql(window)
        params_all: dict[str, Any] = {"a": account_id, "e": env, **params}
        total = self._c.execute(
            f"SELECT COUNT(*) FROM transactions WHERE account_id = :a AND env = :e{where}",
            params_all,
        ).fetchone()[0]
        rows = self._c.execute(
            f"SELECT {_TX_COLUMNS} FROM transactions WHERE account_id = :a AND env = :e{where} "
            "ORDER BY time DESC, seq DESC LIMIT :limit OFFSET :offset",
            {**params_all, "limit": limit, "offset": offset},
        ).fetchall()
        return [TransactionRecord(*row) for row in rows], int(total)

    # catalog
    def upsert_product(self, product: ProductRecord, position: int) -> None:
        self._c.execute(
            "INSERT INTO products (id, title, category, enabled, region, position) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET title = excluded.title, "
            "category = excluded.category, enabled = excluded.enabled, "
            "region = excluded.region, position = excluded.position",
            (
                product.id,
                product.title,
                product.category,
                int(product.enabled),
                product.region,
                position,
            ),
        )

    def upsert_type(self, ptype: TypeRecord, position: int) -> None:
        self._c.execute(
            "INSERT INTO product_types (product_id, id, name, price_cents, sandbox_stock, "
            "position) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (product_id, id) DO UPDATE SET "
            "name = excluded.name, price_cents = excluded.price_cents, "
            "sandbox_stock = excluded.sandbox_stock, position = excluded.position",
            (ptype.product_id, ptype.id, ptype.name, ptype.price_cents, ptype.sandbox_stock,
             position),
        )  # fmt: skip

    def product(self, product_id: str) -> ProductRecord | None:
        row = self._c.execute(
            "SELECT id, title, category, enabled, region FROM products WHERE id = ?",
            (product_id,),
        ).fetchone()
        return None if row is None else ProductRecord(row[0], row[1], row[2], bool(row[3]), row[4])

    def product_types(self, product_id: str) -> list[TypeRecord]:
        rows = self._c.execute(
            "SELECT product_id, id, name, price_cents, sandbox_stock FROM product_types "
            "WHERE product_id = ? ORDER BY position, id",
            (product_id,),
        ).fetchall()
        return [TypeRecord(*row) for row in rows]

    def product_type(self, product_id: str, type_id: str) -> TypeRecord | None:
        row = self._c.execute(
            "SELECT product_id, id, name, price_cents, sandbox_stock FROM product_types "
            "WHERE product_id = ? AND id = ?",
            (product_id, type_id),
        ).fetchone()
        return None if row is None else TypeRecord(*row)

    def catalog(self) -> list[ProductRecord]:
        rows = self._c.execute(
            "SELECT id, title, category, enabled, region FROM products ORDER BY position, id"
        ).fetchall()
        return [ProductRecord(r[0], r[1], r[2], bool(r[3]), r[4]) for r in rows]

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
    ) -> int:
        cur = self._c.execute(
            "INSERT INTO cards (product_id, type_id, secret, fingerprint, order_id, position, "
            "added_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (product_id, type_id, secret, fingerprint, order_id, position, now),
        )
        return cast(int, cur.lastrowid)

    def fingerprints_present(self, fingerprints: Sequence[bytes]) -> set[bytes]:
        found: set[bytes] = set()
        for start in range(0, len(fingerprints), 500):
            chunk = fingerprints[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._c.execute(
                f"SELECT fingerprint FROM cards WHERE fingerprint IN ({marks})", chunk
            ).fetchall()
            found.update(bytes(r[0]) for r in rows)
        return found

    def unsold_counts(self, product_id: str) -> dict[str, int]:
        rows = self._c.execute(
            "SELECT type_id, COUNT(*) FROM cards WHERE product_id = ? AND order_id IS NULL "
            "GROUP BY type_id",
            (product_id,),
        ).fetchall()
        return {row[0]: int(row[1]) for row in rows}

    def sell_cards(self, product_id: str, type_id: str, order_id: str, count: int) -> int:
        ids = [
            row[0]
            for row in self._c.execute(
                "SELECT id FROM cards WHERE product_id = ? AND type_id = ? AND order_id IS NULL "
                "ORDER BY id LIMIT ?",
                (product_id, type_id, count),
            )
        ]
        sold = 0
        for position, card_id in enumerate(ids):
            cur = self._c.execute(
                "UPDATE cards SET order_id = ?, position = ? WHERE id = ? AND order_id IS NULL",
                (order_id, position, card_id),
            )
            sold += cur.rowcount
        return sold

    def next_card_id(self) -> int:
        return int(self._c.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM cards").fetchone()[0])

    def cards_secrets_for_orders(self, order_ids: Sequence[str]) -> dict[str, list[bytes]]:
        result: dict[str, list[bytes]] = {}
        if not order_ids:
            return result
        marks = ",".join("?" * len(order_ids))
        for order_id, secret in self._c.execute(
            f"SELECT order_id, secret FROM cards WHERE order_id IN ({marks}) "
            "ORDER BY order_id, position",
            list(order_ids),
        ):
            result.setdefault(order_id, []).append(bytes(secret))
        return result

    # orders
    def insert_order(self, order: OrderRecord) -> None:
        self._c.execute(
            f"INSERT INTO orders ({_ORDER_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                order.id,
                order.account_id,
                order.env,
                order.key_id,
                order.ref,
                order.product_id,
                order.type_id,
                order.quantity,
                order.price_cents,
                order.status,
                order.fulfilled_quantity,
                order.time,
                order.due_at,
            ),
        )

    def order(self, order_id: str) -> OrderRecord | None:
        row = self._c.execute(
            f"SELECT {_ORDER_COLUMNS} FROM orders WHERE id = ?", (order_id,)
        ).fetchone()
        return None if row is None else OrderRecord(*row)

    def order_with_cards(self, order_id: str) -> tuple[OrderRecord, list[bytes]] | None:
        rows = self._c.execute(_ORDER_WITH_CARDS, (order_id,)).fetchall()
        if not rows:
            return None
        secrets = [bytes(row[-1]) for row in rows if row[-1] is not None]
        return OrderRecord(*rows[0][:-1]), secrets

    def order_id_by_ref(self, key_id: int, ref: str) -> str | None:
        row = self._c.execute(
            "SELECT id FROM orders WHERE key_id = ? AND ref = ?", (key_id, ref)
        ).fetchone()
        return None if row is None else str(row[0])

    def finish_order(self, order_id: str, status: str, fulfilled: int, now: str) -> bool:
        cur = self._c.execute(
            "UPDATE orders SET status = ?, fulfilled_quantity = ?, final_at = ? "
            "WHERE id = ? AND status = 'HANDLING'",
            (status, fulfilled, now, order_id),
        )
        return cur.rowcount == 1

    def handling_orders(self) -> list[tuple[float, str]]:
        rows = self._c.execute(
            "SELECT due_at, id FROM orders WHERE status = 'HANDLING' ORDER BY due_at"
        ).fetchall()
        return [(float(r[0]), str(r[1])) for r in rows]

    def orders(
        self, account_id: int, env: Env, window: TimeRange, limit: int, offset: int
    ) -> tuple[list[OrderRecord], int]:
        where, params = _window_sql(window)
        params_all: dict[str, Any] = {"a": account_id, "e": env, **params}
        total = self._c.execute(
            f"SELECT COUNT(*) FROM orders WHERE account_id = :a AND env = :e{where}", params_all
        ).fetchone()[0]
        rows = self._c.execute(
            f"SELECT {_ORDER_COLUMNS} FROM orders WHERE account_id = :a AND env = :e{where} "
            "ORDER BY time DESC, rowid DESC LIMIT :limit OFFSET :offset",
            {**params_all, "limit": limit, "offset": offset},
        ).fetchall()
        return [OrderRecord(*row) for row in rows], int(total)

    # settings
    def setting(self, name: str) -> str | None:
        row = self._c.execute("SELECT value FROM settings WHERE name = ?", (name,)).fetchone()
        return None if row is None else str(row[0])

    def set_setting(self, name: str, value: str) -> None:
        self._c.execute(
            "INSERT INTO settings (name, value) VALUES (?, ?) "
            "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            (name, value),
        )
