"""`oneclickdz admin`: keys, deposits and catalogs, against the database a live service uses."""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable
from pathlib import Path

from typer.testing import CliRunner

from oneclickdz.cli import app
from oneclickdz.server.testing import Service, cli
from tests.server.conftest import Api
from tests.server.helpers import PSN, balance, error, ok, place, query, wait_final

BOTH_ENGINES = True
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def test_create_key_prints_only_the_key_and_stores_only_its_hash(service: Service) -> None:
    out = service.admin("create-key", "--production", "--account", "hashed", "--balance", "10")
    key = out.strip()
    assert out == key + "\n"
    assert UUID.match(key)
    stored = [bytes(row[0]) for row in query(service, "SELECT key_hash FROM api_keys")]
    assert all(len(h) == 32 for h in stored)
    assert key.encode() not in b"".join(stored)
    if service.db_url.startswith("sqlite:"):
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
        result = cli("admin", "--db", service.db_url, *args, env=service.env)
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
        result = cli("admin", "--db", service.db_url, "load-catalog", str(path), env=service.env)
        assert result.returncode == 2
        assert message in result.stderr


def test_an_internal_error_is_enveloped_logged_and_hides_the_card(
    service_factory: Callable[..., Service], api: Api
) -> None:
    svc = service_factory()
    c = api(svc.create_key(sandbox=True, balance=1000), svc=svc)
    order_id = place(c)
    while query(svc, "SELECT status FROM orders WHERE id = ?", (order_id,))[0][0] == "HANDLING":
        time.sleep(0.05)
    # Damage the sealed card before anyone reads it: it can no longer be opened.
    query(svc, "UPDATE cards SET secret = ? WHERE order_id = ?", (bytes(60), order_id))
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


def admin(service: Service, *args: str) -> tuple[int, str, str]:
    """`oneclickdz admin --db <service's db> ARGS` in-process (the console script's own main)."""
    result = CliRunner(env=service.env).invoke(app, ["admin", "--db", service.db_url, *args])
    return result.exit_code, result.stdout, result.stderr


def _refused(ran: tuple[int, str, str], message: str) -> None:
    """A clear refusal: exit 2, one `error:` line naming the problem, nothing on stdout."""
    code, out, err = ran
    assert code == 2, err
    assert out == ""
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert message in err, err
    assert "internal error" not in err


def test_a_huge_deposit_is_refused_by_the_command(service: Service) -> None:
    service.create_key(sandbox=True, account="huge")
    result = cli(
        "admin",
        "--db",
        service.db_url,
        "deposit",
        "--account",
        "huge",
        "--sandbox",
        "99999999999999999",
        env=service.env,
    )
    _refused((result.returncode, result.stdout, result.stderr), "at most 1000000000 DZD")


def test_amounts_are_plain_decimals_of_bounded_size(service: Service, api: Api) -> None:
    key = service.create_key(sandbox=True, account="bounded", balance=100)
    for amount, message in [
        ("99999999999999999", "at most 1000000000 DZD"),
        ("1000000000.01", "at most 1000000000 DZD"),
        ("1e30", "not an amount"),
        ("1e3", "not an amount"),
        ("٣", "not an amount"),
        ("1_000", "not an amount"),
        ("+5", "not an amount"),
        ("-5", "not an amount"),
        ("5.", "not an amount"),
        (".5", "not an amount"),
        ("5\n", "not an amount"),
        ("0x10", "not an amount"),
        ("1" * 5000, "at most 1000000000 DZD"),
    ]:
        _refused(
            admin(service, "deposit", "--account", "bounded", "--sandbox", "--", amount), message
        )
        _refused(admin(service, "create-key", "--sandbox", "--balance", amount), message)
    assert balance(api(key)) == 100
    assert admin(service, "deposit", "--account", "bounded", "--sandbox", "1000000000")[1] == (
        "1000000100.00\n"
    )
    assert admin(service, "deposit", "--account", "bounded", "--sandbox", "0.5")[1] == (
        "1000000100.50\n"
    )


def test_a_balance_never_grows_past_what_the_ledger_holds(service: Service, api: Api) -> None:
    key = service.create_key(sandbox=False, account="rich", balance=1)
    query(  # as if after a thousand top deposits
        service,
        "UPDATE balances SET balance_cents = ? WHERE env = 'PRODUCTION' AND account_id = "
        "(SELECT id FROM accounts WHERE name = 'rich')",
        (100_000_000_000_000 - 100,),
    )
    _refused(
        admin(service, "deposit", "--account", "rich", "--production", "1.01"),
        "at most 1000000000000 DZD",
    )
    assert balance(api(key)) == 999_999_999_999
    assert admin(service, "deposit", "--account", "rich", "--production", "1")[1] == (
        "1000000000000.00\n"
    )
    assert balance(api(key)) == 1_000_000_000_000


def test_catalog_prices_are_exact_and_bounded(service: Service, tmp_path: Path) -> None:
    path = tmp_path / "prices.json"
    for price, message in [
        ("1e20", "at most 1000000000 DZD"),
        ("100000000000000000000", "at most 1000000000 DZD"),
        ("1e400", "not an amount"),
        ("NaN", "not an amount"),
        ("-Infinity", "not an amount"),
        ("0.1234", "at most 2 decimal places"),
        ("0.30000000000000004", "at most 2 decimal places"),
        ('"1e3"', "not an amount"),
        ('"٣"', "not an amount"),
        ("true", "must be a number"),
        ("1" * 5000, "not valid JSON"),
    ]:
        path.write_text(
            '{"categories": [{"name": "X", "products": [{"id": "p1", "title": "P", "types": '
            f'[{{"id": "t1", "name": "T", "price": {price}, "quantity": 1}}]}}]}}]}}'
        )
        _refused(admin(service, "load-catalog", str(path)), message)
    for product, message in [
        ('"types": [{"id": "t1", "name": "T", "price": 1, "quantity": 1e30}]', '"quantity"'),
        (f'"types": [{{"id": "t1", "name": "T", "price": 1, "quantity": {10**30}}}]', '"quantity"'),
        ('"region": {"dz": 1}, "types": []', '"region" must be a string'),
    ]:
        path.write_text(
            '{"categories": [{"name": "X", "products": [{"id": "p1", "title": "P", '
            f"{product}}}]}}]}}"
        )
        _refused(admin(service, "load-catalog", str(path)), message)
    assert query(service, "SELECT count(*) FROM products WHERE id = 'p1'") == [(0,)]
    path.write_bytes(
        b"\xef\xbb\xbf"  # a UTF-8 BOM, as some editors write
        b'{"categories": [{"name": "X", "products": [{"id": "p2", "title": "P", "types": '
        b'[{"id": "t2", "name": "T", "price": 1000000000, "quantity": 1}, '
        b'{"id": "t3", "name": "T", "price": 12.3, "quantity": 1}]}]}]}'
    )
    assert admin(service, "load-catalog", str(path))[1] == "loaded 1 products\n"
    prices = query(
        service, "SELECT id, price_cents FROM product_types WHERE product_id = 'p2' ORDER BY id"
    )
    assert prices == [("t2", 100_000_000_000), ("t3", 1230)]


def _cards(service: Service) -> int:
    count: int = query(service, "SELECT count(*) FROM cards")[0][0]
    return count


def test_card_imports_refuse_unsafe_codes_without_showing_them(
    service: Service, tmp_path: Path
) -> None:
    path = tmp_path / "cards.csv"
    before = _cards(service)
    secret = "TOPSECRET"
    for row, message in [
        (f"{PSN},type_001,{secret}{'X' * 1_000_000},S", "cards.csv:2: "),
        (f"{PSN},type_001,{secret}{'X' * 300},S", "cards.csv:2: the code is longer than 256"),
        (f"{PSN},type_001,{secret}-1,{'9' * 129}", "cards.csv:2: the serial is longer than 128"),
        (f'{PSN},type_001,"{secret}\n2",S', "cards.csv:2: the code holds a control character"),
        (f"{PSN},type_001,{secret}\x002,S", "cards.csv:2: the code holds a control character"),
        (f"{PSN},type_001,{secret}\x1b[31m,S", "cards.csv:2: the code holds a control character"),
        (f"{PSN},type_001,{secret}\u202e2,S", "cards.csv:2: the code holds a control character"),
        (f"{PSN},type_001,{secret}-3,S\x07", "cards.csv:2: the serial holds a control character"),
        (f"{PSN},{'t' * 100_000},{secret}-4,S", "cards.csv:2: no type 'tttt"),
    ]:
        path.write_text(f"{PSN},type_001,GOOD-{os.urandom(6).hex()},S\n{row}\n", newline="")
        code, out, err = admin(service, "import-cards", str(path))
        _refused((code, out, err), message)
        assert secret not in err
        assert len(err) < 400
    path.write_bytes(b"\xff\xfe" + "p,t,v,s\n".encode("utf-16-le"))
    _refused(admin(service, "import-cards", str(path)), "not UTF-8")
    assert _cards(service) == before


def test_card_imports_read_a_csv_with_a_byte_order_mark(
    service_factory: Callable[..., Service], tmp_path: Path
) -> None:
    # Its own service: the shared one's production stock belongs to the inventory tests.
    service = service_factory()
    path = tmp_path / "excel.csv"
    code = f"BOMCODE-{os.urandom(6).hex()}"
    path.write_text(f"productId,typeId,value,serial\n{PSN},type_002,{code},S1\n", "utf-8-sig")
    before = _cards(service)
    assert admin(service, "import-cards", str(path))[1] == "imported 1 cards\n"
    assert _cards(service) == before + 1
