"""Mobile top-ups and internet recharges over real HTTP: every endpoint, validation rule,
lifecycle path and sandbox trigger, the ledger's FLEXY / ADSL movements and their refunds, and
an operator's resolution of UNKNOWN_ERROR.

The service runs in this process so that its fulfilment clock can be moved (`advance`): the
documented delays (up to 45 s, and 12-48 h for QUEUED) are crossed without sleeping.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest

from oneclickdz.server import admin
from oneclickdz.server.config import ServerConfig
from oneclickdz.server.runtime import RunningService, start_in_thread
from oneclickdz.server.testing import Service, cli
from tests import pg
from tests.conftest import fresh_account
from tests.server.helpers import error, ok

BOTH_ENGINES = True
ONE_ENGINE = pytest.mark.sqlite_only

HOUR = 3600.0


class Shop:
    """A service in this process, and a funded sandbox key's client."""

    def __init__(self, running: RunningService, stack: ExitStack, db_url: str) -> None:
        self.running = running
        self.stack = stack
        self.db_url = db_url

    def client(self, env: str = "SANDBOX", balance: str = "100000") -> httpx.Client:
        store = self.running.backend.store
        key = admin.create_key(store, env, account=fresh_account(), balance=balance)  # type: ignore[arg-type]
        return self.stack.enter_context(
            httpx.Client(base_url=self.running.base_url,
                         headers={"X-Access-Token": key}, timeout=10)
        )  # fmt: skip

    def advance(self, seconds: float) -> None:
        self.running.advance(seconds)


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory, db_engine: str) -> Iterator[Shop]:
    if db_engine == "postgresql":
        db_url = pg.fresh_url()
    else:
        db_url = f"sqlite:///{tmp_path_factory.mktemp('topups') / 'svc.db'}"
    with pytest.MonkeyPatch.context() as env, ExitStack() as stack:
        # A vault key for this module only: the session's services keep theirs.
        env.setenv("ONECLICKDZ_VAULT_KEY", os.urandom(32).hex())
        running = stack.enter_context(start_in_thread(ServerConfig(db_url=db_url, port=0, seed=7)))
        yield Shop(running, stack, db_url)


def balance(c: httpx.Client) -> float:
    return float(ok(c.get("/account/balance"))["balance"])


def transactions(c: httpx.Client, objid: str) -> list[tuple[str, float]]:
    items = ok(c.get("/account/transactions", params={"pageSize": 100}))["items"]
    return [(t["type"], t["amount"]) for t in reversed(items) if t["objid"] == objid]


def send_mobile(c: httpx.Client, msisdn: str, plan: str = "PREPAID_DJEZZY", **extra: Any) -> str:
    body = {"plan_code": plan, "MSSIDN": msisdn, "amount": 1000, **extra}
    sent = ok(c.post("/mobile/send", json=body))
    assert set(sent) == {"topupId", "topupRef", "newBalance"}
    return str(sent["topupId"])


def send_internet(c: httpx.Client, kind: str, number: str, value: int = 1000) -> str:
    sent = ok(c.post("/internet/send", json={"type": kind, "number": number, "value": value}))
    return str(sent["topupId"])


# -- mobile -----------------------------------------------------------------------------------


def test_plans_list_dynamic_and_fixed_plans_as_documented(shop: Shop) -> None:
    plans = ok(shop.client().get("/mobile/plans"))
    dynamic = {p["code"]: p for p in plans["dynamicPlans"]}
    fixed = {p["code"]: p for p in plans["fixedPlans"]}
    assert dynamic["PREPAID_DJEZZY"] == {
        "code": "PREPAID_DJEZZY", "name": "📱 PREPAID | عادي", "operator": "Djezzy",
        "cost": 0.98, "isEnabled": True, "min_amount": 50, "max_amount": 5000,
    }  # fmt: skip
    assert "cost" not in dynamic["GROS_MOBILIS"]  # as the docs show it
    assert {"GETMENU_Mobilis", "GETMENU_Djezzy", "GETMENU_Ooredoo"} <= set(dynamic)
    assert fixed["PIXX_500"]["amount"] == 500 and "min_amount" not in fixed["PIXX_500"]


def test_a_mobile_top_up_goes_pending_handling_fulfilled_and_is_charged_amount_times_cost(
    shop: Shop,
) -> None:
    c = shop.client()
    before = balance(c)
    topup = send_mobile(c, "0778037340", ref="order-12345")
    seen = ok(c.get(f"/mobile/check-id/{topup}"))
    assert seen == {
        "_id": topup, "ref": "order-12345", "status": "PENDING", "plan_code": "PREPAID_DJEZZY",
        "MSSIDN": "0778037340", "topup_amount": 1000, "balance_amount": 980,
        "created_at": seen["created_at"],
    }  # fmt: skip
    assert balance(c) == before - 980
    statuses = []
    for _ in range(23):  # PENDING lasts 2-15 s, HANDLING 3-8 s: 1 s steps see each
        shop.advance(1)
        statuses.append(ok(c.get(f"/mobile/check-id/{topup}"))["status"])
    pending, handling = statuses.count("PENDING"), statuses.count("HANDLING")
    assert statuses == ["PENDING"] * pending + ["HANDLING"] * handling + ["FULFILLED"] * (
        23 - pending - handling
    )
    assert 1 <= pending + 1 <= 15 and 3 <= handling + 1 <= 9, statuses
    done = ok(c.get("/mobile/check-ref/order-12345"))
    assert done["status"] == "FULFILLED" and done["_id"] == topup
    assert "refund_message" not in done
    assert ok(c.get("/mobile/check/" + topup)) == done  # the changelog's spelling
    assert balance(c) == before - 980
    assert transactions(c, topup) == [("FLEXY", 980)]


@pytest.mark.parametrize(
    ("msisdn", "status", "suggests"),
    [("0600000001", "REFUNDED", False), ("0700000002", "REFUNDED", True),
     ("0500000003", "UNKNOWN_ERROR", False)],
)  # fmt: skip
def test_the_sandbox_triggers_force_each_final_state(
    shop: Shop, msisdn: str, status: str, suggests: bool
) -> None:
    c = shop.client()
    plan = {"06": "PREPAID_MOBILIS", "07": "PREPAID_DJEZZY", "05": "PREPAID_OOREDOO"}[msisdn[:2]]
    before = balance(c)
    topup = send_mobile(c, msisdn, plan=plan)
    shop.advance(23)
    done = ok(c.get(f"/mobile/check-id/{topup}"))
    assert done["status"] == status
    assert done["refund_message"]  # in Arabic, for both
    assert ("suggested_offers" in done) is suggests
    if suggests:
        assert done["suggested_offers"][0]["plan_code"] == "FACTURE_DJEZZY"
    charged = done["topup_amount"] * {"06": 0.96, "07": 0.98, "05": 0.97}[msisdn[:2]]
    if status == "REFUNDED":
        assert done["balance_amount"] == 0
        assert balance(c) == before
        assert transactions(c, topup) == [("FLEXY", charged), ("REFUND-FLEXY", charged)]
    else:  # UNKNOWN_ERROR: never refunded by itself, however long it waits
        shop.advance(48 * HOUR)
        assert ok(c.get(f"/mobile/check-id/{topup}"))["status"] == "UNKNOWN_ERROR"
        assert balance(c) == before - charged
        assert transactions(c, topup) == [("FLEXY", charged)]


def test_a_production_key_ignores_the_sandbox_triggers(shop: Shop) -> None:
    c = shop.client("PRODUCTION")
    topup = send_mobile(c, "0700000001")
    shop.advance(23)
    assert ok(c.get(f"/mobile/check-id/{topup}"))["status"] == "FULFILLED"


@ONE_ENGINE
def test_an_operator_resolves_unknown_error_either_way(shop: Shop) -> None:
    c = shop.client()
    before = balance(c)
    refunded, fulfilled, done = (
        send_mobile(c, n) for n in ("0700000003", "0700000003", "0778000000")
    )
    shop.advance(23)
    env = {"ONECLICKDZ_DB": shop.db_url}
    result = cli("admin", "resolve-topup", refunded, "--refunded", "--json", env=env)
    assert result.returncode == 0, result.stderr
    assert '"REFUNDED"' in result.stdout
    assert cli("admin", "resolve-topup", fulfilled, "--fulfilled", env=env).returncode == 0
    # Only UNKNOWN_ERROR can be resolved, once; exactly one verdict is needed.
    again = cli("admin", "resolve-topup", refunded, "--fulfilled", env=env)
    assert again.returncode == 2 and "not UNKNOWN_ERROR" in again.stderr
    assert cli("admin", "resolve-topup", done, "--refunded", env=env).returncode == 2
    assert cli("admin", "resolve-topup", "nope", "--refunded", env=env).returncode == 2
    assert cli("admin", "resolve-topup", fulfilled, env=env).returncode == 2
    assert ok(c.get(f"/mobile/check-id/{refunded}"))["status"] == "REFUNDED"
    assert ok(c.get(f"/mobile/check-id/{fulfilled}"))["status"] == "FULFILLED"
    assert transactions(c, refunded) == [("FLEXY", 980), ("REFUND-FLEXY", 980)]
    assert balance(c) == before - 2 * 980


def test_fixed_plans_take_their_own_amount(shop: Shop) -> None:
    c = shop.client()
    topup = send_mobile(c, "0661234567", plan="PIXX_500", amount=3)  # ignored
    seen = ok(c.get(f"/mobile/check-id/{topup}"))
    assert (seen["topup_amount"], seen["balance_amount"]) == (500, 485)


@pytest.mark.parametrize(
    ("body", "status", "code", "field"),
    [
        ([], 400, "ERR_VALIDATION", "body"),
        ({"MSSIDN": "0778037340"}, 400, "ERR_VALIDATION", "plan_code"),
        ({"plan_code": "PREPAID_DJEZZY", "MSSIDN": "778037340", "amount": 100}, 400,
         "ERR_VALIDATION", "MSSIDN"),
        ({"plan_code": "PREPAID_DJEZZY", "MSSIDN": 778037340, "amount": 100}, 400,
         "ERR_VALIDATION", "MSSIDN"),
        ({"plan_code": "PREPAID_DJEZZY", "MSSIDN": "0878037340", "amount": 100}, 400,
         "ERR_VALIDATION", "MSSIDN"),
        ({"plan_code": "PREPAID_DJEZZY", "MSSIDN": "0678037340", "amount": 100}, 400,
         "ERR_VALIDATION", "MSSIDN"),  # a Mobilis number on a Djezzy plan
        ({"plan_code": "PREPAID_DJEZZY", "MSSIDN": "0778037340"}, 400, "ERR_VALIDATION",
         "amount"),
        ({"plan_code": "PREPAID_DJEZZY", "MSSIDN": "0778037340", "amount": 49}, 400,
         "ERR_VALIDATION", "amount"),
        ({"plan_code": "PREPAID_DJEZZY", "MSSIDN": "0778037340", "amount": 5001}, 400,
         "ERR_VALIDATION", "amount"),
        ({"plan_code": "PREPAID_DJEZZY", "MSSIDN": "0778037340", "amount": "500"}, 400,
         "ERR_VALIDATION", "amount"),
        ({"plan_code": "PREPAID_DJEZZY", "MSSIDN": "0778037340", "amount": 500, "ref": ""},
         400, "ERR_VALIDATION", "ref"),
        ({"plan_code": "NOPE", "MSSIDN": "0778037340", "amount": 500}, 404, "NOT_FOUND", None),
        ({"plan_code": "GROS_MOBILIS", "MSSIDN": "0678037340", "amount": 300000}, 403,
         "INSUFFICIENT_BALANCE", None),
    ],
)  # fmt: skip
@ONE_ENGINE
def test_mobile_send_refuses_bad_input_and_moves_no_money(
    shop: Shop, body: Any, status: int, code: str, field: str | None
) -> None:
    c = shop.client()
    before = balance(c)
    refused = error(c.post("/mobile/send", json=body), status, code)
    if field is not None:
        assert refused["details"]["field"] == field
    if code == "INSUFFICIENT_BALANCE":
        assert refused["details"] == {"required": 300000, "available": before}
    assert balance(c) == before
    assert ok(c.get("/mobile/list"))["pagination"]["totalResults"] == 0


def test_a_ref_is_used_once_and_names_the_first_top_up(shop: Shop) -> None:
    c = shop.client()
    first = send_mobile(c, "0778037340", ref="shop-1")
    before = balance(c)
    refused = error(
        c.post("/mobile/send", json={"plan_code": "PREPAID_DJEZZY", "MSSIDN": "0778037340",
                                     "amount": 1000, "ref": "shop-1"}),
        403, "DUPLICATED_REF",
    )  # fmt: skip
    assert refused["details"] == {"topupId": first}
    assert balance(c) == before
    # The same ref is free for an internet recharge: refs are per service.
    send_internet(c, "ADSL", "036362608")


def test_without_a_ref_one_is_made(shop: Shop) -> None:
    c = shop.client()
    sent = ok(c.post("/mobile/send", json={"plan_code": "PIXX_500", "MSSIDN": "0661234567"}))
    assert sent["topupRef"].startswith("API-")
    assert ok(c.get(f"/mobile/check-ref/{sent['topupRef']}"))["_id"] == sent["topupId"]


def test_check_and_list_see_only_the_key_s_own_top_ups(shop: Shop) -> None:
    mine, theirs = shop.client(), shop.client()
    topups = [send_mobile(mine, "0778037340") for _ in range(3)]
    error(theirs.get(f"/mobile/check-id/{topups[0]}"), 404, "NOT_FOUND")
    missing = error(theirs.get("/mobile/check-ref/order-12345"), 404, "NOT_FOUND")
    assert missing["message"] == "Top-up with reference 'order-12345' not found"
    error(mine.get(f"/internet/check-id/{topups[0]}"), 404, "NOT_FOUND")  # another service
    page = ok(mine.get("/mobile/list", params={"pageSize": 2}))
    assert [t["_id"] for t in page["items"]] == topups[::-1][:2]  # newest first
    assert page["pagination"] == {"page": 1, "pageSize": 2, "totalPages": 2, "totalResults": 3}
    assert ok(theirs.get("/mobile/list"))["items"] == []
    error(mine.get("/mobile/list", params={"from": "2025-01-01T00:00:00Z"}), 400,
          "ERR_VALIDATION")  # fmt: skip


# -- internet ---------------------------------------------------------------------------------


def test_products_of_each_type(shop: Shop) -> None:
    c = shop.client()
    adsl = ok(c.get("/internet/products", params={"type": "ADSL"}))
    assert adsl["type"] == "ADSL"
    assert adsl["products"][1] == {"value": 1000, "cost": 980, "available": True}
    four_g = ok(c.get("/internet/products", params={"type": "4G"}))
    assert {"value": 5000, "cost": 4900, "available": False} in four_g["products"]
    error(c.get("/internet/products"), 400, "ERR_VALIDATION")
    error(c.get("/internet/products", params={"type": "3G"}), 400, "ERR_VALIDATION")


def test_check_number_knows_each_format(shop: Shop) -> None:
    c = shop.client()
    adsl = ok(c.get("/internet/check-number", params={"type": "ADSL", "number": "036362608"}))
    assert adsl["type"] == "ADSL" and adsl["ncli"].endswith("*****") and "offre" in adsl
    four_g = ok(c.get("/internet/check-number", params={"type": "4G", "number": "213472731602"}))
    assert four_g["type"] == "4GLTE" and "offre" not in four_g
    bad = error(c.get("/internet/check-number", params={"type": "ADSL", "number": "123456"}),
                400, "ERR_PHONE")  # fmt: skip
    assert bad["details"] == {"number": "123456", "type": "ADSL",
                              "reason": "Number does not match required format"}  # fmt: skip
    error(c.get("/internet/check-number", params={"type": "4G", "number": "036362608"}),
          400, "ERR_PHONE")  # fmt: skip
    error(c.get("/internet/check-number", params={"type": "ADSL"}), 400, "ERR_VALIDATION")


def test_an_internet_recharge_is_fulfilled_with_a_sealed_card(shop: Shop) -> None:
    c = shop.client()
    before = balance(c)
    topup = send_internet(c, "ADSL", "036362608")
    seen = ok(c.get(f"/internet/check-id/{topup}"))
    assert seen["status"] == "HANDLING" and "card_code" not in seen
    assert (seen["type"], seen["number"], seen["topup_amount"]) == ("ADSL", "036362608", 1000)
    shop.advance(45)  # HANDLING 3-45 s
    done = ok(c.get(f"/internet/check-id/{topup}"))
    assert done["status"] == "FULFILLED"
    assert len(done["card_code"]) == 12 and done["card_code"].isdigit()
    assert done["num_trans"].startswith("AT-") and done["date_traitement"]
    assert balance(c) == before - 980
    assert transactions(c, topup) == [("ADSL", 980)]
    listed = ok(c.get("/internet/list"))
    assert listed["topups"][0] == done and listed["pagination"]["totalResults"] == 1
    assert ok(c.get(f"/internet/check-ref/{done['ref']}")) == done


@pytest.mark.parametrize(
    ("number", "final"),
    [("213000000002", "FULFILLED"), ("000000003", "REFUNDED")],
)
def test_queued_recharges_end_hours_later_and_stay_charged_meanwhile(
    shop: Shop, number: str, final: str
) -> None:
    c = shop.client()
    before = balance(c)
    topup = send_internet(c, "ADSL" if len(number) == 9 else "4G", number)
    shop.advance(45)
    queued = ok(c.get(f"/internet/check-id/{topup}"))
    assert queued["status"] == "QUEUED" and "card_code" not in queued
    assert balance(c) == before - 980  # queued is not a failure: still charged
    shop.advance(48 * HOUR)
    done = ok(c.get(f"/internet/check-id/{topup}"))
    assert done["status"] == final
    assert ("card_code" in done) is (final == "FULFILLED")
    assert balance(c) == (before - 980 if final == "FULFILLED" else before)


def test_an_internet_refund_trigger_gives_the_cost_back(shop: Shop) -> None:
    c = shop.client()
    before = balance(c)
    topup = send_internet(c, "4G", "213000000001", 2000)
    shop.advance(45)
    done = ok(c.get(f"/internet/check-id/{topup}"))
    assert (done["status"], done["balance_amount"]) == ("REFUNDED", 0)
    assert transactions(c, topup) == [("ADSL", 1960), ("REFUND-ADSL", 1960)]
    assert balance(c) == before


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"type": "ADSL", "number": "36362608", "value": 1000}, 400, "ERR_VALIDATION"),
        ({"type": "4G", "number": "036362608", "value": 1000}, 400, "ERR_VALIDATION"),
        ({"type": "ADSL", "number": "036362608", "value": 750}, 400, "ERR_VALIDATION"),
        ({"type": "FIBRE", "number": "036362608", "value": 1000}, 400, "ERR_VALIDATION"),
        ({"type": "ADSL", "number": "036362608"}, 400, "ERR_VALIDATION"),
        ({"type": "4G", "number": "213472731602", "value": 5000}, 403, "OUT_OF_STOCK"),
    ],
)
@ONE_ENGINE
def test_internet_send_refuses_bad_input_and_moves_no_money(
    shop: Shop, body: Any, status: int, code: str
) -> None:
    c = shop.client()
    before = balance(c)
    error(c.post("/internet/send", json=body), status, code)
    assert balance(c) == before


@ONE_ENGINE
def test_internet_card_codes_are_sealed_at_rest(shop: Shop) -> None:
    c = shop.client()
    topup = send_internet(c, "ADSL", "031417237")
    shop.advance(45)
    code = ok(c.get(f"/internet/check-id/{topup}"))["card_code"]
    db = shop.db_url.removeprefix("sqlite:///")
    files = [Path(p) for p in (db, db + "-wal") if os.path.exists(p)]
    stored = b"".join(f.read_bytes() for f in files)
    assert code.encode() not in stored


@ONE_ENGINE
def test_documented_v2_routes_answer_501_and_unknown_ones_404(shop: Shop) -> None:
    with httpx.Client(base_url=shop.running.base_url.removesuffix("/v3")) as c:
        for method, path in [("GET", "/v2/mobile/plans"), ("POST", "/v2/internet/send")]:
            response = c.request(method, path)
            assert response.status_code == 501
            assert response.json()["error"]["code"] == "NOT_IMPLEMENTED"
            assert response.json()["requestId"].startswith("req_")
        assert c.get("/v3/mobile/nope").json()["error"]["code"] == "NOT_FOUND"


@ONE_ENGINE
def test_serve_scales_the_top_up_delays(service_factory: Callable[..., Service]) -> None:
    svc = service_factory(extra_args=["--topup-delay-scale", "0"])
    key = svc.create_key(balance=5000)
    with httpx.Client(base_url=svc.base_url, headers={"X-Access-Token": key}) as c:
        topup = send_mobile(c, "0778037340")
        deadline = time.monotonic() + 10
        while ok(c.get(f"/mobile/check-id/{topup}"))["status"] != "FULFILLED":
            assert time.monotonic() < deadline, "a zero delay still keeps the top-up waiting"
            time.sleep(0.05)
