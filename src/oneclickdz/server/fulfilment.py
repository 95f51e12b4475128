"""Fulfilment workers: turn HANDLING orders final, and move top-ups along their lifecycle, when
their persisted due time comes.

The database is the queue. Every service process runs one worker that claims due orders with a
lease (`Orders.claim_due`: `lease_owner`, `lease_until`) and finishes them; a process that dies
holding leases loses them when they end, and another process (or this one, restarted) claims
those orders then. Nothing is rebuilt at start-up and nothing is kept in memory but a wake-up
hint: a placement in this process wakes the worker at its order's due time; orders placed by
other processes are found by polling the soonest due time at least every `POLL` seconds.
Finishing is idempotent (the order's row is locked and must still be HANDLING), so an order
claimed twice — a lease that ran out under load — is still finished once.

For tests, the fulfilment clock can be moved forward (`advance`) and orders finished at once
(`finish_now`); both run on the service's loop and return once the orders are final.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import time
import uuid
from collections.abc import Callable
from functools import partial

from oneclickdz.server import orders, topups
from oneclickdz.server.formats import now_iso
from oneclickdz.server.store import Store, Tx
from oneclickdz.server.vault import Vault

log = logging.getLogger("oneclickdz.server.fulfilment")

MAX_BATCH = 512
DEFAULT_LEASE = 10.0  # seconds a claimed order stays with its claimant
POLL = 0.5  # seconds between looks for orders due from other processes
RETRY_DELAY = 1.0  # seconds before the worker looks again after a failed round


def _claim(tx: Tx, *, now: float, owner: str, until: float) -> tuple[list[str], list[str]]:
    """Due orders and due top-ups, leased to `owner`."""
    return (
        tx.orders.claim_due(now, owner, until, MAX_BATCH),
        tx.topups.claim_due(now, owner, until, MAX_BATCH),
    )


class Fulfilment:
    def __init__(
        self,
        store: Store,
        vault: Vault,
        rng: random.Random,
        lease: float = DEFAULT_LEASE,
        owner: str | None = None,
        topup_scale: float = 1.0,
    ) -> None:
        self._store = store
        self._vault = vault
        self._rng = rng
        self.lease = lease
        self.topup_scale = topup_scale  # `serve --topup-delay-scale`
        # Who holds a lease: unique per process run, readable by an operator.
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._wake = asyncio.Event()
        self._wake_at = 0.0  # when the worker will next look, on the fulfilment clock
        self._round = asyncio.Lock()  # one claim-and-finish round at a time in this process
        self._offset = 0.0  # seconds the fulfilment clock runs ahead of the wall clock
        self.pending = 0  # orders claimed by this process and not yet finished
        # For the metrics: called with each final order's lag, in seconds after its due time.
        self.on_final: Callable[[float], None] = lambda lag: None
        # Webhooks: who holds the leases of a final order's deliveries (owner, until) from the
        # start, and who is told the order's id once it is committed (the dispatcher).
        self.webhook_hold: Callable[[], tuple[str, float] | None] = lambda: None
        self.on_event: Callable[[str], None] = lambda order_id: None
        # Fault injection (`fulfil:RATE:delay=S`): seconds to hold a round's claimed orders.
        self.stall: Callable[[], float] = lambda: 0.0
        self._held: set[asyncio.Task[None]] = set()

    def now(self) -> float:
        """The fulfilment clock: wall-clock time, plus however far tests advanced it."""
        return time.time() + self._offset

    def schedule(self, order_id: str, due_at: float) -> None:
        """A hint from a placement in this process: wake up by `due_at` (the order itself is
        in the database already)."""
        if due_at < self._wake_at:
            self._wake.set()

    async def run(self) -> None:
        """Claim and finish orders as they come due, until cancelled."""
        while True:
            self._wake.clear()
            try:
                async with self._round:
                    await self._drain()
                now = self.now()
                reader = self._store.reader()
                found = (await reader.orders.next_due(now), await reader.topups.next_due(now))
                due = min((d for d in found if d is not None), default=None)
                wait = POLL if due is None else min(POLL, max(0.0, due - now))
            except Exception:
                log.exception("fulfilment round failed; retrying")
                wait = RETRY_DELAY
            self._wake_at = self.now() + wait
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)

    async def advance(self, seconds: float) -> int:
        """Move the fulfilment clock forward and finish every order now due; returns how many
        this process claimed. Time never goes back: a negative advance is refused."""
        if seconds < 0:
            raise ValueError("the fulfilment clock only moves forward")
        async with self._round:  # the worker's round in progress ends first; none starts
            self._offset += seconds
            return await self._drain()

    async def finish_now(self, order_ids: list[str]) -> None:
        """Finish these orders now, whatever their due time or lease (final ones are skipped)."""
        await self._finish_all(order_ids)

    async def _drain(self) -> int:
        """Claim what is due, finish it, and again until nothing is due; how many claimed."""
        total = 0
        while True:
            now = self.now()
            claimed, claimed_topups = await self._store.write(
                partial(_claim, now=now, owner=self.owner, until=now + self.lease)
            )
            if not claimed and not claimed_topups:
                return total
            if claimed_topups:
                # Seeds are drawn on the loop, in due order (as for orders): a seeded run replays.
                seeds = [self._rng.getrandbits(64) for _ in claimed_topups]
                await asyncio.gather(*map(self._step_topup, claimed_topups, seeds))
            if not claimed:
                continue
            total += len(claimed)
            if hold := self.stall():  # finished later, by a task of its own: rounds go on
                task = asyncio.create_task(self._finish_claimed(claimed, hold))
                self._held.add(task)
                task.add_done_callback(self._held.discard)
            else:
                await self._finish_claimed(claimed)

    async def _finish_claimed(self, order_ids: list[str], hold: float = 0.0) -> None:
        self.pending += len(order_ids)
        try:
            if hold:
                await asyncio.sleep(hold)
            await self._finish_all(order_ids)
        finally:
            self.pending -= len(order_ids)

    async def _finish_all(self, order_ids: list[str]) -> None:
        # Seeds are drawn on the loop, in due order: a seeded run replays.
        seeds = [self._rng.getrandbits(64) for _ in order_ids]
        await asyncio.gather(*(self._finish(o, s) for o, s in zip(order_ids, seeds, strict=True)))

    async def _step_topup(self, topup_id: str, seed: int) -> None:
        """Move a claimed top-up one step; a failure leaves it to be claimed again."""
        try:
            moved = await self._store.write(
                partial(topups.step, vault=self._vault, topup_id=topup_id, now=now_iso(),
                        at=self.now(), seed=seed, scale=self.topup_scale)
            )  # fmt: skip
        except Exception:
            log.exception("top-up step failed; retried when its lease ends",
                          extra={"topupId": topup_id, "lease": self.lease})  # fmt: skip
            return
        if moved is not None:
            log.info("top-up moved", extra={"topupId": moved.id, "kind": moved.kind.value,
                                            "status": moved.status.value})  # fmt: skip

    async def _finish(self, order_id: str, code_seed: int) -> None:
        try:
            order = await self._store.write(
                partial(orders.fulfil, vault=self._vault, order_id=order_id,
                        code_seed=code_seed, now=now_iso(), hold=self.webhook_hold())
            )  # fmt: skip
        except Exception:
            # Still HANDLING and leased to us: claimed again when the lease ends.
            log.exception(
                "fulfilment failed; retried when its lease ends",
                extra={"orderId": order_id, "lease": self.lease},
            )
            return
        if order is not None:
            self.on_event(order.id)
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
