"""Where to keep the shared rate limits and IP lockout (issue 8): checkOrder req/s of one service
process on SQLite with the limit state in memory (the baseline: nothing shared), in Redis, and in
PostgreSQL (UNLOGGED tables, its own small pool).

Every request of an authenticated route asks the state once (`admit`: "IP blocked?" and a token
of the key's bucket, one round trip); the rate limit is on but never reached. The three are run
in turn, each in a freshly started process, over interleaved rounds whose order rotates, and the
median of each is kept, so a noisy neighbour shifts all alike. Beside req/s: the service's CPU
time per request (/proc) and the whole machine's (wrk, Redis, PostgreSQL included), since on
this 2-core machine the state's server competes with the service for the same cores.

Needs Redis (`$ONECLICKDZ_TEST_REDIS`, default redis://127.0.0.1:6379/0) and PostgreSQL
(`$ONECLICKDZ_TEST_POSTGRES`, default postgresql://postgres@127.0.0.1:5432/postgres); a schema
and a key prefix of its own are removed afterwards.
"""

from __future__ import annotations

import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from bench._common import ratio, save_results
from bench._wrk import Load, wrk
from oneclickdz.server.testing import free_port, run_cli

ROUNDS = 5
SECONDS = 3
CONNECTIONS = 64
KINDS = ("memory", "redis", "postgresql")
REDIS_URL = os.environ.get("ONECLICKDZ_TEST_REDIS", "redis://127.0.0.1:6379/0")
POSTGRES_URL = os.environ.get(
    "ONECLICKDZ_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
)
ORDER = {"productId": "507f1f77bcf86cd799439011", "typeId": "type_001", "quantity": 2}


class Process:
    """One service process (bench/_limits_service.py) with the limits of `kind`."""

    def __init__(self, workdir: Path, db_url: str, kind: str, state_url: str, prefix: str):
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v3"
        self.log = workdir / f"{kind}-{self.port}.log"
        args = [sys.executable, "-m", "bench._limits_service", db_url, str(self.port), kind]
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [*args, state_url, prefix], stdout=out, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 30
        while True:
            if self.process.poll() is not None:
                raise SystemExit(f"{kind} service exited:\n{self.log.read_text()}")
            try:
                if httpx.get(f"{self.base_url}/ping", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise SystemExit(f"{kind} service did not start:\n{self.log.read_text()}")
            time.sleep(0.05)

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> str:
        """Stop it (SIGTERM) and return its log."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.log.read_text(errors="replace")


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent busy so far (/proc/stat: everything but idle and iowait)."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (sum(values) - values[3] - values[4]) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    import psycopg

    schema = f"bench_limits_{secrets.token_hex(4)}"
    prefix = f"oneclickdz-bench:{secrets.token_hex(4)}"
    base, _, _ = POSTGRES_URL.partition("?")
    pg_url = f"{base}?options={quote(f'-csearch_path={schema}', safe='')}"
    try:
        with psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'CREATE SCHEMA "{schema}"')
    except psycopg.Error as exc:
        raise SystemExit(f"bench_limits needs PostgreSQL at {POSTGRES_URL}: {exc}") from None
    try:
        with tempfile.TemporaryDirectory() as tmp:
            figures = run(Path(tmp), {"redis": REDIS_URL, "postgresql": pg_url}, prefix)
    finally:
        with psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        forget(prefix)
    save_results("limits", figures)


def forget(prefix: str) -> None:
    import redis

    with redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3) as r:
        for key in r.scan_iter(match=f"{prefix}:*", count=500):
            r.delete(key)


def final_order(base_url: str, key: str) -> str:
    """A fulfilled order's checkOrder URL."""
    with httpx.Client(base_url=base_url, headers={"X-Access-Token": key}) as c:
        order_id: str = c.post("/gift-cards/placeOrder", json=ORDER).json()["data"]["orderId"]
        while c.get(f"/gift-cards/checkOrder/{order_id}").json()["data"]["status"] == "HANDLING":
            time.sleep(0.05)
    return f"{base_url}/gift-cards/checkOrder/{order_id}"


def median(loads: list[Load]) -> dict[str, float]:
    return {
        "requests_per_s": round(statistics.median(x.requests_per_s for x in loads)),
        "p50_ms": statistics.median(x.p50_ms for x in loads),
        "p99_ms": statistics.median(x.p99_ms for x in loads),
    }


def run(workdir: Path, urls: dict[str, str], prefix: str) -> dict[str, Any]:
    db_url = f"sqlite:///{workdir / 'service.db'}"
    key = run_cli("admin", "--db", db_url, "create-key", "--sandbox", "--balance", "100000").strip()
    headers = {"X-Access-Token": key}
    first = Process(workdir, db_url, "memory", "", prefix)
    try:
        url = final_order(first.base_url, key)
    finally:
        first.stop()
    path = url.split("/v3", 1)[1]

    loads: dict[str, list[Load]] = {kind: [] for kind in KINDS}
    cpu: dict[str, list[float]] = {kind: [] for kind in KINDS}
    machine: dict[str, list[float]] = {kind: [] for kind in KINDS}
    for round_number in range(ROUNDS):
        order = KINDS[round_number % 3 :] + KINDS[: round_number % 3]
        print(f"checkOrder round {round_number + 1}/{ROUNDS}: {', '.join(order)}", flush=True)
        for kind in order:
            svc = Process(workdir, db_url, kind, urls.get(kind, ""), prefix)
            try:
                target = svc.base_url + path
                wrk(target, seconds=1, connections=CONNECTIONS, headers=headers)  # warm-up
                cpu_before, busy_before = svc.cpu_seconds(), machine_busy_seconds()
                load = wrk(target, seconds=SECONDS, connections=CONNECTIONS, headers=headers)
                cpu_after, busy_after = svc.cpu_seconds(), machine_busy_seconds()
            finally:
                log = svc.stop()
            if "shared limits unavailable" in log:
                raise SystemExit(f"{kind}: the shared limits failed during the run:\n{log}")
            loads[kind].append(load)
            cpu[kind].append((cpu_after - cpu_before) / load.requests * 1e6)
            machine[kind].append((busy_after - busy_before) / load.requests * 1e6)
    for kind, runs in loads.items():
        refused, errors = sum(x.non_2xx for x in runs), sum(x.errors for x in runs)
        if refused or errors > sum(x.requests for x in runs) / 1000:
            raise SystemExit(
                f"{kind}: {refused} non-2xx answers, {errors} socket errors; the figures are void"
            )
    check_state_used(urls, prefix)

    medians = {kind: median(runs) for kind, runs in loads.items()}
    base = medians["memory"]["requests_per_s"]
    figures: dict[str, Any] = {
        f"checkOrder_limits_{kind}": {
            **medians[kind],
            "ratio_to_memory": ratio(medians[kind]["requests_per_s"], base),
            "service_cpu_us_per_request": round(statistics.median(cpu[kind]), 1),
            "machine_cpu_us_per_request": round(statistics.median(machine[kind]), 1),
            "rounds_req_per_s": [round(x.requests_per_s) for x in loads[kind]],
        }
        for kind in KINDS
    }
    figures["settings"] = {"rounds": ROUNDS, "seconds": SECONDS, "connections": CONNECTIONS}
    print(
        f"\n{'limits in':<11} {'req/s':>7} {'vs memory':>9} {'p50 ms':>7} {'p99 ms':>7}"
        f" {'svc CPU us':>10} {'all CPU us':>10}"
    )
    for kind in KINDS:
        fig = figures[f"checkOrder_limits_{kind}"]
        print(
            f"{kind:<11} {fig['requests_per_s']:>7} {fig['ratio_to_memory']:>8}x"
            f" {fig['p50_ms']:>7} {fig['p99_ms']:>7} {fig['service_cpu_us_per_request']:>10}"
            f" {fig['machine_cpu_us_per_request']:>10}"
        )
    for kind in KINDS:
        print(f"  rounds, {kind}: {figures[f'checkOrder_limits_{kind}']['rounds_req_per_s']}")
    return figures


def check_state_used(urls: dict[str, str], prefix: str) -> None:
    """The shared states really held the buckets (not a silent fallback to memory)."""
    import psycopg
    import redis

    with redis.Redis.from_url(urls["redis"]) as r:
        if not list(r.scan_iter(match=f"{prefix}:bucket:*")):
            raise SystemExit("no bucket in Redis: the redis runs did not use it")
    with psycopg.connect(urls["postgresql"]) as conn:
        row = conn.execute("SELECT count(*) FROM limit_buckets").fetchone()
        if not row or not row[0]:
            raise SystemExit("no bucket in PostgreSQL: the postgresql runs did not use it")


if __name__ == "__main__":
    main()
