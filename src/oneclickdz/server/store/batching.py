"""Group commit, for every engine: one writer thread runs the queued writes together.

Writes submitted while the writer is busy share one transaction and one durable commit; each
runs inside its own SAVEPOINT, so one that fails is rolled back alone. An engine supplies the
transaction statements (`BatchOps`) and decides what a batch-wide failure means (`Batcher`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
import threading
from collections.abc import Callable
from typing import Any, Protocol, TypeVar, cast

from oneclickdz.server.store.base import Tx

T = TypeVar("T")
log = logging.getLogger("oneclickdz.server.store")

MAX_BATCH = 512
Outcome = tuple[Any, BaseException | None]  # a job's result, or the exception it raised


class BatchOps(Protocol):
    """The transaction statements of one engine's connection, and the unit of work on it."""

    tx: Tx

    def begin(self) -> None: ...
    def savepoint(self) -> None: ...
    def release(self) -> None: ...
    def rollback_to(self) -> None:
        """Undo everything since the last `savepoint()` and drop it."""
        ...

    def commit(self) -> None: ...
    def rollback(self) -> None: ...
    def aborts_batch(self, exc: BaseException) -> bool:
        """Whether an error raised by a job concerns the whole transaction (a deadlock, a lost
        connection), not the job alone: the batch is then abandoned as a whole."""
        ...


def run_batch(ops: BatchOps, jobs: list[Callable[[Tx], Any]]) -> list[Outcome]:
    """Run `jobs` in one transaction, each in a savepoint; commit once. Raises (after rolling
    back) if the transaction as a whole fails: then none of the jobs happened."""
    outcomes: list[Outcome] = []
    ops.begin()
    try:
        for job in jobs:
            ops.savepoint()
            try:
                result = job(ops.tx)
            except Exception as exc:
                if ops.aborts_batch(exc):
                    raise
                ops.rollback_to()
                outcomes.append((None, exc))
            else:
                ops.release()
                outcomes.append((result, None))
        ops.commit()
    except BaseException:
        ops.rollback()
        raise
    return outcomes


class PlainOps(Protocol):
    """The transaction statements of an engine whose savepoints cost a round trip each."""

    tx: Tx

    def begin(self) -> None: ...
    def commit(self) -> None: ...
    def rollback(self) -> None: ...
    def aborts_batch(self, exc: BaseException) -> bool: ...


def run_batch_replaying(
    ops: PlainOps, jobs: list[Callable[[Tx], Any]]
) -> tuple[list[Outcome], BaseException | None]:
    """`run_batch` without savepoints: the jobs run in one transaction and commit together;
    when one refuses (raises), the transaction is rolled back, the jobs before it run again and
    commit on their own, and the refused one then runs first in a fresh transaction, where its
    refusal (or success) is its own. A refusal costs a few short transactions; a batch without
    one costs nothing more than its statements. Jobs must be functions of the database alone
    (they are: every write is), since one may run more than once before it counts.

    Returns the outcomes of the first jobs, in order: committed or refused, all of them unless a
    transaction failed as a whole (`aborts_batch`: a deadlock, a lost connection). Then it was
    rolled back, and that error comes second: the jobs without an outcome did not happen."""
    outcomes: list[Outcome] = []
    start, end = 0, len(jobs)
    while start < len(jobs):
        results: list[Any] = []
        refusal: Exception | None = None
        try:
            ops.begin()
            for job in jobs[start:end]:
                try:
                    results.append(job(ops.tx))
                except Exception as exc:
                    if ops.aborts_batch(exc):
                        raise
                    refusal = exc
                    break
            if refusal is None:
                ops.commit()
            else:
                ops.rollback()
        except Exception as exc:
            ops.rollback()
            return outcomes, exc
        if refusal is None:
            outcomes.extend((result, None) for result in results)
            start, end = end, len(jobs)
        elif results:  # commit the jobs before the refused one first, without it
            end = start + len(results)
        else:  # refused first in its transaction: the refusal is its own
            outcomes.append((None, refusal))
            start, end = start + 1, len(jobs)
    return outcomes, None


class Batcher(Protocol):
    """Runs one batch to its outcomes, whatever happens (an engine's retry policy lives here)."""

    def __call__(self, jobs: list[Callable[[Tx], Any]]) -> list[Outcome]: ...


class GroupCommit:
    """The writer thread and its queue: `submit` from any event loop, `submit_sync` from any
    other thread; `run_batch` is called on the writer thread only."""

    def __init__(
        self, batcher: Batcher, max_batch: int = MAX_BATCH, name: str = "oneclickdz-db-writer"
    ) -> None:
        self._batcher = batcher
        self._max_batch = max_batch
        self._name = name
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None

    def on_writer_thread(self) -> bool:
        return threading.current_thread() is self._thread

    def depth(self) -> int:
        """Writes submitted and not yet taken by the writer thread (approximate, lock-free)."""
        return self._queue.qsize()

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name=self._name, daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Run every queued write, then end the thread."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None

    async def submit(self, fn: Callable[[Tx], T]) -> T:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._queue.put(_Job(fn, loop, future))
        return cast(T, await future)

    def submit_sync(self, fn: Callable[[Tx], T]) -> T:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._queue.put(_Job(fn, None, future))
        return cast(T, future.result())

    def _loop(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is None:
                break
            batch = [first]
            while len(batch) < self._max_batch:
                try:
                    job = self._queue.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    stopping = True
                    break
                batch.append(job)
            try:
                outcomes = self._batcher([job.fn for job in batch])
            except BaseException as exc:  # a batcher must not raise; if it does, say so to all
                log.exception("write batch failed", extra={"jobs": len(batch)})
                outcomes = [(None, exc)] * len(batch)
            _settle(list(zip(batch, outcomes, strict=True)))


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


def _settle(done: list[tuple[_Job, Outcome]]) -> None:
    """Hand results back: one wake-up per event loop for the whole batch."""
    per_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], Outcome]]] = {}
    for job, outcome in done:
        if job.loop is None:
            sync_future = cast("concurrent.futures.Future[Any]", job.future)
            result, exc = outcome
            if exc is None:
                sync_future.set_result(result)
            else:
                sync_future.set_exception(exc)
        else:
            per_loop.setdefault(job.loop, []).append(
                (cast("asyncio.Future[Any]", job.future), outcome)
            )
    for loop, items in per_loop.items():
        try:
            loop.call_soon_threadsafe(_settle_async, items)
        except RuntimeError:  # the loop is closed: its callers are gone
            log.warning("write results dropped: event loop closed", extra={"jobs": len(items)})


def _settle_async(items: list[tuple[asyncio.Future[Any], Outcome]]) -> None:
    for future, (result, exc) in items:
        if future.cancelled():
            continue
        if exc is None:
            future.set_result(result)
        else:
            future.set_exception(exc)
