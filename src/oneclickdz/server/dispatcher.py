"""The webhook dispatcher: delivers the outbox's events to their endpoints, at least once.

Like fulfilment, the database is the queue: every service process runs one dispatcher, which
claims due deliveries with a lease (so a process that dies mid-delivery loses them to another,
or to itself restarted, when the lease ends) and sends each as a signed POST (Standard
Webhooks). At most `concurrency` are in flight; each attempt has `timeout` seconds. A 2xx
delivers; a 410 disables the endpoint (its pending deliveries are cancelled); anything else —
another status, a redirect (never followed), a timeout, a refused connection, an address it may
not send to — is retried after the next delay of the schedule, with ±20% jitter, until the
schedule runs out (then the delivery is FAILED; `admin webhook-replay` sends it again). Every
attempt is logged in the database with its status and latency.

A final order in this process wakes the dispatcher at once; events of other processes are found
by polling the soonest due delivery at least every `POLL` seconds.
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
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from standardwebhooks.webhooks import Webhook

from oneclickdz._version import __version__
from oneclickdz.server.config import ServerConfig
from oneclickdz.server.faults import FaultRule
from oneclickdz.server.formats import now_iso
from oneclickdz.server.store import (
    AttemptRecord,
    DeliveryJob,
    DeliveryState,
    EndpointStatus,
    Store,
    Tx,
)
from oneclickdz.server.vault import Vault
from oneclickdz.server.webhooks import (
    event_id,
    is_public,
    literal_address,
    refusal,
    signing_secrets,
)

log = logging.getLogger("oneclickdz.server.webhooks")

# Seconds before each retry: 5 s, 1 min, 10 min, 1 h, 6 h, 16 h (about 23 h in all), jittered.
DEFAULT_SCHEDULE: tuple[float, ...] = ServerConfig.webhook_retries
JITTER = 0.2
TIMEOUT = 10.0
CONCURRENCY = 32
POLL = 0.5  # seconds between looks for deliveries due from other processes
RETRY_DELAY = 1.0  # seconds before looking again after a failed round
LEASE_MARGIN = 5.0  # a claimed delivery's lease: the attempt's timeout and this much more
GONE = 410


@dataclass(frozen=True, slots=True)
class Result:
    """How one attempt went."""

    outcome: str  # delivered, failed, gone, refused
    status_code: int | None = None
    latency_ms: float | None = None
    error: str | None = None


def retry_delay(schedule: tuple[float, ...], attempts: int, rng: random.Random) -> float | None:
    """Seconds until the next attempt after `attempts` failed ones (None: give up), jittered."""
    if attempts > len(schedule):
        return None
    return schedule[attempts - 1] * rng.uniform(1 - JITTER, 1 + JITTER)


def _claim(tx: Tx, *, now: float, owner: str, until: float, limit: int) -> list[DeliveryJob]:
    return tx.webhooks.claim_due(now, owner, until, limit)


def _record(
    tx: Tx,
    *,
    attempt: AttemptRecord,
    state: DeliveryState,
    next_at: float | None,
    disable: str | None,
) -> None:
    if disable is not None:  # cancels this delivery and every other pending one of the endpoint
        tx.webhooks.set_status(attempt.endpoint_id, EndpointStatus.DISABLED, disable)
    tx.webhooks.record(attempt, state, next_at)


class PrivateAddress(OSError):
    """The host resolves only to addresses a webhook may not go to."""


class PublicResolver(AbstractResolver):
    """aiohttp's resolver, keeping only public addresses: what is connected to is what was
    checked, so a host that changes its DNS answer between the check and the connection (DNS
    rebinding) still cannot reach a private or loopback address."""

    def __init__(self) -> None:
        self._inner = DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        public = [r for r in found if is_public(r["host"])]
        if not public:
            raise PrivateAddress(refusal([r["host"] for r in found], allow_private=False))
        return public

    async def close(self) -> None:
        await self._inner.close()


class Dispatcher:
    def __init__(
        self,
        store: Store,
        vault: Vault,
        rng: random.Random,
        *,
        allow_private: bool = False,
        concurrency: int = CONCURRENCY,
        timeout: float = TIMEOUT,
        schedule: tuple[float, ...] = DEFAULT_SCHEDULE,
        owner: str | None = None,
    ) -> None:
        if concurrency < 1 or timeout <= 0:
            raise ValueError("webhook concurrency must be >= 1 and the timeout > 0")
        self._store = store
        self._vault = vault
        self._rng = rng
        self.allow_private = allow_private
        self.concurrency = concurrency
        self.timeout = timeout
        self.schedule = schedule
        self.lease = timeout + LEASE_MARGIN
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._wake = asyncio.Event()
        self._inflight: set[asyncio.Task[None]] = set()
        self._handed: list[str] = []  # events of orders finished here, leased to us, not sent
        self._ready: list[DeliveryJob] = []  # deliveries we hold, waiting for a free slot
        self._client: aiohttp.ClientSession | None = None
        # Fault injection (`webhook:RATE:FAULT`): the fault for the delivery about to go out.
        self.fault: Callable[[], FaultRule | None] = lambda: None
        # For the metrics: each attempt's outcome and latency in seconds (None: not sent).
        self.on_attempt: Callable[[str, float | None], None] = lambda outcome, seconds: None

    def hold(self) -> tuple[str, float]:
        """The lease a final order's new deliveries start with: this process's, so it sends
        them at once without claiming them (if it dies first, another claims them later)."""
        return self.owner, time.time() + self.lease

    def handoff(self, order_id: str) -> None:
        """An order turned final in this process (its deliveries leased to us by `hold`)."""
        self._handed.append(event_id(order_id))
        self._wake.set()

    def wake(self) -> None:
        """Look for due deliveries now."""
        self._wake.set()

    @property
    def in_flight(self) -> int:
        return len(self._inflight)

    async def run(self) -> None:
        """Claim and deliver due webhooks until cancelled (then in-flight attempts are dropped:
        their leases end and they are sent again, by this process restarted or another)."""
        client = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(
                limit=self.concurrency,
                resolver=None if self.allow_private else PublicResolver(),
            ),
            timeout=aiohttp.ClientTimeout(total=self.timeout),
            trust_env=False,  # no proxy from the environment: the address check is what is sent
            headers={"user-agent": f"oneclickdz-webhooks/{__version__}"},
        )
        self._client = client
        try:
            while True:
                self._wake.clear()
                wait = await self._round()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), wait)
        finally:
            for task in list(self._inflight):
                task.cancel()
            await asyncio.gather(*self._inflight, return_exceptions=True)
            self._client = None
            await client.close()

    async def _round(self) -> float:
        """Start what this process holds and claim what is due; how long to wait before
        looking again."""
        try:
            if self._handed:  # no claim needed: a read of what we already hold
                handed, self._handed = self._handed, []
                self._ready += await self._store.reader().webhooks.leased(handed, self.owner)
            free = self.concurrency - len(self._inflight)
            starting, self._ready = self._ready[:free], self._ready[free:]
            free -= len(starting)
            claimed: list[DeliveryJob] = []
            nearly_full = free < max(1, self.concurrency // 4)  # claim when a quarter is free
            if not nearly_full:
                now = time.time()
                claimed = await self._store.write(
                    partial(_claim, now=now, owner=self.owner, until=now + self.lease, limit=free)
                )
            for job in (*starting, *claimed):
                task = asyncio.create_task(self._deliver(job))
                self._inflight.add(task)
                task.add_done_callback(self._done)
            if self._ready or nearly_full or len(claimed) == free:
                return POLL  # more to do as soon as slots free (a finished attempt wakes)
            now = time.time()
            due = await self._store.reader().webhooks.next_due(now)
            return POLL if due is None else min(POLL, max(0.01, due - now))
        except Exception:
            log.exception("webhook round failed; retrying")
            return RETRY_DELAY

    def _done(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        self._wake.set()  # a slot is free

    async def _deliver(self, job: DeliveryJob) -> None:
        number = job.attempts + 1
        try:
            fault = self.fault()
            if fault is not None and fault.kind == "drop":
                await self._save(job, number, Result("dropped", error="dropped (injected fault)"))
                return
            if fault is not None and fault.kind == "delay":
                # Held past the lease, it would be claimed and sent again meanwhile.
                until = time.time() + fault.seconds + self.lease
                await self._store.write(
                    lambda tx: tx.webhooks.extend(job.event.id, job.endpoint.id, self.owner, until)
                )
                await asyncio.sleep(fault.seconds)
            result = await self._send(job)
            await self._save(job, number, result)
            if fault is not None and fault.kind == "duplicate" and result.outcome == "delivered":
                again = await self._send(job)
                await self._save(job, number + 1, again, duplicate=True)
        except asyncio.CancelledError:
            raise
        except Exception:  # the lease ends and the delivery is claimed again
            log.exception("webhook delivery failed", extra={"eventId": job.event.id})

    async def _send(self, job: DeliveryJob) -> Result:
        client = self._client
        assert client is not None
        endpoint = job.endpoint
        # A literal address is checked here; a host name by the connector's resolver, on the
        # very answer it connects with (`PublicResolver`).
        literal = literal_address(endpoint.url)
        if literal is not None and (reason := refusal([literal], self.allow_private)):
            return Result("refused", error=f"not sent: {reason}")
        now = time.time()
        stamp = datetime.fromtimestamp(int(now), UTC)
        body = job.event.payload.decode()
        signatures = [
            Webhook(secret).sign(job.event.id, stamp, body)
            for secret in signing_secrets(self._vault, endpoint, now)
        ]
        headers = {
            "content-type": "application/json",
            "webhook-id": job.event.id,
            "webhook-timestamp": str(int(now)),
            "webhook-signature": " ".join(signatures),
        }
        started = time.perf_counter()
        try:
            async with client.post(
                endpoint.url, data=job.event.payload, headers=headers, allow_redirects=False
            ) as response:
                status = response.status  # the body is never read
        except TimeoutError:
            return Result("failed", latency_ms=_ms(started), error="timed out")
        except aiohttp.ClientConnectorDNSError as exc:
            private = exc.os_error if isinstance(exc.os_error, PrivateAddress) else None
            reason = str(private) if private else refusal([], self.allow_private)
            return Result("refused", error=f"not sent: {reason}")
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            return Result("failed", latency_ms=_ms(started), error=type(exc).__name__)
        latency = _ms(started)
        if 200 <= status < 300:
            return Result("delivered", status, latency)
        if status == GONE:
            return Result("gone", status, latency, "the receiver answered 410 Gone")
        if 300 <= status < 400:
            return Result("failed", status, latency, "a redirect (not followed)")
        return Result("failed", status, latency, f"HTTP {status}")

    async def _save(
        self, job: DeliveryJob, number: int, result: Result, duplicate: bool = False
    ) -> None:
        state, next_at, disable = DeliveryState.DELIVERED, None, None
        if result.outcome == "gone":
            state, disable = DeliveryState.CANCELLED, "the receiver answered 410 Gone"
        elif result.outcome in ("failed", "refused"):
            delay = retry_delay(self.schedule, number, self._rng)
            if delay is None:
                state = DeliveryState.FAILED
            else:
                state, next_at = DeliveryState.PENDING, time.time() + delay
        outcome = "duplicate" if duplicate else result.outcome
        attempt = AttemptRecord(
            event_id=job.event.id,
            endpoint_id=job.endpoint.id,
            attempt=number,
            time=now_iso(),
            outcome=outcome,
            status_code=result.status_code,
            latency_ms=result.latency_ms,
            error=result.error,
        )
        await self._store.write(
            partial(_record, attempt=attempt, state=state, next_at=next_at, disable=disable)
        )
        self.on_attempt(outcome, None if result.latency_ms is None else result.latency_ms / 1000)
        log.info(
            "webhook attempt",
            extra={
                "eventId": job.event.id,
                "endpointId": job.endpoint.id,
                "attempt": number,
                "outcome": outcome,
                "status": result.status_code,
                "latencyMs": result.latency_ms,
                "state": state.value,
                **({"error": result.error} if result.error else {}),
            },
        )
        if disable is not None:
            log.warning(
                "webhook endpoint disabled",
                extra={"endpointId": job.endpoint.id, "reason": disable},
            )


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)
