"""Prometheus metrics for the service, served at `/metrics` (`serve --no-metrics` turns them off).

Each service has its own `CollectorRegistry`, so several services in one process (tests, the
merchant fixture) never mix their figures. Labels are bounded: a request is labelled by its
route's name (`checkOrder`, never the order id in its path) or `unmatched`, and by its status.
Nothing a client sends other than the route it reached is ever recorded: no key, no code.

Requests are tallied in plain lists on the event loop (no lock, no label lookup: a few
microseconds a request) and turned into a counter and a histogram when scraped. Refusals and
fulfilment lag use `prometheus_client`'s own instruments; orders by status and the write queue
are read from the store when scraped.
"""

from __future__ import annotations

import asyncio
import time
from bisect import bisect_left
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Protocol, runtime_checkable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from oneclickdz.server.logs import request_id
from oneclickdz.server.store import OrderStatus

METRICS_PATH = "/metrics"
UNMATCHED = "unmatched"
NO_RESPONSE = "none"  # the status label of a request that got no answer (client gone, reset)

# Seconds. The service answers in well under a millisecond to a few; a write waits for fsync.
LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
# Seconds after its due time an order was final: milliseconds normally, more after a restart.
LAG_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)

_ORDER_SERIES = [(env, status.value) for env in ("SANDBOX", "PRODUCTION") for status in OrderStatus]
# Which events of `Authenticator.observe` each refusal counter counts.
_AUTH_FAILURES = frozenset({"invalid_token", "ip_blocked"})  # the blocking attempt failed too


class RequestTally(Collector):
    """Requests by (route, status): a latency histogram's bucket counts and sum, per pair.

    Written only by the event loop; read by a scrape on another thread from copies (each copy
    is one C-level operation under the GIL, so a scrape sees whole requests).
    """

    def __init__(self) -> None:
        # (route, status) -> [count in each latency bucket..., count above the last, sum]
        self.cells: dict[tuple[str, int | str], list[float]] = {}

    def add(self, route: str, status: int | str, seconds: float) -> None:
        cell = self.cells.get((route, status))
        if cell is None:
            cell = self.cells[(route, status)] = [0] * (len(LATENCY_BUCKETS) + 2)
        cell[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        cell[-1] += seconds

    def collect(self) -> Iterable[Metric]:
        cells = [(key, list(cell)) for key, cell in self.cells.copy().items()]
        requests = CounterMetricFamily(
            "oneclickdz_requests", "HTTP requests answered, by route name and status.",
            labels=["route", "status"],
        )  # fmt: skip
        per_route: dict[str, list[float]] = {}
        for (route, status), cell in sorted(cells, key=lambda item: str(item[0])):
            requests.add_metric([route, str(status)], sum(cell[:-1]))
            total = per_route.setdefault(route, [0] * len(cell))
            for index, number in enumerate(cell):
                total[index] += number
        yield requests
        latency = HistogramMetricFamily(
            "oneclickdz_request_duration_seconds",
            "Time from a request's arrival to the end of its answer, by route name.",
            labels=["route"],
        )
        bounds = [*map(floatToGoString, LATENCY_BUCKETS), "+Inf"]
        for route, total in sorted(per_route.items()):
            cumulative, buckets = 0.0, []
            for bound, number in zip(bounds, total[:-1], strict=True):
                cumulative += number
                buckets.append((bound, cumulative))
            latency.add_metric([route], buckets, total[-1])
        yield latency


@runtime_checkable
class StoreGauges(Protocol):
    """What a store offers to be watched: a SQLite store does; a store without it is skipped."""

    def order_counts(self) -> dict[tuple[str, str], int]:
        """Orders by (env, status), read now."""
        ...

    def write_queue_depth(self) -> int:
        """Writes submitted and not yet taken by the writer."""
        ...


class StoreCollector(Collector):
    """Orders by status and the write queue, read at scrape time (the store is the truth, so
    the figures include orders from before a restart and from other processes)."""

    def __init__(self, store: object, pending: Callable[[], int], counts_ttl: float = 1.0) -> None:
        self._store = store if isinstance(store, StoreGauges) else None
        self._pending = pending
        self._counts_ttl = counts_ttl
        self._counts: tuple[float, dict[tuple[str, str], int]] | None = None

    def collect(self) -> Iterable[Metric]:
        pending = GaugeMetricFamily(
            "oneclickdz_fulfilment_pending",
            "Orders this process has claimed (leased) for fulfilment and not yet finished.",
        )
        pending.add_metric([], self._pending())
        yield pending
        if self._store is None:
            return
        by_status = GaugeMetricFamily(
            "oneclickdz_orders", "Orders in the database, by environment and status.",
            labels=["env", "status"],
        )  # fmt: skip
        counts = dict.fromkeys(_ORDER_SERIES, 0)  # every series, even at zero: none vanish
        counts.update(self._order_counts())
        for (env, status), count in sorted(counts.items()):
            by_status.add_metric([env, status], count)
        yield by_status
        queue = GaugeMetricFamily(
            "oneclickdz_db_write_queue",
            "Database writes waiting for the writer thread (each is answered once committed).",
        )
        queue.add_metric([], self._store.write_queue_depth())
        yield queue

    def _order_counts(self) -> dict[tuple[str, str], int]:
        """The counts, re-read at most once per `counts_ttl` s: scraping in a loop stays cheap."""
        assert self._store is not None
        now = time.monotonic()
        if self._counts is None or now - self._counts[0] >= self._counts_ttl:
            self._counts = (now, self._store.order_counts())
        return self._counts[1]


class ServiceMetrics:
    """One service's metrics: the registry, the instruments, and the hooks that feed them."""

    def __init__(self, store: object, pending: Callable[[], int]) -> None:
        self.registry = registry = CollectorRegistry()
        self.requests = RequestTally()
        registry.register(self.requests)
        self.fulfilment_lag = Histogram(
            "oneclickdz_fulfilment_lag_seconds",
            "Seconds between an order's due time and its final state being committed.",
            buckets=LAG_BUCKETS, registry=registry,
        )  # fmt: skip
        self.auth_failures = Counter(
            "oneclickdz_auth_failures",
            "Requests refused for an invalid access token (each counts toward the IP lockout).",
            registry=registry,
        )
        self.ip_blocks = Counter(
            "oneclickdz_ip_blocks", "IPs blocked after too many invalid access tokens.",
            registry=registry,
        )  # fmt: skip
        self.rate_limited = Counter(
            "oneclickdz_rate_limited_requests",
            "Requests refused with 429 by a key's rate limit.",
            registry=registry,
        )
        self.webhook_attempts = Counter(
            "oneclickdz_webhook_attempts",
            "Webhook delivery attempts by outcome: delivered, failed, gone (410), refused "
            "(address), dropped (fault), duplicate (fault).",
            labelnames=["outcome"], registry=registry,
        )  # fmt: skip
        self.webhook_latency = Histogram(
            "oneclickdz_webhook_latency_seconds",
            "Seconds a webhook receiver took to answer (attempts that reached it).",
            buckets=LATENCY_BUCKETS, registry=registry,
        )  # fmt: skip
        registry.register(StoreCollector(store, pending))

    # -- hooks -----------------------------------------------------------------------------

    def auth_event(self, event: str) -> None:
        """`Authenticator.observe`: "invalid_token", "ip_blocked" or "rate_limited"."""
        if event in _AUTH_FAILURES:
            self.auth_failures.inc()
        if event == "ip_blocked":
            self.ip_blocks.inc()
        elif event == "rate_limited":
            self.rate_limited.inc()

    def order_final(self, lag: float) -> None:
        """`Fulfilment.on_final`: an order's final state was committed `lag` s after its due
        time (negative when a test finished it early: counted as on time)."""
        self.fulfilment_lag.observe(max(0.0, lag))

    def webhook_attempt(self, outcome: str, seconds: float | None) -> None:
        """`Dispatcher.on_attempt`: one attempt's outcome and, if it reached the receiver, its
        latency."""
        self.webhook_attempts.labels(outcome).inc()
        if seconds is not None:
            self.webhook_latency.observe(seconds)

    # -- HTTP ------------------------------------------------------------------------------

    def route(self) -> Route:
        """`GET /metrics`, in the text exposition format."""
        registry = self.registry

        async def metrics(request: Request) -> Response:
            # Off the event loop: counting orders reads the database.
            body = await asyncio.to_thread(generate_latest, registry)
            return Response(
                body,
                media_type=CONTENT_TYPE_LATEST,
                headers={"x-request-id": request_id.get() or "", "cache-control": "no-store"},
            )

        return Route(METRICS_PATH, metrics, methods=["GET"], name="metrics")

    def middleware(self, app: ASGIApp, routes: Sequence[BaseRoute], unfaulted: ASGIApp) -> ASGIApp:
        """Count and time every request to `app`; `unfaulted` is it without injected faults."""
        return MetricsMiddleware(app, self.requests, routes, unfaulted)


class MetricsMiddleware:
    """Counts and times every HTTP request (pure ASGI: `send` is wrapped by a plain function,
    so no extra coroutine per message).

    The route is the one Starlette's router picked (`scope["route"]`); a request answered before
    routing (an injected fault) is matched against the routes here, and anything else is
    `unmatched`. A scrape goes straight to `unfaulted` (the app without injected faults): faults
    are for testing the API's clients, not the monitoring.
    """

    def __init__(
        self, app: ASGIApp, tally: RequestTally, routes: Sequence[BaseRoute], unfaulted: ASGIApp
    ) -> None:
        self.app = app
        self.tally = tally
        self.routes = routes
        self.unfaulted = unfaulted

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status: int | str = NO_RESPONSE

        def send_and_note(message: Message) -> Awaitable[None]:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            return send(message)  # the server's awaitable itself: no coroutine of our own

        app = self.unfaulted if scope["path"] == METRICS_PATH else self.app
        try:
            await app(scope, receive, send_and_note)
        finally:
            name = getattr(scope.get("route"), "name", None)
            self.tally.add(name or self.route_name(scope), status, time.perf_counter() - start)

    def route_name(self, scope: Scope) -> str:
        """The name of the route a request reached, or would have (answered before routing)."""
        route = scope.get("route")
        if route is None:
            for candidate in self.routes:
                if candidate.matches(scope)[0] is not Match.NONE:
                    route = candidate
                    break
            else:
                return UNMATCHED
        name = getattr(route, "name", None) or getattr(route, "path", None)
        return name if isinstance(name, str) else UNMATCHED
