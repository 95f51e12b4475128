"""Fulfilment workers: turn HANDLING orders final when their persisted due time comes.

Due times live in the database, so the queue is rebuilt from it at start-up: orders left
HANDLING by a stopped service are finished after it restarts. Orders due together are finished
together (the store commits them as one group); a failure puts the order back a second later,
so no order is ever dropped.

For tests, the fulfilment clock can be moved forward (`advance`) and orders finished at once
(`finish_now`); both run on the service's loop and return once the orders are final.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import random
import time
from collections.abc import Callable
from functools import partial

from oneclickdz.server import orders
from oneclickdz.server.formats import now_iso
from oneclickdz.server.store import Store
from oneclickdz.server.vault import Vault

log = logging.getLogger("oneclickdz.server.fulfilment")

MAX_BATCH = 512
RETRY_DELAY = 1.0


class Fulfilment:
    def __init__(self, store: Store, vault: Vault, rng: random.Random) -> None:
        self._store = store
        self._vault = vault
        self._rng = rng
        self._heap: list[tuple[float, str]] = []
        self._wake = asyncio.Event()
        self._offset = 0.0  # seconds the fulfilment clock runs ahead of the wall clock
        self.finished = 0
        # For the metrics: called with each final order's lag, in seconds after its due time.
        self.on_final: Callable[[float], None] = lambda lag: None

    def now(self) -> float:
        """The fulfilment clock: wall-clock time, plus however far tests advanced it."""
        return time.time() + self._offset

    async def load(self) -> int:
        """Queue every order the database holds as HANDLING; returns how many."""
        self._heap = list(await self._store.reader().orders.handling())
        heapq.heapify(self._heap)
        return len(self._heap)

    def schedule(self, order_id: str, due_at: float) -> None:
        heapq.heappush(self._heap, (due_at, order_id))
        if self._heap[0][1] == order_id:
            self._wake.set()

    @property
    def pending(self) -> int:
        return len(self._heap)

    async def run(self) -> None:
        """Finish orders as they come due, until cancelled."""
        while True:
            now = self.now()
            due: list[str] = []
            while self._heap and self._heap[0][0] <= now and len(due) < MAX_BATCH:
                due.append(heapq.heappop(self._heap)[1])
            if due:
                # Seeds are drawn on the loop, in due order: a seeded run replays.
                await self._finish_all(due)
                continue
            self._wake.clear()
            timeout = self._heap[0][0] - now if self._heap else None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    async def advance(self, seconds: float) -> int:
        """Move the fulfilment clock forward and finish every order now due; returns how many
        orders were due. Time never goes back: a negative advance is refused."""
        if seconds < 0:
            raise ValueError("the fulfilment clock only moves forward")
        self._offset += seconds
        now = self.now()
        due: list[str] = []
        while self._heap and self._heap[0][0] <= now:
            due.append(heapq.heappop(self._heap)[1])
        await self._finish_all(due)
        return len(due)

    async def finish_now(self, order_ids: list[str]) -> None:
        """Finish these orders now, whatever their due time (already final ones are skipped)."""
        await self._finish_all(order_ids)

    async def _finish_all(self, order_ids: list[str]) -> None:
        seeds = [self._rng.getrandbits(64) for _ in order_ids]
        await asyncio.gather(*(self._finish(o, s) for o, s in zip(order_ids, seeds, strict=True)))
        self._wake.set()

    async def _finish(self, order_id: str, code_seed: int) -> None:
        try:
            order = await self._store.write(
                partial(orders.fulfil, vault=self._vault, order_id=order_id,
                        code_seed=code_seed, now=now_iso())
            )  # fmt: skip
        except Exception:
            log.exception("fulfilment failed; retrying", extra={"orderId": order_id})
            self.schedule(order_id, self.now() + RETRY_DELAY)
            return
        if order is not None:
            self.finished += 1
            self.on_final(self.now() - order.due_at)
            log.info(
                "order final",
                extra={
                    "orderId": order.id,
                    "status": order.status,
                    "quantity": order.quantity,
                    "fulfilledQuantity": order.fulfilled_quantity,
                },
            )
