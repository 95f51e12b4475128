"""`oneclickdz mobile …`, `internet …` and `pay …` against the real service, and `demo --all`.

Two services run in this process for the module (each a free loopback port and its own SQLite
database): `fast`, whose top-ups take 1/50 of their documented delays, for the commands that
wait; and `slow`, 10 times the documented delays, where a top-up stays PENDING until the test
moves the service's clock (`advance`). The commands run in-process (`tests.test_cli.oneclickdz`),
and every run checks that no API key and no traceback reached the output.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from oneclickdz import Client
from oneclickdz._redact import mask
from oneclickdz.cli import ExitCode
from oneclickdz.cli._demo import START_BALANCE, Run, _document, problems
from oneclickdz.cli._demo_more import steps
from oneclickdz.cli._payer import submit
from oneclickdz.server import admin
from oneclickdz.server.config import ServerConfig
from oneclickdz.server.runtime import RunningService, start_in_thread
from tests.conftest import fresh_account
from tests.test_cli import Ran, one_line, oneclickdz
from tests.test_cli_demo import _run, demo

FAST = ("--interval", "0.05")
PHONE = "0770123456"  # Djezzy, not a sandbox trigger
ADSL = "036362608"


class Svc:
    """A service in this process and the commands against it, on a fresh sandbox key."""

    def __init__(self, running: RunningService, db_url: str) -> None:
        self.running = running
        self.db_url = db_url
        self.base_url = running.base_url

    def key(self, balance: int = 100_000) -> str:
        store = self.running.backend.store
        return admin.create_key(store, "SANDBOX", fresh_account(), Decimal(balance))

    def cli(self, key: str) -> Any:
        def run(*args: str) -> Ran:
            where = ("--api-key", key, "--base-url", self.base_url)
            return oneclickdz(*where, *args, secrets=[key])

        return run

    def advance(self, seconds: float) -> None:
        self.running.advance(seconds)


def _start(workdir: Path, scale: float) -> Svc:
    workdir.mkdir(parents=True, exist_ok=True)
    db = workdir / "service.db"
    fd = os.open(f"{db}.key", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:  # a vault key of its own: the service creates none
        f.write(os.urandom(32).hex() + "\n")
    config = ServerConfig(
        db_url=f"sqlite:///{db}",
        port=0,
        fulfill_delay=(0.05, 0.2),
        seed=11,
        topup_delay_scale=scale,
        metrics=False,
    )
    return Svc(start_in_thread(config), config.db_url)


@pytest.fixture(scope="module")
def fast(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Svc]:
    """Top-ups final within a second (PENDING 0.04-0.3 s, HANDLING 0.06-0.9 s)."""
    svc = _start(tmp_path_factory.mktemp("fast"), 0.02)
    yield svc
    svc.running.stop()


@pytest.fixture(scope="module")
def slow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Svc]:
    """Top-ups PENDING for 20 s at least: they move when the test advances the clock."""
    svc = _start(tmp_path_factory.mktemp("slow"), 10.0)
    yield svc
    svc.running.stop()


def _sdk(svc: Svc, key: str) -> Client:
    return Client(key, base_url=svc.base_url)


# --------------------------------------------------------------------------- help


def test_help_documents_the_new_exit_codes() -> None:
    for path in (["mobile", "send"], ["internet", "wait"], ["pay", "check"], []):
        ran = oneclickdz(*path, "--help")
        assert ran.code == 0, ran.err
        for line in ("11 mobile top-up UNKNOWN_ERROR", "12 internet top-up QUEUED"):
            assert line in ran.out, (path, line)
    assert "Mobile and internet top-ups" in oneclickdz("--help").out


# --------------------------------------------------------------------------- mobile


def test_mobile_plans(fast: Svc) -> None:
    cli = fast.cli(fast.key())
    ran = cli("mobile", "plans")
    assert ran.code == 0
    rows = {line.split()[0]: line.split() for line in ran.out.splitlines()[1:-1]}
    assert rows["PREPAID_DJEZZY"][:7] == [
        "PREPAID_DJEZZY", "Djezzy", "dynamic", "50.00", "-", "5,000.00", "0.98",
    ]  # fmt: skip
    assert rows["PIXX_500"][:5] == ["PIXX_500", "Pixx", "fixed", "500.00", "0.97"]
    assert rows["GROS_MOBILIS"][6] == "-"  # documented without a cost
    assert ran.out.splitlines()[-1] == "11 plan(s): 8 dynamic (send --amount N), 3 fixed"
    data = cli("mobile", "plans", "--json").json()
    assert [p["code"] for p in data["fixed_plans"]] == ["PIXX_500", "PIXX_1000", "MIX500_MOBILIS"]
    djezzy = data["dynamic_plans"][0]
    assert (djezzy["cost"], djezzy["min_amount"], djezzy["max_amount"]) == (
        "0.98",
        "50.00",
        "5000.00",
    )


def test_mobile_send_and_wait_prints_the_outcome(fast: Svc) -> None:
    key = fast.key()
    cli = fast.cli(key)
    ran = cli("mobile", "send", "PREPAID_DJEZZY", PHONE, "--amount", "1000", "--wait", *FAST)
    assert ran.code == ExitCode.OK, ran.err
    head, *rest = ran.out.splitlines()
    topup_id = head.split()[2].rstrip(":")
    assert head == f"mobile top-up {topup_id}: FULFILLED, PREPAID_DJEZZY 1,000.00 DZD to {PHONE}"
    assert rest == ["  charged   980.00 DZD", "  refunded    0.00 DZD"]
    assert f"sent mobile top-up {topup_id} (ref cli-" in ran.err
    assert "; balance now 99,020.00 DZD" in ran.err
    assert f"mobile top-up {topup_id}: FULFILLED (attempt " in ran.err
    with _sdk(fast, key) as sdk:
        assert sdk.account.balance().balance == Decimal("99020")
        assert sdk.mobile.check(topup_id).status == "FULFILLED"
    data = cli("mobile", "check", topup_id, "--json").json()
    assert data["topup"]["msisdn"] == PHONE and data["topup"]["balance_amount"] == "980.00"
    assert {k: data["outcome"][k] for k in ("status", "amount_charged", "amount_refunded")} == {
        "status": "FULFILLED",
        "amount_charged": "980.00",
        "amount_refunded": "0.00",
    }
    assert "codes_masked" not in data  # a mobile top-up carries no code


def test_a_refunded_top_up_exits_4_with_the_operators_offers(fast: Svc) -> None:
    cli = fast.cli(fast.key())
    ran = cli("mobile", "send", "PREPAID_MOBILIS", "0600000002", "--amount", "1000", "--wait",
              *FAST, "--json")  # fmt: skip
    assert ran.code == ExitCode.REFUNDED, ran.err
    data = ran.json()
    assert set(data) == {"sent", "topup", "outcome"}
    assert data["topup"]["status"] == "REFUNDED" and data["topup"]["balance_amount"] == "0.00"
    assert data["topup"]["suggested_offers"][0]["plan_code"] == "PREPAID_MOBILIS"
    # the wait saw the charge before the refund: the refund is known
    assert (data["outcome"]["amount_charged"], data["outcome"]["amount_refunded"]) == (
        "0.00",
        "960.00",
    )
    text = cli("mobile", "check", data["sent"]["topup_id"])  # a later check: no earlier charge
    assert text.code == ExitCode.REFUNDED
    assert "  refunded  in full (the amount is not shown once refunded)" in text.out
    assert "  suggested PREPAID_MOBILIS 1,000.00 DZD" in text.out


def test_unknown_error_exits_11_until_an_operator_resolves_it(fast: Svc) -> None:
    key = fast.key()
    cli = fast.cli(key)
    args = ("mobile", "send", "PREPAID_MOBILIS", "0600000003", "--amount", "500")
    ran = cli(*args, "--ref", "inv-unknown", "--wait", *FAST)
    assert ran.code == ExitCode.NEEDS_RESOLUTION, ran.err
    head = ran.out.splitlines()[0]
    topup_id = head.split()[2].rstrip(":")
    assert head.endswith("UNKNOWN_ERROR, the operator's answer is unknown: charged until "
                         "resolved (1-24 h)")  # fmt: skip
    assert "  charged   480.00 DZD" in ran.out
    assert f"  do not send it again; check it later: oneclickdz mobile check {topup_id}" in ran.out
    outcome = cli("mobile", "check", "--ref", "inv-unknown", "--json").json()["outcome"]
    assert (outcome["needs_resolution"], outcome["refunded"]) == (True, False)
    resolved = oneclickdz("admin", "--db", fast.db_url, "resolve-topup", topup_id, "--refunded")
    assert resolved.code == 0, resolved.err
    after = cli("mobile", "check", "--ref", "inv-unknown")
    assert after.code == ExitCode.REFUNDED
    with _sdk(fast, key) as sdk:
        assert sdk.account.balance().balance == Decimal(100_000)


def test_a_pending_top_up_exits_5_and_a_wait_that_runs_out_says_how_to_resume(slow: Svc) -> None:
    key = slow.key()
    cli = slow.cli(key)
    ran = cli("mobile", "send", "PIXX_500", "0612345678", "--ref", "inv-1")
    assert ran.code == 0
    line = one_line(ran.out)
    topup_id = line.split()[3]
    assert line == f"sent mobile top-up {topup_id} (ref inv-1); balance now 99,515.00 DZD"
    check = cli("mobile", "check", topup_id)
    assert check.code == ExitCode.NOT_FINAL
    assert one_line(check.out).startswith(
        f"mobile top-up {topup_id}: PENDING, PIXX_500 500.00 DZD to 0612345678, sent "
    )
    wait = cli("mobile", "wait", topup_id, "--interval", "0.05", "--max-attempts", "2")
    assert (wait.code, wait.out) == (ExitCode.NOT_FINAL, "")
    last = wait.err.strip().splitlines()[-1]
    assert last.startswith(f"error: mobile top-up {topup_id} still PENDING after 2 check(s) in ")
    assert last.endswith(f"it is not lost: oneclickdz mobile wait {topup_id}")
    error = cli("mobile", "wait", topup_id, "--max-attempts", "1", "--json").error()
    assert (error["type"], error["order_id"], error["last_status"]) == (
        "PollTimeoutError",
        topup_id,
        "PENDING",
    )
    again = cli("mobile", "send", "PIXX_500", "0612345678", "--ref", "inv-1")
    assert again.code == ExitCode.API_ERROR
    assert one_line(again.err).startswith("error: DUPLICATED_REF: ")
    assert f"top-up {topup_id} holds this ref" in again.err
    slow.advance(1_000)  # PENDING and HANDLING at 10 times their documented length: done
    assert cli("mobile", "check", topup_id).code == ExitCode.OK


def test_bad_input_is_refused_before_sending(fast: Svc) -> None:
    key = fast.key()
    cli = fast.cli(key)
    for args, message in (
        (("mobile", "send", "PREPAID_DJEZZY", "123", "--amount", "100"), "MSSIDN must match"),
        (("internet", "send", "ADSL", "12", "500"), "number must match"),
        (("internet", "products", "3G"), "Invalid value"),
        (("pay", "create", "x", "10"), "amount must be within 500..500000"),
        (("mobile", "check"), "give the top-up id or --ref REF"),
        (("mobile", "check", "x", "--ref", "y"), "give the top-up id or --ref REF"),
        (("pay", "create", "x", "1000", "--fee-mode", "nope"), "Invalid value"),
    ):
        ran = cli(*args)
        assert (ran.code, ran.out) == (ExitCode.USAGE, ""), args
        assert message in ran.err, (args, ran.err)
    error = cli("mobile", "send", "PREPAID_DJEZZY", "123", "--json").error()
    assert (error["type"], error["exit_code"]) == ("InvalidInputError", 2)
    with _sdk(fast, key) as sdk:
        assert sdk.account.balance().balance == Decimal(100_000)
        assert sdk.mobile.list().items == ()


def test_a_lost_send_answer_is_recovered_by_its_ref_or_exits_8(fast: Svc) -> None:
    key = fast.key()
    cli = fast.cli(key)
    send = ("mobile", "send", "PREPAID_DJEZZY", PHONE, "--amount", "500")
    fast.running.set_faults("mobileSend:1:reset-after:x1")
    try:
        ran = cli(*send, "--ref", "inv-9")
    finally:
        fast.running.set_faults("")
    assert ran.code == 0, ran.err
    assert one_line(ran.out).endswith(
        "(ref inv-9): an earlier attempt had sent it; recovered by its ref, not sent twice"
    )
    fast.running.set_faults("mobileSend:1:reset-after")
    try:
        lost = cli(*send, "--ref", "inv-10")
    finally:
        fast.running.set_faults("")
    assert (lost.code, lost.out) == (ExitCode.PLACEMENT_UNKNOWN, "")
    assert one_line(lost.err).endswith(
        f"place it again with the same ref: oneclickdz mobile send PREPAID_DJEZZY {PHONE} "
        "--amount 500 --ref inv-10"
    )
    with _sdk(fast, key) as sdk:  # each was sent once: the retries met their ref
        assert sorted(t.ref or "" for t in sdk.mobile.list().items) == ["inv-10", "inv-9"]
    recovered = cli(*send, "--ref", "inv-10", "--json")  # reconciling: DUPLICATED_REF
    assert recovered.code == ExitCode.API_ERROR
    assert recovered.error()["code"] == "DUPLICATED_REF"


def test_mobile_list(fast: Svc) -> None:
    cli = fast.cli(fast.key())
    assert cli("mobile", "list").out.startswith("no top-ups")
    cli("mobile", "send", "PIXX_1000", "0611111111", "--wait", *FAST)
    cli("mobile", "send", "PREPAID_MOBILIS", "0600000001", "--amount", "100", "--wait", *FAST)
    ran = cli("mobile", "list")
    lines = ran.out.splitlines()
    assert lines[0].split() == ["TOPUP", "TIME", "PLAN", "MSSIDN", "AMOUNT", "STATUS", "CHARGED"]
    assert lines[1].split()[2:] == ["PREPAID_MOBILIS", "0600000001", "100.00", "REFUNDED", "0.00"]
    assert lines[2].split()[2:] == ["PIXX_1000", "0611111111", "1,000.00", "FULFILLED", "970.00"]
    assert lines[-1] == "page 1 of 1, 2 top-up(s) in all"
    page = cli("mobile", "list", "--page-size", "1", "--json").json()
    assert page["pagination"]["total_pages"] == 2 and len(page["items"]) == 1
    every = cli("mobile", "list", "--all", "--page-size", "1", "--json").json()
    assert (len(every["items"]), every["pagination"]) == (2, None)


# --------------------------------------------------------------------------- internet


def test_internet_products_and_number_checks(fast: Svc) -> None:
    cli = fast.cli(fast.key())
    ran = cli("internet", "products", "4g")
    assert ran.code == 0
    lines = ran.out.splitlines()
    assert lines[:2] == ["4G", "VALUE DZD  COST DZD  STOCK"]
    assert lines[-1].split() == ["5,000.00", "4,900.00", "out", "of", "stock"]
    data = cli("internet", "products", "ADSL", "--json").json()
    assert data["products"][0] == {"value": "500.00", "cost": "490.00", "available": True}
    good = cli("internet", "check-number", "ADSL", ADSL)
    assert good.code == 0
    assert re.fullmatch(
        rf"{ADSL}: a valid ADSL line, ncli \d{{5}}\*{{5}}, offre .+", one_line(good.out)
    )
    bad = cli("internet", "check-number", "4G", "12")
    assert (bad.code, bad.out) == (ExitCode.API_ERROR, "")
    assert one_line(bad.err).startswith("error: ERR_PHONE: Invalid phone number for 4G service")
    error = cli("internet", "check-number", "4G", "12", "--json").error()
    assert error["details"]["number"] == "12" and error["hint"] == error["details"]["reason"]


def test_internet_recharge_card_code_is_masked_unless_asked(fast: Svc) -> None:
    key = fast.key()
    cli = fast.cli(key)
    ran = cli("internet", "send", "ADSL", ADSL, "1000", "--wait", *FAST)
    assert ran.code == ExitCode.OK, ran.err
    lines = ran.out.splitlines()
    topup_id = lines[0].split()[2].rstrip(":")
    assert lines[0] == f"internet top-up {topup_id}: FULFILLED, ADSL 1,000.00 DZD for {ADSL}"
    with _sdk(fast, key) as sdk:
        code = sdk.internet.check(topup_id).card_code
    assert code is not None and len(code) == 12
    assert code not in ran.out + ran.err
    assert f"  card      {mask(code)}" in lines
    assert re.fullmatch(r"  num_trans AT-\d{4}-\d{5}, processed .+Z", lines[2])
    assert lines[3:] == [
        "  charged   980.00 DZD",
        "  refunded    0.00 DZD",
        "  (card code masked: --show-codes shows it)",
    ]
    shown = cli("internet", "check", topup_id, "--show-codes")
    assert f"  card      {code}" in shown.out.splitlines()
    assert "--show-codes" not in shown.out
    data = cli("internet", "check", topup_id, "--json").json()
    assert (data["topup"]["card_code"], data["codes_masked"]) == (mask(code), True)
    revealed = cli("internet", "wait", topup_id, "--show-codes", "--json").json()
    assert (revealed["topup"]["card_code"], revealed["codes_masked"]) == (code, False)
    listed = cli("internet", "list")
    assert code not in listed.out and mask(code) not in listed.out  # cards only with --json
    assert listed.out.splitlines()[1].split()[2:] == [
        "ADSL", ADSL, "1,000.00", "FULFILLED", "980.00",
    ]  # fmt: skip
    items = cli("internet", "list", "--json").json()["items"]
    assert items[0]["card_code"] == mask(code)
    items = cli("internet", "list", "--show-codes", "--json").json()["items"]
    assert items[0]["card_code"] == code


def test_queued_recharges_exit_12_then_end_when_their_hours_pass(fast: Svc) -> None:
    cli = fast.cli(fast.key())
    ids = {}
    for number, later in (("213000000002", "FULFILLED"), ("213000000003", "REFUNDED")):
        ran = cli("internet", "send", "4G", number, "500", "--wait", *FAST, "--json")
        assert ran.code == ExitCode.QUEUED, ran.err
        data = ran.json()
        assert data["outcome"]["queued"] is True and data["topup"]["card_code"] is None
        assert data["outcome"]["amount_charged"] == "490.00"
        ids[data["sent"]["topup_id"]] = later
    topup_id = next(iter(ids))
    text = cli("internet", "check", topup_id)
    assert text.code == ExitCode.QUEUED
    assert text.out.splitlines()[0].endswith(
        "QUEUED, scheduled for later (12-48 h); charged, not a failure"
    )
    assert f"  check it again after 24 h: oneclickdz internet check {topup_id}" in text.out
    fast.advance(48 * 3600 * 0.02 + 1)  # the longest queue, at this service's scale
    for topup_id, later in ids.items():
        final = cli("internet", "wait", topup_id, *FAST, "--json")
        assert final.json()["topup"]["status"] == later
        assert final.code == (ExitCode.OK if later == "FULFILLED" else ExitCode.REFUNDED)
    refused = cli("internet", "send", "4G", "213000000001", "500", "--wait", *FAST)
    assert refused.code == ExitCode.REFUNDED
    assert "REFUNDED, nothing delivered (4G 500.00 DZD for 213000000001)" in refused.out


# --------------------------------------------------------------------------- payments


def test_a_payment_link_paid_on_its_page(fast: Svc) -> None:
    key = fast.key()
    cli = fast.cli(key)
    created = cli("pay", "create", "Two cards", "5000", "--description", "PSN 500 x 2")
    assert created.code == 0
    lines = created.out.splitlines()
    ref = lines[0].split()[2].rstrip(":")
    assert re.fullmatch(r"OCPL-[A-Z0-9]{6}-[A-Z0-9]{4}", ref)
    assert lines[0] == f"payment link {ref}: 5,000.00 DZD for 'Two cards' (sandbox)"
    assert lines[1] == f"  pay at    {fast.base_url.removesuffix('/v3')}/pay/{ref}"
    pending = cli("pay", "check", ref)
    assert (pending.code, one_line(pending.out)) == (
        ExitCode.NOT_FINAL,
        f"payment {ref}: PENDING, Payment not yet initiated",
    )
    wait = cli("pay", "wait", ref, "--interval", "0.05", "--max-attempts", "2")
    assert (wait.code, wait.out) == (ExitCode.NOT_FINAL, "")
    assert wait.err.strip().splitlines()[-1].endswith(f"it is not lost: oneclickdz pay wait {ref}")
    answer = submit(lines[1].split()[-1])
    assert (answer.status_code, answer.heading) == (200, "Payment confirmed")
    paid = cli("pay", "check", ref)
    assert paid.code == ExitCode.OK
    assert paid.out.splitlines()[:4] == [
        f"payment {ref}: CONFIRMED, Payment confirmed successfully",
        "  paid      5,000.00 DZD by the payer (CIB)",
        "  fee          50.00 DZD",
        "  credited  4,950.00 DZD to your balance",
    ]
    data = cli("pay", "wait", ref, "--json").json()["payment"]
    assert data["status"] == "CONFIRMED"
    assert (data["transaction_details"]["amount"], data["transaction_details"]["net_amount"]) == (
        "5000.00",
        "4950.00",
    )
    with _sdk(fast, key) as sdk:
        assert sdk.account.balance().balance == Decimal("104950")
    again = submit(lines[1].split()[-1])  # single-use
    assert (again.status_code, again.heading) == (409, "This payment link was already paid")


def test_fee_modes_cancelled_and_expired_links(fast: Svc) -> None:
    cli = fast.cli(fast.key())
    link = cli("pay", "create", "Split", "1000", "--fee-mode", "split_fee", "--json").json()
    assert link["link"]["fee_mode"] == "SPLIT_FEE"
    assert submit(link["link"]["payment_url"], method="EDAHABIA").ok
    details = cli("pay", "check", link["link"]["payment_ref"], "--json").json()["payment"]
    assert {k: details["transaction_details"][k] for k in ("amount", "fee", "net_amount")} == {
        "amount": "1005.00",
        "fee": "10.00",
        "net_amount": "995.00",
    }
    cancelled = cli("pay", "create", "Cancel me", "500", "--json").json()["link"]
    assert submit(cancelled["payment_url"], action="cancel").heading == "Payment cancelled"
    failed = cli("pay", "check", cancelled["payment_ref"])
    assert (failed.code, one_line(failed.out)) == (
        ExitCode.REFUNDED,
        f"payment {cancelled['payment_ref']}: FAILED, Payment failed",
    )
    stale = cli("pay", "create", "Too late", "500", "--json").json()["link"]["payment_ref"]
    fast.advance(1_201)  # a link lives 20 minutes
    expired = cli("pay", "check", stale)
    assert (expired.code, one_line(expired.out)) == (
        ExitCode.REFUNDED,
        f"payment {stale}: FAILED, the link expired before it was paid; create a new one",
    )
    doc = cli("pay", "wait", stale, "--json")
    assert doc.code == ExitCode.REFUNDED
    assert doc.json()["payment"] == {
        "payment_ref": stale,
        "status": "FAILED",
        "message": "Payment link expired unpaid",
        "transaction_details": None,
        "expired": True,
    }
    unknown = cli("pay", "check", "OCPL-AAAAAA-AAAA")
    assert unknown.code == ExitCode.API_ERROR
    assert one_line(unknown.err).startswith("error: NOT_FOUND: ")


# --------------------------------------------------------------------------- demo --all


def test_demo_all_runs_one_of_each_kind_end_to_end() -> None:
    result = demo("--all")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    for head in (
        ": FULFILLED, 2 of 2 card(s) delivered",
        ": PARTIALLY_FILLED, 2 of 4 card(s) delivered",
        ": REFUNDED, 0 of 2 card(s) delivered",
        ": FULFILLED, PREPAID_DJEZZY 1,000.00 DZD to 0770123456",
        ": FULFILLED, ADSL 1,000.00 DZD for 036362608",
        ": CONFIRMED, Payment confirmed successfully",
    ):
        assert sum(head in line for line in lines) == 1, head
    assert "  payer     on the pay page, with a CIB card: Payment confirmed" in lines
    assert "  credited  4,950.00 DZD to your balance" in lines
    assert re.search(r"payment OCPL-\S+: PENDING \(attempt 1/", result.stdout)  # then paid
    assert (
        "balance after   11,030.00 DZD = 10,000.00 - 980.00 (normal) - 980.00 (partial) "
        "- 0.00 (refund) - 980.00 (mobile) - 980.00 (internet) + 4,950.00 (payment)"
    ) in lines
    assert lines[-1].startswith("demo passed in ")
    assert lines[-1].endswith("every order, top-up and payment ended as the guide says")
    assert re.search(r"  card      \*\*\*\*\d{4}$", result.stdout, re.MULTILINE)
    assert "SANDBOX-" not in result.stdout and result.stderr == ""


def test_demo_all_fails_when_a_step_is_not_the_guides() -> None:
    orders = {
        "normal": ("FULFILLED", 2),
        "partial": ("PARTIALLY_FILLED", 2),
        "refund": ("REFUNDED", 0),
    }
    extras = steps()
    for step in extras:
        step.status, step.change = step.expected, step.expected_change
    run = _run(orders, Decimal("11030"))
    run.extras = extras
    assert problems(run) == []
    extras[2].status, extras[2].change = "FAILED", None
    found = problems(run)
    assert found[0] == (
        "payment: expected CONFIRMED moving 4950.00 on the balance; got FAILED moving None"
    )
    assert found[1] == (
        "balance after is 11030; expected 11030.00 (= 10000 - 1960 charged - 1960.00 moved by "
        "the other kinds)"
    )
    extras[0].error = "InsufficientBalanceError: no"
    assert "mobile: InsufficientBalanceError: no" in problems(run)


def test_the_demo_all_json_has_its_steps() -> None:
    """The JSON document of `demo --all` (built from a run, not a second demo)."""
    extras = steps()
    doc = _document(Run("http://x", Decimal(490), START_BALANCE, START_BALANCE, []), [])
    assert "steps" not in doc  # the plain demo's document is unchanged
    doc = _document(
        Run("http://x", Decimal(490), START_BALANCE, START_BALANCE, [], extras=extras), []
    )
    assert [s["step"] for s in doc["steps"]] == ["mobile", "internet", "payment"]
    assert doc["expected_balance_after"] == "11030.00"
    assert json.loads(json.dumps(doc)) == doc
