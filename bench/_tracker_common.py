"""What bench/bench_tracker.py and its tracker subprocess share.

- `CountingTransport`: wraps the SDK's transport and counts every request that leaves, by
  endpoint, and every 429, so the tracker's own counters and the baseline's calls are checked
  against what actually went over the wire; with a `TokenBucket` it also spends a client-side
  budget before each request (the guide's loop under 600 calls a minute).
- `service_orders`: the service's own record of when each order turned final.
- `place_raw`: many orders placed quickly with bare aiohttp POSTs (the set-up, not a figure).
- `run_tracker`: runs `bench._tracker_worker` in its own process (its RSS and CPU are its own)
  while sampling the counters of its store from outside.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import math
import sqlite3
import statistics
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp

from oneclickdz import AsyncTransport, Request, Response

PSN = "507f1f77bcf86cd799439011"
TYPE = "type_001"
PRICE_DA = 490


# --------------------------------------------------------------------------- numbers


def pct(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (the tracker's own definition); None when there is nothing."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def r(value: float | None, digits: int = 3) -> float | None:
    return None if value is None or math.isnan(value) else round(value, digits)


def epoch(text: str) -> float:
    """The service's ISO-8601 time (`...Z`, milliseconds) as epoch seconds."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


# --------------------------------------------------------------------------- transports


class TokenBucket:
    """A client-side budget: at most `per_minute` requests in any minute, handed out in order."""

    def __init__(self, per_minute: float) -> None:
        self.interval = 60.0 / per_minute
        self._next = 0.0

    async def acquire(self) -> None:
        now = time.monotonic()
        slot = max(now, self._next)
        self._next = slot + self.interval
        if slot > now:
            await asyncio.sleep(slot - now)


def endpoint(url: str) -> str:
    if "/gift-cards/placeOrder" in url:
        return "placeOrder"
    if "/gift-cards/checkOrder/" in url:
        return "checkOrder"
    if "/gift-cards/list" in url:
        return "list"
    return "other"


@dataclass
class CountingTransport:
    """An `AsyncTransport` that counts what goes over the wire (and may spend a budget first)."""

    inner: AsyncTransport
    bucket: TokenBucket | None = None
    calls: Counter[str] = field(default_factory=Counter)
    throttled: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    stamps: list[float] | None = None  # monotonic time of each request, when asked for
    error_samples: list[str] = field(default_factory=list)

    async def send(self, request: Request) -> Response:
        if self.bucket is not None:
            await self.bucket.acquire()
        kind = endpoint(request.url)
        self.calls[kind] += 1
        if self.stamps is not None:
            self.stamps.append(time.monotonic())
        try:
            response = await self.inner.send(request)
        except Exception as exc:
            self.errors[kind] += 1
            if len(self.error_samples) < 5:
                self.error_samples.append(f"{type(exc).__name__}: {exc}"[:200])
            raise
        if response.status_code == 429:
            self.throttled[kind] += 1
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()

    def reset(self) -> None:
        self.calls.clear()
        self.throttled.clear()
        self.errors.clear()

    def report(self) -> dict[str, Any]:
        return {
            "calls": dict(self.calls),
            "total": sum(self.calls.values()),
            "throttled_429": dict(self.throttled),
            "throttled_429_total": sum(self.throttled.values()),
            "transport_errors": dict(self.errors),
            "transport_error_samples": list(self.error_samples),
        }


def max_in_window(stamps: Sequence[float], seconds: float = 60.0) -> int:
    """The most requests in any `seconds`-long window (stamps sorted ascending)."""
    best, lo = 0, 0
    for hi, stamp in enumerate(stamps):
        while stamp - stamps[lo] >= seconds:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


# --------------------------------------------------------------------------- the service


@dataclass(frozen=True, slots=True)
class ServiceOrder:
    created: float
    final: float | None


def service_orders(db_path: Path, ids: Sequence[str] | None = None) -> dict[str, ServiceOrder]:
    """When the service created each order and when it made it final (epoch seconds)."""
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=30)
    try:
        if ids is None:
            rows = conn.execute("SELECT id, time, final_at FROM orders").fetchall()
        else:
            rows = []
            for start in range(0, len(ids), 500):
                chunk = list(ids[start : start + 500])
                marks = ", ".join("?" for _ in chunk)
                rows += conn.execute(
                    f"SELECT id, time, final_at FROM orders WHERE id IN ({marks})", chunk
                ).fetchall()
    finally:
        conn.close()
    return {
        str(oid): ServiceOrder(epoch(created), None if final is None else epoch(final))
        for oid, created, final in rows
    }


def postpone_fulfilment(db_path: Path, ids: Sequence[str], low: float, high: float) -> None:
    """Move these HANDLING orders' due times to creation + U(low, high) seconds.

    The service caps `--fulfill-delay` at 40 s; for minutes-long lifetimes the bench places the
    orders, stops the service, rewrites `due_at` here, and starts it again (the fulfilment queue
    is rebuilt from the database at start-up).
    """
    import random

    rng = random.Random(7)
    conn = sqlite3.connect(db_path, timeout=30)
    try:
        created = service_orders(db_path, ids)
        with conn:
            conn.executemany(
                "UPDATE orders SET due_at = ? WHERE id = ? AND status = 'HANDLING'",
                [(o.created + rng.uniform(low, high), oid) for oid, o in created.items()],
            )
    finally:
        conn.close()


async def place_raw(
    base_url: str, keys: Sequence[str], each: int, *, concurrency: int = 100
) -> list[list[str]]:
    """Place `each` one-card orders for every key, interleaved, `concurrency` POSTs in flight."""
    url = f"{base_url}/gift-cards/placeOrder"
    ids: list[list[str]] = [[] for _ in keys]
    jobs = iter([(k, i) for i in range(each) for k in range(len(keys))])
    stamp = time.time_ns()

    async def worker(session: aiohttp.ClientSession) -> None:
        for k, i in jobs:
            body = {"productId": PSN, "typeId": TYPE, "quantity": 1, "ref": f"b{stamp}-{k}-{i}"}
            headers = {"X-Access-Token": keys[k], "Content-Type": "application/json"}
            for _ in range(5):
                async with session.post(url, data=json.dumps(body), headers=headers) as answer:
                    doc = await answer.json()
                if answer.status == 200:
                    ids[k].append(str(doc["data"]["orderId"]))
                    break
                if answer.status == 403 and doc.get("error", {}).get("code") == "DUPLICATED_REF":
                    ids[k].append(str(doc["error"]["details"]["orderId"]))
                    break
                await asyncio.sleep(0.2)
            else:
                raise RuntimeError(f"placement failed: {answer.status} {doc}")

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    return ids


async def bare_check_rate(
    base_url: str,
    key: str,
    order_ids: Sequence[str],
    *,
    seconds: float,
    rounds: int = 3,
    in_flight: int = 100,
) -> dict[str, Any]:
    """checkOrder GETs with bare aiohttp, `in_flight` tasks cycling over `order_ids`.

    `rounds` rounds of `seconds` each, 2 s apart; the median round counts (the machine is shared).
    """
    headers = {"X-Access-Token": key, "Accept": "application/json"}
    ids = itertools.cycle(order_ids)
    done = 0
    failed = 0

    async def worker(session: aiohttp.ClientSession, stop: float) -> None:
        nonlocal done, failed
        while time.monotonic() < stop:
            async with session.get(f"{base_url}/gift-cards/checkOrder/{next(ids)}") as answer:
                await answer.read()
                if answer.status == 200:
                    done += 1
                else:
                    failed += 1

    rates: list[float] = []
    connector = aiohttp.TCPConnector(limit=in_flight)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:
        warm = time.monotonic() + 1.0
        await asyncio.gather(*(worker(session, warm) for _ in range(in_flight)))
        for _ in range(rounds):
            done = 0
            start = time.monotonic()
            await asyncio.gather(*(worker(session, start + seconds) for _ in range(in_flight)))
            rates.append(done / (time.monotonic() - start))
            await asyncio.sleep(2.0)
    return {
        "checks_per_s": round(statistics.median(rates), 1),
        "rounds_checks_per_s": [round(x, 1) for x in rates],
        "failed": failed,
        "seconds_per_round": seconds,
        "in_flight": in_flight,
    }


# --------------------------------------------------------------------------- the tracker


@dataclass
class Sample:
    """The tracker store's counters at one moment (read from outside its process)."""

    at: float  # epoch seconds
    counters: dict[str, int]
    placed: int  # orders in state `placed` (open, being checked)
    delivered: int


def read_store(path: Path) -> Sample | None:
    if not path.exists():
        return None
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            counters = {str(n): int(v) for n, v in conn.execute("SELECT name, value FROM counters")}
            placed = conn.execute("SELECT COUNT(*) FROM orders WHERE state = 'placed'").fetchone()
            done = conn.execute("SELECT COUNT(*) FROM orders WHERE state = 'delivered'").fetchone()
        finally:
            conn.close()
    except sqlite3.Error:
        return None
    return Sample(time.time(), counters, int(placed[0]), int(done[0]))


async def run_tracker(
    spec: dict[str, Any], workdir: Path, *, sample_every: float = 1.0, limit_s: float = 900.0
) -> tuple[dict[str, Any], list[Sample]]:
    """Run `python -m bench._tracker_worker` on `spec`; its result and the counter samples."""
    spec_path = workdir / f"tracker-{time.time_ns()}.json"
    out_path = spec_path.with_suffix(".out.json")
    spec = {**spec, "out": str(out_path)}
    spec_path.write_text(json.dumps(spec))
    store = Path(spec["store"])
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench._tracker_worker", str(spec_path)
    )
    samples: list[Sample] = []
    deadline = time.monotonic() + limit_s
    try:
        while process.returncode is None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the tracker did not finish within {limit_s:.0f} s")
            sample = await asyncio.to_thread(read_store, store)
            if sample is not None:
                samples.append(sample)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(process.wait(), sample_every)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    if process.returncode != 0:
        raise RuntimeError(f"the tracker process exited {process.returncode}")
    last = read_store(store)
    if last is not None:
        samples.append(last)
    result: dict[str, Any] = json.loads(out_path.read_text())
    return result, samples


def per(numerator: float, denominator: float, digits: int = 4) -> float | None:
    """numerator / denominator, rounded; None when the denominator is 0."""
    return round(numerator / denominator, digits) if denominator else None


def checks_by_load(samples: Sequence[Sample], bins: Sequence[int]) -> list[dict[str, Any]]:
    """Calls per order checked, sweep vs checkOrder, by how many orders were open at the time.

    Each interval between two samples goes to the bin of the open orders at its start.
    """
    edges = [*bins, 10**9]
    rows: list[dict[str, Any]] = []
    sums = [Counter[str]() for _ in bins]
    for a, b in itertools.pairwise(samples):
        where = next(i for i in range(len(bins)) if a.placed < edges[i + 1])
        for name in ("calls.list", "checked.by_sweep", "calls.checkOrder", "checked.by_checkOrder"):
            sums[where][name] += b.counters.get(name, 0) - a.counters.get(name, 0)
        sums[where]["seconds"] += round((b.at - a.at) * 1000)
    for i, total in enumerate(sums):
        if not total["checked.by_sweep"] and not total["checked.by_checkOrder"]:
            continue
        rows.append(
            {
                "open_orders": f"{edges[i]}-{edges[i + 1] - 1}"
                if i + 1 < len(bins)
                else f">={edges[i]}",
                "seconds": round(total["seconds"] / 1000, 1),
                "list_calls": total["calls.list"],
                "checked_by_sweep": total["checked.by_sweep"],
                "calls_per_order_by_sweep": per(total["calls.list"], total["checked.by_sweep"]),
                "checkOrder_calls": total["calls.checkOrder"],
                "checked_by_checkOrder": total["checked.by_checkOrder"],
                "calls_per_order_by_checkOrder": per(
                    total["calls.checkOrder"], total["checked.by_checkOrder"]
                ),
            }
        )
    return rows


def peak_rate(samples: Sequence[Sample], names: Sequence[str], window: float) -> float:
    """The highest rate of these counters over any `window` seconds (between two samples)."""

    def value(s: Sample) -> int:
        return sum(s.counters.get(name, 0) for name in names)

    best, lo = 0.0, 0
    for hi in range(len(samples)):
        while samples[hi].at - samples[lo].at > window:
            lo += 1
        # the widest pair no longer than the window, as long as it spans most of it
        if samples[hi].at - samples[lo].at >= 0.8 * window:
            best = max(
                best, (value(samples[hi]) - value(samples[lo])) / (samples[hi].at - samples[lo].at)
            )
    return best


def checking_span(samples: Sequence[Sample]) -> tuple[float, float, int] | None:
    """(first, last, orders checked): when the checked counters first and last moved."""

    def checked(s: Sample) -> int:
        return s.counters.get("checked.by_sweep", 0) + s.counters.get("checked.by_checkOrder", 0)

    moving = [(a, b) for a, b in itertools.pairwise(samples) if checked(b) > checked(a)]
    if not moving:
        return None
    first, last = moving[0][0], moving[-1][1]
    return first.at, last.at, checked(last) - checked(first)


CHECKED = ("checked.by_sweep", "checked.by_checkOrder")
CALLS = ("calls.list", "calls.checkOrder")


def total(sample: Sample, names: Sequence[str]) -> int:
    return sum(sample.counters.get(name, 0) for name in names)


def steady_rate(
    samples: Sequence[Sample], *, after_checked: int, until: float
) -> dict[str, Any] | None:
    """Orders checked per second once `after_checked` orders have been checked, until `until`.

    The window runs from the first sample whose checked counters reach `after_checked` (the
    first pass over every order is done) to the last sample taken at or before `until` (epoch,
    when the run was stopped). None when fewer than two samples fall in it.
    """
    start = next((s for s in samples if total(s, CHECKED) >= after_checked), None)
    if start is None:
        return None
    window = [s for s in samples if start.at <= s.at <= until]
    if len(window) < 2 or window[-1].at <= start.at:
        return None
    end = window[-1]
    seconds = end.at - start.at
    checked = total(end, CHECKED) - total(start, CHECKED)
    calls = total(end, CALLS) - total(start, CALLS)
    per_interval = [
        (total(b, CHECKED) - total(a, CHECKED)) / (b.at - a.at)
        for a, b in itertools.pairwise(window)
        if b.at > a.at
    ]
    return {
        "start": start.at,
        "end": end.at,
        "seconds": round(seconds, 1),
        "orders_checked": checked,
        "checked_per_s": round(checked / seconds, 1),
        "calls": calls,
        "calls_per_s": round(calls / seconds, 1),
        "orders_checked_per_call": per(checked, calls, 2),
        "per_second_checked_per_s": [round(x) for x in per_interval],
    }
