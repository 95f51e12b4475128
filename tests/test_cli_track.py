"""`oneclickdz track …`: intents, the run against the real service, delivery by a command.

The commands run in-process with typer's runner (the same `RootGroup.main` as the console
script); the tests of a second runner and of signals start real processes. Every run checks
that no traceback, no API key and no card code reached the output (but `track reveal`'s).
"""

from __future__ import annotations

import asyncio
import fcntl
import io
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from oneclickdz import Card, Client
from oneclickdz.cli import ExitCode
from oneclickdz.cli._track import (
    DEFAULT_STORE,
    DELIVERY_KEY_ENV,
    DeliverExecError,
    RunView,
    Snapshot,
    exec_handler,
)
from oneclickdz.server.testing import Service
from oneclickdz.tracker import DEFAULT_STORE_URL, Delivery
from tests import pg
from tests.test_cli import Ran, oneclickdz

PSN = "507f1f77bcf86cd799439011"
FAST = ("--interval", "0.5")  # the test service fulfils within 0.2-0.5 s
INTENT_ID = re.compile(r"^trk_[0-9a-f]{24}$")


PG_KEY = "a7" * 32  # the card key of the PostgreSQL stores (no key file beside a database)


@dataclass
class Store:
    """A tracker store (a SQLite file in the test's directory, or a fresh PostgreSQL schema),
    and the commands that work on it."""

    path: Path
    secrets: list[str]
    pg_url: str | None = None

    @property
    def url(self) -> str:
        return self.pg_url or f"sqlite:///{self.path}"

    @property
    def env(self) -> dict[str, str]:
        """What every command on this store needs in its environment: a PostgreSQL store's key."""
        return {"ONECLICKDZ_TRACKER_KEY": PG_KEY} if self.pg_url else {}

    def track(self, *args: str, env: dict[str, str] | None = None) -> Ran:
        """`oneclickdz track ARGS` on this store (through $ONECLICKDZ_TRACKER_STORE)."""
        return oneclickdz(
            "track", *args, env={"ONECLICKDZ_TRACKER_STORE": self.url, **self.env, **(env or {})},
            secrets=self.secrets,
        )  # fmt: skip

    def items(self, *args: str) -> list[dict[str, Any]]:
        ran = self.track("list", "--json", *args)
        assert ran.code == 0, ran.err
        items: list[dict[str, Any]] = ran.json()["items"]
        return items

    def one(self, ident: str) -> dict[str, Any]:
        ran = self.track("show", ident, "--json")
        assert ran.code == 0, ran.err
        summary: dict[str, Any] = ran.json()
        return summary


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest) -> str:
    """The store's engine; a test about one engine only parametrises `engine` itself."""
    engine: str = request.param
    return engine


@pytest.fixture
def store(tmp_path: Path, engine: str) -> Store:
    return Store(
        tmp_path / "tracker.db", secrets=[], pg_url=pg.fresh_url() if engine != "sqlite" else None
    )


Runner = Callable[..., Ran]


@pytest.fixture
def run(service: Service, sandbox_key: str, store: Store) -> Runner:
    """`run(ARGS...)`: `oneclickdz track run --until-idle` on the store, the service, the key."""
    store.secrets.append(sandbox_key)

    def go(*args: str) -> Ran:
        return store.track(
            "run", "--until-idle", *FAST, *args,
            env={"ONECLICKDZ_API_KEY": sandbox_key, "ONECLICKDZ_BASE_URL": service.base_url},
        )  # fmt: skip

    return go


@pytest.fixture
def sdk(service: Service, sandbox_key: str) -> Iterator[Client]:
    with Client(sandbox_key, base_url=service.base_url) as client:
        yield client


def recorder(tmp_path: Path, *, exit_code: int = 0) -> tuple[str, Path]:
    """A --deliver-exec command that appends its stdin to a file (and exits `exit_code`)."""
    script = tmp_path / "deliver.py"
    script.write_text(
        "import os, sys\n"
        "document = sys.stdin.read()\n"
        "with open(sys.argv[1], 'a') as f:\n"
        f"    f.write(os.environ['{DELIVERY_KEY_ENV}'] + ' ' + document)\n"
        "print('delivering', file=sys.stderr)\n"
        f"sys.exit({exit_code})\n"
    )
    out = tmp_path / f"delivered-{exit_code}.txt"
    command = " ".join(shlex.quote(str(p)) for p in (sys.executable, script, out))
    return command, out


def documents(out: Path) -> list[dict[str, Any]]:
    """What the recorder received: one JSON document a line, after the delivery key."""
    docs = []
    for line in out.read_text().splitlines():
        key, _, document = line.partition(" ")
        doc: dict[str, Any] = json.loads(document)
        assert doc["delivery_key"] == key
        docs.append(doc)
    return docs


# --------------------------------------------------------------------------- place


def test_the_default_store_is_the_trackers() -> None:
    assert DEFAULT_STORE == DEFAULT_STORE_URL


def test_place_writes_an_intent_and_prints_its_id_last(store: Store) -> None:
    ran = store.track("place", PSN, "type_001", "2", "--meta", "shop=A1", "--meta", "note=x=y")
    assert ran.code == 0, ran.err
    intent = ran.last_line
    assert INTENT_ID.match(intent), ran.out
    assert "wrote 1 intent(s)" in ran.err and "`oneclickdz track run` places it" in ran.err
    [item] = store.items()
    assert {k: item[k] for k in ("id", "state", "product_id", "type_id", "quantity", "meta")} == {
        "id": intent,
        "state": "intent",
        "product_id": PSN,
        "type_id": "type_001",
        "quantity": 2,
        "meta": {"shop": "A1", "note": "x=y"},
    }
    assert item["ref"] == f"oct-{intent[4:]}" and item["order_id"] is None
    data = store.track("place", PSN, "type_001", "1", "--json").json()
    assert set(data) == {"items"} and data["items"][0]["state"] == "intent"
    assert len(store.items()) == 2


def test_place_from_csv_writes_every_row_with_its_metadata(store: Store, tmp_path: Path) -> None:
    sheet = tmp_path / "batch.csv"
    sheet.write_text(
        "\ufeffproduct_id,type_id,quantity,customer,invoice\n"
        f"{PSN},type_001,2,alice@example.com,INV-1\n"
        "\n"
        f'{PSN},TEST_PARTIAL, 4 ,"bob, jr",INV-2\n'
    )
    ran = store.track("place", "--from-csv", str(sheet), "--meta", "batch=7")
    assert ran.code == 0, ran.err
    ids = ran.out.split()
    assert len(ids) == 2 and all(INTENT_ID.match(i) for i in ids)
    items = store.items()
    assert [i["id"] for i in items] == ids
    assert [(i["type_id"], i["quantity"], i["meta"]) for i in items] == [
        ("type_001", 2, {"batch": "7", "customer": "alice@example.com", "invoice": "INV-1"}),
        ("TEST_PARTIAL", 4, {"batch": "7", "customer": "bob, jr", "invoice": "INV-2"}),
    ]


@pytest.mark.parametrize(
    ("rows", "error"),
    [
        ("product_id,quantity\nP,1\n", "line 1: missing column(s) type_id"),
        (
            "product_id,type_id,quantity\nP,t,1\nP,t,two\n",
            "line 3: quantity 'two' is not an integer",
        ),
        ("product_id,type_id,quantity\nP,t,1\nP,t,0\n", "line 3: quantity 0 is not within 1..100"),
        ("product_id,type_id,quantity\nP,t,101\n", "line 2: quantity 101 is not within 1..100"),
        ("product_id,type_id,quantity\nP,t,1\n ,t,1\n", "line 3: empty product_id"),
        ("product_id,type_id,quantity\nP,,1\n", "line 2: empty type_id"),
        ("product_id,type_id,quantity\nP,t,1\nP,t\n", "line 3: 2 value(s) for 3 column(s)"),
        ("product_id,type_id,quantity\n", "no intents"),
        ("", "empty file"),
    ],
)
def test_a_bad_csv_row_refuses_the_whole_file(
    store: Store, tmp_path: Path, rows: str, error: str
) -> None:
    assert store.track("place", PSN, "type_001", "1").code == 0
    sheet = tmp_path / "bad.csv"
    sheet.write_text(rows.replace("P,", f"{PSN},"))
    ran = store.track("place", "--from-csv", str(sheet))
    assert ran.code == ExitCode.USAGE
    assert ran.out == ""
    assert one_line(ran.err).startswith(f"error: {sheet}") and error in ran.err, ran.err
    assert len(store.items()) == 1  # nothing written


@pytest.mark.parametrize("engine", ["sqlite"])  # a store file that is not there: SQLite's
def test_bad_usage_exits_2_with_one_line(store: Store, tmp_path: Path) -> None:
    assert store.track("list").err.startswith(f"error: no tracker store at {store.path}")
    assert not store.path.exists()  # reading does not create a store
    cases = [
        (("place", PSN, "type_001"), "give PRODUCT_ID TYPE_ID QUANTITY"),
        (("place", PSN, "type_001", "1", "--from-csv", "x.csv"), "not both"),
        (("place", PSN, "type_001", "1", "--meta", "novalue"), "--meta takes KEY=VALUE"),
        (("place", "--from-csv", str(tmp_path / "none.csv")), "No such file"),
    ]
    for args, message in cases:
        ran = store.track(*args)
        assert (ran.code, ran.out) == (ExitCode.USAGE, ""), args
        assert len(ran.err.strip().splitlines()) == 1 and message in ran.err, (args, ran.err)
    assert store.track("place", PSN, "type_001", "101").code == ExitCode.USAGE
    assert store.track("place", PSN, "type_001", "1").code == 0
    bogus = store.track("list", "--state", "bogus")
    assert bogus.code == ExitCode.USAGE
    assert "valid: intent, sent, uncertain, placed, final, delivered, delivery_failed" in bogus.err
    for command in ("show", "reveal", "retry"):
        unknown = store.track(command, "trk_nope")
        assert unknown.code == ExitCode.USAGE, command
        assert (
            unknown.err.strip()
            == "error: no tracked order 'trk_nope' (an intent id, order id or ref)"
        )
    bad_url = oneclickdz("track", "--store", "mysql://x/y", "place", PSN, "type_001", "1")
    assert bad_url.code == ExitCode.USAGE and "unsupported tracker store URL" in bad_url.err
    # No PostgreSQL there: one line, exit 2, the password not shown.
    refused = "postgresql://shop:hunter2@127.0.0.1:1/tracker"
    no_server = oneclickdz("track", "--store", refused, "list", secrets=["hunter2"])
    assert no_server.code == ExitCode.USAGE
    assert one_line(no_server.err).startswith(
        "error: tracker store postgresql://shop:***@127.0.0.1:1/tracker: connection failed"
    )
    wrong_key = store.track("list", env={"ONECLICKDZ_TRACKER_KEY": "ab" * 32})
    assert wrong_key.code == ExitCode.USAGE
    assert one_line(wrong_key.err).startswith("error: the tracker key does not open")
    no_key = store.track("run", "--until-idle")
    assert no_key.code == ExitCode.USAGE
    assert one_line(no_key.err) == "error: no API key: pass --api-key or set ONECLICKDZ_API_KEY"


def test_the_store_option_works_on_track_or_after_the_command(tmp_path: Path) -> None:
    first, second = tmp_path / "a.db", tmp_path / "b.db"
    assert oneclickdz("track", "--store", f"sqlite:///{first}", "place", PSN, "t", "1").code == 0
    assert oneclickdz("track", "place", PSN, "t", "1", "--store", f"sqlite:///{second}").code == 0
    env = {"ONECLICKDZ_TRACKER_STORE": f"sqlite:///{first}"}
    assert oneclickdz("track", "place", PSN, "t", "2", env=env).code == 0
    assert len(oneclickdz("track", "list", "--json", env=env).json()["items"]) == 2
    after = oneclickdz("track", "list", "--json", "--store", f"sqlite:///{second}", env=env)
    assert len(after.json()["items"]) == 1
    root_json = oneclickdz("--json", "track", "list", env=env)
    assert len(root_json.json()["items"]) == 2


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    return lines[0]


# --------------------------------------------------------------------------- run


def test_run_delivers_the_three_sandbox_outcomes(
    store: Store, run: Runner, sdk: Client, tmp_path: Path
) -> None:
    ids = {}
    for type_id, quantity in (("type_001", 2), ("TEST_PARTIAL", 4), ("TEST_REFUND", 2)):
        placed = store.track("place", PSN, type_id, str(quantity), "--meta", f"case={type_id}")
        ids[type_id] = placed.last_line
    command, out = recorder(tmp_path)
    ran = run("--deliver-exec", command)
    assert ran.code == 0, ran.err
    assert ran.out.splitlines() == ["STATE      ORDERS", "delivered       3"]
    assert f"deliver-exec {ids['type_001']}: delivering" in ran.err
    assert "track: delivered=3 | API calls " in ran.err  # the last plain progress line

    docs = {doc["intent_id"]: doc for doc in documents(out)}
    assert set(docs) == set(ids.values())  # each delivered once
    expected = {
        "type_001": ("FULFILLED", 2, "980.00", "0.00"),
        "TEST_PARTIAL": ("PARTIALLY_FILLED", 2, "980.00", "980.00"),
        "TEST_REFUND": ("REFUNDED", 0, "0.00", "980.00"),
    }
    for type_id, intent in ids.items():
        doc = docs[intent]
        order = sdk.gift_cards.check_order(doc["order_id"])
        cards = [{"value": c.value, "serial": c.serial} for c in order.cards]
        assert doc["cards"] == cards
        store.secrets.extend(c.value for c in order.cards)  # never printed from here on
        status, delivered, charged, refunded = expected[type_id]
        assert (doc["status"], doc["delivered"], len(doc["cards"])) == (
            status,
            delivered,
            delivered,
        )
        assert (doc["amount_charged"], doc["amount_refunded"]) == (charged, refunded)
        assert doc["delivery_key"] == f"dlv_{intent}" and doc["meta"] == {"case": type_id}
        assert doc["quantity"] == order.quantity and doc["price_per_card"] == "490.00"
        summary = store.one(intent)
        assert (summary["state"], summary["status"], summary["order_id"]) == (
            "delivered", status, order.id,
        )  # fmt: skip
        assert summary["fulfilled_quantity"] == delivered and "cards" not in summary
    assert store.one(docs[ids["TEST_PARTIAL"]]["order_id"])["id"] == ids["TEST_PARTIAL"]

    listed = store.track("list", "--state", "delivered")
    assert listed.code == 0
    assert listed.out.splitlines()[0].split() == [
        "ID", "STATE", "ORDER", "TYPE", "QTY", "STATUS", "CARDS", "CHARGED", "META",
    ]  # fmt: skip
    assert listed.out.splitlines()[-1] == "3 tracked order(s)"
    assert f"{ids['TEST_PARTIAL']}  delivered" in listed.out and "case=TEST_PARTIAL" in listed.out
    assert store.items("--state", "final") == []

    stats = store.track("stats", "--json").json()
    assert set(stats) == {
        "states", "api_calls", "throttled_429", "placement_to_final_s", "final_to_delivered_s",
        "stuck", "counters",
    }  # fmt: skip
    assert stats["states"]["delivered"] == 3 and stats["stuck"] == []
    assert stats["api_calls"]["placeOrder"] == 3 and stats["throttled_429"] == 0
    assert stats["placement_to_final_s"]["count"] == 3
    assert 0 < stats["placement_to_final_s"]["p50"] <= stats["placement_to_final_s"]["p99"] < 30
    text = store.track("stats")
    assert text.code == 0 and "orders              delivered=3" in text.out

    # The one command that prints codes: reveal.
    partial = docs[ids["TEST_PARTIAL"]]
    shown = oneclickdz("track", "reveal", ids["TEST_PARTIAL"], "--store", store.url, env=store.env)
    assert shown.code == 0
    assert shown.out.splitlines() == [
        f"{ids['TEST_PARTIAL']} order {partial['order_id']}: PARTIALLY_FILLED, 2 card(s)",
        *(f"  card {n}  {c['value']}  serial {c['serial']}" for n, c in
          enumerate(partial["cards"], 1)),
    ]  # fmt: skip
    assert "cards revealed" in shown.err and partial["cards"][0]["value"] not in shown.err
    as_json = oneclickdz(
        "track", "reveal", ids["TEST_PARTIAL"], "--json", "--store", store.url, env=store.env
    )
    assert as_json.json()["cards"] == partial["cards"]
    none = oneclickdz(
        "track", "reveal", ids["TEST_REFUND"], "--json", "--store", store.url, env=store.env
    )
    assert (none.code, none.json()["cards"]) == (0, [])


def test_without_a_handler_final_orders_keep_their_cards_sealed(
    store: Store, run: Runner, sdk: Client
) -> None:
    intent = store.track("place", PSN, "type_001", "1").last_line
    pending = store.track("reveal", intent)
    assert pending.code == ExitCode.NOT_FINAL and "not final yet" in pending.err
    done = run("--json")
    assert done.code == 0, done.err
    assert done.json() == {
        "states": {"final": 1}, "ok": True, "needs_attention": {}, "stopped_by": None,
    }  # fmt: skip
    summary = store.one(intent)
    assert summary["state"] == "final" and summary["delivered_at"] is None
    order = sdk.gift_cards.check_order(summary["order_id"])
    revealed = store.track("reveal", intent, "--json").json()
    assert revealed["cards"] == [{"value": c.value, "serial": c.serial} for c in order.cards]
    if store.pg_url is None:
        assert order.cards[0].value.encode() not in store.path.read_bytes()  # sealed at rest


@pytest.mark.timeout(30)  # a run that never ends idle must not hold the suite
def test_a_failing_handler_ends_delivery_failed_and_retry_delivers_it(
    store: Store, run: Runner, tmp_path: Path
) -> None:
    intent = store.track("place", PSN, "type_001", "1").last_line
    failing, failed_out = recorder(tmp_path, exit_code=1)
    ran = run("--deliver-exec", failing, "--max-delivery-attempts", "2",
              "--delivery-backoff", "0.05")  # fmt: skip
    assert ran.code == ExitCode.NOT_FINAL, ran.err
    assert "needs attention: 1 delivery_failed" in ran.out
    assert "tracker: delivery failed id=" in ran.err
    assert len(documents(failed_out)) == 2  # the configured attempts
    summary = store.one(intent)
    assert (summary["state"], summary["delivery_attempts"]) == ("delivery_failed", 2)
    assert summary["last_error"] == "DeliverExecError: --deliver-exec exited 1: delivering"
    assert [i["id"] for i in store.items("--state", "delivery_failed")] == [intent]

    retried = store.track("retry", intent)
    assert retried.code == 0, retried.err
    assert store.one(intent)["state"] == "final"
    again = store.track("retry", intent)
    assert again.code == ExitCode.USAGE
    assert one_line(again.err) == (
        f"error: order {intent} is final, not delivery_failed: nothing to retry"
    )

    working, out = recorder(tmp_path)
    ran = run("--deliver-exec", working)
    assert ran.code == 0, ran.err
    [doc] = documents(out)
    assert doc["intent_id"] == intent and len(doc["cards"]) == 1
    assert store.one(intent)["state"] == "delivered"


@pytest.mark.parametrize("engine", ["sqlite"])  # no store semantics: one engine is enough
def test_run_refuses_a_bad_key_at_once_and_places_nothing(
    service_factory: Callable[..., Service], store: Store
) -> None:
    svc = service_factory()  # 5 bad keys would block 127.0.0.1 on the shared service
    intent = store.track("place", PSN, "type_001", "1").last_line
    bad_key = "ffffffff-ffff-4fff-8fff-ffffffffffff"
    store.secrets.append(bad_key)
    ran = store.track("run", "--until-idle", "--api-key", bad_key, "--base-url", svc.base_url)
    assert ran.code == ExitCode.API_ERROR
    assert one_line(ran.err).startswith("error: ") and "HTTP 401" in ran.err
    assert store.one(intent)["state"] == "intent"


# --------------------------------------------------------------------------- one runner, signals


def _process_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("ONECLICKDZ_")}


def _wait_for_runner(store: Store, proc: subprocess.Popen[str]) -> None:
    """Until the process holds the store's runner lock."""
    lock = store.path.with_name(store.path.name + ".lock")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        if lock.exists():
            with lock.open("ab") as f:
                try:
                    fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    return
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)
        time.sleep(0.05)
    raise AssertionError("the runner never took the store's lock")


@pytest.mark.parametrize("engine", ["sqlite"])  # a PostgreSQL store takes several runners
@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_one_runner_a_store_and_a_signal_stops_it_cleanly(
    service: Service, sandbox_key: str, store: Store, signum: int, code: int
) -> None:
    intent = store.track("place", PSN, "TEST_REFUND", "1").last_line
    args = ["--api-key", sandbox_key, "--base-url", service.base_url]
    proc = subprocess.Popen(
        [sys.executable, "-m", "oneclickdz", "track", "--store", store.url, "run", *FAST, *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_process_env(),
    )  # fmt: skip
    try:
        _wait_for_runner(store, proc)
        second = store.track("run", "--until-idle", *args)
        assert second.code == ExitCode.USAGE
        assert one_line(second.err).startswith(f"error: another `track run` is using {store.path}")
        deadline = time.monotonic() + 20
        while store.one(intent)["state"] != "final" and time.monotonic() < deadline:
            time.sleep(0.1)  # the runner works while another process reads the store
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == code, err
    assert "stopping: waiting for the calls and deliveries in flight" in err
    assert "Traceback" not in err and sandbox_key not in out + err
    assert out.splitlines()[0].split() == ["STATE", "ORDERS"]
    assert out.splitlines()[1].split() == ["final", "1"]
    # The lock went with the process: another run may start.
    again = store.track("run", "--until-idle", *FAST, *args, "--json")
    assert again.code == 0, again.err
    assert again.json()["states"] == {"final": 1}


# --------------------------------------------------------------------------- the pieces


def _delivery(cards: tuple[Card, ...] = ()) -> Delivery:
    return Delivery(
        delivery_key="dlv_trk_x", intent_id="trk_x", order_id="o1", status="FULFILLED",
        quantity=len(cards), delivered=len(cards), price_per_card=Decimal("490"),
        amount_charged=Decimal(490 * len(cards)), amount_refunded=Decimal(0), meta={"k": "v"},
        cards=cards,
    )  # fmt: skip


def test_the_delivery_command_gets_the_document_and_not_the_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ONECLICKDZ_API_KEY", "an-api-key-for-the-tracker")
    monkeypatch.setenv("ONECLICKDZ_TRACKER_KEY", "ab" * 32)
    out = tmp_path / "env.json"
    dump = (
        f"{shlex.quote(sys.executable)} -c 'import json, os, sys; json.dump("
        f'{{"stdin": json.load(sys.stdin), "env": dict(os.environ)}}, '
        f'open(sys.argv[1], "w"))\' {shlex.quote(str(out))}'
    )
    said: list[str] = []
    card = Card(value="CODE-1234", serial="S1")
    asyncio.run(exec_handler(dump, 10, said.append)(_delivery((card,))))
    seen = json.loads(out.read_text())
    assert seen["stdin"] == _delivery((card,)).to_json()
    assert seen["stdin"]["cards"] == [{"value": "CODE-1234", "serial": "S1"}]
    assert seen["env"][DELIVERY_KEY_ENV] == "dlv_trk_x"
    assert "ONECLICKDZ_API_KEY" not in seen["env"]
    assert "ONECLICKDZ_TRACKER_KEY" not in seen["env"]
    assert said == []


def test_a_delivery_command_that_hangs_is_killed_at_its_timeout() -> None:
    said: list[str] = []
    started = time.monotonic()
    with pytest.raises(DeliverExecError, match=r"timed out after 0\.3 s"):
        asyncio.run(exec_handler("echo waiting >&2; sleep 30", 0.3, said.append)(_delivery()))
    assert time.monotonic() - started < 5
    with pytest.raises(DeliverExecError, match="exited 7: why"):
        asyncio.run(exec_handler("echo why >&2; exit 7", 5, said.append)(_delivery()))
    assert said == ["deliver-exec trk_x: why"]


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_progress_is_a_live_table_on_a_terminal_and_lines_otherwise() -> None:
    snap = Snapshot(
        states={"intent": 0, "placed": 2, "final": 1, "delivered": 3},
        calls={"placeOrder": 6, "checkOrder": 4, "list": 1}, throttled=1, in_flight=2,
        delivering=1, elapsed=3.0,
    )  # fmt: skip
    screen = Terminal()
    with RunView(screen) as view:
        assert view.mode == "live"
        view.update(snap, final=True)
        view.print("a line beside it")
    shown = screen.getvalue()
    for text in ("placed", "delivered", "API calls 11", "429s 1", "in flight 2", "a line beside"):
        assert text in shown, text
    plain = io.StringIO()
    with RunView(plain) as view:
        view.update(snap)
        view.update(snap)  # unchanged: no second line
        view.update(Snapshot({"delivered": 6}, snap.calls, 1, 0, 0, 3.5))  # within 2 s: later
        view.update(Snapshot({"delivered": 6}, snap.calls, 1, 0, 0, 3.6), final=True)
    assert plain.getvalue().splitlines() == [
        "track: placed=2 final=1 delivered=3 | API calls 11, 429s 1, in flight 2 (3.0 s)",
        "track: delivered=6 | API calls 11, 429s 1, in flight 0 (3.6 s)",
    ]
    quiet = io.StringIO()
    with RunView(quiet, progress=False) as view:
        view.update(snap, final=True)
    assert quiet.getvalue() == ""
