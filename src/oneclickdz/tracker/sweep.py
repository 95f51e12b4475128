"""Checking many orders with one call: `gift-cards/list` over the time window of the open ones.

A page of the list holds up to 100 orders, with their status and cards, newest first. A sweep
reads every page of the window that covers the orders it wants to check; it is worth it when it
costs fewer calls than one `checkOrder` per order. The pure parts live here: the window of a set
of orders, the estimate of a sweep's cost, and the state of one sweep while its pages come in.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from .model import TrackedOrder

__all__ = ["PAGE_SIZE", "Sweep", "Window", "covering_window", "iso"]

PAGE_SIZE = 100


def iso(ts: float) -> str:
    """Epoch seconds as the API writes times: ISO-8601 UTC with milliseconds and Z."""
    text = datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class Window:
    """[start, end] in epoch seconds; start None: since the beginning of the history."""

    start: float | None
    end: float

    @property
    def length(self) -> float | None:
        return None if self.start is None else max(0.0, self.end - self.start)

    def params(self) -> tuple[str | None, str]:
        """`from` and `to` of the list call, widened to whole milliseconds."""
        start = None if self.start is None else iso(math.floor(self.start * 1000) / 1000)
        return start, iso(math.ceil(self.end * 1000) / 1000 + 0.001)


def order_window(
    order: TrackedOrder, offset: float | None, margin: float, skew: float
) -> tuple[float | None, float]:
    """Where an order sits on the API's clock: exactly once seen, else around when it was sent.

    `offset` is the learnt difference between the API's clock and ours (None: not learnt yet,
    then `skew` is allowed either way); an adopted order never seen has no lower bound.
    """
    if order.order_time is not None:
        return order.order_time, order.order_time
    sent = order.sent_at
    placed = order.placed_at if order.placed_at is not None else sent
    if offset is None:
        lo = None if sent is None else sent - skew
        hi = (placed or 0.0) + skew
    else:
        lo = None if sent is None else sent + offset - margin
        hi = (placed or 0.0) + offset + margin
    if order.adopted and order.order_time is None:
        lo = None
    return lo, hi


def covering_window(bounds: Iterable[tuple[float | None, float]]) -> Window:
    starts: list[float | None] = []
    ends: list[float] = []
    for lo, hi in bounds:
        starts.append(lo)
        ends.append(hi)
    start = None if any(s is None for s in starts) else min(s for s in starts if s is not None)
    return Window(start, max(ends))


def estimate_pages(
    window: Window, candidates: int, density: float | None, total: int | None
) -> int:
    """Pages a sweep of `window` is expected to read.

    `density` is orders per second of window seen by earlier sweeps; `total` the size of the
    last unbounded sweep. Never fewer orders than the candidates themselves.
    """
    orders = float(candidates)
    if window.length is not None and density is not None:
        orders = max(orders, density * window.length)
    elif window.length is None and total is not None:
        orders = max(orders, float(total))
    return max(1, math.ceil(orders / PAGE_SIZE))


@dataclass(slots=True)
class Sweep:
    """One sweep in progress: which pages are handed out, which candidates were seen."""

    window: Window
    candidates: dict[str, TrackedOrder]  # by order id
    started: float
    total_pages: int | None = None
    total_results: int | None = None
    next_page: int = 1
    in_flight: int = 0
    pages_read: int = 0
    retry_pages: list[int] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)
    abandoned: bool = False

    def has_page(self) -> bool:
        """Whether `take_page` would hand out a page now."""
        if self.abandoned:
            return False
        if self.retry_pages:
            return True
        if self.next_page == 1:
            return self.in_flight == 0
        return self.total_pages is not None and self.next_page <= self.total_pages

    def take_page(self) -> int | None:
        """The next page to read, or None (page 1 must answer before the others go out)."""
        if not self.has_page():
            return None
        if self.retry_pages:
            return self.retry_pages.pop()
        page = self.next_page
        self.next_page += 1
        return page

    @property
    def done(self) -> bool:
        if self.in_flight or self.retry_pages:
            return False
        if self.abandoned:
            return True
        return self.total_pages is not None and self.next_page > self.total_pages

    def unseen(self) -> list[TrackedOrder]:
        return [o for oid, o in self.candidates.items() if oid not in self.seen]
