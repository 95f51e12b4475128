"""The service on SQLite and on PostgreSQL, in one and two processes (issue 8).

Four services run side by side, each on a database of its own, and wrk drives them in turn,
round after round (interleaved, medians kept), so a noisy neighbour shifts every figure alike:

- `sqlite before` — the service as it was before the storage layer was redesigned (the
  commit `BASELINE`, checked out in a temporary git worktree): the baseline the SQLite figures
  must stay within 10% of;
- `sqlite` — today's service on SQLite, one process;
- `postgresql` and `postgresql x2` — on PostgreSQL, with one process and with `--workers 2`.

Figures: placeOrder/s, each order durably committed before it is answered (after each run the
bench waits until that run's orders are fulfilled, so no service's fulfilment lands on another's
run); checkOrder/s of a
final order (cached by each process: final orders never change) and of a HANDLING order (one
database read each, kept HANDLING by the fault `fulfil:1:delay=3600:x1`, which holds the first
fulfilment round of each process). Targets: PostgreSQL placeOrder >= 1,500/s, checkOrder >=
0.8x SQLite's; SQLite within 10% of `sqlite before`.

`python -m bench.bench_scale` (PostgreSQL at $ONECLICKDZ_TEST_POSTGRES or 127.0.0.1:5432).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg

from bench._common import ratio, save_results
from bench._wrk import Load, wrk
from oneclickdz.server.testing import Service

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
SECONDS = 5
CONNECTIONS = 64
BASELINE = "778af6c"  # main just before the storage redesign (a43364b)
ADMIN_URL = os.environ.get(
    "ONECLICKDZ_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
)
QUIET = 5.0  # seconds without a finished order after which a drain is over
HELD_AFTER = 10.5  # seconds: past the longest fulfilment delay (2-10 s)
REDIS_URL = os.environ.get("ONECLICKDZ_BENCH_REDIS", "redis://127.0.0.1:6379/0")
PSN = "507f1f77bcf86cd799439011"
ORDER = {"productId": PSN, "typeId": "type_001", "quantity": 1}
REPO = Path(__file__).resolve().parent.parent
GIT = shutil.which("git") or "git"


@dataclass
class Target:
    name: str
    service: Service
    key: str = ""
    final_order: str = ""
    handling_order: str | None = None
    loads: dict[str, list[Load]] = field(default_factory=dict)


def baseline_tree(workdir: Path) -> Path:
    """The baseline commit's sources, in a git worktree (removed by `remove_tree`)."""
    tree = workdir / "baseline"
    subprocess.run(
        [GIT, "-C", str(REPO), "worktree", "add", "--detach", str(tree), BASELINE],
        check=True, capture_output=True,
    )  # fmt: skip
    return tree


def remove_tree(tree: Path) -> None:
    subprocess.run(
        [GIT, "-C", str(REPO), "worktree", "remove", "--force", str(tree)],
        check=False, capture_output=True,
    )  # fmt: skip


def new_database(name: str) -> str:
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return ADMIN_URL.rsplit("/", 1)[0] + "/" + name


def drop_database(name: str) -> None:
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _place(target: Target) -> str:
    with httpx.Client(base_url=target.service.base_url) as c:
        answer = c.post(
            "/gift-cards/placeOrder", json=ORDER, headers={"X-Access-Token": target.key}
        )
        order_id: str = answer.json()["data"]["orderId"]
        return order_id


def _status(target: Target, order_id: str) -> str:
    with httpx.Client(base_url=target.service.base_url) as c:
        answer = c.get(f"/gift-cards/checkOrder/{order_id}", headers={"X-Access-Token": target.key})
        status: str = answer.json()["data"]["status"]
        return status


def hold_one(target: Target) -> None:
    """A key with money, and an order that will stay HANDLING: the first one a process claims
    (its first round is held by the fault rule)."""
    target.key = target.service.create_key(sandbox=True, balance=10**9)
    if target.name != "sqlite before":
        target.handling_order = _place(target)


def finish_one(target: Target) -> None:
    """An order that turned final (with --workers 2 the other worker's first round is held too,
    so place until one is final)."""
    deadline = time.monotonic() + 120
    while not target.final_order:
        order_id = _place(target)
        until = time.monotonic() + 15
        while time.monotonic() < until and _status(target, order_id) == "HANDLING":
            time.sleep(0.2)
        if _status(target, order_id) != "HANDLING":
            target.final_order = order_id
        if time.monotonic() > deadline:
            raise SystemExit(f"{target.name}: no order turned final")
    if target.handling_order and _status(target, target.handling_order) != "HANDLING":
        raise SystemExit(f"{target.name}: the held order was finished; figures meaningless")


def handling(target: Target) -> int:
    """Orders HANDLING in the target's database, from its metrics (read from the database)."""
    text = httpx.get(target.service.base_url.removesuffix("/v3") + "/metrics").text
    for line in text.splitlines():
        is_gauge = line.startswith("oneclickdz_orders{") and 'status="HANDLING"' in line
        if is_gauge and 'env="SANDBOX"' in line:
            return int(float(line.rsplit(" ", 1)[1]))
    raise SystemExit(f"{target.name}: no HANDLING gauge in its metrics")


def drain(target: Target, baseline: int) -> None:
    """Wait until the orders a placeOrder run created are fulfilled, so that their fulfilment
    does not land on the next service's run (they share the machine): until no more are
    HANDLING than before the runs, or none has been finished for QUIET seconds (with
    `--workers 2`, the first round a worker claims under load is the one the fault holds)."""
    count, changed = handling(target), time.monotonic()
    while count > baseline and time.monotonic() - changed < QUIET:
        time.sleep(0.5)
        now = handling(target)
        if now < count:
            count, changed = now, time.monotonic()


def measure(target: Target, what: str) -> None:
    svc, headers = target.service, {"X-Access-Token": target.key}
    if what == "placeOrder":
        load = wrk(
            f"{svc.base_url}/gift-cards/placeOrder", seconds=SECONDS, connections=CONNECTIONS,
            headers={**headers, "Content-Type": "application/json"}, method="POST",
            body=json.dumps(ORDER),
        )  # fmt: skip
    else:
        order_id = target.final_order if what == "checkOrder" else target.handling_order
        load = wrk(
            f"{svc.base_url}/gift-cards/checkOrder/{order_id}", seconds=SECONDS,
            connections=CONNECTIONS, headers=headers,
        )  # fmt: skip
    if load.non_2xx or load.errors:
        raise SystemExit(f"{target.name} {what}: {load.non_2xx + load.errors} requests failed")
    target.loads.setdefault(what, []).append(load)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        tree = baseline_tree(workdir)
        run = f"oneclickdz_bench_{os.getpid()}"
        pg_env = {"ONECLICKDZ_VAULT_KEY": secrets.token_hex(32)}
        common = ["--rate-limit", "0", "--log-level", "warning"]
        held = ["--faults", "fulfil:1:delay=3600:x1", "--fulfil-lease", "3600"]
        # Several processes share the rate limits and the lockout; Redis measured faster than
        # PostgreSQL for that (bench_limits), so the PostgreSQL services use it.
        redis = ["--redis", REDIS_URL, "--redis-prefix"]

        def service(name: str, **kwargs: Any) -> Service:
            (workdir / name).mkdir()
            return Service(workdir / name, fulfill_delay="2-10", seed=1, **kwargs)

        targets = [
            Target("sqlite before", service("before", extra_args=common,
                   env={"PYTHONPATH": str(tree / "src")})),
            Target("sqlite", service("sqlite", extra_args=[*common, *held])),
            Target("postgresql", service("pg1", db=new_database(f"{run}_1"), env=pg_env,
                   extra_args=[*common, *held, *redis, f"{run}_1"])),
            Target("postgresql x2", service("pg2", db=new_database(f"{run}_2"), env=pg_env,
                   extra_args=[*common, *held, *redis, f"{run}_2", "--workers", "2"])),
        ]  # fmt: skip
        if only := os.environ.get("BENCH_TARGETS"):  # e.g. "sqlite,postgresql": a quicker look
            targets = [t for t in targets if t.name in only.split(",")]
        try:
            for target in targets:
                target.service.start()
                hold_one(target)
            time.sleep(HELD_AFTER)  # every held order is due, claimed and held by now
            for target in targets:
                finish_one(target)
            at_rest = {target.name: handling(target) for target in targets}
            for what in ("checkOrder", "checkOrder HANDLING", "placeOrder"):
                for round_number in range(1, ROUNDS + 1):
                    print(f"{what} round {round_number}/{ROUNDS} ...", flush=True)
                    for target in targets:
                        if what == "checkOrder HANDLING" and target.handling_order is None:
                            continue
                        measure(target, what)
                        if what == "placeOrder":
                            drain(target, at_rest[target.name])
        finally:
            for target in targets:
                target.service.stop()
            remove_tree(tree)
            for suffix in ("1", "2"):
                drop_database(f"{run}_{suffix}")
    report(targets)


def report(targets: list[Target]) -> None:
    figures: dict[str, Any] = {"settings": {"rounds": ROUNDS, "seconds": SECONDS,
                               "connections": CONNECTIONS, "baseline": BASELINE}}  # fmt: skip
    rates: dict[tuple[str, str], float] = {}
    for target in targets:
        entry: dict[str, Any] = {}
        for what, loads in target.loads.items():
            rate = statistics.median(x.requests_per_s for x in loads)
            rates[target.name, what] = rate
            entry[what] = {
                "requests_per_s": round(rate),
                "p50_ms": statistics.median(x.p50_ms for x in loads),
                "p99_ms": statistics.median(x.p99_ms for x in loads),
                "rounds": [round(x.requests_per_s) for x in loads],
            }
        figures[target.name] = entry

    def of(name: str, what: str) -> float:
        return rates.get((name, what), float("nan"))

    figures["ratios"] = {
        "sqlite_vs_before": {
            w: ratio(of("sqlite", w), of("sqlite before", w)) for w in ("checkOrder", "placeOrder")
        },
        "postgresql_vs_sqlite": {
            w: ratio(of("postgresql", w), of("sqlite", w))
            for w in ("checkOrder", "checkOrder HANDLING", "placeOrder")
        },
        "postgresql_x2_vs_sqlite": {
            w: ratio(of("postgresql x2", w), of("sqlite", w))
            for w in ("checkOrder", "checkOrder HANDLING", "placeOrder")
        },
    }
    whats = ("placeOrder", "checkOrder", "checkOrder HANDLING")
    print(f"\n{'service':<15}" + "".join(f"{w:>22}" for w in whats))
    for target in targets:
        cells = []
        for w in whats:
            value = rates.get((target.name, w))
            cells.append(f"{'-' if value is None else round(value):>22}")
        print(f"{target.name:<15}" + "".join(cells))
    print("\nratios (same run, medians):")
    for name, values in figures["ratios"].items():
        print(f"  {name}: " + ", ".join(f"{w} {v}x" for w, v in values.items()))
    if len(targets) < 4:  # BENCH_TARGETS: a quick look, neither the targets nor saved
        return
    best_pg = max(of("postgresql", "placeOrder"), of("postgresql x2", "placeOrder"))
    print(
        f"\nPostgreSQL placeOrder: {round(best_pg)}/s (target >= 1,500/s); checkOrder "
        f"{figures['ratios']['postgresql_vs_sqlite']['checkOrder']}x SQLite (target >= 0.8x); "
        f"SQLite vs before: {figures['ratios']['sqlite_vs_before']} (target >= 0.9x)"
    )
    save_results("scale", figures)


if __name__ == "__main__":
    main()
