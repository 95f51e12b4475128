"""The SQLite store: WAL mode, durable commits, and group commit through one writer thread.

Every write runs in `BEGIN IMMEDIATE` (the write lock is taken before the first read, so a
read-then-write decision cannot be invalidated by another writer, in this process or another).
Writes submitted together share one transaction and one fsync (`batching`). Reads go through a
per-thread, query-only connection and never wait for the writer (WAL readers see the last
committed state).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from oneclickdz.server.store.base import StoreBusy, Tx
from oneclickdz.server.store.batching import GroupCommit, Outcome, run_batch
from oneclickdz.server.store.reader import RepositoryReader
from oneclickdz.server.store.schema import MIGRATIONS
from oneclickdz.server.store.sqlite_repos import SqliteOrders, SqliteTx

T = TypeVar("T")
log = logging.getLogger("oneclickdz.server.store")

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


class _SqliteOps:
    """`BatchOps` on one connection."""

    __slots__ = ("_c", "tx")

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._c = conn
        self.tx: Tx = SqliteTx(conn)

    def begin(self) -> None:
        """Take the write lock now, or say the database is busy once the wait runs out."""
        try:
            self._c.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise StoreBusy("the database is locked by another writer") from exc
            raise

    def savepoint(self) -> None:
        self._c.execute("SAVEPOINT job")

    def release(self) -> None:
        self._c.execute("RELEASE job")

    def rollback_to(self) -> None:
        self._c.execute("ROLLBACK TO job")
        self._c.execute("RELEASE job")

    def commit(self) -> None:
        self._c.execute("COMMIT")

    def rollback(self) -> None:
        if self._c.in_transaction:
            self._c.execute("ROLLBACK")

    def aborts_batch(self, exc: BaseException) -> bool:
        return False  # the write lock is held since BEGIN: no job can deadlock another


class SqliteStore:
    """A `Store` on one SQLite file."""

    def __init__(self, url: str, busy_timeout: float = DEFAULT_BUSY_TIMEOUT) -> None:
        self.path = sqlite_path(url)
        self.busy_timeout = busy_timeout
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._writer = GroupCommit(self._run_batch)
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
        self._writer.start()

    def close(self) -> None:
        """Finish every queued write, then close all connections."""
        self._writer.stop()
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

    def reader(self) -> RepositoryReader:
        """The calling thread's reader (made once per thread, on its own query-only connection)."""
        reader: RepositoryReader | None = getattr(self._local, "reader", None)
        if reader is None:
            tx = SqliteTx(self._read_connection())

            async def run(fn: Callable[[Tx], Any]) -> Any:
                return fn(tx)

            reader = self._local.reader = RepositoryReader(run)
        return reader

    async def write(self, fn: Callable[[Tx], T]) -> T:
        if not self._writer.running:
            return self.write_sync(fn)
        return await self._writer.submit(fn)

    def write_sync(self, fn: Callable[[Tx], T]) -> T:
        if self._writer.running and not self._writer.on_writer_thread():
            return self._writer.submit_sync(fn)
        with self._direct_lock:
            result, exc = run_batch(_SqliteOps(self._connection()), [fn])[0]
            if exc is not None:
                raise exc
            return result  # type: ignore[no-any-return]

    # -- read-only figures for the metrics -------------------------------------------------

    def write_queue_depth(self) -> int:
        """Writes submitted and not yet taken by the writer thread (approximate, lock-free)."""
        return self._writer.depth()

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

    def _run_batch(self, jobs: list[Callable[[Tx], Any]]) -> list[Outcome]:
        """On the writer thread: the batch in one transaction; if that fails as a whole (the
        database is busy, the disk is full), none of it happened and every job says why."""
        try:
            return run_batch(_SqliteOps(self._connection()), jobs)
        except Exception as exc:
            if isinstance(exc, StoreBusy):
                log.warning("database busy", extra={"jobs": len(jobs)})
            else:
                log.exception("write batch failed", extra={"jobs": len(jobs)})
            return [(None, exc)] * len(jobs)
