"""`oneclickdz admin`: keys, deposits and catalogs, against the database a live service uses."""

from __future__ import annotations

import json
import re
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from oneclickdz.server.testing import Service, cli
from tests.server.conftest import Api
from tests.server.helpers import PSN, balance, error, ok, place, wait_final

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def test_create_key_prints_only_the_key_and_stores_only_its_hash(service: Service) -> None:
    out = service.admin("create-key", "--production", "--account", "hashed", "--balance", "10")
    key = out.strip()
    assert out == key + "\n"
    assert UUID.match(key)
    with sqlite3.connect(service.db_path) as db:
        stored = [row[0] for row in db.execute("SELECT key_hash FROM api_keys")]
    assert all(len(h) == 32 for h in stored)
    assert key.encode() not in service.db_path.read_bytes()


def test_a_key_may_start_with_a_zero_balance(service: Service, api: Api) -> None:
    key = service.create_key(sandbox=True, account="empty-handed", balance=0)
    assert balance(api(key)) == 0
    assert ok(api(key).get("/account/transactions"))["items"] == []  # no zero deposit recorded


def test_deposit_credits_one_environment_of_an_account(service: Service, api: Api) -> None:
    sandbox = service.create_key(sandbox=True, account="saver", balance=100)
    production = service.create_key(sandbox=False, account="saver")
    assert (
        service.admin("deposit", "--account", "saver", "--production", "250.75").strip() == "250.75"
    )
    assert balance(api(production)) == 250.75
    assert balance(api(sandbox)) == 100
    items = ok(api(production).get("/account/transactions"))["items"]
    assert [(t["type"], t["amount"], t["newBalance"]) for t in items] == [
        ("DEPOSIT", 250.75, 250.75)
    ]


def test_admin_refuses_bad_input_and_changes_nothing(service: Service) -> None:
    cases = [
        (["deposit", "--account", "nobody", "--sandbox", "10"], "no account named 'nobody'"),
        (["deposit", "--account", "default", "--sandbox", "0"], "must be positive"),
        (["deposit", "--account", "default", "--sandbox", "1.234"], "at most 2 decimal places"),
        (["create-key", "--sandbox", "--production"], "exactly one of --sandbox or --production"),
        (["create-key"], "exactly one of --sandbox or --production"),
        (["create-key", "--sandbox", "--allow-ip", "not-an-ip"], "not an IP address"),
        (["create-key", "--sandbox", "--balance", "ten"], "not an amount"),
    ]
    for args, message in cases:
        result = cli("admin", "--db", service.db_url, *args)
        assert result.returncode == 2, (args, result.stderr)
        assert message in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr
        assert result.stdout == ""


def test_load_catalog_adds_and_updates_products(
    service_factory: Callable[..., Service], api: Api, tmp_path: Path
) -> None:
    svc = service_factory()
    catalog = {
        "categories": [
            {
                "name": "Gaming Cards",
                "products": [
                    {
                        "id": PSN,
                        "title": "PlayStation Network",
                        "enabled": True,
                        "region": "dz",
                        "types": [
                            {"id": "type_001", "name": "PSN 500 DA", "price": 495.5, "quantity": 3}
                        ],
                    },
                    {
                        "id": "64b000000000000000000001",
                        "title": "Free Fire Diamonds",
                        "enabled": True,
                        "types": [
                            {"id": "ff_100", "name": "100 Diamonds", "price": 250, "quantity": 10}
                        ],
                    },
                ],
            }
        ]
    }
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps(catalog))
    assert svc.admin("load-catalog", str(path)).strip() == "loaded 2 products"
    c = api(svc.create_key(sandbox=True, balance=1000), svc=svc)
    psn = ok(c.get(f"/gift-cards/checkProduct/{PSN}"))["types"][0]
    assert (psn["price"], psn["quantity"]) == (495.5, 3)
    products = [
        p["id"] for cat in ok(c.get("/gift-cards/catalog"))["categories"] for p in cat["products"]
    ]
    assert "64b000000000000000000001" in products
    order = wait_final(c, place(c, "ff_100", 2, product_id="64b000000000000000000001"))
    assert (order["status"], order["fulfilled_amount"]) == ("FULFILLED", 500)


def test_load_catalog_refuses_a_malformed_file(service: Service, tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    for content, message in [
        ("{", "not valid JSON"),
        ('{"products": []}', '"categories" list'),
        (
            '{"categories": [{"name": "X", "products": [{"id": "p", "title": "P", "types": '
            '[{"id": "t", "name": "T", "price": -1}]}]}]}',
            "must not be negative",
        ),
        (
            '{"categories": [{"name": "X", "products": [{"id": "p", "title": "P", "types": '
            '[{"id": "TEST_REFUND", "name": "T", "price": 1}]}]}]}',
            "reserved",
        ),
    ]:
        path.write_text(content)
        result = cli("admin", "--db", service.db_url, "load-catalog", str(path))
        assert result.returncode == 2
        assert message in result.stderr


def test_an_internal_error_is_enveloped_logged_and_hides_the_card(
    service_factory: Callable[..., Service], api: Api
) -> None:
    svc = service_factory()
    c = api(svc.create_key(sandbox=True, balance=1000), svc=svc)
    order_id = place(c)
    with sqlite3.connect(svc.db_path) as db:
        while (
            db.execute("SELECT status FROM orders WHERE id = ?", (order_id,)).fetchone()[0]
            == "HANDLING"
        ):
            time.sleep(0.05)
        # Damage the sealed card before anyone reads it: it can no longer be opened.
        db.execute("UPDATE cards SET secret = zeroblob(60) WHERE order_id = ?", (order_id,))
    response = c.get(f"/gift-cards/checkOrder/{order_id}")
    err = error(response, 500, "INTERNAL_ERROR")
    assert err["message"] == "Internal server error"
    request_id = response.json()["requestId"]
    deadline = time.monotonic() + 5  # the report is written just after the answer is sent
    while request_id not in svc.logs() and time.monotonic() < deadline:
        time.sleep(0.05)
    logs = svc.logs()
    assert f'"requestId":"{request_id}"' in logs and "InvalidTag" in logs
    assert "SANDBOX-" not in logs
    ok(c.get("/account/balance"))  # the service carries on
