"""The Tracker: places intents, follows every open order to a final state, delivers it once.

Every kind alike: gift-card orders (`place`), mobile top-ups (`send_mobile`), internet
recharges (`send_internet`) and OCPay payment links (`create_payment`) share the store, the
heaps, the rate budget and the delivery workers; each row's `kind` picks its calls. A top-up
is sent with the intent's ref, so a lost answer is resolved by sending it again (DUPLICATED_REF
names it) or by `check-ref`. A payment link has no ref until createLink answers: its intent is
written, the link created at once, and its ref stored before `create_payment` returns the URL.
A top-up in UNKNOWN_ERROR (`needs_resolution`) or QUEUED (`queued`) is checked on a slow
schedule and delivered once, when it ends FULFILLED or REFUNDED. Sweeps and webhook hints are
for gift-card orders only (no list window or webhook covers the other kinds).

One asyncio loop dispatches every API call; there is no task or thread per order. Each order
waits in a heap by the wall-clock time its next step is due (placement, check or delivery). A
call goes out only when the key's rate budget has a token and fewer than `max_in_flight` calls
are out. Priority: the pages of a sweep in progress, then due checks, then placements.

Checks are batched when that is cheaper: if the orders due within one interval outnumber the
pages of `gift-cards/list` that cover their time window, one sweep reads those pages instead of
one `checkOrder` per order. An order a sweep misses is checked with `checkOrder` next.

Durability: an intent (and its ref) is on disk before any request leaves. Later steps are
written in small batches; losing the last batch in a crash costs a repeat, never an order:
a placement is resent with the same ref (the API answers DUPLICATED_REF with the order's id),
a check is made again. The final state and the sealed cards are on disk before the handler
runs, and the delivery marker right after it returns.

Runners: a SQLite store has one (a file lock). A shared store (PostgreSQL) has any number: each
holds leases on the open orders it works, renews them while it runs, and claims, every second,
the orders no live runner holds (new ones, and those of a runner that died once their lease
expired). An order whose lease was lost is dropped from memory; its writes are not made.

Webhooks (`TrackerConfig(webhooks=True)`, `oneclickdz.tracker.receiver`): a verified order
webhook is a hint (`hint()`): the open order it names gets one checkOrder at once, ahead of its
schedule, and the check's answer, never the webhook, is what finalises it. Polling goes on at
`safety_interval` (60 s), so a lost webhook delays an order and never loses it. Sweeps still
batch those safety checks when that is cheaper; a hinted check is always one checkOrder.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import inspect
import logging
import random
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from decimal import Decimal
from types import TracebackType
from typing import Any, Self

from oneclickdz._base import is_transient, may_have_arrived
from oneclickdz._redact import mask
from oneclickdz.client import AsyncClient
from oneclickdz.errors import (
    APIError,
    AuthenticationError,
    DuplicateRefError,
    InconsistentOrderError,
    NotFoundError,
    OneClickDZError,
    PaymentLinkExpiredError,
    PermissionDeniedError,
    PlacementUnknownError,
    RateLimitError,
)
from oneclickdz.models import Card, Order
from oneclickdz.outcome import Outcome
from oneclickdz.payment_models import FeeMode, Payment
from oneclickdz.polling import PollPolicy, next_pause
from oneclickdz.topup_models import InternetTopup, MobileTopup, TopupSent
from oneclickdz.topup_outcome import TopupOutcome
from oneclickdz.topups import AsyncInternet, AsyncMobile

from .budget import RateBudget
from .config import TrackerConfig
from .model import (
    Delivery,
    IntentSpec,
    InternetSpec,
    Kind,
    MetaValue,
    MobileSpec,
    PaymentSpec,
    Spec,
    State,
    TrackedOrder,
)
from .sealing import CardSealer, load_key
from .stats import (
    CALLS_CHECK,
    CALLS_LIST,
    CALLS_PLACE,
    CALLS_PREFIX,
    CHECKED_BY_CHECK,
    CHECKED_BY_SWEEP,
    HANDLER_CALLS,
    HANDLER_FAILURES,
    PAYMENT_CALLS,
    SWEEP_MISSES,
    SWEEPS,
    SWEEPS_ABANDONED,
    THROTTLED,
    TOPUP_CALLS,
    WEBHOOKS_DUPLICATE,
    WEBHOOKS_HINTED,
    WEBHOOKS_IGNORED,
    Latency,
    RunSummary,
    TrackerStats,
)
from .store import (
    DEFAULT_STORE_URL,
    DuplicateOrderError,
    LeaseLostError,
    TrackerStore,
    open_store,
)
from .sweep import PAGE_SIZE, Sweep, covering_window, estimate_pages, iso, order_window

__all__ = ["Handler", "Tracker", "TxHandler"]

log = logging.getLogger("oneclickdz.tracker")

# The merchant's delivery code: a plain or coroutine function of the Delivery. Sync ones run in
# a worker thread, so a slow one does not stall the scheduler.
Handler = Callable[[Delivery], Awaitable[object] | object]
# A transactional handler also receives the store's open transaction (see TrackerStore.deliver).
TxHandler = Callable[[Delivery, Any], Awaitable[object] | object]


# --------------------------------------------------------------------------- work items


@dataclass(slots=True)
class _Place:
    order: TrackedOrder


@dataclass(slots=True)
class _Check:
    order: TrackedOrder


@dataclass(slots=True)
class _Page:
    sweep: Sweep
    number: int


_Work = _Place | _Check | _Page
_Entry = tuple[float, int, TrackedOrder]

PROGRESS_EVERY = 10  # poll progress is written at the 1st check and every 10th after it
SEEN_EVENTS = 100_000  # webhook event ids remembered, to drop a repeated delivery for free
EARLY_HINTS = 10_000  # hinted order ids not held here (yet), remembered until they are


def _new_id() -> str:
    return "trk_" + uuid.uuid4().hex[:24]


def _now() -> float:
    return time.time()


class Tracker:
    """Durable order tracking on top of `AsyncClient`.

        async with Tracker(client, "sqlite:///shop-tracker.db", handler=deliver) as tracker:
            await tracker.place("507f1f77bcf86cd799439011", "type_001", 2, meta={"shop": "A1"})
            await tracker.run(until_idle=True)

    `handler(delivery)` is called once per final order, after its state and sealed cards are on
    disk; the order is marked delivered when it returns. A crash between the two repeats the
    call with the same `delivery.delivery_key` (at-least-once: drop repeats by that key). A
    `tx_handler(delivery, tx)` instead runs inside the store transaction that marks the
    delivery, so effects it writes through `tx` happen exactly once.
    """

    def __init__(
        self,
        client: AsyncClient | None = None,
        store: TrackerStore | str = DEFAULT_STORE_URL,
        *,
        handler: Handler | None = None,
        tx_handler: TxHandler | None = None,
        config: TrackerConfig | None = None,
        key: bytes | None = None,
    ) -> None:
        if handler is not None and tx_handler is not None:
            raise ValueError("give handler or tx_handler, not both")
        self._client = client
        self._calls: AsyncClient | None = None
        self._owns_client = False
        self.store = open_store(store) if isinstance(store, str) else store
        self.handler = handler
        self.tx_handler = tx_handler
        self.config = config or TrackerConfig()
        self._policy = self.config.policy
        self._topup_policy = self.config.topup_policy
        self._payment_policy = self.config.payment_policy
        self._creating: set[str] = set()  # payment intents whose link this process is creating
        self._key = key
        self._sealer: CardSealer | None = None
        self._opened = False
        self._rand = random.Random()
        self._reset_run_state()

    def _reset_run_state(self) -> None:
        cfg = self.config
        self.budget = RateBudget(cfg.rate_per_minute, burst=cfg.burst)
        self._orders: dict[str, TrackedOrder] = {}  # every unsettled row, by id
        self._by_order_id: dict[str, TrackedOrder] = {}
        self._check_heap: list[_Entry] = []
        self._place_heap: list[_Entry] = []
        self._deliver_heap: list[_Entry] = []
        self._durable_final: set[str] = set()  # final on disk: may be delivered
        self._plan_not_before = 0.0
        self._checks_in_row = 0
        self._seq = 0
        self._busy: set[str] = set()
        self._force_check: set[str] = set()
        self._dirty: dict[str, TrackedOrder] = {}
        self._flushing = asyncio.Lock()
        self._counts: dict[str, int] = {}
        self._sweep: Sweep | None = None
        self._density: float | None = None  # orders per second of window, from sweeps
        self._unbounded_total: int | None = None
        self._offset: float | None = None  # API clock minus ours, from orders seen
        self._in_flight = 0
        self._deliveries = 0
        self._wake = _Wake()
        self._deliver_wake = _Wake()
        self._running = False
        self._to_mark: list[TrackedOrder] = []
        self._marking: asyncio.Future[set[str]] | None = None
        self._stop = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._revision = -1
        self._claim_soon = False  # shared store: rows were written here, claim them now
        self._renew_at = 0.0  # shared store: when the leases are renewed next (monotonic)
        self._others_pending = 0  # shared store: open rows other runners hold
        self._seen_events: OrderedDict[str, None] = OrderedDict()  # webhook ids, oldest first
        self._early_hints: OrderedDict[str, float] = OrderedDict()  # order id -> when hinted
        self._hint_at: dict[str, float] = {}  # intent id -> when hinted (monotonic), until a
        # check sent after the hint has answered

    # ----------------------------------------------------------------- lifecycle

    async def open(self) -> Self:
        """Open the store and the card key (created beside a SQLite store on first use)."""
        if self._opened:
            return self
        await self.store.open()
        key = self._key if self._key is not None else load_key(self.store.key_file)
        sealer = CardSealer(key)
        token = await self.store.setting("key_check", sealer.check_token())
        sealer.verify(token)
        self._sealer = sealer
        self._opened = True
        return self

    async def close(self) -> None:
        if self._owns_client and self._client is not None:
            await self._client.close()
        await self.store.close()
        self._opened = False

    async def __aenter__(self) -> Self:
        return await self.open()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def client(self) -> AsyncClient:
        """The client of the tracker's own calls: the given one (or one over aiohttp), with no
        retries inside the SDK, so that every call goes through the budget and the stats."""
        if self._calls is None:
            if self._client is None:
                from oneclickdz._aiohttp import AiohttpTransport

                self._client = AsyncClient(transport=AiohttpTransport())
                self._owns_client = True
            self._calls = self._client.with_options(max_retries=0)
        return self._calls

    def _checked_open(self) -> CardSealer:
        if self._sealer is None:
            raise RuntimeError("the tracker is not open: use `async with Tracker(...)`")
        return self._sealer

    # ----------------------------------------------------------------- what merchants call

    async def place(
        self,
        product_id: str,
        type_id: str,
        quantity: int,
        *,
        meta: Mapping[str, MetaValue] | None = None,
    ) -> TrackedOrder:
        """Write one intent (on disk when this returns); `run()` places it."""
        return (await self.place_many([IntentSpec(product_id, type_id, quantity, meta or {})]))[0]

    async def send_mobile(
        self,
        plan_code: str,
        msisdn: str,
        amount: int | None = None,
        *,
        meta: Mapping[str, MetaValue] | None = None,
    ) -> TrackedOrder:
        """Write one mobile top-up's intent (on disk when this returns); `run()` sends it with
        the intent's ref and follows it (`amount`: for dynamic plans)."""
        return (await self.place_many([MobileSpec(plan_code, msisdn, amount, meta or {})]))[0]

    async def send_internet(
        self,
        type: str,
        number: str,
        value: int,
        *,
        meta: Mapping[str, MetaValue] | None = None,
    ) -> TrackedOrder:
        """Write one internet recharge's intent (ADSL or 4G); `run()` sends it and follows it."""
        return (await self.place_many([InternetSpec(type, number, value, meta or {})]))[0]

    async def place_many(self, specs: Iterable[Spec]) -> list[TrackedOrder]:
        """Write many intents (gift-card orders, top-ups) in one transaction: all or none."""
        self._checked_open()
        now = _now()
        rows = [_intent_row(spec, now) for spec in specs]
        await self.store.insert(rows)
        for row in rows:
            log.info("intent written id=%s kind=%s ref=%s", row.id, row.kind.value, row.ref)
            self._take(row)
        return rows

    async def create_payment(
        self,
        title: str,
        amount: int,
        *,
        description: str | None = None,
        fee_mode: FeeMode | str = FeeMode.NO_FEE,
        success_message: str | None = None,
        redirect_url: str | None = None,
        meta: Mapping[str, MetaValue] | None = None,
    ) -> TrackedOrder:
        """Create an OCPay payment link now and track it; returns the row, whose `payment_url`
        goes to the payer. The payment is delivered once it is CONFIRMED or FAILED (or expired).

        The intent is on disk before createLink is sent, and the link's ref before this returns:
        a crash in between leaves an intent that a runner closes as rejected after
        `create_grace` (the link, if it was made, was never shown to a payer: it expires). A
        refused or unanswered createLink is raised here (the row is rejected): create again.
        """
        self._checked_open()
        spec = PaymentSpec(
            title, amount, description, str(fee_mode), success_message, redirect_url, meta or {}
        )
        now = _now()
        row = _intent_row(spec, now)
        row.next_at = now + self.config.create_grace  # a runner leaves it to this call till then
        await self.store.insert([row])
        log.info("intent written id=%s kind=payment", row.id)
        self._creating.add(row.id)
        try:
            await self._spend_token()
            self._count(CALLS_PREFIX + "ocpay/createLink")
            row.sent_at = _now()
            row.state = State.SENT
            row.attempts = 1
            try:
                link = await self.client.ocpay.create_link(
                    spec.title, spec.amount, spec.description, spec.fee_mode,
                    spec.success_message, spec.redirect_url,
                    timeout=self.config.create_grace / 2,
                )  # fmt: skip
            except OneClickDZError as exc:
                self._note_throttle(exc)
                row.state = State.REJECTED
                row.last_error = _describe(exc)
                await self.store.publish(row)
                log.warning("payment link refused id=%s reason=%s", row.id, row.last_error)
                raise
            deadline = self._deadline_of(row.kind)
            _mark_placed(row, link.payment_ref, _now(), deadline, self.config.interval)
            row.details = {"payment_url": link.payment_url}
            if not await self.store.publish(row):
                raise RuntimeError(
                    f"payment intent {row.id} was closed while its link was being created "
                    f"(it took longer than create_grace): link {link.payment_ref} is not tracked"
                )
        finally:
            self._creating.discard(row.id)
        log.info("payment link created id=%s ref=%s", row.id, row.order_id)
        held = self._orders.get(row.id)  # the running tracker loaded the intent meanwhile
        if held is None:
            self._take(row)
            return row
        _copy_into(held, row)
        self._registered(held)
        self._queue(held)
        self._wake.set()
        return held

    async def track(
        self,
        order_id: str,
        *,
        kind: Kind | str = Kind.GIFT_CARD,
        meta: Mapping[str, MetaValue] | None = None,
    ) -> TrackedOrder:
        """Adopt an operation made elsewhere: a gift-card order's id, a top-up's id (`kind`
        "mobile" or "internet") or a payment link's ref ("payment"). Returns the existing row if
        it is already tracked."""
        self._checked_open()
        if not isinstance(order_id, str) or not order_id.strip():
            raise ValueError("order_id must be a non-empty string")
        kind = Kind(kind)
        now = _now()
        row = TrackedOrder(
            id=_new_id(), ref=None, product_id=None, type_id=None, quantity=None,
            meta=dict(meta or {}), state=State.PLACED, created_at=now, order_id=order_id,
            placed_at=now, started_at=now, next_at=now, deadline=now + self._deadline_of(kind),
            adopted=True, kind=kind,
        )  # fmt: skip
        try:
            await self.store.insert([row])
        except DuplicateOrderError:
            existing = await self.store.get(order_id)
            assert existing is not None
            return existing
        log.info("order adopted id=%s kind=%s order_id=%s", row.id, kind.value, order_id)
        self._take(row)
        return row

    async def get(self, ident: str) -> TrackedOrder | None:
        """A tracked order by intent id, order id or ref."""
        self._checked_open()
        if ident in self._orders:
            return self._orders[ident]
        return await self.store.get(ident)

    async def orders(
        self,
        state: State | str | Collection[State] | None = None,
        *,
        stuck: bool | None = None,
        kind: Kind | str | None = None,
    ) -> list[TrackedOrder]:
        """Tracked orders, oldest first; `state` filters (one state or several), `kind` too."""
        self._checked_open()
        states: Collection[State] | None
        if state is None:
            states = None
        elif isinstance(state, str):
            states = [State(state)]
        else:
            states = list(state)
        return await self.store.select(
            states, stuck=stuck, kind=None if kind is None else Kind(kind)
        )

    async def reveal(self, ident: str) -> tuple[Card, ...]:
        """The cards of a final order, in clear. Logged (without the codes)."""
        sealer = self._checked_open()
        order = await self.get(ident)
        if order is None:
            raise LookupError(f"no tracked order {ident!r}")
        if order.sealed_cards is None:
            return ()
        cards = sealer.open(order.sealed_cards, _context(order))
        log.warning(
            "cards revealed id=%s order_id=%s cards=%d", order.id, order.order_id, len(cards)
        )
        return cards

    async def retry_delivery(self, ident: str) -> TrackedOrder:
        """Queue a delivery_failed order for delivery again (the running tracker picks it up)."""
        self._checked_open()
        order, requeued = await self.store.requeue(ident, [State.DELIVERY_FAILED])
        if order is None:
            raise LookupError(f"no tracked order {ident!r}")
        if not requeued:
            raise ValueError(f"order {order.id} is {order.state.value}, not delivery_failed")
        if order.id not in self._orders:
            self._take(order)
        return order

    async def stats(self) -> TrackerStats:
        self._checked_open()
        await self._flush()
        counters = await self.store.counters()
        states = await self.store.state_counts()
        to_final, to_delivered = await self.store.latencies()
        stuck = [o.id for o in await self.store.select(stuck=True)]
        calls = {
            "placeOrder": counters.get(CALLS_PLACE, 0),
            "checkOrder": counters.get(CALLS_CHECK, 0),
            "list": counters.get(CALLS_LIST, 0),
        }
        for name in (*TOPUP_CALLS, *PAYMENT_CALLS):  # the other kinds' calls, once made
            if counters.get(CALLS_PREFIX + name):
                calls[name] = counters[CALLS_PREFIX + name]
        return TrackerStats(
            states=states,
            api_calls=calls,
            throttled=counters.get(THROTTLED, 0),
            placement_to_final=Latency.of(to_final),
            final_to_delivered=Latency.of(to_delivered),
            stuck=stuck,
            counters=counters,
        )

    def hint(self, order_id: str, *, event_id: str | None = None) -> bool:
        """Something outside (a verified webhook) says this order may be final: check it now.

        Only a hint: the check's answer, the API's truth, is what finalises an order, never the
        hint; a stale, lying or out-of-order one costs at most one call. Nothing is awaited and
        no call is made here, so a webhook receiver answers at once. True when a checkOrder is
        scheduled now (or, if one is out, right after it: its answer may predate the hint).
        False, at no cost, for an `event_id` already seen (the last 100,000 are kept), for an
        order already final, and for one this tracker does not hold; that order id is kept (the
        last 10,000), and checked at once if its placement's answer or its lease comes later.
        """
        if event_id is not None:
            if event_id in self._seen_events:
                self._seen_events.move_to_end(event_id)
                self._count(WEBHOOKS_DUPLICATE)
                return False
            _remember(self._seen_events, event_id, None, SEEN_EVENTS)
        order = self._by_order_id.get(order_id)
        if order is None or order.id not in self._orders:
            _remember(self._early_hints, order_id, time.monotonic(), EARLY_HINTS)
            self._count(WEBHOOKS_IGNORED)
            log.debug("hint for an order not held here order_id=%s", order_id)
            return False
        if order.state is not State.PLACED or order.kind is not Kind.GIFT_CARD:
            self._count(WEBHOOKS_IGNORED)
            return False
        self._count(WEBHOOKS_HINTED)
        self._hint_at[order.id] = time.monotonic()
        log.debug("hint: checking now id=%s order_id=%s", order.id, order_id)
        if order.id not in self._busy:  # else the end of its check or sweep reschedules it
            self._due_now(order)
            self._queue(order)
            self._wake.set()
        return True

    def count(self, name: str, n: int = 1) -> None:
        """Add `n` to the stats counter `name`: stored with the next flush, read back in
        `stats().counters`. For what runs beside the tracker, such as its webhook receiver."""
        self._count(name, n)

    @property
    def in_flight(self) -> tuple[int, int]:
        """(API calls awaiting an answer, handlers running) right now."""
        return self._in_flight, self._deliveries

    def stop(self) -> None:
        """Ask `run()` to return once the calls in flight have answered."""
        self._stop.set()
        self._wake.set()

    # ----------------------------------------------------------------- the run loop

    async def run(self, *, until_idle: bool = False) -> RunSummary:
        """Place, follow and deliver until `stop()` (or, with `until_idle`, nothing is left).

        Only one process may run a SQLite store's tracker at a time (RunnerActiveError
        otherwise); a shared store (PostgreSQL) takes any number, each order leased to one.
        With `until_idle` on a shared store, it also waits for the orders other runners hold.
        """
        self._checked_open()
        await self.store.acquire_runner()
        await self._load_unsettled(spread=True)
        flusher = asyncio.create_task(self._flusher())
        self._running = True
        workers = [
            asyncio.create_task(self._delivery_worker())
            for _ in range(self.config.delivery_concurrency if self._delivers else 0)
        ]
        try:
            await self._dispatch(until_idle)
        finally:
            self._running = False
            self._deliver_wake.set()
            if self._tasks or workers:
                await asyncio.gather(*self._tasks, *workers, return_exceptions=True)
            flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await flusher
            await self._flush()
            await self.store.release_runner()
            if self.store.shared:  # the leases are given back: so is the memory of the rows
                self._drop_memory()
            self._stop.clear()  # a stop() asked before this run began ended it; the next runs
        return RunSummary(await self.store.state_counts())

    async def _dispatch(self, until_idle: bool) -> None:
        next_revision_check = 0.0
        while not self._stop.is_set():
            now = _now()
            if now >= next_revision_check or self._claim_soon:
                await self._watch_revision()
                next_revision_check = now + 1.0
            wait = self._next_due(now) - now
            if wait <= 0 and self._in_flight < self.config.max_in_flight:
                delay = self.budget.delay()
                if delay > 0:
                    await self._sleep(min(delay, 1.0))
                    continue
                # Hand out calls while the budget and the slots allow: one pass, many calls.
                while (work := self._next_work(now)) is not None:
                    self.budget.take()
                    self._spawn(self._execute(work))
                    if self._in_flight >= self.config.max_in_flight or self.budget.delay() > 0:
                        break
                wait = self._next_due(now) - now
                if wait <= 0:
                    await asyncio.sleep(0)  # let the calls just handed out go
                    continue
            if until_idle and self._idle():
                return
            if wait <= 0:  # due, but every slot is taken: the next call to end wakes us
                wait = 1.0
            await self._sleep(min(max(wait, 0.001), 1.0))

    async def _sleep(self, seconds: float) -> None:
        await self._wake.wait(seconds)

    def _spawn(self, coro: Awaitable[None], *, call: bool = True) -> None:
        if call:
            self._in_flight += 1

        async def runner() -> None:
            try:
                await coro
            except Exception:  # a bug must not end the loop; the order is retried later
                log.exception("tracker step failed unexpectedly")
            finally:
                if call:
                    self._in_flight -= 1
                self._wake.set()

        task = asyncio.create_task(runner())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _idle(self) -> bool:
        """Nothing in flight, nothing to place, deliver or follow (stuck orders aside)."""
        if self._in_flight or self._deliveries or self._dirty or self._sweep is not None:
            return False
        if self._others_pending:  # a shared store: other runners' orders, ours if they die
            return False
        if self._head(self._place_heap, True) is not None:
            return False
        if self._delivers and any(
            o.state is State.FINAL and o.id in self._orders for _, _, o in self._deliver_heap
        ):
            return False
        # Usually settled at the first open order met.
        return not any(o.state is State.PLACED and not o.stuck for o in self._by_order_id.values())

    @property
    def _delivers(self) -> bool:
        return self.handler is not None or self.tx_handler is not None

    # ----------------------------------------------------------------- memory of open orders

    def _take(self, order: TrackedOrder) -> None:
        """A row this process just wrote: worked at once, or (shared store) claimed first."""
        if self.store.shared:
            self._claim_soon = True
            self._wake.set()
        else:
            self._admit(order)

    def _drop_memory(self) -> None:
        """Forget every row held in memory (their leases were released)."""
        for order in list(self._orders.values()):
            self._forget(order)
        self._by_order_id.clear()
        self._check_heap.clear()
        self._place_heap.clear()
        self._deliver_heap.clear()
        self._revision = -1

    def _lose(self, ids: Iterable[str]) -> None:
        """Another runner took these rows over: stop working them."""
        for ident in ids:
            order = self._orders.get(ident)
            if order is not None:
                log.warning("lease lost id=%s: another runner has this order", ident)
                self._forget(order)

    def _admit(self, order: TrackedOrder) -> None:
        """Hold an unsettled row in memory and queue its next step."""
        if order.state.settled:
            return
        self._orders[order.id] = order
        self._registered(order)
        if order.state is State.FINAL:  # every admitted row is on disk as it is
            self._durable_final.add(order.id)
        self._take_early_hint(order)
        self._queue(order)
        self._wake.set()

    def _registered(self, order: TrackedOrder) -> None:
        """Index a held row by its order id (top-up id, link ref), once it has one."""
        if order.order_id is not None:
            self._by_order_id[order.order_id] = order

    def _take_early_hint(self, order: TrackedOrder) -> None:
        """A placed order now held here was hinted before it was: check it at once."""
        if order.state is not State.PLACED or order.order_id is None:
            return
        hinted = self._early_hints.pop(order.order_id, None)
        if hinted is not None:
            self._hint_at[order.id] = hinted
            self._due_now(order)

    def _due_now(self, order: TrackedOrder) -> None:
        """Its next step is a checkOrder (not a sweep), due now; the caller queues it."""
        order.next_at = min(order.next_at, _now())
        self._force_check.add(order.id)

    def _queue(self, order: TrackedOrder) -> None:
        self._seq += 1
        entry = (order.next_at, self._seq, order)
        if order.state is State.FINAL:
            heapq.heappush(self._deliver_heap, entry)
            self._deliver_wake.set()
        elif order.state.followed:
            heapq.heappush(self._check_heap, entry)
        elif order.state.to_place:
            heapq.heappush(self._place_heap, entry)

    def _forget(self, order: TrackedOrder) -> None:
        self._orders.pop(order.id, None)
        if order.order_id is not None:
            self._by_order_id.pop(order.order_id, None)
        self._force_check.discard(order.id)
        self._durable_final.discard(order.id)
        self._hint_at.pop(order.id, None)

    def _touch(self, order: TrackedOrder) -> None:
        self._dirty[order.id] = order

    def _touch_checked(self, order: TrackedOrder) -> None:
        """After a check: a new state is written at once; mere poll progress (attempts, next
        check) every few checks. A crash loses at most that much progress, which only means a
        few more checks; the deadline counts from the stored start, not from the attempts."""
        if (
            order.state is not State.PLACED
            or order.stuck
            or order.attempts % PROGRESS_EVERY == 1
            or order.last_error is not None
        ):
            self._touch(order)

    def _count(self, name: str, n: int = 1) -> None:
        self._counts[name] = self._counts.get(name, 0) + n

    async def _load_unsettled(self, *, spread: bool) -> None:
        rows = [o for o in await self.store.claim(self._orders.keys()) if o.id not in self._orders]
        if not rows:
            return
        now = _now()
        # After a restart, spread the first checks so they do not all go out at once.
        width = self.config.restart_spread if spread else 0.0
        for order in rows:
            if order.state is State.PLACED and width:
                order.next_at = max(order.next_at, now + self._rand.uniform(0, width))
            self._admit(order)
        if rows:
            log.info("tracker loaded %d unsettled order(s)", len(rows))

    async def _watch_revision(self) -> None:
        if self.store.shared:
            await self._keep_leases()
            return
        revision = await self.store.revision()
        if revision != self._revision:
            if self._revision != -1:
                await self._load_unsettled(spread=False)
            self._revision = revision

    async def _keep_leases(self) -> None:
        """Renew the leases (a third of their length apart), claim what is free, and count the
        open rows others hold (for `until_idle`)."""
        self._claim_soon = False
        clock = time.monotonic()
        if clock >= self._renew_at:
            self._renew_at = clock + self.store.lease_seconds / 3
            self._lose(await self.store.renew(list(self._orders)))
        await self._load_unsettled(spread=False)
        self._others_pending = await self.store.pending_elsewhere(self._delivers)

    def _head(self, heap: list[_Entry], placing: bool) -> TrackedOrder | None:
        """The earliest order of a heap whose entry is current (stale entries are dropped)."""
        while heap:
            due, _, order = heap[0]
            current = (
                order.next_at == due
                and order.id not in self._busy
                and order.id in self._orders
                and (order.state.to_place if placing else order.state.followed)
            )
            if current:
                return order
            heapq.heappop(heap)
        return None

    def _next_due(self, now: float) -> float:
        """When the next API call is due (now, if a sweep has a page to read)."""
        if self._sweep is not None and self._sweep.has_page():
            return now
        due = now + 3600.0
        for heap, placing in ((self._check_heap, False), (self._place_heap, True)):
            head = self._head(heap, placing)
            if head is not None:
                due = min(due, head.next_at)
        return due

    # ----------------------------------------------------------------- choosing the next call

    def _next_work(self, now: float) -> _Work | None:
        """Priority: a page of the sweep in progress or a due check, then a due placement; when
        both are due they take turns, so neither starves the other of the budget."""
        sweep = self._sweep
        placing = self._head(self._place_heap, True)
        place_due = placing is not None and placing.next_at <= now
        if sweep is not None and not (place_due and self._checks_in_row):
            page = sweep.take_page()
            if page is not None:
                self._checks_in_row += 1
                sweep.in_flight += 1
                return _Page(sweep, page)
        order = self._head(self._check_heap, False)
        if place_due and self._checks_in_row:
            order = None
        if order is not None and order.next_at <= now:
            self._checks_in_row += 1
            if sweep is None and order.kind is Kind.GIFT_CARD and order.id not in self._force_check:
                planned = self._plan_sweep(now)
                if planned is not None:
                    self._sweep = planned
                    page = planned.take_page()
                    planned.in_flight += 1
                    return _Page(planned, page or 1)
            heapq.heappop(self._check_heap)
            self._busy.add(order.id)
            self._force_check.discard(order.id)
            return _Check(order)
        if placing is not None and place_due:
            self._checks_in_row = 0
            heapq.heappop(self._place_heap)
            self._busy.add(placing.id)
            return _Place(placing)
        return None

    def _plan_sweep(self, now: float) -> Sweep | None:
        """A sweep of the orders due within one interval, if it costs fewer calls than checks."""
        mode = self.config.check_mode
        if mode == "check" or now < self._plan_not_before:
            return None
        horizon = now + self.config.interval
        candidates = {
            order_id: o
            for order_id, o in self._by_order_id.items()
            if o.state is State.PLACED
            and o.kind is Kind.GIFT_CARD
            and not o.stuck
            and o.next_at <= horizon
            and o.id not in self._busy
            and o.id not in self._force_check
        }
        # Deciding costs a pass over the open orders: not more than twice a second.
        self._plan_not_before = now + 0.5
        if len(candidates) < 2 and mode == "auto":
            return None
        skew = self.config.clock_skew
        window = covering_window(
            order_window(o, self._offset, 2.0, skew) for o in candidates.values()
        )
        pages = estimate_pages(window, len(candidates), self._density, self._unbounded_total)
        if mode == "auto" and pages >= len(candidates):
            return None
        for order in candidates.values():
            self._busy.add(order.id)
        self._count(SWEEPS)
        log.debug("sweep start candidates=%d est_pages=%d", len(candidates), pages)
        return Sweep(window, candidates, now)

    # ----------------------------------------------------------------- executing a call

    async def _execute(self, work: _Work) -> None:
        if isinstance(work, _Page):
            await self._read_page(work.sweep, work.number)
        elif isinstance(work, _Check):
            await self._check(work.order)
        else:
            await self._place(work.order)

    def _note_throttle(self, exc: BaseException) -> None:
        if isinstance(exc, RateLimitError):
            self.budget.throttle(exc.retry_after)
            self._count(THROTTLED)

    async def _place(self, order: TrackedOrder) -> None:
        if order.kind is Kind.PAYMENT:
            await self._place_payment(order)
            return
        now = _now()
        if order.sent_at is None:
            order.sent_at = now
        if order.state is State.INTENT:
            order.state = State.SENT
        order.attempts += 1
        assert order.ref is not None
        try:
            if order.kind is Kind.GIFT_CARD:
                placed_id, recovered = await self._place_order(order)
            else:
                # An answer was lost: look the ref up first, and send again only if it is unknown.
                if order.state is State.UNCERTAIN:
                    if await self._found_by_ref(order):
                        return
                    await self._spend_token()
                sent = await self._send_topup(order)
                placed_id, recovered = sent.topup_id, sent.recovered
        except DuplicateRefError as exc:
            existing = exc.order_id if order.kind is Kind.GIFT_CARD else exc.topup_id
            if existing:
                self._placed(order, existing, adopted=True)
            else:
                await self._resolve_by_ref(order, exc)
        except PlacementUnknownError as exc:
            self._note_throttle(exc.__cause__ or exc)
            self._place_later(order, exc, uncertain=True)
        except OneClickDZError as exc:
            self._note_throttle(exc)
            if is_transient(exc) or isinstance(exc, AuthenticationError | PermissionDeniedError):
                # The key may be fixed, the API may come back: try again later, the same ref.
                self._place_later(order, exc, uncertain=may_have_arrived(exc))
            elif order.state is State.UNCERTAIN or order.attempts > 1:
                # An earlier attempt may have placed it: look before calling it refused.
                await self._resolve_by_ref(order, exc)
            else:
                self._reject(order, exc)
        else:
            self._placed(order, placed_id, adopted=recovered)
        finally:
            self._busy.discard(order.id)
            self._touch(order)
            self._queue(order)

    async def _place_order(self, order: TrackedOrder) -> tuple[str, bool]:
        """placeOrder with the intent's ref: the order's id, and whether it was recovered."""
        self._count(CALLS_PLACE)
        assert order.product_id is not None
        assert order.type_id is not None
        assert order.quantity is not None
        placed = await self.client.gift_cards.place_order(
            order.product_id, order.type_id, order.quantity, order.ref
        )
        return placed.order_id, placed.recovered

    async def _send_topup(self, order: TrackedOrder) -> TopupSent:
        """mobile/send or internet/send with the intent's parameters and ref."""
        p = order.params
        self._count(f"{CALLS_PREFIX}{order.kind.value}/send")
        if order.kind is Kind.MOBILE:
            return await self.client.mobile.send(
                p["plan_code"], p["msisdn"], p.get("amount"), order.ref
            )
        return await self.client.internet.send(p["type"], p["number"], p["value"], order.ref)

    async def _place_payment(self, order: TrackedOrder) -> None:
        """A payment intent came due without its link: `create_payment` stopped before storing
        the ref (a crash), or another process stored it meanwhile. No request: a link has no
        ref to look it up by, and one made and never shown to a payer expires unpaid.

        Closed with the store's conditional write (`publish`: only while still unplaced), as
        its creator stores the link: whichever comes second is refused, so a link handed to a
        payer is never overwritten as rejected."""
        try:
            if order.id in self._creating:  # this process's create_payment is still at it
                order.next_at = _now() + self.config.create_grace
                return
            closed = replace(
                order, state=State.REJECTED, last_error="the payment link's creation did not "
                "finish (the process stopped before storing its ref); no payer was given that "
                "link",
            )  # fmt: skip
            if await self.store.publish(closed):
                _copy_into(order, closed)
                self._forget(order)
                return
            stored = await self.store.load([order.id])  # its creator stored the link: follow it
            if not stored:
                self._forget(order)
                return
            _copy_into(order, stored[0])
            self._registered(order)
            if order.state.settled:
                self._forget(order)
        finally:
            self._busy.discard(order.id)
            self._queue(order)

    def _placed(self, order: TrackedOrder, order_id: str, *, adopted: bool) -> None:
        now = _now()
        every = self.config.poll_interval if order.kind is Kind.GIFT_CARD else self.config.interval
        _mark_placed(order, order_id, now, self._deadline_of(order.kind), every)
        self._by_order_id[order_id] = order
        self._take_early_hint(order)
        log.info(
            "order placed id=%s kind=%s order_id=%s ref=%s recovered=%s", order.id,
            order.kind.value, order_id, order.ref, adopted,
        )  # fmt: skip

    def _place_later(self, order: TrackedOrder, exc: BaseException, *, uncertain: bool) -> None:
        if uncertain:
            order.state = State.UNCERTAIN
        order.last_error = _describe(exc)
        if order.attempts >= self.config.max_place_attempts:
            self._settle(order, State.NEEDS_OPERATOR, f"placement unresolved after "
                         f"{order.attempts} attempts: {order.last_error}")  # fmt: skip
            return
        pause = min(60.0, 0.5 * 2.0 ** min(order.attempts, 8))
        pause *= 0.5 + self._rand.random() / 2
        if isinstance(exc, RateLimitError) and exc.retry_after:
            pause = max(pause, exc.retry_after)
        order.next_at = _now() + pause
        log.info(
            "placement retry id=%s ref=%s attempt=%d uncertain=%s reason=%s", order.id, order.ref,
            order.attempts, uncertain, order.last_error,
        )  # fmt: skip

    def _reject(self, order: TrackedOrder, exc: BaseException) -> None:
        self._settle(order, State.REJECTED, _describe(exc))
        log.warning("placement refused id=%s ref=%s reason=%s", order.id, order.ref,
                    order.last_error)  # fmt: skip

    async def _resolve_by_ref(self, order: TrackedOrder, exc: BaseException) -> None:
        """Find the order an earlier attempt with this ref may have created, in the list (a
        top-up: by check-ref)."""
        assert order.ref is not None
        if order.kind.is_topup:
            await self._resolve_topup_by_ref(order, exc)
            return
        start = (order.sent_at or order.created_at) - self.config.clock_skew
        window = (iso(start), iso(_now() + self.config.clock_skew))
        page, pages = 1, 1
        try:
            while page <= pages:
                if page > 1:
                    await self._spend_token()
                self._count(CALLS_LIST)
                asked = time.monotonic()
                result = await self.client.gift_cards.list_orders_page(
                    page, page_size=PAGE_SIZE, from_=window[0], to=window[1]
                )
                for item in result.items:
                    if item.ref == order.ref:
                        self._placed(order, item.id, adopted=True)
                        self._apply(order, item, _now(), asked)
                        return
                pages = result.pagination.total_pages if result.pagination else 1
                page += 1
        except OneClickDZError as lookup:
            self._note_throttle(lookup)
            self._place_later(order, lookup, uncertain=True)
            return
        self._not_found_by_ref(order, exc)

    def _not_found_by_ref(self, order: TrackedOrder, exc: BaseException) -> None:
        if isinstance(exc, DuplicateRefError):
            self._settle(order, State.NEEDS_OPERATOR, "the API says the ref is used, but "
                         "nothing with it was found")  # fmt: skip
        else:
            self._reject(order, exc)

    async def _resolve_topup_by_ref(self, order: TrackedOrder, exc: BaseException) -> None:
        """After a refusal that follows a lost answer: the top-up the ref names, if any."""
        try:
            found = await self._found_by_ref(order)
        except OneClickDZError as lookup:
            self._note_throttle(lookup)
            self._place_later(order, lookup, uncertain=True)
            return
        if not found:
            self._not_found_by_ref(order, exc)

    async def _found_by_ref(self, order: TrackedOrder) -> bool:
        """check-ref: whether an earlier send with this ref created a top-up (then it is placed
        and what the check says applied). Raises what the check raises, 404 aside."""
        assert order.ref is not None
        self._count(f"{CALLS_PREFIX}{order.kind.value}/check-ref")
        try:
            found = await self._topups(order.kind).check_ref(order.ref)
        except NotFoundError:
            return False
        self._placed(order, found.id, adopted=True)
        self._apply_topup(order, found, _now())
        return True

    def _topups(self, kind: Kind) -> AsyncMobile | AsyncInternet:
        return self.client.mobile if kind is Kind.MOBILE else self.client.internet

    def _deadline_of(self, kind: Kind) -> float:
        """Seconds after placement before an open operation of this kind is flagged stuck."""
        return self.config.payment_deadline if kind is Kind.PAYMENT else self.config.deadline

    def _policy_of(self, kind: Kind) -> PollPolicy:
        if kind is Kind.GIFT_CARD:
            return self._policy
        return self._payment_policy if kind is Kind.PAYMENT else self._topup_policy

    async def _spend_token(self) -> None:
        while (delay := self.budget.delay()) > 0:  # noqa: ASYNC110 - a timed wait, no event
            await asyncio.sleep(delay)
        self.budget.take()

    async def _check(self, order: TrackedOrder) -> None:
        assert order.order_id is not None
        asked = time.monotonic()
        try:
            await self._check_once(order, order.order_id, asked)
        except NotFoundError as exc:
            self._settle(order, State.NEEDS_OPERATOR, f"the API does not know this "
                         f"{order.kind.value} ({_describe(exc)})")  # fmt: skip
        except OneClickDZError as exc:
            self._note_throttle(exc)
            self._after_check(order, _now(), exc, asked)
        finally:
            self._busy.discard(order.id)
            self._touch_checked(order)
            self._queue(order)

    async def _check_once(self, order: TrackedOrder, ident: str, asked: float) -> None:
        """One check of the kind's own (checkOrder, check-id, checkPayment), applied."""
        if order.kind is Kind.GIFT_CARD:
            self._count(CALLS_CHECK)
            self._count(CHECKED_BY_CHECK)
            result = await self.client.gift_cards.check_order(ident)
            self._apply(order, result, _now(), asked)
        elif order.kind.is_topup:
            self._count(f"{CALLS_PREFIX}{order.kind.value}/check-id")
            topup = await self._topups(order.kind).check(ident)
            self._apply_topup(order, topup, _now())
        else:
            self._count(CALLS_PREFIX + "ocpay/checkPayment")
            try:
                payment = await self.client.ocpay.check_payment(ident)
            except PaymentLinkExpiredError as exc:  # 410: never paid, never payable
                self._payment_final(order, "FAILED", {"expired": True, "message": exc.message})
                return
            self._apply_payment(order, payment, _now())

    async def _read_page(self, sweep: Sweep, number: int) -> None:
        window = sweep.window.params()
        self._count(CALLS_LIST)
        asked = time.monotonic()
        try:
            page = await self.client.gift_cards.list_orders_page(
                number, page_size=PAGE_SIZE, from_=window[0], to=window[1]
            )
        except OneClickDZError as exc:
            self._note_throttle(exc)
            if is_transient(exc):
                sweep.retry_pages.append(number)
            else:
                log.warning("sweep abandoned: %s", _describe(exc))
                sweep.abandoned = True
        else:
            now = _now()
            sweep.pages_read += 1
            if number == 1 and page.pagination is not None:
                sweep.total_pages = page.pagination.total_pages
                sweep.total_results = page.pagination.total_results
                self._learn_density(sweep)
                self._maybe_abandon(sweep, page.items)
            elif number == 1:
                sweep.total_pages = 1
            for item in page.items:
                candidate = sweep.candidates.get(item.id)
                if candidate is None or item.id in sweep.seen:
                    continue
                sweep.seen.add(item.id)
                self._count(CHECKED_BY_SWEEP)
                self._apply(candidate, item, now, asked)
                self._busy.discard(candidate.id)
                self._touch_checked(candidate)
                self._queue(candidate)
        finally:
            sweep.in_flight -= 1
            if sweep.done:
                self._finish_sweep(sweep)

    def _learn_density(self, sweep: Sweep) -> None:
        total = sweep.total_results or 0
        length = sweep.window.length
        if length is None:
            self._unbounded_total = total
        elif length > 0:
            self._density = total / length

    def _maybe_abandon(self, sweep: Sweep, first_items: Sequence[Order]) -> None:
        if self.config.check_mode != "auto" or sweep.total_pages is None:
            return
        seen_now = sum(1 for item in first_items if item.id in sweep.candidates)
        remaining = len(sweep.candidates) - seen_now
        if sweep.total_pages - 1 > remaining:
            sweep.abandoned = True
            self._count(SWEEPS_ABANDONED)

    def _finish_sweep(self, sweep: Sweep) -> None:
        if self._sweep is sweep:
            self._sweep = None
        missed = [o for o in sweep.unseen() if o.state is State.PLACED]
        if not sweep.abandoned:
            self._count(SWEEP_MISSES, len(missed))
        for order in missed:
            self._busy.discard(order.id)
            if not sweep.abandoned:
                self._force_check.add(order.id)  # checkOrder it next
            if order.id in self._hint_at:  # hinted while the sweep held it
                self._due_now(order)
            self._queue(order)
        self._wake.set()

    # ----------------------------------------------------------------- what a check tells

    def _apply(
        self, order: TrackedOrder, result: Order, now: float, asked: float | None = None
    ) -> None:
        """What a check (sent at `asked`, monotonic) or a sweep tells about one order."""
        if result.time is not None:
            order.order_time = result.time.timestamp()
            if order.sent_at is not None and not order.adopted:
                sample = order.order_time - order.sent_at
                self._offset = sample if self._offset is None else 0.9 * self._offset + 0.1 * sample
        if order.quantity is None:
            order.quantity = result.quantity
            order.product_id = result.product
            order.type_id = result.type
        if not result.is_final:
            self._after_check(order, now, None, asked)
            return
        self._hint_at.pop(order.id, None)
        sealer = self._checked_open()
        order.status = str(result.status)
        order.fulfilled_quantity = result.fulfilled_quantity
        order.price_per_card = result.price_per_card
        order.final_at = now
        try:
            outcome = Outcome.from_order(result)
        except InconsistentOrderError as exc:
            if result.cards:
                order.sealed_cards = sealer.seal(result.cards, _context(order))
            self._settle(order, State.NEEDS_OPERATOR, f"inconsistent order: {exc}")
            return
        order.amount_charged = outcome.amount_charged
        order.amount_refunded = outcome.amount_refunded
        order.sealed_cards = sealer.seal(outcome.cards, _context(order)) if outcome.cards else None
        order.state = State.FINAL
        order.stuck = False
        order.next_at = now
        log.info("order final id=%s order_id=%s status=%s cards=%d", order.id, order.order_id,
                 order.status, len(outcome.cards))  # fmt: skip

    def _after_check(
        self,
        order: TrackedOrder,
        now: float,
        error: OneClickDZError | None,
        asked: float | None = None,
    ) -> None:
        order.attempts += 1
        order.last_error = None if error is None else _describe(error)
        if order.state.slow:  # waiting for hours, not seconds: a failed check waits as long
            order.next_at = now + self._slow_interval(order)
            return
        started = order.started_at if order.started_at is not None else now
        policy = self._policy_of(order.kind)
        pause = next_pause(policy, order.attempts, now - started, error, self._rand.random)
        if pause is None:
            if not order.stuck:
                log.warning("order stuck id=%s order_id=%s after %.0f s", order.id,
                            order.order_id, now - started)  # fmt: skip
            order.stuck = True
            pause = self.config.stuck_interval
        order.next_at = now + self._after_hint(order, pause, error, asked)

    def _after_hint(
        self, order: TrackedOrder, pause: float, error: OneClickDZError | None, asked: float | None
    ) -> float:
        """The pause after a check (sent at `asked`) of an order a hint named: none if the hint
        came while the check was out, the normal interval if it failed, else as scheduled."""
        hinted = self._hint_at.get(order.id)
        if hinted is None:
            return pause
        if error is not None:  # not answered: again soon, not at the safety schedule's pace
            self._force_check.add(order.id)
            retry = error.retry_after if isinstance(error, RateLimitError) else None
            return min(pause, max(self.config.interval, retry or 0.0))
        if asked is not None and hinted >= asked:  # this answer may predate what the hint says
            self._force_check.add(order.id)
            return 0.0
        del self._hint_at[order.id]  # answered: the API's truth stands, whatever the hint said
        return pause

    def _slow_interval(self, order: TrackedOrder) -> float:
        if order.state is State.QUEUED:
            return self.config.queued_interval
        return self.config.resolution_interval

    def _apply_topup(
        self, order: TrackedOrder, topup: MobileTopup | InternetTopup, now: float
    ) -> None:
        """What a check (or check-ref) tells about a top-up."""
        if topup.created_at is not None:
            order.order_time = topup.created_at.timestamp()
        if not order.params:  # adopted: what it was sent with, as the API shows it
            order.params = _topup_params(topup)
        if topup.balance_amount and topup.status != "REFUNDED":
            order.amount_charged = topup.balance_amount  # the debit: a refund's amount later
        if not topup.is_final:
            self._after_check(order, now, None)
            return
        order.status = str(topup.status)
        order.details.update(_topup_details(topup))
        sealer = self._checked_open()
        card_code = topup.card_code if isinstance(topup, InternetTopup) else None
        try:
            outcome = TopupOutcome.from_topup(topup, debited=order.amount_charged)
        except InconsistentOrderError as exc:
            order.final_at = now
            if card_code:
                order.sealed_cards = sealer.seal_code(card_code, _context(order))
            self._settle(order, State.NEEDS_OPERATOR, f"inconsistent top-up: {exc}")
            return
        if outcome.needs_resolution or outcome.queued:
            self._wait_slowly(order, State.NEEDS_RESOLUTION if outcome.needs_resolution
                              else State.QUEUED, now)  # fmt: skip
            return
        order.amount_charged = outcome.amount_charged
        order.amount_refunded = outcome.amount_refunded
        order.sealed_cards = sealer.seal_code(card_code, _context(order)) if card_code else None
        self._finalised(order, now)

    def _wait_slowly(self, order: TrackedOrder, state: State, now: float) -> None:
        """UNKNOWN_ERROR or QUEUED: not delivered, checked again in an hour (or as set)."""
        first = order.state is not state
        order.state = state
        order.stuck = False
        order.attempts += 1
        order.next_at = now + self._slow_interval(order)
        if state is State.NEEDS_RESOLUTION:
            order.last_error = ("UNKNOWN_ERROR: the API's operator must resolve it (FULFILLED or "
                                "REFUNDED); not a refund")  # fmt: skip
            if first:
                log.error("top-up needs resolution id=%s topup_id=%s ref=%s: UNKNOWN_ERROR, "
                          "not a refund; checked every %.0f s", order.id, order.order_id,
                          order.ref, self.config.resolution_interval)  # fmt: skip
        else:
            order.last_error = None
            if first:
                log.info("recharge queued id=%s topup_id=%s: checked every %.0f s until it ends",
                         order.id, order.order_id, self.config.queued_interval)  # fmt: skip

    def _apply_payment(self, order: TrackedOrder, payment: Payment, now: float) -> None:
        """What checkPayment tells about a link: PENDING goes on, CONFIRMED or FAILED ends it."""
        if not payment.is_final:
            self._after_check(order, now, None)
            return
        self._payment_final(order, str(payment.status), _payment_details(payment), now)

    def _payment_final(
        self, order: TrackedOrder, status: str, details: Mapping[str, Any], now: float | None = None
    ) -> None:
        order.status = status
        order.details.update(details)
        order.amount_charged = Decimal(0)
        order.amount_refunded = Decimal(0)
        self._finalised(order, _now() if now is None else now)

    def _finalised(self, order: TrackedOrder, now: float) -> None:
        """The final state (sealed card, amounts and details set): delivered after the flush."""
        order.final_at = now
        order.state = State.FINAL
        order.stuck = False
        order.last_error = None
        order.next_at = now
        log.info("order final id=%s kind=%s order_id=%s status=%s", order.id, order.kind.value,
                 order.order_id, order.status)  # fmt: skip

    def _settle(self, order: TrackedOrder, state: State, reason: str | None) -> None:
        order.state = state
        order.last_error = reason
        self._forget(order)
        self._touch(order)
        if state is State.NEEDS_OPERATOR:
            log.error("needs an operator id=%s order_id=%s ref=%s: %s", order.id,
                      order.order_id, order.ref, reason)  # fmt: skip

    # ----------------------------------------------------------------- durability

    async def _flusher(self) -> None:
        while True:
            await asyncio.sleep(self.config.flush_interval)
            await self._flush()

    async def _flush(self) -> None:
        # One at a time: a flush (that of `stats()`) returns once what an earlier one took is
        # on disk too, so that the counters read next include every call counted before.
        async with self._flushing:
            await self._flush_once()

    async def _flush_once(self) -> None:
        if not self._dirty and not self._counts:
            return
        dirty, self._dirty = list(self._dirty.values()), {}
        counts, self._counts = self._counts, {}
        try:
            lost = await self.store.save(dirty, counts)
        except BaseException:
            for order in dirty:  # keep them for the next flush
                self._dirty.setdefault(order.id, order)
            for name, n in counts.items():
                self._count(name, n)
            raise
        self._lose(lost)
        for order in dirty:
            if order.id in lost:
                self._by_order_id.pop(order.order_id or "", None)
            elif order.state is State.FINAL and order.id in self._orders:
                self._durable_final.add(order.id)
                self._deliver_wake.set()
        self._wake.set()

    # ----------------------------------------------------------------- delivery

    async def _delivery_worker(self) -> None:
        """One of `delivery_concurrency` loops: deliver the next due final order, or sleep."""
        while self._running:
            order, wait = self._next_delivery(_now())
            if order is None:
                await self._deliver_wake.wait(min(wait, 1.0))
                continue
            self._busy.add(order.id)
            self._deliveries += 1
            try:
                await self._deliver(order)
            except Exception:  # a bug must not end the worker; the order stays final
                log.exception("delivery step failed unexpectedly")
            self._wake.set()  # the dispatcher may be waiting for the last delivery to end

    async def _mark_delivered(self, order: TrackedOrder) -> None:
        """Commit the delivery marker; the markers of handlers that returned side by side (with
        `delivery_concurrency` > 1) share one transaction."""
        self._to_mark.append(_delivered(order))
        pending = self._marking
        if pending is not None:
            lost = await asyncio.shield(pending)
        else:
            marking = self._marking = asyncio.get_running_loop().create_future()
            await asyncio.sleep(0)  # let the handlers that return now join this commit
            batch, self._to_mark, self._marking = self._to_mark, [], None
            try:
                lost = await self.store.deliver_many(batch)
            except BaseException as exc:
                for other in batch:
                    _undelivered(other)
                marking.set_exception(exc)
                marking.exception()  # retrieved here: each waiter handles it
                raise
            marking.set_result(lost)
        if order.id in lost:
            raise LeaseLostError([order.id])

    def _next_delivery(self, now: float) -> tuple[TrackedOrder | None, float]:
        """The next final order to deliver now (on disk, not being changed), else the wait."""
        heap = self._deliver_heap
        while heap:
            due, _, order = heap[0]
            if (
                order.state is not State.FINAL
                or order.next_at != due
                or order.id not in self._orders
                or order.id in self._busy
            ):
                heapq.heappop(heap)
                continue
            if order.id not in self._durable_final or order.id in self._dirty:
                return None, self.config.flush_interval  # the next flush makes it durable
            if due > now:
                return None, due - now
            heapq.heappop(heap)
            return order, 0.0
        return None, 1.0

    async def _deliver(self, order: TrackedOrder) -> None:
        sealer = self._checked_open()
        cards = sealer.open(order.sealed_cards, _context(order)) if order.sealed_cards else ()
        delivery = _delivery(order, cards)
        self._count(HANDLER_CALLS)
        try:
            if self.tx_handler is not None:
                handler = self.tx_handler

                async def effect(tx: Any) -> None:
                    result = handler(delivery, tx)
                    if inspect.isawaitable(result):
                        await result

                await self.store.deliver(_delivered(order), effect)
            else:
                assert self.handler is not None
                if inspect.iscoroutinefunction(self.handler):
                    await self.handler(delivery)
                else:
                    result = await asyncio.to_thread(self.handler, delivery)
                    if inspect.isawaitable(result):
                        await result
                await self._mark_delivered(order)
        except LeaseLostError:
            _undelivered(order)  # another runner has it now: it delivers (the same key)
            self._lose([order.id])
        except Exception as exc:
            _undelivered(order)
            self._count(HANDLER_FAILURES)
            self._delivery_failed(order, exc, cards)
        else:
            self._forget(order)
            log.info("order delivered id=%s order_id=%s key=%s", order.id, order.order_id,
                     delivery.delivery_key)  # fmt: skip
        finally:
            self._busy.discard(order.id)
            self._deliveries -= 1

    def _delivery_failed(self, order: TrackedOrder, exc: Exception, cards: Sequence[Card]) -> None:
        order.delivery_attempts += 1
        message = f"{type(exc).__name__}: {exc}"
        for card in cards:  # a handler's error must not carry a code into the store or a log
            for secret in (card.value, card.serial):
                if secret:
                    message = message.replace(secret, mask(secret) or "****")
        order.last_error = message[:500]
        if order.delivery_attempts >= self.config.max_delivery_attempts:
            self._settle(order, State.DELIVERY_FAILED, order.last_error)
            log.error("delivery failed id=%s order_id=%s attempts=%d: %s", order.id,
                      order.order_id, order.delivery_attempts, order.last_error)  # fmt: skip
            return
        pause = min(60.0, self.config.delivery_backoff * 2.0 ** (order.delivery_attempts - 1))
        order.next_at = _now() + pause
        log.warning("delivery retry id=%s attempt=%d in %.1f s: %s", order.id,
                    order.delivery_attempts, pause, order.last_error)  # fmt: skip
        self._touch(order)
        self._queue(order)


# --------------------------------------------------------------------------- helpers


class _Wake:
    """What the dispatcher sleeps on: a timeout, or `set()` by a finished step (cheaper than
    `wait_for` on an Event, which makes a task per sleep)."""

    def __init__(self) -> None:
        self._waiter: asyncio.Future[None] | None = None
        self._pending = False

    def set(self) -> None:
        self._pending = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait(self, seconds: float) -> None:
        if self._pending:
            self._pending = False
            return
        loop = asyncio.get_running_loop()
        waiter = self._waiter = loop.create_future()
        handle = loop.call_later(seconds, _resolve, waiter)
        try:
            await waiter
        finally:
            handle.cancel()
            self._waiter = None
            self._pending = False


def _remember(memory: OrderedDict[str, Any], key: str, value: Any, limit: int) -> None:
    memory[key] = value
    memory.move_to_end(key)
    if len(memory) > limit:
        memory.popitem(last=False)


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _delivered(order: TrackedOrder) -> TrackedOrder:
    """The row as the delivery marker writes it (undone by `_undelivered` if that fails)."""
    order.state = State.DELIVERED
    order.delivered_at = _now()
    order.last_error = None
    return order


def _undelivered(order: TrackedOrder) -> None:
    if order.state is State.DELIVERED:
        order.state = State.FINAL
        order.delivered_at = None


def _context(order: TrackedOrder) -> str:
    return f"{order.id}|{order.order_id}"


def _delivery(order: TrackedOrder, cards: tuple[Card, ...]) -> Delivery:
    assert order.order_id is not None
    assert order.status is not None
    if order.kind is Kind.GIFT_CARD:
        quantity, delivered = order.quantity or 0, len(cards)
        refunded: Decimal | None = order.amount_refunded or Decimal(0)
    else:  # one top-up or one payment: 1 when it reached its number, or was paid
        quantity, delivered = 1, int(order.status in ("FULFILLED", "CONFIRMED"))
        refunded = order.amount_refunded
    return Delivery(
        delivery_key=order.delivery_key,
        intent_id=order.id,
        order_id=order.order_id,
        status=order.status,
        quantity=quantity,
        delivered=delivered,
        price_per_card=order.price_per_card or Decimal(0),
        amount_charged=order.amount_charged or Decimal(0),
        amount_refunded=refunded,
        meta=order.meta,
        cards=cards,
        kind=order.kind,
        params=order.params,
        details=order.details,
    )


def _intent_row(spec: Spec | PaymentSpec, now: float) -> TrackedOrder:
    """A new intent of any kind, due now; top-ups and orders get a ref of their own."""
    intent_id = _new_id()
    row = TrackedOrder(
        id=intent_id,
        ref=None if spec.kind is Kind.PAYMENT else f"oct-{intent_id[4:]}",
        product_id=None,
        type_id=None,
        quantity=None,
        meta=dict(spec.meta),
        state=State.INTENT,
        created_at=now,
        next_at=now,
        kind=spec.kind,
        params=spec.params(),
    )
    if isinstance(spec, IntentSpec):
        row.product_id, row.type_id, row.quantity = spec.product_id, spec.type_id, spec.quantity
    return row


def _mark_placed(
    order: TrackedOrder, order_id: str, now: float, deadline: float, interval: float
) -> None:
    """Its id (top-up id, link ref) is known: checks begin after `interval`."""
    order.order_id = order_id
    order.state = State.PLACED
    order.placed_at = now
    order.started_at = now
    order.attempts = 0
    order.last_error = None
    order.deadline = now + deadline
    order.next_at = now + interval


def _copy_into(held: TrackedOrder, fresh: TrackedOrder) -> None:
    """Make the row held in memory what `fresh` (written elsewhere) says, in place: the heaps
    hold the object, and its entries go stale as its due time changes."""
    for f in fields(TrackedOrder):
        setattr(held, f.name, getattr(fresh, f.name))


def _topup_params(topup: MobileTopup | InternetTopup) -> dict[str, Any]:
    """An adopted top-up's parameters, as its check shows them."""
    amount = None if topup.topup_amount is None else _plain(topup.topup_amount)
    if isinstance(topup, MobileTopup):
        return {"plan_code": topup.plan_code, "msisdn": topup.msisdn, "amount": amount}
    return {"type": topup.type, "number": topup.number, "value": amount}


def _topup_details(topup: MobileTopup | InternetTopup) -> dict[str, Any]:
    """What a final top-up's view says besides its status: never the card code."""
    details: dict[str, Any] = {}
    if topup.topup_amount is not None:
        details["topup_amount"] = _plain(topup.topup_amount)
    if isinstance(topup, MobileTopup):
        if topup.refund_message:
            details["refund_message"] = topup.refund_message
        if topup.suggested_offers:
            details["suggested_offers"] = [
                {"plan_code": o.plan_code, "typename": o.typename,
                 "amount": None if o.amount is None else _plain(o.amount)}
                for o in topup.suggested_offers
            ]  # fmt: skip
    else:
        if topup.num_trans:
            details["num_trans"] = topup.num_trans
        if topup.date_traitement is not None:
            details["date_traitement"] = iso(topup.date_traitement.timestamp())
    return details


def _payment_details(payment: Payment) -> dict[str, Any]:
    """A final payment's message and, once CONFIRMED, its transaction (amounts as text)."""
    details: dict[str, Any] = {"message": payment.message}
    tx = payment.transaction_details
    if tx is not None:
        details.update(
            paid=f"{tx.amount:.2f}",
            fee=None if tx.fee is None else f"{tx.fee:.2f}",
            net_amount=None if tx.net_amount is None else f"{tx.net_amount:.2f}",
            transaction_ref=tx.transaction_ref,
            payment_method=tx.payment_method,
            completed_at=None if tx.completed_at is None else iso(tx.completed_at.timestamp()),
            currency=tx.currency,
        )
    return details


def _plain(value: Decimal) -> int | str:
    """A whole amount as an int (as it was sent), else its text."""
    return int(value) if value == value.to_integral_value() else str(value)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, APIError):
        return f"{type(exc).__name__} {exc.status_code} {exc.code}: {exc.message}"
    return f"{type(exc).__name__}: {exc}"
