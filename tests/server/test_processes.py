"""Several service processes on one database: money, cards and fulfilment hold across them.

Each test starts two `oneclickdz serve` processes (A and B) on one database — one SQLite
file, or one PostgreSQL schema — and drives both over HTTP, as a load balancer would.
"""

from __future__ import annotations

import datetime
import os
import signal
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from oneclickdz.server.testing import Service
from tests.server.conftest import Api
from tests.server.helpers import PSN, balance, ok, query, wait_final

# The HTTP tests run on SQLite and on PostgreSQL (see tests/conftest.py).
BOTH_ENGINES = True

PRICE = 490  # DZD, PSN type_001


def two_processes(
    service_factory: Callable[..., Service], **a_options: object
) -> tuple[Service, Service]:
    """A (with `a_options`) and B, on A's database."""
    a = service_factory(**a_options)
    b = service_factory(db=a.db_url, env=a.env)
    return a, b


def place_concurrently(clients: list[httpx.Client], bodies: list[dict[str, object]]) -> list[int]:
    """POST every body at once, the i-th through clients[i % len(clients)]; the statuses."""

    def post(i: int) -> int:
        c = clients[i % len(clients)]
        return c.post("/gift-cards/placeOrder", json=bodies[i]).status_code

    with ThreadPoolExecutor(len(bodies)) as pool:
        return list(pool.map(post, range(len(bodies))))


def test_fifty_placements_over_two_processes_against_a_balance_for_twenty(
    service_factory: Callable[..., Service], api: Api
) -> None:
    a, b = two_processes(service_factory)
    key = a.create_key(sandbox=True, balance=20 * PRICE)
    clients = [api(key, svc=a), api(key, svc=b)]
    body = {"productId": PSN, "typeId": "type_001", "quantity": 1}
    statuses = place_concurrently(clients, [body] * 50)
    assert statuses.count(200) == 20, statuses
    assert statuses.count(403) == 30  # INSUFFICIENT_BALANCE, nothing else
    assert balance(clients[0]) == balance(clients[1]) == 0
    history = ok(clients[1].get("/account/transactions", params={"pageSize": 100}))["items"]
    debits = [t for t in history if t["type"] == "ORDER"]
    assert len(debits) == 20
    # Each debit starts where another ended: no dinar lost or doubled by the race.
    steps = sorted(((t["oldBalance"], t["newBalance"]) for t in debits), reverse=True)
    assert steps == [((i + 1) * PRICE, i * PRICE) for i in reversed(range(20))]


def test_refs_racing_over_two_processes_make_one_order(
    service_factory: Callable[..., Service], api: Api
) -> None:
    a, b = two_processes(service_factory)
    key = a.create_key(sandbox=True, balance=100 * PRICE)
    clients = [api(key, svc=a), api(key, svc=b)]
    bodies: list[dict[str, object]] = [
        {"productId": PSN, "typeId": "type_001", "quantity": 1, "ref": f"cart-{i % 5}"}
        for i in range(40)
    ]
    statuses = place_concurrently(clients, bodies)
    assert statuses.count(200) == 5 and statuses.count(403) == 35  # DUPLICATED_REF
    assert balance(clients[0]) == 95 * PRICE  # charged once per ref


def write_cards(path: Path, count: int) -> list[str]:
    codes = [f"SCARCE-{i:03d}-{os.urandom(4).hex().upper()}" for i in range(count)]
    lines = ["productId,typeId,value,serial"]
    lines += [f"{PSN},type_001,{code},SER{i:06d}" for i, code in enumerate(codes)]
    path.write_text("\n".join(lines) + "\n")
    return codes


def test_scarce_inventory_racing_across_processes_is_never_sold_twice(
    service_factory: Callable[..., Service], api: Api, tmp_path: Path
) -> None:
    a, b = two_processes(service_factory, fulfill_delay="0.3-0.6")
    codes = write_cards(tmp_path / "cards.csv", 12)
    a.admin("import-cards", str(tmp_path / "cards.csv"))
    key = a.create_key(sandbox=False, balance=100 * PRICE)
    clients = [api(key, svc=a), api(key, svc=b)]
    body = {"productId": PSN, "typeId": "type_001", "quantity": 2}
    # Placement checks the stock but does not reserve it: all 12 orders for 2 cards are
    # accepted while 12 cards are unsold, and both processes' workers then sell them.
    statuses = place_concurrently(clients, [body] * 12)
    assert statuses == [200] * 12
    listed = ok(clients[0].get("/gift-cards/list", params={"pageSize": 100}))["items"]
    finals = [wait_final(clients[i % 2], order["_id"]) for i, order in enumerate(listed)]
    delivered = [card["value"] for order in finals for card in order["cards"]]
    assert sorted(delivered) == sorted(codes)  # every card sold, none twice
    assert sum(o["fulfilled_quantity"] for o in finals) == 12
    refunded = sum(o["quantity"] - o["fulfilled_quantity"] for o in finals)
    assert refunded == 12
    assert balance(clients[1]) == 100 * PRICE - 12 * PRICE  # the shortfall came back
    owners = {row[0] for row in query(a, "SELECT DISTINCT order_id FROM cards")}
    assert len(owners) == len([o for o in finals if o["fulfilled_quantity"]])


def _epoch(wire_time: str) -> float:
    return datetime.datetime.fromisoformat(wire_time.replace("Z", "+00:00")).timestamp()


def test_orders_leased_by_a_killed_process_are_finished_by_the_other_after_the_lease(
    service_factory: Callable[..., Service], api: Api
) -> None:
    # A claims its orders as they come due and then stalls (a slow supplier) holding the leases.
    a = service_factory(
        fulfill_delay="0.1-0.2",
        extra_args=["--faults", "fulfil:1:delay=600", "--fulfil-lease", "3"],
    )
    key = a.create_key(sandbox=True, balance=10_000)
    c = api(key, svc=a)
    types = ("type_001", "TEST_PARTIAL", "TEST_REFUND")
    body = {"productId": PSN, "quantity": 2}
    ids = [
        ok(c.post("/gift-cards/placeOrder", json={**body, "typeId": t}))["orderId"] for t in types
    ]
    deadline = time.monotonic() + 15
    while True:
        leases = query(a, "SELECT id, lease_owner, lease_until FROM orders WHERE status = ?",
                       ("HANDLING",))  # fmt: skip
        if len(leases) == 3 and all(owner for _, owner, _ in leases):
            break
        assert time.monotonic() < deadline, leases
        time.sleep(0.05)
    assert len({owner for _, owner, _ in leases}) == 1
    lease_ends = {order_id: until for order_id, _, until in leases}
    a.kill()

    b = service_factory(db=a.db_url, env=a.env)
    c = api(key, svc=b)
    finals = {order_id: wait_final(c, order_id, within=30) for order_id in ids}
    assert [finals[i]["status"] for i in ids] == ["FULFILLED", "PARTIALLY_FILLED", "REFUNDED"]
    assert balance(c) == 10_000 - 2 * PRICE - PRICE  # the refund and half the partial came back
    for order_id in ids:  # B waited for A's lease to end
        (final_at,) = query(b, "SELECT final_at FROM orders WHERE id = ?", (order_id,))[0]
        assert _epoch(final_at) >= lease_ends[order_id] - 0.01
    assert "order final" in b.logs() and "order final" not in a.logs()


def test_a_process_shows_an_order_another_process_finished(
    service_factory: Callable[..., Service], api: Api
) -> None:
    # A claims the order and stalls; frozen, it cannot claim it again when its lease ends, so
    # B (started then) finishes it. A, thawed, must show it final: it kept nothing of the
    # HANDLING order.
    a = service_factory(
        fulfill_delay="0.1-0.2",
        extra_args=["--faults", "fulfil:1:delay=600", "--fulfil-lease", "1"],
    )
    key = a.create_key(sandbox=True, balance=10_000)
    on_a = api(key, svc=a)
    order_id = ok(on_a.post("/gift-cards/placeOrder", json={"productId": PSN,
                  "typeId": "type_001", "quantity": 1}))["orderId"]  # fmt: skip
    assert ok(on_a.get(f"/gift-cards/checkOrder/{order_id}"))["status"] == "HANDLING"
    wait_for(lambda: query(a, "SELECT lease_owner FROM orders WHERE id = ?", (order_id,))[0][0])
    assert a.process is not None
    os.kill(a.process.pid, signal.SIGSTOP)
    try:
        b = service_factory(db=a.db_url, env=a.env)
        final_on_b = wait_final(api(key, svc=b), order_id, within=30)
    finally:
        os.kill(a.process.pid, signal.SIGCONT)
    assert final_on_b["status"] == "FULFILLED" and len(final_on_b["cards"]) == 1
    assert ok(on_a.get(f"/gift-cards/checkOrder/{order_id}")) == final_on_b
    assert "order final" in b.logs() and "order final" not in a.logs()


def wait_for(found: Callable[[], object], within: float = 15.0) -> None:
    deadline = time.monotonic() + within
    while not found():
        assert time.monotonic() < deadline, "not within the time allowed"
        time.sleep(0.05)


def test_many_orders_over_two_processes_are_each_finished_once(
    service_factory: Callable[..., Service], api: Api
) -> None:
    a, b = two_processes(service_factory, fulfill_delay="0.2-0.8")
    key = a.create_key(sandbox=True, balance=1_000 * PRICE)
    clients = [api(key, svc=a), api(key, svc=b)]
    body = {"productId": PSN, "typeId": "TEST_PARTIAL", "quantity": 2}
    assert place_concurrently(clients, [body] * 60) == [200] * 60
    listed = ok(clients[0].get("/gift-cards/list", params={"pageSize": 100}))["items"]
    finals = [wait_final(clients[i % 2], order["_id"]) for i, order in enumerate(listed)]
    assert all(o["status"] == "PARTIALLY_FILLED" and len(o["cards"]) == 1 for o in finals)
    # Each order finished once: one refund each, whichever process finished it.
    history = [
        t for page in (1, 2)
        for t in ok(clients[0].get("/account/transactions", params={"pageSize": 100,
                                                                     "page": page}))["items"]
    ]  # fmt: skip
    assert len(history) == 1 + 60 + 60  # the deposit, the debits, the refunds
    refunds = [t["objid"] for t in history if t["type"] == "REFUND-ORDER"]
    assert sorted(refunds) == sorted(o["_id"] for o in finals)
    assert balance(clients[1]) == 1_000 * PRICE - 60 * PRICE
    assert '"order final"' in a.logs() and '"order final"' in b.logs()  # both did the work
