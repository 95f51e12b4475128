"""One tracker, in a process of its own, for bench/bench_tracker.py.

    python -m bench._tracker_worker SPEC.json

The spec names the service (`base_url`, `key`), the store, the `TrackerConfig` fields, and what
to track: `"mode": "place"` writes `count` intents with `place_many` (in chunks of `chunk`),
`"mode": "adopt"` adopts every order id of `ids_file` with `track()`. With `"webhook": {"port",
"secrets"}` it receives signed webhooks on 127.0.0.1:port while it runs. It then runs until
idle with a trivial handler, or, with `"run_for_s": N`, for N seconds from the start of `run()`
(a timer calls `tracker.stop()`; `run()` returns once the calls in flight have answered). The
result (JSON at `out`) holds the tracker's stats, the requests its client really sent, every
order's times, and the process's own RSS and CPU: before the intents are written or the orders
adopted, and at the peak.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import resource
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bench._tracker_common import PSN, TYPE, CountingTransport, max_in_window
from oneclickdz import AiohttpTransport, AsyncClient
from oneclickdz.tracker import Delivery, IntentSpec, TrackedOrder, Tracker, TrackerConfig
from oneclickdz.tracker.sqlite import SQLiteTrackerStore
from oneclickdz.tracker.store import TxEffect


def status_kb(field: str) -> int:
    """A `kB` line of /proc/self/status (VmRSS, VmHWM)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise LookupError(field)


def cpu_s() -> tuple[float, float]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime


class PeakRSS:
    """VmRSS sampled every `every` seconds on the loop; `peak` is the highest seen."""

    def __init__(self, every: float = 0.2) -> None:
        self.every = every
        self.peak = status_kb("VmRSS")
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._watch())

    async def _watch(self) -> None:
        while True:
            self.peak = max(self.peak, status_kb("VmRSS"))
            await asyncio.sleep(self.every)

    async def stop(self) -> None:
        self.peak = max(self.peak, status_kb("VmRSS"))
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


class TimedStore(SQLiteTrackerStore):
    """The SQLite store, with the CPU its writes take (they run synchronously on the loop)."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.cpu: defaultdict[str, float] = defaultdict(float)
        self.rows: Counter[str] = Counter()

    async def insert(self, orders: Sequence[TrackedOrder]) -> None:
        start = time.process_time()
        try:
            await super().insert(orders)
        finally:
            self.cpu["insert"] += time.process_time() - start
            self.rows["insert"] += len(orders)

    async def save(
        self, orders: Sequence[TrackedOrder], counters: Mapping[str, int] | None = None
    ) -> set[str]:
        start = time.process_time()
        try:
            return await super().save(orders, counters)
        finally:
            self.cpu["save"] += time.process_time() - start
            for order in orders:
                self.rows[f"save.{order.state.value}"] += 1

    async def deliver(self, order: TrackedOrder, effect: TxEffect | None = None) -> None:
        start = time.process_time()
        try:
            await super().deliver(order, effect)
        finally:
            self.cpu["deliver"] += time.process_time() - start
            self.rows["deliver"] += 1

    async def deliver_many(self, orders: Sequence[TrackedOrder]) -> set[str]:
        start = time.process_time()
        try:
            return await super().deliver_many(orders)
        finally:
            self.cpu["deliver"] += time.process_time() - start
            self.rows["deliver"] += len(orders)


async def deliver(delivery: Delivery) -> None:
    """The merchant's handler, trivially: nothing to do."""


async def main(spec: dict[str, Any], ids: list[str]) -> dict[str, Any]:
    rss_start = status_kb("VmRSS")
    transport = CountingTransport(AiohttpTransport(max_connections=spec.get("connections", 100)))
    if spec.get("stamps"):  # off at scale: the list itself would weigh on the RSS measured
        transport.stamps = []
    client = AsyncClient(spec["key"], base_url=spec["base_url"], transport=transport)
    config = TrackerConfig(**spec.get("config", {}))
    store = TimedStore(f"sqlite:///{spec['store']}")
    async with client, Tracker(client, store, handler=deliver, config=config) as tracker:
        gc.collect()
        rss_before = status_kb("VmRSS")
        peak = PeakRSS()
        peak.start()
        cpu_before = cpu_s()
        t_admit = time.time()
        if spec["mode"] == "place":
            left, chunk = int(spec["count"]), int(spec.get("chunk", 1000))
            while left > 0:
                n = min(chunk, left)
                await tracker.place_many(IntentSpec(PSN, TYPE, 1) for _ in range(n))
                left -= n
        else:
            for order_id in ids:
                await tracker.track(order_id)
            ids.clear()
        t_stop: float | None = None
        run_for = spec.get("run_for_s")
        timer: asyncio.TimerHandle | None = None
        if run_for is not None:

            def stop() -> None:
                nonlocal t_stop
                t_stop = time.time()
                tracker.stop()

            timer = asyncio.get_running_loop().call_later(float(run_for), stop)
        t_run = time.time()
        try:
            async with contextlib.AsyncExitStack() as stack:
                if hook := spec.get("webhook"):  # receive webhooks beside the run
                    from oneclickdz.tracker.receiver import serve_webhooks

                    await stack.enter_async_context(
                        serve_webhooks(tracker, "127.0.0.1", int(hook["port"]), hook["secrets"])
                    )
                summary = await tracker.run(until_idle=run_for is None)
        finally:
            if timer is not None:
                timer.cancel()
        t_end = time.time()
        cpu_after = cpu_s()
        await peak.stop()
        vm_hwm = status_kb("VmHWM")
        stats = await tracker.stats()
        orders = [
            [o.order_id, o.placed_at, o.final_at, o.delivered_at, o.state.value, o.attempts]
            for o in await tracker.orders()
        ]
    return {
        "rss_start_kb": rss_start,
        "rss_before_kb": rss_before,
        "rss_peak_kb": peak.peak,
        "vm_hwm_kb": vm_hwm,
        "cpu_user_s": round(cpu_after[0] - cpu_before[0], 3),
        "cpu_sys_s": round(cpu_after[1] - cpu_before[1], 3),
        "t_admit": t_admit,
        "t_run": t_run,
        "t_stop": t_stop,
        "t_end": t_end,
        "summary": dict(summary.states),
        "stats": stats.to_dict(),
        "wire": transport.report(),
        "store_cpu_s": {name: round(seconds, 3) for name, seconds in store.cpu.items()},
        "store_rows_written": dict(store.rows),
        "wire_max_calls_in_60s": (
            None if transport.stamps is None else max_in_window(transport.stamps, 60.0)
        ),
        "orders": orders,
    }


if __name__ == "__main__":
    spec = json.loads(Path(sys.argv[1]).read_text())
    adopt = json.loads(Path(spec["ids_file"]).read_text()) if spec["mode"] == "adopt" else []
    result = asyncio.run(main(spec, adopt))
    Path(spec["out"]).write_text(json.dumps(result))
