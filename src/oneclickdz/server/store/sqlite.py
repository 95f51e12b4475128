"""The SQLite store: WAL mode, durable commits, and group commit through one writer thread.

Every write runs in `BEGIN IMMEDIATE` (the write lock is taken before the first read, so a
read-then-write decision cannot be invalidated by another writer, in this process or another).
Writes submitted together share one transaction and one fsync; each runs inside its own
SAVEPOINT, so one that fails is rolled back alone. Reads go through a per-thread, query-only
connection and never wait for the writer (WAL readers see the last committed state).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

from oneclickdz.server.store.base import StoreBusy, Tx
from oneclickdz.server.store.schema import MIGRATIONS
from oneclickdz.server.store.sqlite_reader import SqliteReader
from oneclickdz.server.store.sqlite_repos import SqliteOrders, SqliteTx

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


def _connect(path: Path, busy_timeout: float, *, read_only: bool = False) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
    conn.execute("PRAGMA synchronous = FULL")  # a commit is on disk when it returns
    conn.execute("PRAGMA foreign_keys = ON")
    if read_only:
        conn.execute("PRAGMA query_only = ON")
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
        try:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode != "wal":
                raise RuntimeError(f"could not put {self.path} in WAL mode (got {mode!r})")
            self._migrate(conn)
        except BaseException:
            self.close()
            raise

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
        """The calling thread's connection for writes."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._open(read_only=False)
            self._local.conn = conn
        return conn

    def _open(self, *, read_only: bool) -> sqlite3.Connection:
        conn = _connect(self.path, self.busy_timeout, read_only=read_only)
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

    def reader(self) -> SqliteReader:
        """The calling thread's reader (made once per thread, on its own query-only connection)."""
        reader: SqliteReader | None = getattr(self._local, "reader", None)
        if reader is None:
            reader = self._local.reader = SqliteReader(self._read_connection())
        return reader

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
        """Orders by (env, status), counted now on the calling thread (the metrics call this off
        the event loop)."""
        return SqliteOrders(self._read_connection()).counts()

    def _read_connection(self) -> sqlite3.Connection:
        """The calling thread's query-only connection."""
        conn: sqlite3.Connection | None = getattr(self._local, "read_conn", None)
        if conn is None:
            conn = self._local.read_conn = self._open(read_only=True)
        return conn

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
