"""Production keys: imported codes, sealed at rest, each sold once, shortfalls refunded."""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from oneclickdz.server.testing import Service, cli, free_port
from tests.server.conftest import Api
from tests.server.helpers import PSN, balance, error, ok, place, stored_bytes, wait_final

# The HTTP tests run on SQLite and on PostgreSQL (see tests/conftest.py).
BOTH_ENGINES = True


def write_cards(path: Path, count: int, type_id: str = "type_001", tag: str = "A") -> list[str]:
    """A CSV of `count` distinctive codes; returns the codes."""
    codes = [f"REALCODE-{tag}{i:04d}-{os.urandom(4).hex().upper()}" for i in range(count)]
    lines = ["productId,typeId,value,serial"]
    lines += [f"{PSN},{type_id},{code},SERIAL{tag}{i:06d}" for i, code in enumerate(codes)]
    path.write_text("\n".join(lines) + "\n")
    return codes


def test_production_orders_sell_imported_codes(
    service: Service, api: Api, production_key: str, tmp_path: Path
) -> None:
    codes = write_cards(tmp_path / "cards.csv", 3, "type_002", tag="P")
    stock_before = ok(api(production_key).get(f"/gift-cards/checkProduct/{PSN}"))["types"][1]
    assert service.admin("import-cards", str(tmp_path / "cards.csv")).strip() == "imported 3 cards"
    c = api(production_key)
    stock = ok(c.get(f"/gift-cards/checkProduct/{PSN}"))["types"][1]
    assert stock["quantity"] == stock_before["quantity"] + 3
    order = wait_final(c, place(c, "type_002", 2))
    assert order["status"] == "FULFILLED"
    assert {card["value"] for card in order["cards"]} <= set(codes)
    assert all(card["serial"].startswith("SERIALP") for card in order["cards"])
    assert (order["fulfilled_amount"], order["price_per_card"]) == (1960, 980)
    assert balance(c) == 100_000 - 1960
    after = ok(c.get(f"/gift-cards/checkProduct/{PSN}"))["types"][1]
    assert after["quantity"] == stock["quantity"] - 2


def test_production_stock_is_the_unsold_inventory(api: Api, production_key: str) -> None:
    c = api(production_key)
    types = ok(c.get("/gift-cards/checkProduct/507f1f77bcf86cd799439014"))["types"]
    assert [t["quantity"] for t in types] == [0]  # nothing imported for Netflix
    body = {"productId": "507f1f77bcf86cd799439014", "typeId": "netflix_15", "quantity": 1}
    err = error(c.post("/gift-cards/placeOrder", json=body), 403, "OUT_OF_STOCK")
    assert err["details"] == {"requested": 1, "available": 0}


@pytest.mark.anyio
async def test_scarce_inventory_is_never_sold_twice_and_shortfalls_are_refunded(
    service_factory: Callable[..., Service], tmp_path: Path
) -> None:
    # Orders stay HANDLING long enough for all of them to be accepted against the same stock.
    svc = service_factory(fulfill_delay="1.5-2")
    codes = write_cards(tmp_path / "cards.csv", 11)
    svc.admin("import-cards", str(tmp_path / "cards.csv"))
    key = svc.create_key(sandbox=False, balance=100_000)
    body = {"productId": PSN, "typeId": "type_001", "quantity": 2}
    async with httpx.AsyncClient(
        base_url=svc.base_url, headers={"X-Access-Token": key}, timeout=30
    ) as c:
        placed = await asyncio.gather(
            *(c.post("/gift-cards/placeOrder", json=body) for _ in range(8))
        )
        order_ids = [r.json()["data"]["orderId"] for r in placed]
        assert len(order_ids) == 8  # each saw 10 in stock when it was placed
        orders = []
        for order_id in order_ids:
            while True:
                order = (await c.get(f"/gift-cards/checkOrder/{order_id}")).json()["data"]
                if order["status"] != "HANDLING":
                    break
                await asyncio.sleep(0.1)
            orders.append(order)
        final_balance = (await c.get("/account/balance")).json()["data"]["balance"]
        history = (await c.get("/account/transactions", params={"pageSize": 100})).json()["data"]
    sold = [card["value"] for order in orders for card in order["cards"]]
    assert len(sold) == len(set(sold)) == 11  # every code once, none twice
    assert set(sold) == set(codes)
    for order in orders:
        assert len(order["cards"]) == order["fulfilled_quantity"]
        assert order["fulfilled_amount"] == order["fulfilled_quantity"] * 490
    # 16 asked, 11 in stock: orders are served in turn until the stock runs out.
    statuses = sorted(order["status"] for order in orders)
    assert statuses == ["FULFILLED"] * 5 + ["PARTIALLY_FILLED"] + ["REFUNDED"] * 2
    refunds = [t for t in history["items"] if t["type"] == "REFUND-ORDER"]
    assert sum(t["amount"] for t in refunds) == 5 * 490
    assert final_balance == 100_000 - 11 * 490


def test_codes_and_serials_are_never_plain_at_rest_or_in_logs(
    service_factory: Callable[..., Service], api: Api, tmp_path: Path
) -> None:
    svc = service_factory()
    codes = write_cards(tmp_path / "cards.csv", 5, tag="Z")
    svc.admin("import-cards", str(tmp_path / "cards.csv"))
    key = svc.create_key(sandbox=False, balance=10_000)
    c = api(key, svc=svc)
    delivered = wait_final(c, place(c, "type_001", 2))["cards"]
    assert {card["value"] for card in delivered} <= set(codes)
    sandbox = api(svc.create_key(sandbox=True, balance=10_000), svc=svc)
    sandbox_cards = wait_final(sandbox, place(sandbox, "type_001", 2))["cards"]
    svc.stop()  # everything flushed to the files
    stored = stored_bytes(svc)
    secrets = [*codes, *(f"SERIALZ{i:06d}" for i in range(5))]
    secrets += [card["value"] for card in sandbox_cards] + [
        card["serial"] for card in sandbox_cards
    ]
    for secret in secrets:
        assert secret.encode() not in stored
        assert secret.encode("utf-16-le") not in stored
        assert secret not in svc.logs()


@pytest.mark.sqlite_only
def test_the_vault_key_file_is_private_and_a_wrong_key_is_refused(
    service_factory: Callable[..., Service], tmp_path: Path
) -> None:
    svc = service_factory()
    key_file = svc.workdir / "service.db.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert "generated a new vault key" in svc.logs()
    write_cards(tmp_path / "cards.csv", 1)
    svc.admin("import-cards", str(tmp_path / "cards.csv"))
    svc.stop()
    wrong = {"ONECLICKDZ_VAULT_KEY": "11" * 32}
    out = cli("serve", "--db", svc.db_url, "--port", str(free_port()), env=wrong)
    assert out.returncode == 2
    assert "vault key does not open" in out.stderr


def test_importing_a_code_twice_is_refused_without_showing_it(
    service_factory: Callable[..., Service], tmp_path: Path
) -> None:
    svc = service_factory()
    codes = write_cards(tmp_path / "a.csv", 3, tag="D")
    svc.admin("import-cards", str(tmp_path / "a.csv"))
    again = tmp_path / "b.csv"
    again.write_text(f"{PSN},type_001,NEWCODE-1,S1\n{PSN},type_001,{codes[1]},S2\n")
    result = cli("admin", "--db", svc.db_url, "import-cards", str(again), env=svc.env)
    assert result.returncode == 2
    assert result.stdout == ""
    assert "b.csv:2: this code is already in the inventory" in result.stderr
    assert codes[1] not in result.stderr + result.stdout
    # All or nothing: the new code of that file was not imported either.
    key = svc.create_key(sandbox=False)
    with httpx.Client(base_url=svc.base_url, headers={"X-Access-Token": key}) as c:
        assert ok(c.get(f"/gift-cards/checkProduct/{PSN}"))["types"][0]["quantity"] == 3


def test_import_refuses_unknown_types(
    service_factory: Callable[..., Service], tmp_path: Path
) -> None:
    svc = service_factory()
    bad = tmp_path / "bad.csv"
    bad.write_text(f"{PSN},type_404,CODE,SERIAL\n")
    result = cli("admin", "--db", svc.db_url, "import-cards", str(bad), env=svc.env)
    assert result.returncode == 2
    assert "no type 'type_404'" in result.stderr
