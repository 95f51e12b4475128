"""Chaos: `oneclickdz track run` killed with SIGKILL at random moments while 60 intents of mixed
types flow through a service that injects faults; restarted each time. Nothing may be lost,
bought twice, or delivered with the wrong cards."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from oneclickdz import Client
from oneclickdz.server.testing import Service
from tests.conftest import fresh_account
from tests.tracker.conftest import raw

PSN = "507f1f77bcf86cd799439011"
FAULTS = "checkOrder:0.1:503,placeOrder:0.1:reset-after,*:0.05:reset"
KILLS = 6

# The merchant's delivery command: note the call, then apply the effect once per delivery key.
HANDLER = textwrap.dedent(
    """
    import json, os, sqlite3, sys, time
    doc = json.load(sys.stdin)
    here = os.path.dirname(os.path.abspath(__file__))
    fd = os.open(os.path.join(here, "calls.log"), os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    os.write(fd, (doc["delivery_key"] + "\\n").encode())
    os.fsync(fd)
    os.close(fd)
    time.sleep(0.02)  # a window for a kill to land in
    db = sqlite3.connect(os.path.join(here, "shop.db"), timeout=30)
    with db:
        db.execute(
            "CREATE TABLE IF NOT EXISTS effects (key TEXT PRIMARY KEY, order_id TEXT, "
            "status TEXT, cards TEXT, meta TEXT)"
        )
        db.execute(
            "INSERT OR IGNORE INTO effects VALUES (?, ?, ?, ?, ?)",
            (doc["delivery_key"], doc["order_id"], doc["status"],
             json.dumps([[c["value"], c["serial"]] for c in doc["cards"]]),
             json.dumps(doc["meta"])),
        )
    """
)


def intents_csv(path: Path, n: int, rng: random.Random) -> None:
    kinds = [("type_001", 1, 3), ("type_002", 1, 2), ("TEST_PARTIAL", 2, 4), ("TEST_REFUND", 1, 2)]
    lines = ["product_id,type_id,quantity,shop_order"]
    for i in range(n):
        type_id, low, high = kinds[i % len(kinds)]
        lines.append(f"{PSN},{type_id},{rng.randint(low, high)},S-{i:03d}")
    path.write_text("\n".join(lines) + "\n")


# SQLite only (25 s): on PostgreSQL, the two-runner test below kills a runner mid-run.
def test_sigkill_at_random_moments_loses_nothing_and_buys_nothing_twice(
    service_factory: Callable[..., Service], tmp_path: Path
) -> None:
    seed = int(os.environ.get("CHAOS_SEED", "7"))
    rng = random.Random(seed)
    svc = service_factory(fulfill_delay="0.3-2", extra_args=["--faults", FAULTS])
    key = svc.create_key(sandbox=True, account=fresh_account(), balance=1_000_000)
    (tmp_path / "handler.py").write_text(HANDLER)
    store = f"sqlite:///{tmp_path / 'tracker.db'}"
    env = {
        **os.environ,
        "ONECLICKDZ_API_KEY": key,
        "ONECLICKDZ_BASE_URL": svc.base_url,
        "ONECLICKDZ_TRACKER_STORE": store,
    }
    env.pop("ONECLICKDZ_TRACKER_KEY", None)
    oneclickdz = [sys.executable, "-m", "oneclickdz"]

    csv = tmp_path / "intents.csv"
    intents_csv(csv, 60, rng)
    placed = subprocess.run(
        [*oneclickdz, "track", "place", "--from-csv", str(csv)],
        env=env, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    intent_ids = placed.stdout.split()
    assert len(intent_ids) == 60

    run = [
        *oneclickdz, "track", "run", "--until-idle", "--interval", "0.5",
        "--delivery-backoff", "0.1", "--deliver-exec", f"{sys.executable} handler.py",
    ]  # fmt: skip
    log = (tmp_path / "runs.log").open("ab")
    kills = 0
    try:
        while kills < KILLS:
            proc = subprocess.Popen(run, cwd=tmp_path, env=env, stdout=log, stderr=log)
            time.sleep(rng.uniform(0.3, 2.5))
            if proc.poll() is not None:
                break  # it finished before this kill: nothing left to interrupt
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            kills += 1
        final = subprocess.run(
            run, cwd=tmp_path, env=env, stdout=log, stderr=log, timeout=240, check=False
        )
    finally:
        log.close()
    runs_log = (tmp_path / "runs.log").read_text(errors="replace")
    assert kills >= 5, f"only {kills} kills landed before the work was done"
    assert final.returncode == 0, runs_log[-3000:]

    # Every intent is final and delivered.
    listed = subprocess.run(
        [*oneclickdz, "track", "list", "--json"],
        env=env, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    rows = {row["id"]: row for row in json.loads(listed.stdout)["items"]}
    assert set(rows) == set(intent_ids)
    assert Counter(row["state"] for row in rows.values()) == {"delivered": 60}

    # The service holds exactly one order per intent.
    with Client(key, base_url=svc.base_url, max_retries=5) as client:
        orders = list(client.gift_cards.list_orders())
        truth = {o.id: o for o in orders}
    assert len(orders) == 60
    assert sorted(str(o.ref) for o in orders) == sorted(row["ref"] for row in rows.values())
    assert {row["order_id"] for row in rows.values()} == set(truth)

    # Each delivery key has exactly one effect, carrying exactly the service's cards.
    shop = sqlite3.connect(tmp_path / "shop.db")
    effects = {
        k: (order_id, status, json.loads(cards), json.loads(meta))
        for k, order_id, status, cards, meta in shop.execute("SELECT * FROM effects")
    }
    assert set(effects) == {row["delivery_key"] for row in rows.values()}
    for row in rows.values():
        order_id, status, cards, meta = effects[row["delivery_key"]]
        order = truth[row["order_id"]]
        assert order_id == order.id
        assert status == order.status
        assert cards == [[c.value, c.serial] for c in order.cards]
        assert meta == row["meta"]

    # Repeated handler calls: at most one per kill (deliveries run one at a time).
    calls = Counter((tmp_path / "calls.log").read_text().split())
    repeats = sum(n - 1 for n in calls.values())
    print(f"kills={kills} handler_calls={sum(calls.values())} repeats={repeats}")
    assert set(calls) == set(effects)
    assert repeats <= kills
    # No card code reached the tracker's output or its store in clear.
    codes = [c[0] for _, _, cards, _ in effects.values() for c in cards]
    assert codes
    store_files = b"".join(p.read_bytes() for p in tmp_path.glob("tracker.db*"))
    for code in codes:
        assert code not in runs_log
        assert code.encode() not in store_files


# A --deliver-exec command that notes each call (one line per delivery key, appended).
NOTE = "import json, os, sys\nkey = json.load(sys.stdin)['delivery_key']\n" + (
    "fd = os.open(sys.argv[1], os.O_WRONLY | os.O_APPEND | os.O_CREAT)\n"
    "os.write(fd, (key + '\\n').encode())\nos.close(fd)\n"
)


@pytest.mark.parametrize("engine", ["postgresql"])
def test_two_runners_share_a_postgresql_store_and_one_killed_loses_nothing(
    service_factory: Callable[..., Service], tmp_path: Path, store_url: str
) -> None:
    """Two `track run` processes on one store, one killed with SIGKILL while it holds leases:
    the other takes its orders over once their lease expires. Each intent is placed once and
    its delivery command runs once (a repeat only for a delivery the kill interrupted)."""
    svc = service_factory(fulfill_delay="0.5-1.5")
    key = svc.create_key(sandbox=True, account=fresh_account(), balance=1_000_000)
    (tmp_path / "note.py").write_text(NOTE)
    calls = tmp_path / "calls.log"
    env = {
        **os.environ,
        "ONECLICKDZ_API_KEY": key,
        "ONECLICKDZ_BASE_URL": svc.base_url,
        "ONECLICKDZ_TRACKER_STORE": store_url,
        "ONECLICKDZ_TRACKER_LEASE": "2",
    }
    oneclickdz = [sys.executable, "-m", "oneclickdz"]

    def place(n: int, name: str) -> list[str]:
        intents_csv(tmp_path / name, n, random.Random(n))
        placed = subprocess.run(
            [*oneclickdz, "track", "place", "--from-csv", str(tmp_path / name)],
            env=env, capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
        return placed.stdout.split()

    def leased_by(pid: int) -> set[str]:
        rows = raw(store_url, "SELECT id FROM {t}orders WHERE lease_owner LIKE ?", (f"%:{pid}:%",))
        return {row[0] for row in rows}

    run = [
        *oneclickdz, "track", "run", "--until-idle", "--interval", "0.5",
        "--delivery-backoff", "0.1", "--deliver-exec", f"{sys.executable} note.py {calls}",
    ]  # fmt: skip
    intent_ids = place(20, "first.csv")
    logs = [(tmp_path / f"run{n}.log").open("wb") for n in range(2)]
    first = subprocess.Popen(run, cwd=tmp_path, env=env, stdout=logs[0], stderr=logs[0])
    second = None
    try:
        deadline = time.monotonic() + 30
        while not leased_by(first.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        second = subprocess.Popen(run, cwd=tmp_path, env=env, stdout=logs[1], stderr=logs[1])
        intent_ids += place(20, "second.csv")  # claimed by whichever runner looks first
        # Kill the first runner mid-run: once it has delivered something, while it holds leases.
        while not (calls.exists() and calls.read_text()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert first.poll() is None, "the first runner ended before the kill"
        first.send_signal(signal.SIGKILL)
        first.wait()
        orphans = leased_by(first.pid)  # its leases outlive it, until they expire
        assert second.wait(timeout=90) == 0, (tmp_path / "run1.log").read_text()[-3000:]
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
        for log in logs:
            log.close()
    assert orphans, "the kill landed when the first runner held no order"

    # Every intent delivered; the killed runner's orders were finished by the other.
    listed = subprocess.run(
        [*oneclickdz, "track", "list", "--json"],
        env=env, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    rows = {row["id"]: row for row in json.loads(listed.stdout)["items"]}
    assert set(rows) == set(intent_ids) and len(intent_ids) == 40
    assert Counter(row["state"] for row in rows.values()) == {"delivered": 40}
    assert raw(store_url, "SELECT COUNT(*) FROM {t}orders WHERE lease_owner IS NOT NULL") == [(0,)]

    # Placed once: one order per intent on the service, each with its intent's ref.
    with Client(key, base_url=svc.base_url, max_retries=5) as client:
        orders = list(client.gift_cards.list_orders())
    assert sorted(str(o.ref) for o in orders) == sorted(row["ref"] for row in rows.values())
    assert {row["order_id"] for row in rows.values()} == {o.id for o in orders}

    # Delivered once: every delivery key called, a repeat only where the kill cut a delivery
    # short (one at a time per runner).
    noted = Counter(calls.read_text().split())
    assert set(noted) == {row["delivery_key"] for row in rows.values()}
    repeats = {k: n - 1 for k, n in noted.items() if n > 1}
    print(f"taken over={len(orphans)} handler calls={noted.total()} repeats={len(repeats)}")
    assert sum(repeats.values()) <= 1, repeats
    assert {k.removeprefix("dlv_") for k in repeats} <= orphans
