"""Signed webhooks (issue 10): how fast the service's dispatcher delivers, and what webhooks save
the tracker against the guide's polling.

1. dispatch   One service process (SQLite, `--webhook-allow-private`) with an endpoint pointing
              at a local receiver in a process of its own (`bench/_webhook_sink.py`, answers
              204 at once). N orders are placed and delivered live; the lag from each order's
              `final_at` to its arrival at the receiver is reported. Then, R interleaved rounds:
              (a) a backlog: the service is stopped, its N deliveries made due again in the
              database (as after an outage), the service started, and the events per second
              from the first arrival to the N-th are measured: the dispatcher's throughput,
              signing and recording every attempt, 32 in flight (its default);
              (b) the baseline: a bare aiohttp client, 32 in flight, POSTing the same N bodies,
              signed the same way, to the same receiver. Medians; the ratio (a)/(b).

2. tracker    The same service (`--fulfill-delay 2-10`, no rate limit), N orders each side, at
              the same time: (a) the tracker (`bench/_tracker_worker.py`, its own process)
              places N intents on key W, whose webhook endpoint is the tracker's own receiver
              (`TrackerConfig(webhooks=True)`: a verified event -> one checkOrder; safety polls
              every 60 s); (b) the guide's loop on key P places N orders and polls each with
              checkOrder every 5 s. Detection lag = when the contender saw the order final -
              the service's `final_at`. Calls per order = every request on the wire / N.
              Targets: webhooks p99 lag <= 100 ms and <= 2.0 calls per order.

    python -m bench.bench_webhooks                 # every part
    python -m bench.bench_webhooks --only dispatch
    python -m bench.bench_webhooks --quick         # scaled down; results not saved
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import httpx
from standardwebhooks.webhooks import Webhook

from bench._common import ratio, save_results
from bench._tracker_common import (
    PSN,
    TYPE,
    CountingTransport,
    epoch,
    pct,
    r,
    run_tracker,
    service_orders,
)
from bench.bench_tracker import GUIDE, lag_figures, lags, tracker_seen
from oneclickdz import AiohttpTransport, AsyncClient
from oneclickdz.server.testing import Service, free_port


def query(svc: Service, sql: str) -> list[tuple[Any, ...]]:
    """One statement on the service's SQLite database, committed at once; its rows."""
    with contextlib.closing(sqlite3.connect(svc.db_path, isolation_level=None)) as db:
        return db.execute(sql).fetchall()


CONCURRENCY = 32


class Sink:
    """The receiver process (bench/_webhook_sink.py)."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/hooks"
        self._log = (workdir / "sink.log").open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench._webhook_sink", str(self.port)],
            stdout=self._log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 20
        while True:
            try:
                self.arrivals()
                return
            except httpx.HTTPError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError("the webhook sink did not start") from None
                time.sleep(0.05)

    def arrivals(self) -> list[tuple[str, float]]:
        data: list[tuple[str, float]] = httpx.get(self.url, timeout=30).json()
        return data

    def reset(self) -> None:
        httpx.post(f"http://127.0.0.1:{self.port}/reset", timeout=10)

    def wait_for(self, count: int, within: float) -> list[tuple[str, float]]:
        deadline = time.monotonic() + within
        while True:
            got = self.arrivals()
            if len({i for i, _ in got}) >= count:
                return got
            if time.monotonic() > deadline:
                raise RuntimeError(f"{len(got)} webhooks of {count} within {within} s")
            time.sleep(0.2)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)
        self._log.close()


async def place_many(base_url: str, key: str, count: int) -> list[str]:
    ids: list[str] = []
    todo = iter(range(count))
    async with httpx.AsyncClient(base_url=base_url, headers={"X-Access-Token": key}) as c:

        async def worker() -> None:
            for _ in todo:
                body = {"productId": PSN, "typeId": "type_001", "quantity": 1}
                response = await c.post("/gift-cards/placeOrder", json=body, timeout=30)
                ids.append(response.json()["data"]["orderId"])

        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return ids


async def bare_sender(url: str, bodies: Sequence[tuple[str, bytes]], secret: str) -> float:
    """Events per second a plain aiohttp client (the dispatcher's) pushes to the receiver: same
    concurrency, each body signed as the dispatcher signs it, nothing recorded."""
    todo = iter(bodies)
    connector = aiohttp.TCPConnector(limit=CONCURRENCY)
    async with aiohttp.ClientSession(connector=connector) as client:

        async def worker() -> None:
            for event_id, body in todo:
                now = time.time()
                stamp = datetime.fromtimestamp(int(now), UTC)
                headers = {
                    "content-type": "application/json",
                    "webhook-id": event_id,
                    "webhook-timestamp": str(int(now)),
                    "webhook-signature": Webhook(secret).sign(event_id, stamp, body.decode()),
                }
                async with client.post(url, data=body, headers=headers) as response:
                    response.raise_for_status()

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        return len(bodies) / (time.perf_counter() - started)


def part_dispatch(workdir: Path, orders: int, rounds: int) -> dict[str, Any]:
    sink = Sink(workdir)
    svc = Service(
        workdir,
        fulfill_delay="0.2-1",
        extra_args=("--webhook-allow-private", "--rate-limit", "0", "--log-level", "warning"),
    ).start()
    try:
        key = svc.create_key(sandbox=True, balance=orders * 1000)
        secret = svc.admin("add-webhook", key, sink.url, "--allow-private").splitlines()[-1]
        ids = asyncio.run(place_many(svc.base_url, key, orders))
        arrivals = sink.wait_for(orders, within=120)
        final_at = {row[0]: epoch(row[1]) for row in query(svc, "SELECT id, final_at FROM orders")}
        first_arrival: dict[str, float] = {}
        for event_id, at in arrivals:
            first_arrival.setdefault(event_id.removeprefix("evt_"), at)
        live_lags = [first_arrival[i] - final_at[i] for i in ids]
        bodies = [
            (str(row[0]), str(row[1]).encode())
            for row in query(svc, "SELECT id, payload FROM webhook_events")
        ]
        dispatcher: list[float] = []
        baseline: list[float] = []
        for number in range(rounds):
            svc.stop()
            query(
                svc,
                "UPDATE webhook_deliveries SET state = 'PENDING', attempts = 0, next_at = 0, "
                "lease_owner = NULL, lease_until = NULL",
            )
            sink.reset()
            svc.start()
            got = sink.wait_for(orders, within=300)
            stamps = sorted(at for _, at in got)
            dispatcher.append(orders / (stamps[-1] - stamps[0]))
            sink.reset()
            baseline.append(asyncio.run(bare_sender(sink.url, bodies, secret)))
            print(
                f"[dispatch] round {number + 1}: dispatcher {dispatcher[-1]:.0f} events/s, "
                f"bare aiohttp {baseline[-1]:.0f}/s",
                flush=True,
            )
        attempts = query(svc, "SELECT COUNT(*) FROM webhook_attempts")[0][0]
    finally:
        svc.stop()
        sink.stop()
    d, b = statistics.median(dispatcher), statistics.median(baseline)
    figures = {
        "orders": orders,
        "rounds": rounds,
        "concurrency": CONCURRENCY,
        "live_delivery_lag": {
            "p50_ms": r((pct(live_lags, 0.5) or 0) * 1000, 1),
            "p99_ms": r((pct(live_lags, 0.99) or 0) * 1000, 1),
            "max_ms": r(max(live_lags) * 1000, 1),
        },
        "dispatcher_events_per_s": round(d),
        "bare_aiohttp_events_per_s": round(b),
        "ratio_to_bare_sender": ratio(d, b),
        "rounds_dispatcher": [round(x) for x in dispatcher],
        "rounds_bare": [round(x) for x in baseline],
        "attempts_logged": attempts,
    }
    lag = figures["live_delivery_lag"]
    print(
        f"[dispatch] {orders} events: live lag final_at -> receiver p50 {lag['p50_ms']} ms, "
        f"p99 {lag['p99_ms']} ms; backlog {round(d)} events/s vs bare aiohttp {round(b)}/s "
        f"-> {figures['ratio_to_bare_sender']}x",
        flush=True,
    )
    return figures


async def guide_loop(base_url: str, key: str, count: int) -> tuple[dict[str, float], Any]:
    """The guide's loop: place `count` orders (32 at a time), poll each every 5 s until final."""
    transport = CountingTransport(AiohttpTransport(max_connections=100))
    seen: dict[str, float] = {}
    async with AsyncClient(key, base_url=base_url, transport=transport) as client:
        todo = iter(range(count))
        placed: list[str] = []

        async def place() -> None:
            for _ in todo:
                placed.append((await client.gift_cards.place_order(PSN, TYPE, 1)).order_id)

        async def follow(order_id: str) -> None:
            await client.gift_cards.wait(order_id, policy=GUIDE)
            seen[order_id] = time.time()

        follows: list[asyncio.Task[None]] = []

        async def placer() -> None:
            await asyncio.gather(*(place() for _ in range(CONCURRENCY)))

        placing = asyncio.create_task(placer())
        while not placing.done() or len(follows) < len(placed):
            follows += [asyncio.create_task(follow(i)) for i in placed[len(follows) :]]
            await asyncio.sleep(0.01)
        await placing
        await asyncio.gather(*follows)
    return seen, transport.report()


async def part_tracker(workdir: Path, orders: int) -> dict[str, Any]:
    svc = Service(
        workdir, fulfill_delay="2-10", seed=1,
        extra_args=("--webhook-allow-private", "--rate-limit", "0", "--log-level", "warning"),
    ).start()  # fmt: skip
    try:
        port = free_port()
        w_key = svc.create_key(sandbox=True, account="webhooks", balance=orders * 1000)
        p_key = svc.create_key(sandbox=True, account="polling", balance=orders * 1000)
        url = f"http://127.0.0.1:{port}/hooks"
        secret = svc.admin("add-webhook", w_key, url, "--allow-private").splitlines()[-1]
        spec = {
            "base_url": svc.base_url,
            "key": w_key,
            "store": str(workdir / "tracker.db"),
            "mode": "place",
            "count": orders,
            "config": {"rate_per_minute": None, "webhooks": True, "safety_interval": 60.0},
            "webhook": {"port": port, "secrets": [secret]},
        }
        (result, _), (g_seen, g_wire) = await asyncio.gather(
            run_tracker(spec, workdir, limit_s=600),
            guide_loop(svc.base_url, p_key, orders),
        )
        truth = service_orders(svc.db_path)
        stats = result["stats"]
    finally:
        svc.stop()
    t_lag = lags(tracker_seen(result), truth)
    g_lag = lags(g_seen, truth)
    t_calls = result["wire"]["total"] / orders
    g_calls = g_wire["total"] / orders
    webhook_counts = {k: v for k, v in stats.get("counters", stats).items() if "webhook" in k}
    figures: dict[str, Any] = {
        "orders_each": orders,
        "webhooks": {
            "detection_lag": lag_figures(t_lag),
            "calls_per_order": round(t_calls, 3),
            "wire": result["wire"]["calls"],
            "delivered": result["summary"],
            "webhook_counters": webhook_counts,
        },
        "polling_5s": {
            "detection_lag": lag_figures(g_lag),
            "calls_per_order": round(g_calls, 3),
            "wire": g_wire["calls"],
        },
        "lag_p99_ratio": ratio(lag_figures(t_lag)["p99_s"] or 0, lag_figures(g_lag)["p99_s"] or 0),
        "calls_ratio": ratio(t_calls, g_calls),
        "target": {"max_lag_p99_s": 0.1, "max_calls_per_order": 2.0},
        "target_met": (lag_figures(t_lag)["p99_s"] or 1e9) <= 0.1 and t_calls <= 2.0,
    }
    tl, gl = lag_figures(t_lag), lag_figures(g_lag)
    print(
        f"[tracker] {orders} orders each: detection lag p50/p99/mean webhooks "
        f"{tl['p50_s']}/{tl['p99_s']}/{tl['mean_s']} s vs 5 s polling "
        f"{gl['p50_s']}/{gl['p99_s']}/{gl['mean_s']} s; calls per order {t_calls:.3f} vs "
        f"{g_calls:.3f} (target p99 <= 0.1 s, <= 2.0 calls: "
        f"{'met' if figures['target_met'] else 'NOT met'})",
        flush=True,
    )
    return figures


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--only", choices=["dispatch", "tracker"], default=None)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    figures: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-webhooks-") as tmp:
        workdir = Path(tmp)
        if args.only in (None, "dispatch"):
            orders, rounds = (500, 2) if args.quick else (3000, 5)
            (workdir / "dispatch").mkdir()
            figures["dispatch"] = part_dispatch(workdir / "dispatch", orders, rounds)
        if args.only in (None, "tracker"):
            (workdir / "tracker").mkdir()
            n = 200 if args.quick else 1000
            figures["tracker"] = asyncio.run(part_tracker(workdir / "tracker", n))
    if not args.quick:
        print(f"saved {save_results('webhooks', figures)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
