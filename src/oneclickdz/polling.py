"""Waiting for an order, a top-up or a payment to turn final: the PollPolicy and the bookkeeping
of one wait.

`PollPolicy()` is the seed guide's schedule (a check every 5 s, 60 checks, about 5 minutes), which
is also the documented schedule of mobile and internet top-ups; `PollPolicy.docs_gift_cards()` the
documentation's 10-minute cap for gift cards; `PollPolicy.docs_payments()` a payment link's life.
Exponential backoff and jitter are opt-in. `PollRun` holds what the sync and async waits share:
it counts the checks, keeps the last state seen, sorts failures into transient (the wait goes on)
and fatal (raised at once), and says how long to pause next or raises `PollTimeoutError`. What it
waits for is anything `Pollable`: each kind's model says which of its statuses are final.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

from ._base import is_transient
from .errors import OneClickDZError, PollTimeoutError, RateLimitError

__all__ = ["PollPolicy", "PollRun", "Pollable", "next_pause"]

PAYMENT_LINK_LIFE = 20 * 60.0
"""Seconds an OCPay link stays payable (documented)."""


class Pollable(Protocol):
    """What a wait reads on each check: an Order, a MobileTopup, an InternetTopup, a Payment."""

    @property
    def id(self) -> str: ...

    @property
    def status(self) -> str: ...

    @property
    def is_final(self) -> bool:
        """Whether its status is one of its kind's final states (an unknown status is not)."""
        ...

    @property
    def has_known_status(self) -> bool: ...


logger = logging.getLogger("oneclickdz")


@dataclass(frozen=True, slots=True)
class PollPolicy:
    """How often and how long to check an order.

    interval:     pause after the first check, in seconds
    max_attempts: number of checks before giving up (None: no limit)
    timeout:      seconds from the start of the wait before giving up (None: no limit)
    backoff:      each pause is the previous one times this (1.0: a fixed interval)
    max_interval: ceiling of a pause once backoff has grown it
    jitter:       fraction (0..1) by which each pause is randomly shortened, to spread many waits
    """

    interval: float = 5.0
    max_attempts: int | None = 60
    timeout: float | None = None
    backoff: float = 1.0
    max_interval: float = 60.0
    jitter: float = 0.0

    def __post_init__(self) -> None:
        if self.interval <= 0:
            raise ValueError("interval must be > 0")
        if self.max_attempts is not None and self.max_attempts < 1:
            raise ValueError("max_attempts must be >= 1 (or None)")
        if self.timeout is not None and self.timeout <= 0:
            raise ValueError("timeout must be > 0 (or None)")
        if self.backoff < 1.0:
            raise ValueError("backoff must be >= 1.0")
        if self.max_interval < self.interval:
            raise ValueError("max_interval must be >= interval")
        if not 0.0 <= self.jitter <= 1.0:
            raise ValueError("jitter must be within 0..1")

    @classmethod
    def docs_gift_cards(cls) -> PollPolicy:
        """The documentation's gift-card schedule: every 5 s for at most 10 minutes (120 checks)."""
        return cls(interval=5.0, max_attempts=120, timeout=600.0)

    @classmethod
    def docs_topups(cls) -> PollPolicy:
        """The documentation's top-up schedule (mobile and internet): every 5 s, 60 checks, at
        most 5 minutes."""
        return cls(interval=5.0, max_attempts=60, timeout=300.0)

    @classmethod
    def docs_payments(cls) -> PollPolicy:
        """Every 5 s for a payment link's whole life (20 minutes) and a minute more: by then it
        is CONFIRMED, FAILED, or expired (410)."""
        return cls(interval=5.0, max_attempts=None, timeout=PAYMENT_LINK_LIFE + 60.0)

    def delay(self, checks_done: int, rand: Callable[[], float] = random.random) -> float:
        """The pause after the `checks_done`-th check (1-based)."""
        try:
            pause = self.interval * self.backoff ** (checks_done - 1)
        except OverflowError:
            pause = self.max_interval
        pause = min(self.max_interval, pause)
        return pause * (1.0 - self.jitter * rand())

    def delays(self, rand: Callable[[], float] = random.random) -> Iterator[float]:
        """Every pause of the schedule in order: max_attempts - 1 of them (endless when None)."""
        n = 1
        while self.max_attempts is None or n < self.max_attempts:
            yield self.delay(n, rand)
            n += 1


def next_pause(
    policy: PollPolicy,
    attempts: int,
    elapsed: float,
    last_error: OneClickDZError | None = None,
    rand: Callable[[], float] = random.random,
) -> float | None:
    """The pause before the next check, or None when the policy is used up.

    A pure function of what a wait has to remember (checks made, seconds since it began, the
    last failure), so a wait can be resumed from stored numbers: `PollRun` keeps them in memory,
    the tracker keeps them in its store with a wall-clock start.
    """
    if policy.max_attempts is not None and attempts >= policy.max_attempts:
        return None
    pause = policy.delay(attempts, rand)
    if isinstance(last_error, RateLimitError) and last_error.retry_after:
        pause = max(pause, last_error.retry_after)
    if policy.timeout is not None:
        remaining = policy.timeout - elapsed
        if remaining <= 0:
            return None
        pause = min(pause, remaining)  # one last check right at the deadline
    return pause


class PollRun:
    """The progress of one wait; `Client` and `AsyncClient` drive it with their own sleep.

    run = PollRun(order_id, policy)
    while True:
        try:
            order = check_order(order_id)
        except OneClickDZError as exc:
            run.record_error(exc)        # raises a fatal error at once
        else:
            if run.record(order): return order
        sleep(run.next_delay())          # raises PollTimeoutError when used up

    `noun` names what is waited for in messages ("order", "top-up", "payment").
    """

    def __init__(
        self,
        order_id: str,
        policy: PollPolicy,
        *,
        clock: Callable[[], float] = time.monotonic,
        rand: Callable[[], float] = random.random,
        noun: str = "order",
    ) -> None:
        self.order_id = order_id
        self.policy = policy
        self.noun = noun
        self.attempts = 0
        self.last_order: Pollable | None = None
        self.last_error: OneClickDZError | None = None
        self._clock = clock
        self._rand = rand
        self._started = clock()
        self._unknown_reported: set[str] = set()

    @property
    def elapsed(self) -> float:
        return self._clock() - self._started

    def record(self, order: Pollable) -> bool:
        """Note a successful check; true when what it read is final."""
        self.attempts += 1
        self.last_order = order
        self.last_error = None
        status = str(order.status)
        if not order.has_known_status and status not in self._unknown_reported:
            self._unknown_reported.add(status)
            logger.warning(
                "poll order_id=%s unknown_status=%s treated_as=not-final", self.order_id, status
            )
        logger.debug(
            "poll order_id=%s attempt=%d status=%s",
            self.order_id,
            self.attempts,
            status,
        )
        return order.is_final

    def record_error(self, exc: OneClickDZError) -> None:
        """Note a failed check: a transient failure uses up one check, any other ends the wait."""
        self.attempts += 1
        if not is_transient(exc):
            raise exc
        self.last_error = exc
        logger.info(
            "poll order_id=%s attempt=%d transient_error=%s",
            self.order_id,
            self.attempts,
            type(exc).__name__,
        )

    def next_delay(self) -> float:
        """The pause before the next check; raises PollTimeoutError when the policy is used up."""
        pause = next_pause(self.policy, self.attempts, self.elapsed, self.last_error, self._rand)
        if pause is None:
            raise self.timed_out()
        return pause

    def timed_out(self) -> PollTimeoutError:
        error = PollTimeoutError(
            self.order_id,
            self.last_order,
            attempts=self.attempts,
            elapsed=self.elapsed,
            last_error=self.last_error,
            noun=self.noun,
        )
        if self.last_error is not None:
            error.__cause__ = self.last_error
        return error
