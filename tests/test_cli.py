"""The `oneclickdz` command against the real service: every command's text and JSON output.

Most tests run the command in-process with typer's runner (the same `RootGroup.main` as the
console script: parsing, error handling, exit codes); `test_cli_process.py` runs the real
process. Every run checks that no API key and no traceback reached the output.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from oneclickdz import Client
from oneclickdz._redact import mask
from oneclickdz.cli import ExitCode, app
from oneclickdz.server.testing import Service
from tests.conftest import fresh_account

PSN = "507f1f77bcf86cd799439011"
FAST = ("--interval", "0.1")  # the test service fulfils within 0.2-0.5 s
ENV_VARS = (
    "ONECLICKDZ_API_KEY",
    "ONECLICKDZ_BASE_URL",
    "ONECLICKDZ_DB",
    "ONECLICKDZ_TRACKER_KEY",
    "ONECLICKDZ_TRACKER_STORE",
)


@dataclass(frozen=True)
class Ran:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)

    @property
    def last_line(self) -> str:
        return self.out.strip().splitlines()[-1]

    def error(self) -> dict[str, Any]:
        document = json.loads(self.err)
        assert set(document) == {"error"}
        error: dict[str, Any] = document["error"]
        return error


def oneclickdz(*args: str, env: dict[str, str] | None = None, secrets: Sequence[str] = ()) -> Ran:
    """Run `oneclickdz ARGS` in-process with a clean environment (no ONECLICKDZ_* from outside)."""
    environment: dict[str, str | None] = dict.fromkeys(ENV_VARS)
    environment.update(env or {})
    result = CliRunner().invoke(app, list(args), env=environment)
    ran = Ran(result.exit_code, result.stdout, result.stderr)
    everything = ran.out + ran.err
    assert "Traceback" not in everything, everything
    for secret in secrets:
        assert secret not in everything, f"a secret was printed:\n{everything}"
    return ran


Cli = Callable[..., Ran]


@pytest.fixture
def cli(service: Service, sandbox_key: str) -> Cli:
    """`cli(ARGS...)`: oneclickdz with the session service and a fresh sandbox key."""

    def run(*args: str) -> Ran:
        return oneclickdz(
            "--api-key", sandbox_key, "--base-url", service.base_url, *args, secrets=[sandbox_key]
        )

    return run


@pytest.fixture
def sdk(service: Service, sandbox_key: str) -> Iterator[Client]:
    """The SDK on the same key, to check what the command printed against the API's truth."""
    with Client(sandbox_key, base_url=service.base_url) as client:
        yield client


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    return lines[0]


# --------------------------------------------------------------------------- help


def _command_paths() -> list[list[str]]:
    paths: list[list[str]] = []

    def walk(command: Any, path: list[str]) -> None:
        paths.append(path)
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, [*path, name])

    walk(get_command(app), [])
    return paths


def test_every_command_has_help() -> None:
    paths = _command_paths()
    names = {" ".join(p) for p in paths}
    assert {
        "serve",
        "demo",
        "admin create-key",
        "admin deposit",
        "ping",
        "validate",
        "balance",
        "transactions",
        "catalog",
        "product",
        "order place",
        "order check",
        "order wait",
        "orders list",
    } <= names
    for path in paths:
        ran = oneclickdz(*path, "--help")
        assert ran.code == 0, (path, ran.err)
        assert f"Usage: oneclickdz {' '.join(path)}".rstrip() in ran.out, path


def test_help_documents_the_exit_codes() -> None:
    for path in ([], ["order", "place"], ["order", "check"], ["order", "wait"]):
        out = oneclickdz(*path, "--help").out
        assert "Exit codes" in out
        for line in ("3 order PARTIALLY_FILLED", "4 order REFUNDED", "7 connection error"):
            assert line in out, (path, line)


def test_exit_codes_are_the_documented_ones() -> None:
    assert {code.name: int(code) for code in ExitCode} == {
        "OK": 0,
        "INTERNAL": 1,
        "USAGE": 2,
        "PARTIALLY_FILLED": 3,
        "REFUNDED": 4,
        "NOT_FINAL": 5,
        "API_ERROR": 6,
        "CONNECTION": 7,
        "PLACEMENT_UNKNOWN": 8,
        "INCONSISTENT": 9,
        "CANNOT_LISTEN": 10,
        "NEEDS_RESOLUTION": 11,
        "QUEUED": 12,
    }


def test_the_readme_documents_every_command_and_exit_code() -> None:
    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme.split("<!-- section: cli -->")[1].split("<!-- end section: cli -->")[0]
    for path in _command_paths():
        if path and path[0] != "admin":  # admin's subcommands are in the service section
            assert f"`{' '.join(path)}" in section, path
    for code in ExitCode:
        assert f"| {int(code)} | " in section, code
    assert "<!-- section: cli -->" in readme.split("## What is in the box")[1]


def test_version() -> None:
    ran = oneclickdz("--version")
    assert (ran.code, ran.out.split()[0]) == (0, "oneclickdz")


# --------------------------------------------------------------------------- account


def test_ping_needs_no_key(service: Service) -> None:
    ran = oneclickdz("ping", "--base-url", service.base_url)
    assert ran.code == 0
    assert one_line(ran.out).startswith("API ok; operators: mobilis up")
    data = oneclickdz("ping", "--base-url", service.base_url, "--json").json()
    assert data["api"] == "ok" and data["operators"]["djezzy"] == "up"


def test_validate_shows_the_key_masked(cli: Cli, sandbox_key: str) -> None:
    ran = cli("validate")
    assert ran.code == 0
    assert f"****{sandbox_key[-4:]}  SANDBOX  READ-WRITE  enabled" in ran.out
    assert "allowed IPs  any" in ran.out
    data = cli("validate", "--json").json()
    assert data["api_key"] == {
        "key": f"****{sandbox_key[-4:]}",
        "type": "SANDBOX",
        "scope": "READ-WRITE",
        "is_enabled": True,
        "allowed_ips": [],
    }
    assert data["username"].startswith("acct-")


def test_balance(cli: Cli) -> None:
    assert one_line(cli("balance").out) == "100,000.00 DZD"
    assert cli("balance", "--json").json() == {"balance": "100000.00", "currency": "DZD"}


def test_transactions(cli: Cli) -> None:
    ran = cli("transactions")
    assert ran.code == 0
    assert ran.out.splitlines()[0].split() == ["TIME", "TYPE", "AMOUNT", "BALANCE", "OBJID", "NOTE"]
    assert "DEPOSIT  100,000.00  100,000.00" in ran.out
    assert ran.out.splitlines()[-1] == "page 1 of 1, 1 transaction(s) in all"
    data = cli("transactions", "--json").json()
    [deposit] = data["items"]
    assert (deposit["type"], deposit["amount"], deposit["new_balance"]) == (
        "DEPOSIT",
        "100000.00",
        "100000.00",
    )
    assert data["pagination"] == {"page": 1, "page_size": 20, "total_pages": 1, "total_results": 1}
    everything = cli("transactions", "--all", "--page-size", "1", "--json").json()
    assert (everything["items"], everything["pagination"]) == (data["items"], None)
    assert cli("transactions", "--page", "2").out.startswith("no transactions")


def test_catalog(cli: Cli) -> None:
    ran = cli("catalog")
    assert ran.code == 0
    [row] = [line.split() for line in ran.out.splitlines() if PSN in line]
    assert row == ["Gaming", "Cards", PSN, "PlayStation", "Network", "dz"]
    assert ran.out.splitlines()[-1].endswith("categories")
    data = cli("catalog", "--json").json()
    products = {p["id"]: p for c in data["categories"] for p in c["products"]}
    assert products[PSN]["title"] == "PlayStation Network"


def test_product(cli: Cli) -> None:
    ran = cli("product", PSN)
    assert ran.code == 0
    lines = ran.out.splitlines()
    assert lines[0] == f"PlayStation Network ({PSN})"
    rows = {line.split()[0]: line for line in lines[2:]}
    assert rows["type_001"].split()[-2:] == ["490.00", "150"]
    assert rows["type_003"].endswith("1,960.00  out of stock")
    data = cli("product", PSN, "--json").json()
    assert data["product_id"] == PSN
    assert data["types"][0] == {"id": "type_001", "name": "PSN 500 DA", "price": "490.00",
                                "quantity": 150}  # fmt: skip


def test_an_api_error_is_one_line_with_code_and_request_id(cli: Cli) -> None:
    ran = cli("product", "nope")
    assert (ran.code, ran.out) == (ExitCode.API_ERROR, "")
    line = one_line(ran.err)
    assert line.startswith("error: NOT_FOUND: ") and "(HTTP 404, request req_" in line
    error = cli("product", "nope", "--json").error()
    assert (error["type"], error["code"], error["status_code"]) == (
        "NotFoundError",
        "NOT_FOUND",
        404,
    )
    assert error["request_id"].startswith("req_") and error["exit_code"] == 6


# --------------------------------------------------------------------------- global options


def test_global_options_come_from_the_environment_or_either_side_of_the_command(
    service: Service, sandbox_key: str
) -> None:
    env = {"ONECLICKDZ_API_KEY": sandbox_key, "ONECLICKDZ_BASE_URL": service.base_url}
    assert oneclickdz("balance", env=env, secrets=[sandbox_key]).code == 0
    nowhere = "http://127.0.0.1:9/v3"
    # the command's own flag wins over the root's, which wins over the environment
    ran = oneclickdz(
        "--base-url", nowhere, "balance", "--base-url", service.base_url, "--api-key", sandbox_key
    )
    assert ran.code == 0
    ran = oneclickdz("--base-url", nowhere, "balance", env=env, secrets=[sandbox_key])
    assert ran.code == ExitCode.CONNECTION
    assert oneclickdz("--json", "balance", env=env).json()["currency"] == "DZD"


def test_no_key_is_bad_usage_and_sends_nothing(service: Service) -> None:
    ran = oneclickdz("balance", "--base-url", service.base_url)
    assert (ran.code, ran.out) == (ExitCode.USAGE, "")
    assert one_line(ran.err) == "error: no API key: pass --api-key or set ONECLICKDZ_API_KEY"
    error = oneclickdz("balance", "--base-url", service.base_url, "--json").error()
    assert (error["code"], error["exit_code"]) == ("USAGE", 2)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["order", "place", PSN, "type_001", "0"], "quantity"),
        (["order", "place", PSN, "type_001"], "Missing argument"),
        (["order", "wait", "x", "--interval", "0"], "interval must be > 0"),
        (["order", "wait", "x", "--timeout", "-1"], "timeout must be > 0"),
        (["transactions", "--page-size", "101"], "page-size"),
        (["balance", "--base-url", "ftp://example.com"], "must start with http"),
        (["nosuchcommand"], "No such command"),
        (["balance", "--nosuchoption"], "No such option"),
    ],
)
def test_bad_usage_exits_2_and_buys_nothing(
    cli: Cli, sdk: Client, args: list[str], message: str
) -> None:
    ran = cli(*args)
    assert (ran.code, ran.out) == (ExitCode.USAGE, "")
    assert message in ran.err
    error = cli(*args, "--json").error()
    assert (error["code"], error["exit_code"]) == ("USAGE", 2)
    assert message in error["message"]
    assert list(sdk.gift_cards.list_orders()) == []


def test_an_unreachable_api_is_a_connection_error(sandbox_key: str) -> None:
    from oneclickdz.server.testing import free_port

    url = f"http://127.0.0.1:{free_port()}/v3"
    for args in (["balance"], ["order", "place", PSN, "type_001", "1"]):
        ran = oneclickdz(*args, "--api-key", sandbox_key, "--base-url", url, secrets=[sandbox_key])
        assert (ran.code, ran.out) == (ExitCode.CONNECTION, "")
        line = one_line(ran.err)
        assert line.startswith("error: ConnectError on ") and "Connection refused" in line
    error = oneclickdz(
        "balance", "--json", "--api-key", sandbox_key, "--base-url", url, secrets=[sandbox_key]
    ).error()
    assert (error["type"], error["exit_code"], error["request_id"]) == (
        "APIConnectionError",
        7,
        None,
    )


def test_a_bad_key_is_an_api_error_and_is_never_printed(
    service_factory: Callable[..., Service],
) -> None:
    svc = service_factory()  # 5 bad keys would block 127.0.0.1 on the shared service
    bad = "ffffffff-ffff-4fff-8fff-ffffffffffff"
    ran = oneclickdz("balance", "--api-key", bad, "--base-url", svc.base_url, secrets=[bad])
    assert (ran.code, ran.out) == (ExitCode.API_ERROR, "")
    line = one_line(ran.err)
    assert line.startswith("error: INVALID_ACCESS_TOKEN: ") and "request req_" in line
    assert "4 more invalid key(s) from this IP" in line
    error = oneclickdz(
        "balance", "--json", "--api-key", bad, "--base-url", svc.base_url, secrets=[bad]
    ).error()
    assert (error["code"], error["details"], error["exit_code"]) == (
        "INVALID_ACCESS_TOKEN",
        {"attemptsLeft": 3},
        6,
    )


def test_a_key_a_header_cannot_carry_is_refused_without_echoing_it(service: Service) -> None:
    odd = "abcdefgh\x01ijklmnop"
    ran = oneclickdz("balance", "--api-key", odd, "--base-url", service.base_url, secrets=[odd])
    assert ran.code == ExitCode.USAGE
    assert "characters an HTTP header cannot carry" in ran.err


def test_an_unexpected_failure_is_one_line_and_exit_1(
    monkeypatch: pytest.MonkeyPatch, service: Service, sandbox_key: str
) -> None:
    from oneclickdz.cli import _core

    def broken(*args: object, **kwargs: object) -> Client:
        raise RuntimeError(f"boom with {sandbox_key}")

    monkeypatch.setattr(_core, "Client", broken)
    args = ("balance", "--api-key", sandbox_key, "--base-url", service.base_url)
    ran = oneclickdz(*args, secrets=[sandbox_key])
    assert (ran.code, ran.out) == (ExitCode.INTERNAL, "")
    assert (
        one_line(ran.err)
        == f"error: internal error: RuntimeError: boom with ****{sandbox_key[-4:]}"
    )
    error = oneclickdz(*args, "--json", secrets=[sandbox_key]).error()
    assert (error["type"], error["exit_code"]) == ("RuntimeError", 1)


# --------------------------------------------------------------------------- admin


def test_admin_commands_print_json_on_request(service: Service) -> None:
    account = fresh_account()
    db = ("admin", "--db", service.db_url)
    created = oneclickdz(*db, "create-key", "--sandbox", "--account", account, "--json").json()
    key = created.pop("key")
    assert created == {
        "type": "SANDBOX",
        "account": account,
        "scope": "READ-WRITE",
        "allowed_ips": [],
    }
    deposit = oneclickdz(*db, "deposit", "--sandbox", "--account", account, "12.5", "--json")
    assert deposit.json() == {"account": account, "type": "SANDBOX", "balance": "12.50"}
    disabled = oneclickdz(*db, "disable-key", key, "--json", secrets=[key])
    assert disabled.json() == {"key": f"****{key[-4:]}", "enabled": False}
    assert oneclickdz(*db, "enable-key", key, secrets=[key]).out == ""
    refused = oneclickdz(*db, "deposit", "--sandbox", "--account", "nobody", "1", "--json")
    assert refused.code == ExitCode.USAGE and refused.out == ""
    assert "no account named 'nobody'" in refused.error()["message"]


# --------------------------------------------------------------------------- orders


def _codes(sdk: Client, order_id: str) -> list[str]:
    order = sdk.gift_cards.check_order(order_id)
    return [card.value for card in order.cards] + [c.serial for c in order.cards if c.serial]


def test_place_and_wait_prints_the_outcome_with_masked_codes(cli: Cli, sdk: Client) -> None:
    ran = cli("order", "place", PSN, "type_001", "2", "--wait", *FAST)
    assert ran.code == ExitCode.OK, ran.err
    lines = ran.out.splitlines()
    head = lines[0].split()
    assert head[0] == "order" and head[2:] == ["FULFILLED,", "2", "of", "2", "card(s)", "delivered"]
    order_id = head[1].rstrip(":")
    codes = _codes(sdk, order_id)
    assert len(codes) == 4
    for code in codes:
        assert code not in ran.out + ran.err
    assert f"  card 1  {mask(codes[0])}  serial {mask(codes[2])}" in lines
    assert "  charged   980.00 DZD (2 x 490.00)" in lines
    assert "  refunded    0.00 DZD" in lines
    # progress went to stderr, as plain lines (not a terminal)
    assert f"placed order {order_id} (ref cli-" in ran.err
    assert f"order {order_id}: FULFILLED (attempt " in ran.err


def test_show_codes_prints_them_in_full(cli: Cli, sdk: Client) -> None:
    placed = cli("order", "place", PSN, "type_001", "1", "--wait", *FAST, "--json").json()
    order_id = placed["placed"]["order_id"]
    value, serial = _codes(sdk, order_id)
    assert placed["order"]["cards"] == [{"value": mask(value), "serial": mask(serial)}]
    assert placed["codes_masked"] is True
    shown = cli("order", "check", order_id, "--show-codes")
    assert shown.code == 0
    assert f"  card 1  {value}  serial {serial}" in shown.out.splitlines()
    assert "--show-codes" not in shown.out
    data = cli("order", "check", order_id, "--show-codes", "--json").json()
    assert data["order"]["cards"] == [{"value": value, "serial": serial}]
    assert data["codes_masked"] is False
    masked = cli("order", "check", order_id)
    assert value not in masked.out and f"  card 1  {mask(value)}  " in masked.out
    assert "(codes masked: --show-codes shows them)" in masked.out


def test_a_partial_order_exits_3_with_its_refund(cli: Cli) -> None:
    ran = cli("order", "place", PSN, "TEST_PARTIAL", "4", "--wait", *FAST)
    assert ran.code == ExitCode.PARTIALLY_FILLED
    assert "PARTIALLY_FILLED, 2 of 4 card(s) delivered" in ran.out
    assert "  refunded  980.00 DZD (2 x 490.00)" in ran.out
    data = cli("order", "place", PSN, "TEST_PARTIAL", "4", "--wait", *FAST, "--json")
    assert data.code == ExitCode.PARTIALLY_FILLED
    outcome = data.json()["outcome"]
    assert {
        k: outcome[k] for k in ("status", "delivered", "amount_charged", "amount_refunded")
    } == {
        "status": "PARTIALLY_FILLED",
        "delivered": 2,
        "amount_charged": "980.00",
        "amount_refunded": "980.00",
    }


def test_a_refunded_order_exits_4(cli: Cli) -> None:
    ran = cli("order", "place", PSN, "TEST_REFUND", "2", "--wait", *FAST, "--json")
    assert ran.code == ExitCode.REFUNDED
    data = ran.json()
    assert data["order"]["cards"] == []
    assert (data["outcome"]["amount_charged"], data["outcome"]["amount_refunded"]) == (
        "0.00",
        "980.00",
    )
    order_id = data["placed"]["order_id"]
    text = cli("order", "wait", order_id, *FAST)  # already final: one check
    assert text.code == ExitCode.REFUNDED
    assert text.out.splitlines() == [
        f"order {order_id}: REFUNDED, 0 of 2 card(s) delivered",
        "  charged     0.00 DZD",
        "  refunded  980.00 DZD (2 x 490.00)",
    ]


def test_place_without_wait_prints_the_order_and_its_ref(cli: Cli, sdk: Client) -> None:
    ran = cli("order", "place", PSN, "type_001", "1", "--ref", "invoice-42")
    assert ran.code == 0
    order_id = sdk.gift_cards.list_orders_page().items[0].id
    assert one_line(ran.out) == f"placed order {order_id} (ref invoice-42)"
    data = cli("order", "place", PSN, "type_001", "1", "--json").json()
    assert set(data) == {"placed"}
    assert data["placed"]["order_ref"].startswith("cli-")  # a ref of its own: safe to retry
    assert data["placed"]["request_id"].startswith("req_")
    again = cli("order", "place", PSN, "type_001", "1", "--ref", "invoice-42")
    assert again.code == ExitCode.API_ERROR
    assert one_line(again.err).startswith("error: DUPLICATED_REF: ")
    assert f"order {order_id} holds this ref: oneclickdz order check {order_id}" in again.err
    assert cli("order", "place", PSN, "type_001", "1", "--ref", "invoice-42", "--json").error()[
        "details"
    ] == {"orderId": order_id}


def test_insufficient_balance_says_how_much(service: Service) -> None:
    key = service.create_key(sandbox=True, account=fresh_account(), balance=100)
    ran = oneclickdz(
        "order", "place", PSN, "type_002", "1",
        "--api-key", key, "--base-url", service.base_url, secrets=[key],
    )  # fmt: skip
    assert ran.code == ExitCode.API_ERROR
    assert one_line(ran.err).startswith("error: INSUFFICIENT_BALANCE: ")
    assert "the order costs 980 DZD, the balance is 100 DZD" in ran.err


def test_orders_list(cli: Cli, sdk: Client) -> None:
    assert cli("orders", "list").out.startswith("no orders")
    cli("order", "place", PSN, "type_001", "2", "--wait", *FAST)
    cli("order", "place", PSN, "TEST_REFUND", "2", "--wait", *FAST)
    ran = cli("orders", "list")
    assert ran.code == 0
    lines = ran.out.splitlines()
    assert lines[0].split() == [
        "ORDER", "TIME", "PRODUCT", "TYPE", "QTY", "STATUS", "CARDS", "CHARGED"
    ]  # fmt: skip
    assert lines[1].split()[3:] == ["TEST_REFUND", "2", "REFUNDED", "0", "0.00"]
    assert lines[2].split()[3:] == ["type_001", "2", "FULFILLED", "2", "980.00"]
    assert lines[-1] == "page 1 of 1, 2 order(s) in all"
    data = cli("orders", "list", "--page-size", "1", "--json").json()
    assert data["pagination"]["total_pages"] == 2
    [order] = data["items"]
    assert order["status"] == "REFUNDED" and data["codes_masked"] is True
    every = cli("orders", "list", "--all", "--json").json()["items"]
    fulfilled = every[1]
    real = [c.value for c in sdk.gift_cards.check_order(fulfilled["id"]).cards]
    assert [c["value"] for c in fulfilled["cards"]] == [mask(v) for v in real]
    shown = cli("orders", "list", "--all", "--show-codes", "--json").json()["items"][1]
    assert [c["value"] for c in shown["cards"]] == real


# --------------------------------------------------------------------------- not final yet


@pytest.fixture(scope="module")
def slow_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """Orders stay HANDLING for 30 s: long enough to find them not final."""
    svc = Service(tmp_path_factory.mktemp("slow"), fulfill_delay="30-30").start()
    yield svc
    svc.stop()


@pytest.fixture
def slow(slow_service: Service) -> Cli:
    key = slow_service.create_key(sandbox=True, account=fresh_account(), balance=10_000)

    def run(*args: str) -> Ran:
        return oneclickdz(
            "--api-key", key, "--base-url", slow_service.base_url, *args, secrets=[key]
        )

    return run


def test_an_order_still_handling_exits_5(slow: Cli) -> None:
    order_id = slow("order", "place", PSN, "type_001", "1", "--json").json()["placed"]["order_id"]
    ran = slow("order", "check", order_id)
    assert ran.code == ExitCode.NOT_FINAL
    assert one_line(ran.out).startswith(
        f"order {order_id}: HANDLING, 1 x type_001 of product {PSN}"
    )
    data = slow("order", "check", order_id, "--json")
    assert data.code == ExitCode.NOT_FINAL
    assert (data.json()["order"]["status"], data.json()["outcome"]) == ("HANDLING", None)


def test_a_wait_that_runs_out_exits_5_and_says_how_to_resume(slow: Cli) -> None:
    order_id = slow("order", "place", PSN, "type_001", "1", "--json").json()["placed"]["order_id"]
    ran = slow("order", "wait", order_id, "--interval", "0.05", "--max-attempts", "3")
    assert (ran.code, ran.out) == (ExitCode.NOT_FINAL, "")
    last = ran.err.strip().splitlines()[-1]
    assert last.startswith(f"error: order {order_id} still HANDLING after 3 check(s) in ")
    assert last.endswith(f"it is not lost: oneclickdz order wait {order_id}")
    assert f"order {order_id}: HANDLING (attempt 1/3, " in ran.err
    error = slow("order", "wait", order_id, "--interval", "0.05", "--timeout", "0.2", "--json")
    assert error.code == ExitCode.NOT_FINAL and error.out == ""
    doc = error.error()
    assert (doc["type"], doc["order_id"], doc["last_status"]) == (
        "PollTimeoutError",
        order_id,
        "HANDLING",
    )


def test_place_and_wait_that_runs_out_names_the_placed_order(slow: Cli) -> None:
    ran = slow("order", "place", PSN, "type_001", "1", "--wait", "--interval", "0.05",
               "--max-attempts", "2", "--json")  # fmt: skip
    assert (ran.code, ran.out) == (ExitCode.NOT_FINAL, "")
    error = ran.error()
    assert error["type"] == "PollTimeoutError" and error["attempts"] == 2
    assert f"oneclickdz order wait {error['order_id']}" in error["hint"]


# --------------------------------------------------------------------------- faults


def test_a_lost_placement_answer_is_recovered_by_its_ref_and_failed_checks_retried(
    service_factory: Callable[..., Service],
) -> None:
    svc = service_factory(
        extra_args=["--faults", "placeOrder:1:reset-after:x1,checkOrder:1:503:x2"]
    )
    key = svc.create_key(sandbox=True, balance=1000)
    ran = oneclickdz(
        "order", "place", PSN, "type_001", "1", "--ref", "inv-7", "--wait", *FAST,
        "--api-key", key, "--base-url", svc.base_url, secrets=[key],
    )  # fmt: skip
    assert ran.code == ExitCode.OK, ran.err
    assert "(ref inv-7): an earlier attempt had placed it; recovered by its ref" in ran.err
    assert ran.err.count("check failed (HTTP 503 SERVICE_UNAVAILABLE), retrying") == 2
    assert "FULFILLED, 1 of 1 card(s) delivered" in ran.out
    with Client(key, base_url=svc.base_url) as client:
        assert len(list(client.gift_cards.list_orders())) == 1  # bought once


def test_an_unanswered_placement_exits_8_and_says_how_to_reconcile(
    service_factory: Callable[..., Service],
) -> None:
    svc = service_factory(extra_args=["--faults", "placeOrder:1:reset-after,balance:1:malformed"])
    key = svc.create_key(sandbox=True, balance=1000)
    where = ("--api-key", key, "--base-url", svc.base_url)
    ran = oneclickdz("order", "place", PSN, "type_001", "1", "--ref", "inv-8", *where)
    assert (ran.code, ran.out) == (ExitCode.PLACEMENT_UNKNOWN, "")
    line = one_line(ran.err)
    assert line.startswith("error: placeOrder may or may not have created an order")
    assert line.endswith(f"oneclickdz order place {PSN} type_001 1 --ref inv-8")
    error = oneclickdz("order", "place", PSN, "type_001", "1", "--json", *where).error()
    assert (error["type"], error["exit_code"]) == ("PlacementUnknownError", 8)
    assert error["request"]["ref"].startswith("cli-")
    # an unreadable answer (truncated JSON) is a connection failure half-way: exit 7
    garbled = oneclickdz("balance", *where)
    assert garbled.code == ExitCode.CONNECTION
    assert one_line(garbled.err).startswith("error: ")


# --------------------------------------------------------------------------- stub API


@pytest.fixture
def stub() -> Iterator[Any]:
    from tests.sdk_fixtures import StubAPI

    api = StubAPI().start()
    yield api
    api.stop()


def test_an_inconsistent_order_exits_9_and_hands_nothing_out(stub: Any) -> None:
    from tests.sdk_fixtures import final

    broken = final("stub-9", "FULFILLED", quantity=2, fulfilled=2, cards=1)
    stub.script("stub-9", broken)
    where = ("--api-key", "stub-key-123456", "--base-url", stub.base_url)
    ran = oneclickdz("order", "check", "stub-9", "--show-codes", *where)
    assert (ran.code, ran.out) == (ExitCode.INCONSISTENT, "")
    assert one_line(ran.err).startswith("error: order stub-9 is FULFILLED: expected ")
    assert "SECRET" not in ran.err
    error = oneclickdz("order", "check", "stub-9", "--json", *where).error()
    assert (error["type"], error["order_id"], error["exit_code"]) == (
        "InconsistentOrderError",
        "stub-9",
        9,
    )


def test_ping_exits_6_when_the_api_reports_a_problem(stub: Any) -> None:
    from tests.sdk_fixtures import envelope

    stub.raw["ping"] = envelope({"api": "error", "operators": {"mobilis": "down"}})
    ran = oneclickdz("ping", "--base-url", stub.base_url)
    assert (ran.code, one_line(ran.out)) == (
        ExitCode.API_ERROR,
        "API error; operators: mobilis down",
    )
