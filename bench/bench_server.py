"""The service under load: checkOrder and placeOrder against a bare endpoint of the same stack.

Targets (issue 2): checkOrder >= 0.5x the bare endpoint's requests/s; placeOrder, with each
order durably committed (SQLite WAL, synchronous=FULL) before it is answered, >= 1,000/s.
Runs are interleaved over several rounds and the median is kept, so a noisy neighbour on the
machine shifts baseline and figure alike.
"""

from __future__ import annotations

import json
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from bench._common import ratio, save_results
from bench._wrk import Load, wrk
from oneclickdz.server.testing import Service, free_port

ROUNDS = 3
SECONDS = 5
CONNECTIONS = 64
ORDER = {"productId": "507f1f77bcf86cd799439011", "typeId": "type_001", "quantity": 1}


def start_bare() -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "bench.bare_app", "--port", str(port)])
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return process, f"http://127.0.0.1:{port}/v3/bare"
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError("the bare endpoint did not start")


def median(loads: list[Load]) -> dict[str, float]:
    return {
        "requests_per_s": round(statistics.median(x.requests_per_s for x in loads)),
        "p50_ms": statistics.median(x.p50_ms for x in loads),
        "p99_ms": statistics.median(x.p99_ms for x in loads),
    }


def main() -> None:
    with tempfile.TemporaryDirectory() as workdir:
        svc = Service(
            Path(workdir),
            fulfill_delay="2-10",
            seed=1,
            extra_args=["--rate-limit", "0", "--log-level", "warning"],
        ).start()
        bare, bare_url = start_bare()
        try:
            figures = run(svc, bare_url)
            wait_until_all_final(svc)
        finally:
            bare.terminate()
            svc.stop()
        figures["lifecycle"] = lifecycle(svc.db_path)
    print(
        f"lifecycle: {figures['lifecycle']['orders']} orders, longest HANDLING "
        f"{figures['lifecycle']['longest_handling_s']} s (promise: < 45 s), latest finish "
        f"{figures['lifecycle']['latest_after_due_s']} s after its due time"
    )
    save_results("server", figures)


def wait_until_all_final(svc: Service) -> None:
    """Let fulfilment catch up with the orders the placeOrder runs created."""
    with sqlite3.connect(svc.db_path) as db:
        while db.execute("SELECT COUNT(*) FROM orders WHERE status = 'HANDLING'").fetchone()[0]:
            time.sleep(0.5)


def lifecycle(db_path: Path) -> dict[str, float]:
    """How long orders stayed HANDLING, and how late after their due time they were finished."""
    with sqlite3.connect(db_path) as db:
        rows = db.execute("SELECT time, due_at, final_at FROM orders").fetchall()
    handling = [_epoch(final) - _epoch(created) for created, _, final in rows]
    late = [_epoch(final) - due for _, due, final in rows]
    return {
        "orders": len(rows),
        "longest_handling_s": round(max(handling), 3),
        "latest_after_due_s": round(max(late), 3),
        "p99_after_due_s": round(statistics.quantiles(late, n=100)[98], 3),
    }


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def run(svc: Service, bare_url: str) -> dict[str, Any]:
    key = svc.create_key(sandbox=True, balance=10**9)
    headers = {"X-Access-Token": key}
    with httpx.Client(base_url=svc.base_url, headers=headers) as c:
        order_id = c.post("/gift-cards/placeOrder", json={**ORDER, "quantity": 2}).json()["data"][
            "orderId"
        ]
        while c.get(f"/gift-cards/checkOrder/{order_id}").json()["data"]["status"] == "HANDLING":
            time.sleep(0.2)
    check_url = f"{svc.base_url}/gift-cards/checkOrder/{order_id}"
    place_url = f"{svc.base_url}/gift-cards/placeOrder"
    post = {**headers, "Content-Type": "application/json"}

    loads: dict[str, list[Load]] = {"bare": [], "checkOrder": [], "placeOrder": []}
    # Reads first: the orders placeOrder creates are fulfilled in the background for seconds
    # afterwards, which would otherwise land on the next round's checkOrder run.
    for round_number in range(1, ROUNDS + 1):
        print(f"checkOrder round {round_number}/{ROUNDS} ...", flush=True)
        loads["bare"].append(wrk(bare_url, seconds=SECONDS, connections=CONNECTIONS))
        loads["checkOrder"].append(
            wrk(check_url, seconds=SECONDS, connections=CONNECTIONS, headers=headers)
        )
    for round_number in range(1, ROUNDS + 1):
        print(f"placeOrder round {round_number}/{ROUNDS} ...", flush=True)
        loads["placeOrder"].append(
            wrk(
                place_url,
                seconds=SECONDS,
                connections=CONNECTIONS,
                headers=post,
                method="POST",
                body=json.dumps(ORDER),
            )
        )
    for name, runs in loads.items():
        failed = sum(x.non_2xx + x.errors for x in runs)
        if failed:
            raise SystemExit(f"{name}: {failed} requests failed; the figures would be meaningless")

    with httpx.Client(base_url=svc.base_url, headers=headers) as c:
        stored = c.get("/gift-cards/list", params={"pageSize": 1}).json()["data"]
        balance = c.get("/account/balance").json()["data"]["balance"]
    answered = sum(x.requests for x in loads["placeOrder"])
    stored_orders = stored["pagination"]["totalResults"] - 1  # minus the order we check

    bare, check, place = (median(loads[k]) for k in ("bare", "checkOrder", "placeOrder"))
    figures = {
        "bare": bare,
        "checkOrder": {
            **check,
            "ratio_to_bare": ratio(check["requests_per_s"], bare["requests_per_s"]),
        },
        "placeOrder": {
            **place,
            "ratio_to_bare": ratio(place["requests_per_s"], bare["requests_per_s"]),
            "orders_answered": answered,
            "orders_stored": stored_orders,
        },
        "settings": {"rounds": ROUNDS, "seconds": SECONDS, "connections": CONNECTIONS},
    }
    print(f"\n{'endpoint':<12} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'x bare':>7}")
    for name, fig in (("bare", bare), ("checkOrder", check), ("placeOrder", place)):
        share = ratio(fig["requests_per_s"], bare["requests_per_s"])
        rate, p50, p99 = fig["requests_per_s"], fig["p50_ms"], fig["p99_ms"]
        print(f"{name:<12} {rate:>8} {p50:>8} {p99:>8} {share:>7}")
    print(
        f"\ncheckOrder: {figures['checkOrder']['ratio_to_bare']}x the bare endpoint "
        "(target >= 0.5x)"
        f"\nplaceOrder: {place['requests_per_s']} orders/s durably committed (target >= 1,000/s); "
        f"{answered} answered, {stored_orders} stored, balance left {balance}"
    )
    if stored_orders < answered:
        raise SystemExit("fewer orders stored than answered: an acknowledged order was lost")
    return figures


if __name__ == "__main__":
    main()
