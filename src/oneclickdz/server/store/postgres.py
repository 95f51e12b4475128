"""The PostgreSQL store: several service processes on one database.

Writes go through this process's writer thread and are group-committed like SQLite's
(`batching`), on a connection of their own; the server's `synchronous_commit` makes each
commit durable. Writers of other processes run at the same time, so the repositories let the
database decide every race (`postgres_repos`). A batch that the database aborts as a whole —
a deadlock between two processes' batches, a lost connection — is replayed one write at a
time, each retried on a deadlock or serialization failure; a write that waits longer than the
busy timeout for a row lock is `StoreBusy` (a 503 the client retries).

Reads run in a small thread pool, each on a pooled connection whose transactions are
read-only, so a network round trip never blocks the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import psycopg
from psycopg import errors
from psycopg_pool import ConnectionPool, PoolTimeout

from oneclickdz._redact import one_line, safe_url
from oneclickdz.server.store.base import StoreBusy, StoreUnavailable, Tx
from oneclickdz.server.store.batching import GroupCommit, Outcome, run_batch_replaying
from oneclickdz.server.store.postgres_repos import (
    BatchedPgTx,
    Connection,
    DeferredConflict,
    PgOrders,
    PgTx,
)
from oneclickdz.server.store.postgres_schema import MIGRATION_LOCK, MIGRATIONS, VERSION_TABLE
from oneclickdz.server.store.reader import RepositoryReader

T = TypeVar("T")
log = logging.getLogger("oneclickdz.server.store")

READ_THREADS = 8  # concurrent reads per process (and pooled read connections)
MAX_BATCH = 256  # writes per transaction (no savepoints: see `run_batch_replaying`)
RETRIES = 5  # attempts of one write that keeps meeting deadlocks or serialization failures
CONNECT_TIMEOUT = 10  # seconds
# What makes a batch replay its unsettled writes one by one.
_REPLAYED = (psycopg.Error, DeferredConflict)


class _PgOps:
    """`PlainOps` on one autocommit connection in pipeline mode: statements whose results are
    not needed go out with the next one that is, and a commit waits for the server's answer.
    A batch of several writes runs them on a `BatchedPgTx` (balances held and written back
    once, catalog reads remembered, new orders checked at the end); a write alone runs on a
    `PgTx`, where every refusal is exact."""

    __slots__ = ("_batched", "_c", "_pipeline", "tx")

    def __init__(self, conn: Connection, pipeline: psycopg.Pipeline, batched: bool) -> None:
        self._c = conn
        self._pipeline = pipeline
        self._batched = batched
        self.tx: Tx = PgTx(conn)

    def begin(self) -> None:
        self.tx = BatchedPgTx(self._c) if self._batched else PgTx(self._c)
        self._c.execute("BEGIN")

    def commit(self) -> None:
        if isinstance(self.tx, BatchedPgTx):
            self.tx.settle()
        self._c.execute("COMMIT")
        self._pipeline.sync()  # durable (or refused) now, before any result is handed back

    def rollback(self) -> None:
        if self._c.closed or self._c.broken:
            return
        try:
            self._c.execute("ROLLBACK")
            self._pipeline.sync()
        except psycopg.Error:  # the connection died under us: the server rolled back
            log.warning("rollback failed; the connection is discarded")

    def aborts_batch(self, exc: BaseException) -> bool:
        # Any database error: in pipeline mode it may surface in a later write than its own.
        return isinstance(exc, _REPLAYED)


class PgStore:
    """A `Store` on one PostgreSQL database (any schema the URL's search_path selects)."""

    def __init__(self, url: str, busy_timeout: float = 5.0, read_threads: int = READ_THREADS):
        self.url = url
        self.busy_timeout = busy_timeout
        lock_ms = max(1, int(busy_timeout * 1000))

        def configure_writer(conn: Connection) -> None:
            conn.execute(f"SET lock_timeout = {lock_ms}")

        def configure_reader(conn: Connection) -> None:
            conn.execute("SET default_transaction_read_only = on")

        self._write_pool: ConnectionPool[Connection] = ConnectionPool(
            url, min_size=1, max_size=2, kwargs={"autocommit": True},
            configure=configure_writer, open=False, name="oneclickdz-write",
        )  # fmt: skip
        self._read_pool: ConnectionPool[Connection] = ConnectionPool(
            url, min_size=1, max_size=read_threads, kwargs={"autocommit": True},
            configure=configure_reader, open=False, name="oneclickdz-read",
        )  # fmt: skip
        self._executor = ThreadPoolExecutor(read_threads, thread_name_prefix="oneclickdz-db-read")
        self._writer = GroupCommit(self._run_batch, MAX_BATCH)
        self._direct_lock = threading.Lock()
        self._reader = RepositoryReader(self._run_read)
        try:
            # One plain connection first: a server that is not there is its own error, at once.
            with psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT) as conn:
                self._migrate(conn)
            for pool in (self._write_pool, self._read_pool):
                pool.open(wait=True, timeout=CONNECT_TIMEOUT)
        except psycopg.OperationalError as exc:
            self.close()
            raise StoreUnavailable(f"cannot connect to {safe_url(url)}: {one_line(exc)}") from None
        except PoolTimeout:
            self.close()
            raise StoreUnavailable(
                f"cannot connect to {safe_url(url)} within {CONNECT_TIMEOUT:g} s "
                "(is PostgreSQL running, and do the user, database and password match?)"
            ) from None
        except BaseException:
            self.close()
            raise

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Start the writer thread; until then writes run directly on the caller's thread."""
        self._writer.start()

    def close(self) -> None:
        """Finish every queued write, then close the pools."""
        self._writer.stop()
        self._executor.shutdown(wait=True)
        self._write_pool.close()
        self._read_pool.close()

    def _migrate(self, conn: Connection) -> None:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
            conn.execute(f"CREATE TABLE IF NOT EXISTS {VERSION_TABLE} (version INTEGER NOT NULL)")
            row = conn.execute(f"SELECT version FROM {VERSION_TABLE}").fetchone()
            if row is None:
                conn.execute(f"INSERT INTO {VERSION_TABLE} (version) VALUES (0)")
            version = 0 if row is None else int(row[0])
            if version > len(MIGRATIONS):
                raise RuntimeError(
                    f"{safe_url(self.url)} is at schema version {version}, newer than this "
                    f"oneclickdz ({len(MIGRATIONS)}); upgrade oneclickdz"
                )
            for number, statements in enumerate(MIGRATIONS[version:], start=version + 1):
                for statement in statements:
                    conn.execute(statement)
                conn.execute(f"UPDATE {VERSION_TABLE} SET version = %s", (number,))
                log.info("schema migrated", extra={"version": number})

    # -- reads and writes ------------------------------------------------------------------

    def reader(self) -> RepositoryReader:
        return self._reader

    def _run_read(self, fn: Callable[[Tx], T]) -> Awaitable[T]:
        return asyncio.get_running_loop().run_in_executor(self._executor, self._read_now, fn)

    def _read_now(self, fn: Callable[[Tx], T]) -> T:
        with self._read_pool.connection() as conn:
            return fn(PgTx(conn))

    async def write(self, fn: Callable[[Tx], T]) -> T:
        if not self._writer.running:
            return await asyncio.to_thread(self.write_sync, fn)
        return await self._writer.submit(fn)

    def write_sync(self, fn: Callable[[Tx], T]) -> T:
        if self._writer.running and not self._writer.on_writer_thread():
            return self._writer.submit_sync(fn)
        with self._direct_lock:
            result, exc = self._run_batch([fn])[0]
        if exc is not None:
            raise exc
        return result  # type: ignore[no-any-return]

    # -- read-only figures for the metrics -------------------------------------------------

    def write_queue_depth(self) -> int:
        return self._writer.depth()

    def order_counts(self) -> dict[tuple[str, str], int]:
        with self._read_pool.connection() as conn:
            return PgOrders(conn).counts()

    # -- the writer ------------------------------------------------------------------------

    def _run_batch(self, jobs: list[Callable[[Tx], Any]]) -> list[Outcome]:
        """The batch in as few transactions as its refusals allow; if the database aborts one
        as a whole, each write not yet settled again on its own (so a deadlock between two
        processes' batches, or a write's own database error, never fails the others)."""
        outcomes, error = self._attempt(jobs)
        if error is None:
            return outcomes
        rest = jobs[len(outcomes) :]
        if not isinstance(error, _REPLAYED):  # not the database's doing: say so to each
            log.error("write batch failed", exc_info=error, extra={"jobs": len(rest)})
            return [*outcomes, *[(None, error)] * len(rest)]
        if len(rest) > 1:
            log.info("write batch aborted; replaying its writes one by one",
                     extra={"jobs": len(rest), "reason": type(error).__name__})  # fmt: skip
        return [*outcomes, *(self._alone(job) for job in rest)]

    def _alone(self, job: Callable[[Tx], Any]) -> Outcome:
        for _ in range(RETRIES):
            outcomes, error = self._attempt([job])
            if error is None:
                return outcomes[0]
            if isinstance(error, errors.LockNotAvailable):
                return None, StoreBusy("a row stayed locked by another writer")
            if not isinstance(error, (errors.DeadlockDetected, errors.SerializationFailure)):
                if isinstance(error, psycopg.OperationalError):  # a lost connection, a server gone
                    log.warning("write failed", extra={"reason": type(error).__name__})
                return None, error
        return None, StoreBusy(f"write kept conflicting ({type(error).__name__})")

    def _attempt(
        self, jobs: list[Callable[[Tx], Any]]
    ) -> tuple[list[Outcome], BaseException | None]:
        settled: tuple[list[Outcome], BaseException | None] = ([], None)
        try:
            with self._write_pool.connection() as conn, conn.pipeline() as pipeline:
                ops = _PgOps(conn, pipeline, batched=len(jobs) > 1)
                settled = run_batch_replaying(ops, jobs)
        except Exception as exc:  # taking the connection, or leaving the pipeline
            outcomes, error = settled
            if error is None and len(outcomes) == len(jobs):
                return settled  # every write was settled before: the rest is the connection's
            return outcomes, error or exc
        return settled
