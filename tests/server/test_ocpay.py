"""OCPay payment links over HTTP: createLink, checkPayment, the payer's page, fees and money.

The API runs as a process (`service`); the tests where the engine matters (money moving, and
the race to pay one link) run on SQLite and PostgreSQL, the rest on SQLite. Expiry needs the
service's clock: it runs on a service in this process, whose clock `advance` moves.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest

from oneclickdz.server import admin
from oneclickdz.server.config import ServerConfig
from oneclickdz.server.runtime import RunningService, start_in_thread
from oneclickdz.server.testing import Service
from tests.conftest import fresh_account
from tests.server.helpers import client, error, ok, query

BOTH_ENGINES = True
ONE_ENGINE = pytest.mark.sqlite_only  # the same code and SQL on both: SQLite is enough

REF = re.compile(r"OCPL-[A-Z0-9]{6}-[A-Z0-9]{4}")
TOKEN = re.compile(r'name="token" value="([^"]+)"')
LINK_KEYS = {"paymentRef", "ref", "paymentUrl", "productInfo", "feeMode", "isSandbox",
             "createdAt", "time"}  # fmt: skip


def create(c: httpx.Client, amount: int = 1000, **fields: Any) -> dict[str, Any]:
    """A new link (`fields` beside productInfo; `title`/`description` go inside it)."""
    product = {"title": fields.pop("title", "Test product"), "amount": amount}
    if "description" in fields:
        product["description"] = fields.pop("description")
    data: dict[str, Any] = ok(c.post("/ocpay/createLink", json={"productInfo": product, **fields}))
    return data


def check(c: httpx.Client, ref: str) -> dict[str, Any]:
    data: dict[str, Any] = ok(c.get(f"/ocpay/checkPayment/{ref}"))
    return data


def dzd(c: httpx.Client) -> Decimal:
    return Decimal(str(ok(c.get("/account/balance"))["balance"]))


def token_of(url: str) -> str:
    """Open the payer's page and take its form's token."""
    page = httpx.get(url, timeout=10)
    assert page.status_code == 200, page.text
    found = TOKEN.search(page.text)
    assert found, page.text
    return found.group(1)


def submit(url: str, action: str, token: str | None = None, **extra: str) -> httpx.Response:
    """POST the payer's form (the token of a fresh render unless given)."""
    form = {"token": token_of(url) if token is None else token, "action": action, **extra}
    return httpx.post(url, data=form, timeout=10)


def receipts(c: httpx.Client, ref: str) -> list[dict[str, Any]]:
    items = ok(c.get("/account/transactions", params={"pageSize": 100}))["items"]
    return [t for t in items if t["objid"] == ref]


# -- createLink -----------------------------------------------------------------------------


@ONE_ENGINE
def test_create_link_answers_the_sdks_keys_and_the_docs_keys(
    service: Service, sandbox_key: str
) -> None:
    with client(service, sandbox_key) as c:
        data = create(
            c, 5000, title="Premium", description="One month", feeMode="SPLIT_FEE",
            successMessage="Merci", redirectUrl="https://shop.example/return?o=1",
        )  # fmt: skip
        bare = create(c, 500)
        # The Host the client used makes the URL (a shop behind its own name).
        other = ok(
            c.post(
                "/ocpay/createLink",
                json={"productInfo": {"title": "x", "amount": 500}},
                headers={"Host": "pay.shop.test:8443"},
            )
        )
    ref = data["paymentRef"]
    assert REF.fullmatch(ref)
    url = f"http://127.0.0.1:{service.port}/pay/{ref}"
    assert set(data) == {"paymentLink", "paymentUrl", "paymentRef"}
    assert data["paymentUrl"] == url
    link = data["paymentLink"]
    assert set(link) == LINK_KEYS | {"successMessage", "redirectUrl"}
    assert link["paymentRef"] == link["ref"] == ref
    assert link["paymentUrl"] == url
    assert link["productInfo"] == {"title": "Premium", "amount": 5000, "description": "One month"}
    assert link["feeMode"] == "SPLIT_FEE"
    assert link["isSandbox"] is True
    assert link["createdAt"] == link["time"] and link["createdAt"].endswith("Z")
    assert link["successMessage"] == "Merci"
    assert link["redirectUrl"] == "https://shop.example/return?o=1"
    # Defaults, and the optional keys left out rather than null.
    assert set(bare["paymentLink"]) == LINK_KEYS
    assert bare["paymentLink"]["feeMode"] == "NO_FEE"
    assert bare["paymentLink"]["productInfo"] == {"title": "Test product", "amount": 500}
    assert other["paymentUrl"] == f"http://pay.shop.test:8443/pay/{other['paymentRef']}"
    assert bare["paymentRef"] != ref


BOUNDS: list[tuple[dict[str, Any], str | None, str]] = [
    # (the body's changes, the field refused or None if accepted, the message)
    ({"productInfo": None}, "productInfo", "body/productInfo must be object"),
    ({"productInfo": {"amount": 500}}, "productInfo.title",
     "body/productInfo must have required property 'title'"),
    ({"productInfo": {"title": "t"}}, "productInfo.amount",
     "body/productInfo must have required property 'amount'"),
    ({"title": 5}, "productInfo.title", "body/productInfo/title must be string"),
    ({"title": ""}, "productInfo.title",
     "body/productInfo/title must NOT have fewer than 1 characters"),
    ({"title": "t"}, None, ""),
    ({"title": "t" * 200}, None, ""),
    ({"title": "t" * 201}, "productInfo.title",
     "body/productInfo/title must NOT have more than 200 characters"),
    ({"title": "   "}, "productInfo.title", "body/productInfo/title must not be blank"),
    ({"title": "a\nb"}, "productInfo.title",
     "body/productInfo/title must not contain control characters"),
    ({"amount": 499}, "productInfo.amount", "body/productInfo/amount must be >= 500"),
    ({"amount": 500}, None, ""),
    ({"amount": 500_000}, None, ""),
    ({"amount": 500_001}, "productInfo.amount", "body/productInfo/amount must be <= 500000"),
    ({"amount": 1000.0}, None, ""),
    ({"amount": 1000.5}, "productInfo.amount", "body/productInfo/amount must be integer"),
    ({"amount": "1000"}, "productInfo.amount", "body/productInfo/amount must be integer"),
    ({"amount": True}, "productInfo.amount", "body/productInfo/amount must be integer"),
    ({"description": "d" * 1000}, None, ""),
    ({"description": "line one\nline two"}, None, ""),
    ({"description": "d" * 1001}, "productInfo.description",
     "body/productInfo/description must NOT have more than 1000 characters"),
    ({"description": 7}, "productInfo.description",
     "body/productInfo/description must be string"),
    ({"feeMode": "CUSTOMER_FEE"}, None, ""),
    ({"feeMode": "FREE"}, "feeMode", "body/feeMode must be equal to one of the allowed values"),
    ({"feeMode": ["NO_FEE"]}, "feeMode",
     "body/feeMode must be equal to one of the allowed values"),
    ({"feeMode": None}, None, ""),
    ({"successMessage": "m" * 500}, None, ""),
    ({"successMessage": "m" * 501}, "successMessage",
     "body/successMessage must NOT have more than 500 characters"),
    ({"successMessage": "a\x00b"}, "successMessage",
     "body/successMessage must not contain control characters"),
    ({"redirectUrl": "http://shop.example"}, None, ""),
    ({"redirectUrl": "https://shop.example:8443/back?x=1&y=2#top"}, None, ""),
    ({"redirectUrl": "ftp://shop.example/"}, "redirectUrl",
     "body/redirectUrl must be an http or https URL"),
    ({"redirectUrl": "javascript:alert(1)"}, "redirectUrl",
     "body/redirectUrl must be an http or https URL"),
    ({"redirectUrl": "https://"}, "redirectUrl", "body/redirectUrl must be an http or https URL"),
    ({"redirectUrl": 'https://shop.example/"><b>'}, "redirectUrl",
     "body/redirectUrl must be an http or https URL"),
    ({"redirectUrl": "https://shop.example:99999/"}, "redirectUrl",
     "body/redirectUrl must be an http or https URL"),
    ({"redirectUrl": "https://shop.example/" + "p" * 2030}, "redirectUrl",
     "body/redirectUrl must NOT have more than 2048 characters"),
]  # fmt: skip


@ONE_ENGINE
def test_create_link_refuses_each_field_past_its_bounds(service: Service, sandbox_key: str) -> None:
    with client(service, sandbox_key) as c:
        assert error(c.post("/ocpay/createLink", json=[]), 400, "ERR_VALIDATION")["details"] == {
            "field": "body", "value": None
        }  # fmt: skip
        refused = error(c.post("/ocpay/createLink", json={}), 400, "ERR_VALIDATION")
        assert refused["message"] == "body must have required property 'productInfo'"
        for changes, field, message in BOUNDS:
            product: dict[str, Any] = {"title": "Test", "amount": 1000}
            body: dict[str, Any] = {"productInfo": product}
            for name, value in changes.items():
                if name in ("title", "amount", "description"):
                    product[name] = value
                else:
                    body[name] = value
            response = c.post("/ocpay/createLink", json=body)
            if field is None:
                ok(response)
                continue
            found = error(response, 400, "ERR_VALIDATION")
            assert found["details"]["field"] == field, (changes, found)
            assert found["message"].startswith(message), (changes, found)


@ONE_ENGINE
def test_create_link_needs_a_write_key_and_check_payment_a_key(service: Service) -> None:
    reader = service.create_key(account=fresh_account(), read_only=True)
    body = {"productInfo": {"title": "t", "amount": 500}}
    with client(service, reader) as c:
        error(c.post("/ocpay/createLink", json=body), 403, "INSUFFICIENT_SCOPE")
        error(c.get("/ocpay/checkPayment/OCPL-AAAAAA-AAAA"), 404, "NOT_FOUND")
    with client(service) as anonymous:
        error(anonymous.post("/ocpay/createLink", json=body), 401, "MISSING_ACCESS_TOKEN")
        error(anonymous.get("/ocpay/checkPayment/OCPL-AAAAAA-AAAA"), 401, "MISSING_ACCESS_TOKEN")


# -- checkPayment ---------------------------------------------------------------------------


@ONE_ENGINE
def test_check_payment_knows_only_the_accounts_own_links(service: Service) -> None:
    account = fresh_account()
    sandbox = service.create_key(sandbox=True, account=account, balance=10)
    production = service.create_key(sandbox=False, account=account, balance=10)
    stranger = service.create_key(account=fresh_account(), balance=10)
    with client(service, sandbox) as c, client(service, production) as p, \
            client(service, stranger) as s:  # fmt: skip
        ref = create(c)["paymentRef"]
        pending = check(c, ref)
        assert pending == {
            "status": "PENDING", "message": "Payment not yet initiated", "paymentRef": ref
        }  # fmt: skip
        # The docs: a check covers both environments of the account.
        assert check(p, ref) == pending
        unknown = error(s.get(f"/ocpay/checkPayment/{ref}"), 404, "NOT_FOUND")
        assert unknown["message"] == f"Payment link '{ref}' not found"
        for other in ("OCPL-ZZZZZZ-ZZZZ", "nope", "ocpl-" + ref[5:].lower()):
            error(c.get(f"/ocpay/checkPayment/{other}"), 404, "NOT_FOUND")


# -- paying: fees, the balance and the ledger -------------------------------------------------

FEES = {
    # mode: (paid, fee, net) for 1001 DZD: the fee, 1%, is 10.01 DZD (an odd centime)
    "NO_FEE": ("1001", "10.01", "990.99"),
    "SPLIT_FEE": ("1006", "10.01", "995.99"),
    "CUSTOMER_FEE": ("1011.01", "10.01", "1001"),
}


def test_paying_credits_the_net_amount_once_with_a_receive_movement(
    service: Service, sandbox_key: str
) -> None:
    with client(service, sandbox_key) as c:
        start = dzd(c)
        links = {mode: create(c, 1001, feeMode=mode) for mode in FEES}
        assert dzd(c) == start  # creating a link moves nothing
        total = Decimal(0)
        for (mode, (paid, fee, net)), method in zip(
            FEES.items(), ("CIB", "EDAHABIA", "CIB"), strict=True
        ):
            url, ref = links[mode]["paymentUrl"], links[mode]["paymentRef"]
            before = dzd(c)
            token = token_of(url)
            response = submit(url, "pay", token=token, method=method)
            assert response.status_code == 200, response.text
            assert "Payment confirmed" in response.text
            assert dzd(c) - before == Decimal(net), mode
            total += Decimal(net)
            status = check(c, ref)
            details = status.pop("transactionDetails")
            assert status == {
                "status": "CONFIRMED", "message": "Payment confirmed successfully",
                "paymentRef": ref,
            }  # fmt: skip
            assert (str(details["amount"]), str(details["fee"]), str(details["netAmount"])) == (
                paid, fee, net
            )  # fmt: skip
            assert Decimal(paid) - Decimal(net) == Decimal(fee)
            assert details["paymentMethod"] == method
            assert details["currency"] == "DZD" and details["isSandbox"] is True
            assert details["completedAt"] == details["createdDate"]
            (row,) = receipts(c, ref)
            assert row["type"] == "RECEIVE" and row["operation"] == "CREDIT"
            assert str(row["amount"]) == net
            assert row["_id"] == details["transactionRef"]
            assert Decimal(str(row["newBalance"])) - Decimal(str(row["oldBalance"])) == Decimal(net)
            # Paying again is refused and moves nothing.
            again = submit(url, "pay", token=token)
            assert again.status_code == 409
            assert "already paid" in again.text
            assert check(c, ref)["transactionDetails"] == details
        assert dzd(c) == start + total
        assert all(len(receipts(c, link["paymentRef"])) == 1 for link in links.values())


def test_payers_racing_on_one_link_credit_it_once(service: Service, sandbox_key: str) -> None:
    racers = 4
    with client(service, sandbox_key) as c:
        links = [create(c, 2000) for _ in range(3)]
        start = dzd(c)
        for link in links:
            url = link["paymentUrl"]
            tokens = [token_of(url) for _ in range(racers)]
            actions = ["pay"] * (racers - 1) + ["cancel"]
            barrier = threading.Barrier(racers)

            def race(i: int, url: str = url, tokens: list[str] = tokens,
                     actions: list[str] = actions, barrier: threading.Barrier = barrier,
                     ) -> int:  # fmt: skip
                with httpx.Client(timeout=10) as payer:
                    barrier.wait()
                    form = {"token": tokens[i], "action": actions[i], "method": "CIB"}
                    return payer.post(url, data=form).status_code

            with ThreadPoolExecutor(racers) as pool:
                statuses = list(pool.map(race, range(racers)))
            assert sorted(statuses) == [200] + [409] * (racers - 1), statuses
            winner = actions[statuses.index(200)]
            final = check(c, link["paymentRef"])
            assert final["status"] == ("CONFIRMED" if winner == "pay" else "FAILED")
            assert len(receipts(c, link["paymentRef"])) == (winner == "pay")
        confirmed = sum(check(c, link["paymentRef"])["status"] == "CONFIRMED" for link in links)
        assert dzd(c) - start == confirmed * Decimal("1980")  # 2000 less its 1% fee


@ONE_ENGINE
def test_a_link_pays_into_its_own_environments_balance(service: Service) -> None:
    account = fresh_account()
    sandbox = service.create_key(sandbox=True, account=account, balance=100)
    production = service.create_key(sandbox=False, account=account, balance=200)
    with client(service, sandbox) as s, client(service, production) as p:
        link = create(p, 10_000, feeMode="CUSTOMER_FEE")
        assert link["paymentLink"]["isSandbox"] is False
        assert submit(link["paymentUrl"], "pay").status_code == 200
        assert (dzd(p), dzd(s)) == (Decimal(10_200), Decimal(100))
        assert check(p, link["paymentRef"])["transactionDetails"]["isSandbox"] is False
        assert receipts(s, link["paymentRef"]) == []
        assert len(receipts(p, link["paymentRef"])) == 1
        link = create(s, 10_000)
        assert submit(link["paymentUrl"], "pay").status_code == 200
        assert (dzd(p), dzd(s)) == (Decimal(10_200), Decimal(10_000))  # 100 + 10,000 - 1%


# -- cancelling, and the payer's page -------------------------------------------------------


@ONE_ENGINE
def test_cancel_fails_the_link_and_moves_nothing(service: Service, sandbox_key: str) -> None:
    with client(service, sandbox_key) as c:
        start = dzd(c)
        link = create(c, 700, redirectUrl="https://shop.example/back?order=9")
        url, ref = link["paymentUrl"], link["paymentRef"]
        token = token_of(url)
        done = submit(url, "cancel")
        assert done.status_code == 200
        assert "Payment cancelled" in done.text
        back = "https://shop.example/back?order=9&amp;paymentRef=" + ref + "&amp;status=FAILED"
        assert f'content="3; url={back}"' in done.text
        assert check(c, ref) == {"status": "FAILED", "message": "Payment failed", "paymentRef": ref}
        page = httpx.get(url, timeout=10)
        assert page.status_code == 409 and "was cancelled" in page.text
        assert f'href="{back}"' in page.text  # the way back to the merchant
        refused = submit(url, "pay", token=token)  # the form rendered before it was cancelled
        assert refused.status_code == 409 and "was cancelled" in refused.text
        assert dzd(c) == start and receipts(c, ref) == []


@ONE_ENGINE
def test_the_page_shows_the_link_and_escapes_what_the_merchant_wrote(
    service: Service, sandbox_key: str
) -> None:
    title = '<script>alert("t")</script> & co'
    description = 'Line "one"\n<img src=x onerror=alert(1)>'
    message = "<b>Thanks</b> & see you"
    with client(service, sandbox_key) as c:
        link = create(
            c, 1001, title=title, description=description, feeMode="SPLIT_FEE",
            successMessage=message, redirectUrl="https://shop.example/r?a=1&b=2",
        )  # fmt: skip
    page = httpx.get(link["paymentUrl"], timeout=10)
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["x-request-id"].startswith("req_")
    text = page.text
    assert text.startswith('<!DOCTYPE html>\n<html lang="en">')
    assert "<script" not in text and "<img" not in text and "<b>" not in text
    assert "&lt;script&gt;alert(&quot;t&quot;)&lt;/script&gt; &amp; co" in text
    assert "<title>Pay: &lt;script&gt;" in text
    assert "Line &quot;one&quot;\n&lt;img src=x onerror=alert(1)&gt;" in text
    for shown in ("1,001.00 DZD", "10.01 DZD", "1,006.00 DZD", "SPLIT_FEE",
                  "Shared: you pay half"):  # fmt: skip
        assert shown in text, shown
    assert '<label for="method-cib">' in text and '<label for="method-edahabia">' in text
    assert 'value="CIB" checked' in text
    assert '<button type="submit" name="action" value="pay"' in text
    assert '<button type="submit" name="action" value="cancel"' in text
    assert ":focus-visible" in text
    assert "http" not in re.sub(r'https://shop\.example[^"]*', "", text.split("<main>")[0])
    done = submit(link["paymentUrl"], "pay")
    assert done.status_code == 200
    assert "&lt;b&gt;Thanks&lt;/b&gt; &amp; see you" in done.text and "<b>" not in done.text
    target = f"https://shop.example/r?a=1&amp;b=2&amp;paymentRef={link['paymentRef']}"
    assert f'url={target}&amp;status=CONFIRMED"' in done.text


@ONE_ENGINE
def test_the_page_refuses_what_it_did_not_render(service: Service, sandbox_key: str) -> None:
    with client(service, sandbox_key) as c:
        link = create(c)
        other = create(c)
    url, ref = link["paymentUrl"], link["paymentRef"]
    token = token_of(url)
    cases: list[tuple[dict[str, str], dict[str, str], int]] = [
        ({"action": "pay"}, {}, 403),  # no token
        ({"action": "pay", "token": token_of(other["paymentUrl"])}, {}, 403),  # another link's
        ({"action": "pay", "token": token + "0"}, {}, 403),
        ({"action": "pay", "token": token}, {"Origin": "https://evil.example"}, 403),
        ({"action": "pay", "token": token, "method": "VISA"}, {}, 400),
        ({"action": "refund", "token": token}, {}, 400),
    ]
    for form, headers, status in cases:
        response = httpx.post(url, data=form, headers=headers, timeout=10)
        assert response.status_code == status, (form, headers, response.text)
        assert response.headers["content-type"].startswith("text/html")
    with client(service, sandbox_key) as c:
        assert check(c, ref)["status"] == "PENDING"
    same_origin = {"Origin": f"http://127.0.0.1:{service.port}"}
    paid = httpx.post(url, data={"action": "pay", "token": token}, headers=same_origin)
    assert paid.status_code == 200
    huge = httpx.post(url, data={"action": "pay", "token": "x" * 5000}, timeout=10)
    assert huge.status_code == 413
    for unknown in ("OCPL-ZZZZZZ-ZZZZ", "nope"):
        base = f"http://127.0.0.1:{service.port}/pay/{unknown}"
        missing = httpx.get(base, timeout=10)
        assert missing.status_code == 404 and "Payment link not found" in missing.text
    gone = httpx.get(url, timeout=10)
    assert gone.status_code == 409 and "already paid" in gone.text


@ONE_ENGINE
def test_serve_sets_how_long_a_link_lasts(service_factory: Callable[..., Service]) -> None:
    svc = service_factory(extra_args=["--payment-link-ttl", "90"])
    with client(svc, svc.create_key(balance=10)) as c:
        create(c)
    ((created, expires),) = query(svc, "SELECT created_at, expires_at FROM payment_links")
    lasts = expires - datetime.fromisoformat(created).timestamp()
    assert 89 < lasts < 91


# -- expiry, on the service's clock ---------------------------------------------------------


@pytest.fixture(scope="module")
def in_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningService]:
    """A service in this process: its fulfilment clock can be moved forward."""
    db = tmp_path_factory.mktemp("ocpay") / "ocpay.db"
    with start_in_thread(ServerConfig(db_url=f"sqlite:///{db}", port=0, seed=1)) as running:
        yield running


def _key(running: RunningService) -> str:
    return admin.create_key(running.backend.store, "SANDBOX", fresh_account(), Decimal(50))


def test_a_link_expires_20_minutes_after_its_creation_unless_paid(
    in_process: RunningService,
) -> None:
    base = in_process.base_url
    with httpx.Client(base_url=base, headers={"X-Access-Token": _key(in_process)}) as c:
        waiting, paid, cancelled = (create(c, 800, redirectUrl=f"{base}/ping") for _ in range(3))
        token = token_of(waiting["paymentUrl"])
        assert submit(paid["paymentUrl"], "pay").status_code == 200
        assert submit(cancelled["paymentUrl"], "cancel").status_code == 200
        balance = dzd(c)
        in_process.advance(1199)
        assert check(c, waiting["paymentRef"])["status"] == "PENDING"
        in_process.advance(2)
        ref = waiting["paymentRef"]
        expired = error(c.get(f"/ocpay/checkPayment/{ref}"), 410, "PAYMENT_LINK_EXPIRED")
        assert expired["message"] == f"Payment link '{ref}' has expired"
        assert expired["details"] == {"paymentRef": ref}
        page = httpx.get(waiting["paymentUrl"], timeout=10)
        assert page.status_code == 410 and "has expired" in page.text
        for action in ("pay", "cancel"):  # with the form rendered before it expired
            refused = submit(waiting["paymentUrl"], action, token=token)
            assert refused.status_code == 410, refused.text
        # Final links stay what they were; no money moved.
        assert check(c, paid["paymentRef"])["status"] == "CONFIRMED"
        assert check(c, cancelled["paymentRef"])["status"] == "FAILED"
        assert dzd(c) == balance
