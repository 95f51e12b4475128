"""Pre-fork worker processes: N copies of the service serving one listening socket, supervised.

The parent has already taken the socket and migrated the database; it then forks each worker.
A forked child inherits the listening socket as it is (no descriptor passing, no re-import), and
the kernel hands each new connection to whichever worker accepts it first. The parent forks
while it has a single thread and no event loop, so no lock or loop is copied in mid-use: each
worker builds its own app, database connections and loop after the fork.

The parent then only waits for signals (`sigtimedwait`, with SIGCHLD, SIGTERM and SIGINT
blocked, so no handler runs in the middle of anything):
- a worker that dies while nothing asked it to is restarted, with a log line naming its pid and
  exit status. One that dies within `STARTUP_GRACE` of its start failed to start: its slot waits
  `BACKOFF_FIRST`, doubling, before the next attempt, and after `MAX_START_FAILURES` such
  failures in a row the supervisor stops every worker and raises `WorkersFailing`;
- SIGTERM or SIGINT asks every worker to stop (SIGTERM: uvicorn stops accepting, finishes the
  requests in flight, runs the lifespan shutdown); once all have exited, `run` returns. A second
  signal sends them SIGINT, uvicorn's "force quit": stop waiting for open connections.
On Linux each worker also gets SIGTERM when the supervisor itself dies (even by SIGKILL), so no
orphan keeps serving the port.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import NoReturn

log = logging.getLogger("oneclickdz.server.workers")

STOP_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT})
_WAITED = STOP_SIGNALS | {signal.SIGCHLD}
STARTUP_GRACE = 1.0  # seconds: a worker dying sooner than this after its start failed to start
BACKOFF_FIRST = 0.1  # seconds before restarting a worker that failed to start; doubles each time
MAX_START_FAILURES = 5  # start-up failures in a row in one slot, after which the supervisor quits
_PR_SET_PDEATHSIG = 1  # prctl(2) option: the signal this process gets when its parent dies


class WorkersFailing(RuntimeError):
    """The workers keep dying at start-up: the supervisor stopped them all and gave up."""


class StopRequest:
    """In a worker: whether the supervisor asked it to stop (SIGTERM or SIGINT), and what to do
    then. A signal may come before the worker can act on it (while it builds its app): `then`
    runs an action at once if the request already came."""

    def __init__(self) -> None:
        self.requested = False
        self._actions: list[Callable[[], None]] = []

    def handle(self, signum: int, frame: FrameType | None) -> None:
        """The signal handler."""
        self.requested = True
        for action in list(self._actions):
            action()

    def then(self, action: Callable[[], None]) -> None:
        """Run `action` when the stop is requested (now, if it already was)."""
        self._actions.append(action)
        if self.requested:
            action()


# A worker's body: given its number (0, 1, 2, ... in order of start, restarts included) and the
# stop request, it serves until asked to stop and returns its exit code.
WorkerMain = Callable[[int, StopRequest], int]


@dataclass
class _Slot:
    """One of the N places a worker runs in: its current process, or when to start the next."""

    pid: int | None = None
    started_at: float = 0.0
    failures: int = 0  # start-up failures in a row
    restart_at: float | None = None


def describe_status(status: int) -> str:
    """A wait status as words: `exit code 3`, `killed by SIGKILL`."""
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        try:
            return f"killed by {signal.Signals(number).name}"
        except ValueError:
            return f"killed by signal {number}"
    return f"exit code {os.waitstatus_to_exitcode(status)}"


class Supervisor:
    """Runs `count` workers (forked from this process) until SIGTERM or SIGINT; see the module."""

    def __init__(
        self, count: int, main: WorkerMain, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if count < 1:
            raise ValueError(f"workers: need at least 1, got {count}")
        self._main = main
        self._clock = clock
        self._slots = [_Slot() for _ in range(count)]
        self._started = 0  # workers started so far: the next one's number
        self._stopping = False
        self._failure: str | None = None
        self._mask: set[int | signal.Signals] = set()  # the signal mask before `run` (the workers')
        self._pid = os.getpid()

    def run(self) -> None:
        """Start the workers, keep them running, and return once a stop signal ended them all.

        Raises `WorkersFailing` when workers keep failing at start-up (all stopped first).
        """
        threads = [t.name for t in threading.enumerate() if t is not threading.current_thread()]
        if threads:  # a fork copies no thread, but copies the locks they hold
            raise RuntimeError(f"cannot fork workers while threads run: {', '.join(threads)}")
        self._mask = signal.pthread_sigmask(signal.SIG_BLOCK, _WAITED)
        try:
            log.info("supervisor started", extra={"workers": len(self._slots)})
            for slot in self._slots:
                self._start(slot)
            while not self._stopping or self._live():
                self._step()
        except BaseException:
            self._stop_all()
            self._reap_all()
            raise
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, self._mask)
        log.info("supervisor stopped")
        if self._failure is not None:
            raise WorkersFailing(self._failure)

    # -- the supervisor's side ---------------------------------------------------------------

    def _live(self) -> list[int]:
        return [slot.pid for slot in self._slots if slot.pid is not None]

    def _step(self) -> None:
        """Wait for the next signal (or restart) and act on it."""
        waits = [slot.restart_at for slot in self._slots if slot.restart_at is not None]
        if waits:
            info = signal.sigtimedwait(_WAITED, max(0.0, min(waits) - self._clock()))
        else:
            info = signal.sigwaitinfo(_WAITED)
        if info is not None and info.si_signo == signal.SIGCHLD:
            self._reap()
        elif info is not None:
            self._on_stop_signal(signal.Signals(info.si_signo))
        now = self._clock()
        for slot in self._slots:
            if slot.restart_at is not None and slot.restart_at <= now:
                self._start(slot)

    def _start(self, slot: _Slot) -> None:
        number = self._started
        self._started += 1
        for stream in (sys.stdout, sys.stderr):  # or the child writes the parent's buffer too
            stream.flush()
        pid = os.fork()
        if pid == 0:
            self._worker(number)
        slot.pid, slot.started_at, slot.restart_at = pid, self._clock(), None
        log.info(f"worker {pid} started", extra={"workerPid": pid, "worker": number})

    def _reap(self) -> None:
        """Collect every worker that exited (one SIGCHLD may stand for several)."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            slot = next((s for s in self._slots if s.pid == pid), None)
            if slot is not None:
                slot.pid = None
                self._exited(slot, pid, status)

    def _exited(self, slot: _Slot, pid: int, status: int) -> None:
        how = describe_status(status)
        fields = {"workerPid": pid, "exitStatus": how}
        if self._stopping:
            log.info(f"worker {pid} stopped ({how})", extra=fields)
            return
        now = self._clock()
        if now - slot.started_at >= STARTUP_GRACE:
            slot.failures, delay = 0, 0.0
        else:
            slot.failures += 1
            delay = BACKOFF_FIRST * 2 ** (slot.failures - 1)
        if slot.failures >= MAX_START_FAILURES:
            self._failure = (
                f"the workers keep failing at start-up ({slot.failures} in a row within "
                f"{STARTUP_GRACE:g} s of their start, the last, {pid}, with {how}): "
                "stopped them all; the log says why"
            )
            log.error(f"worker {pid} died ({how}); giving up", extra=fields)
            self._stop_all()
            return
        slot.restart_at = now + delay
        log.warning(
            f"worker {pid} died unexpectedly ({how}); restarting it"
            + (f" in {delay:g} s" if delay else ""),
            extra=fields,
        )

    def _on_stop_signal(self, signum: signal.Signals) -> None:
        if self._stopping:  # a second signal: stop waiting for open connections
            log.info(f"{signum.name} again: forcing the workers to stop")
            self._signal_all(signal.SIGINT)
            return
        log.info(f"{signum.name}: stopping the workers", extra={"workerPids": self._live()})
        self._stop_all()

    def _stop_all(self) -> None:
        self._stopping = True
        for slot in self._slots:
            slot.restart_at = None
        self._signal_all(signal.SIGTERM)

    def _signal_all(self, signum: signal.Signals) -> None:
        for pid in self._live():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    def _reap_all(self) -> None:
        """Wait for every live worker to exit (after an error: no loop left to wait in)."""
        for slot in self._slots:
            if slot.pid is not None:
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(slot.pid, 0)
                slot.pid = None

    # -- the worker's side -------------------------------------------------------------------

    def _worker(self, number: int) -> NoReturn:
        """The forked child: run the worker's body and exit, never returning to the caller."""
        code = 1
        try:
            stop = StopRequest()
            for signum in STOP_SIGNALS:
                signal.signal(signum, stop.handle)
            _die_with_parent(self._pid)
            signal.pthread_sigmask(signal.SIG_SETMASK, self._mask)  # a pending stop runs now
            code = self._main(number, stop)
        except SystemExit as exc:  # uvicorn exits 3 when the app's start-up fails
            code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
        except BaseException:
            log.exception("worker failed")
        finally:
            logging.shutdown()
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(Exception):
                    stream.flush()
            os._exit(code)


def _die_with_parent(parent: int) -> None:
    """Linux: have this process get SIGTERM when the supervisor dies, even by SIGKILL."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) != 0:
        log.warning("prctl(PR_SET_PDEATHSIG) failed", extra={"errno": ctypes.get_errno()})
    if os.getppid() != parent:  # the supervisor died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)
