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

from oneclickdz import Client
from oneclickdz.server.testing import Service
from tests.conftest import fresh_account

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
