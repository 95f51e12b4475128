"""The API's rate budget of one key, spent by the tracker's dispatcher one call at a time.

A token bucket at the configured rate (600 calls a minute by default, the service's limit) with
a small burst. A 429 halves the rate and pauses every call for the `Retry-After` it carries;
each quiet 10 s then gives back a tenth of the configured rate, until it is whole again.
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["RateBudget"]

RECOVERY_PERIOD = 10.0
MIN_FRACTION = 0.05


class RateBudget:
    """Tokens for API calls: `delay()` says how long until one is free, `take()` spends it."""

    def __init__(
        self,
        per_minute: float | None,
        *,
        burst: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if per_minute is not None and per_minute <= 0:
            raise ValueError("the rate budget must be > 0 calls a minute (or None: unlimited)")
        self.limit = None if per_minute is None else per_minute / 60.0  # calls per second
        self.rate = self.limit
        self.burst = burst
        self._clock = clock
        self._tokens = burst
        self._stamp = clock()
        self._paused_until = 0.0
        self._last_throttle = -1e18
        self.throttled = 0  # 429s seen

    @property
    def unlimited(self) -> bool:
        return self.limit is None

    def _refill(self, now: float) -> None:
        if self.rate is None or self.limit is None:
            return
        # Recover gradually: a tenth of the configured rate per quiet period.
        if self.rate < self.limit:
            periods = int((now - self._last_throttle) // RECOVERY_PERIOD)
            if periods > 0:
                self.rate = min(self.limit, self.rate + self.limit * 0.1 * periods)
                self._last_throttle += periods * RECOVERY_PERIOD
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    def delay(self) -> float:
        """Seconds until a call may be made (0: now)."""
        now = self._clock()
        wait = max(0.0, self._paused_until - now)
        if self.rate is None:
            return wait
        self._refill(now)
        if self._tokens >= 1.0:
            return wait
        return max(wait, (1.0 - self._tokens) / self.rate)

    def take(self) -> None:
        """Spend one call (after `delay()` said 0)."""
        if self.rate is not None:
            self._refill(self._clock())
            self._tokens -= 1.0

    def give_back(self) -> None:
        """A call that was not made after all (its work vanished)."""
        if self.rate is not None:
            self._tokens = min(self.burst, self._tokens + 1.0)

    def throttle(self, retry_after: float | None) -> None:
        """The API answered 429: slow down, and wait `retry_after` before the next call."""
        now = self._clock()
        self.throttled += 1
        pause = retry_after if retry_after is not None else 1.0
        self._paused_until = max(self._paused_until, now + pause)
        if self.rate is not None and self.limit is not None:
            self._refill(now)
            self.rate = max(self.limit * MIN_FRACTION, self.rate * 0.5)
            self._tokens = min(self._tokens, 0.0)
        self._last_throttle = now
