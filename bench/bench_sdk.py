"""SDK overhead and async throughput, each beside a raw-HTTP baseline measured in the same run.

1. Per-call cost of `Client.check_order` vs a raw `httpx.Client.get` of the same URL
   (target: at most 1.3x).
2. `AsyncClient` throughput at 10/100/500 requests in flight, over the aiohttp transport and over
   httpx, vs raw aiohttp GETs of the same URL (target: at least 0.7x of raw aiohttp at 100).

Both sides hit the same `oneclickdz serve` (rate limit lifted) for the same FULFILLED order, whose
answer carries two cards. Rounds alternate between contenders and the median round counts, so a
slow moment of the shared machine does not land on one side only.

    python -m bench.bench_sdk
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import httpx

from bench._common import ratio, save_results
from oneclickdz import AiohttpTransport, AsyncClient, Client, PollPolicy
from oneclickdz.server.testing import Service

PSN = "507f1f77bcf86cd799439011"
SYNC_CALLS = 1500
SYNC_ROUNDS = 5
ASYNC_REQUESTS = 3000
ASYNC_ROUNDS = 3
CONCURRENCY = (10, 100, 500)


def _median_rate(samples: list[float]) -> float:
    return statistics.median(samples)


# --------------------------------------------------------------------------- sync


def bench_sync(base_url: str, key: str, order_id: str) -> dict[str, Any]:
    """Microseconds per call: SDK check_order vs raw httpx GET, interleaved rounds."""
    url = f"{base_url}/gift-cards/checkOrder/{order_id}"
    sdk_us: list[float] = []
    raw_us: list[float] = []
    with Client(key, base_url=base_url) as client, httpx.Client() as raw:
        headers = {"X-Access-Token": key, "Accept": "application/json"}

        def sdk_call() -> None:
            client.gift_cards.check_order(order_id)

        def raw_call() -> None:
            raw.get(url, headers=headers).raise_for_status()

        for _ in range(200):  # warm up both: connections, caches
            sdk_call()
            raw_call()
        for _ in range(SYNC_ROUNDS):
            for fn, out in ((raw_call, raw_us), (sdk_call, sdk_us)):
                start = time.perf_counter()
                for _ in range(SYNC_CALLS):
                    fn()
                out.append((time.perf_counter() - start) / SYNC_CALLS * 1e6)
    sdk, raw_ = statistics.median(sdk_us), statistics.median(raw_us)
    return {
        "sdk_check_order_us": round(sdk, 1),
        "raw_httpx_get_us": round(raw_, 1),
        "ratio": ratio(sdk, raw_),
        "target_max_ratio": 1.3,
        "calls_per_round": SYNC_CALLS,
        "rounds": SYNC_ROUNDS,
    }


# --------------------------------------------------------------------------- async


async def _drive(call: Callable[[], Awaitable[object]], in_flight: int, total: int) -> float:
    """Requests per second with `in_flight` workers sharing `total` calls."""
    remaining = total

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await call()

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(in_flight)))
    return total / (time.perf_counter() - start)


async def bench_async(base_url: str, key: str, order_id: str) -> dict[str, Any]:
    url = f"{base_url}/gift-cards/checkOrder/{order_id}"
    headers = {"X-Access-Token": key, "Accept": "application/json"}
    figures: dict[str, Any] = {}
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100)) as session,
        AsyncClient(
            key, base_url=base_url, transport=AiohttpTransport(max_connections=100)
        ) as fast,
        AsyncClient(key, base_url=base_url) as default,
    ):

        async def raw_call() -> None:
            async with session.get(url, headers=headers) as answer:
                await answer.read()
                answer.raise_for_status()

        async def fast_call() -> None:
            await fast.gift_cards.check_order(order_id)

        async def httpx_call() -> None:
            await default.gift_cards.check_order(order_id)

        contenders: dict[str, Callable[[], Awaitable[None]]] = {
            "raw_aiohttp": raw_call,
            "sdk_aiohttp": fast_call,
            "sdk_httpx": httpx_call,
        }
        for call in contenders.values():  # warm up: open the pools
            await _drive(call, 100, 400)
        for in_flight in CONCURRENCY:
            rates: dict[str, list[float]] = {name: [] for name in contenders}
            for _ in range(ASYNC_ROUNDS):
                for name, call in contenders.items():
                    total = ASYNC_REQUESTS if name != "sdk_httpx" else ASYNC_REQUESTS // 3
                    rates[name].append(await _drive(call, in_flight, total))
            medians = {name: _median_rate(r) for name, r in rates.items()}
            figures[f"in_flight_{in_flight}"] = {
                "raw_aiohttp_rps": round(medians["raw_aiohttp"]),
                "sdk_aiohttp_rps": round(medians["sdk_aiohttp"]),
                "sdk_httpx_rps": round(medians["sdk_httpx"]),
                "sdk_aiohttp_ratio": ratio(medians["sdk_aiohttp"], medians["raw_aiohttp"]),
                "sdk_httpx_ratio": ratio(medians["sdk_httpx"], medians["raw_aiohttp"]),
            }
    figures["target_min_ratio_at_100"] = 0.7
    figures["connection_limit"] = 100
    return figures


# --------------------------------------------------------------------------- main


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        service = Service(
            Path(tmp), fulfill_delay="0.05-0.1", extra_args=["--rate-limit", "100000000"]
        ).start()
        try:
            key = service.create_key(sandbox=True, balance=100_000)
            with Client(key, base_url=service.base_url) as client:
                outcome = client.gift_cards.process_order(
                    PSN, "type_001", 2, policy=PollPolicy(interval=0.05)
                )
            order_id = outcome.order_id
            sync = bench_sync(service.base_url, key, order_id)
            print(
                f"sync check_order: SDK {sync['sdk_check_order_us']:.0f} us/call vs raw httpx GET "
                f"{sync['raw_httpx_get_us']:.0f} us/call -> ratio {sync['ratio']} "
                f"(target <= {sync['target_max_ratio']})",
                flush=True,
            )
            concurrent = asyncio.run(bench_async(service.base_url, key, order_id))
            for in_flight in CONCURRENCY:
                row = concurrent[f"in_flight_{in_flight}"]
                print(
                    f"async {in_flight:>3} in flight: "
                    f"SDK+aiohttp {row['sdk_aiohttp_rps']:>6} req/s vs raw aiohttp "
                    f"{row['raw_aiohttp_rps']:>6} req/s -> ratio {row['sdk_aiohttp_ratio']}; "
                    f"SDK+httpx {row['sdk_httpx_rps']:>6} req/s -> ratio {row['sdk_httpx_ratio']}",
                    flush=True,
                )
        finally:
            service.stop()
    path = save_results("sdk", {"sync_overhead": sync, "async_throughput": concurrent})
    print(f"results: {path}")
    ok = sync["ratio"] <= 1.3 and concurrent["in_flight_100"]["sdk_aiohttp_ratio"] >= 0.7
    print("targets met" if ok else "TARGETS MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
