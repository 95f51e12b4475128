"""Signed order webhooks from the service: the outbox, the dispatcher, the admin commands.

Every test runs `oneclickdz serve` as a process on a fresh database (both engines), registers
a receiver running on 127.0.0.1 with `admin add-webhook`, places orders over HTTP and watches
what reaches the receiver. Signatures are checked by the `standardwebhooks` library itself.
"""

from __future__ import annotations

import base64
import itertools
import json
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import Any

import httpx
import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from oneclickdz.server.testing import Service, cli
from oneclickdz.server.webhooks import WebhookError, check_destination
from oneclickdz.webhooks import verify
from tests.conftest import fresh_account
from tests.server.helpers import client, place, query, stored_bytes, wait_final
from tests.webhook_receiver import Received, Receiver, receiving

BOTH_ENGINES = True
# Where the engine makes no difference: every webhook query is one piece of SQL for both
# (`store/webhook_repo.py`), and the tests left on both engines cover the outbox in the
# finalising transaction, claims (SKIP LOCKED), retries, 410, replay and a crash.
ONE_ENGINE = pytest.mark.sqlite_only
ALLOW = ("--webhook-allow-private",)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with receiving() as r:
        yield r


def hook(svc: Service, url: str, *extra: str, key: str | None = None) -> tuple[str, str]:
    """A funded sandbox key (new unless given) with a webhook endpoint at `url`: (key, secret)."""
    if key is None:
        key = svc.create_key(sandbox=True, account=fresh_account(), balance=100_000)
    out = svc.admin("add-webhook", key, url, "--allow-private", *extra).strip().splitlines()
    return key, out[-1]


def library_verifies(request: Received, secret: str) -> dict[str, Any]:
    """The body, once the `standardwebhooks` library itself accepted the signature."""
    payload: dict[str, Any] = Webhook(secret).verify(request.body, request.headers)
    return payload


def log_rows(svc: Service, event_id: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
    args = ["webhook-log", "--limit", str(limit), "--json"]
    rows: list[dict[str, Any]] = json.loads(
        svc.admin(*args[:1], *([event_id] if event_id else []), *args[1:])
    )
    return rows


def attempts(svc: Service) -> int:
    """How many attempts the log holds (read from the database: cheap enough to poll)."""
    return int(query(svc, "SELECT COUNT(*) FROM webhook_attempts")[0][0])


def wait_until(check: Callable[[], bool], within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


# -- events -------------------------------------------------------------------------------------


def test_each_final_order_sends_one_signed_event_without_card_codes(
    service_factory: Callable[..., Service], receiver: Receiver
) -> None:
    svc = service_factory(extra_args=ALLOW)
    key, secret = hook(svc, receiver.url)
    assert secret.startswith("whsec_") and len(base64.b64decode(secret[6:])) == 24
    with client(svc, key) as c:
        placed = {
            place(c, "type_001", 2, ref="full"): ("order.fulfilled", "FULFILLED", 2),
            place(c, "TEST_PARTIAL", 4): ("order.partially_filled", "PARTIALLY_FILLED", 2),
            place(c, "TEST_REFUND", 3): ("order.refunded", "REFUNDED", 0),
        }
        finals = {order_id: wait_final(c, order_id) for order_id in placed}
    got = receiver.wait_for(3)
    time.sleep(0.5)  # nothing more comes
    assert len(receiver.received) == 3
    codes = [card["value"] for order in finals.values() for card in order["cards"]]
    assert len(codes) == 4
    for request in got:
        payload = library_verifies(request, secret)
        event = verify(request.body, request.headers, secret)  # and the SDK reads it
        order_id = event.data.order_id
        event_type, status, delivered = placed[order_id]
        assert request.headers["webhook-id"] == f"evt_{order_id}" == event.id
        assert payload["type"] == event.type == event_type
        assert (event.data.status, event.data.fulfilled_quantity) == (status, delivered)
        price = event.data.price_per_card
        assert event.data.amount_charged == price * delivered
        assert event.data.amount_refunded == price * (event.data.quantity - delivered)
        assert event.data.ref == ("full" if event_type == "order.fulfilled" else None)
        assert not any(code.encode() in request.body for code in codes)
        assert "cards" not in payload["data"]
        assert request.headers["content-type"] == "application/json"
    # The secret is never at rest in clear, nor in the service's logs.
    assert secret.encode() not in stored_bytes(svc)
    assert secret not in svc.logs()


@ONE_ENGINE
def test_events_are_filtered_by_type_and_go_only_to_the_ordering_keys_endpoints(
    service_factory: Callable[..., Service],
) -> None:
    svc = service_factory(extra_args=ALLOW)
    with receiving() as refunds, receiving() as other:
        key, _ = hook(svc, refunds.url, "--events", "order.refunded")
        hook(svc, other.url)  # another key's endpoint
        with client(svc, key) as c:
            ids = [place(c, "type_001"), place(c, "TEST_REFUND", 2)]
            for order_id in ids:
                wait_final(c, order_id)
        refunds.wait_for(1)
        time.sleep(0.5)
        assert refunds.ids() == [f"evt_{ids[1]}"]
        assert other.received == []
    # The outbox holds only events someone subscribed to.
    assert query(svc, "SELECT order_id FROM webhook_events") == [(ids[1],)]


def test_an_order_is_final_exactly_when_its_event_is_in_the_outbox(
    service_factory: Callable[..., Service], receiver: Receiver
) -> None:
    svc = service_factory(extra_args=ALLOW, fulfill_delay="0.5-3")
    key, _ = hook(svc, receiver.url)
    with client(svc, key) as c:
        ids = [place(c, "type_001") for _ in range(12)]
        for _ in range(30):  # sample while orders turn final one by one
            rows = query(
                svc,
                "SELECT o.id, o.status, e.id FROM orders o "
                "LEFT JOIN webhook_events e ON e.order_id = o.id WHERE o.key_id = "
                "(SELECT key_id FROM webhook_endpoints)",
            )
            for _order_id, status, event in rows:
                assert (status != "HANDLING") == (event is not None), rows
            time.sleep(0.1)
        for order_id in ids:
            wait_final(c, order_id)
    receiver.wait_for(12)


# -- the admin commands ---------------------------------------------------------------------------


@ONE_ENGINE
def test_admin_lists_removes_and_refuses_bad_endpoints(
    service_factory: Callable[..., Service], receiver: Receiver
) -> None:
    svc = service_factory(extra_args=ALLOW)
    key, secret = hook(svc, receiver.url)
    listed = json.loads(svc.admin("list-webhooks", "--json"))
    assert [(e["url"], e["status"]) for e in listed] == [(receiver.url, "ENABLED")]
    assert listed[0]["events"] == ["order.fulfilled", "order.partially_filled", "order.refunded"]
    assert secret not in svc.admin("list-webhooks")
    done = cli("admin", "--db", svc.db_url, "add-webhook", key, receiver.url, env=svc.env)
    assert done.returncode == 2 and "private or loopback" in done.stderr, done.stderr
    assert "whsec_" not in done.stdout + done.stderr  # without --allow-private: refused
    for url, why in {
        "ftp://example.com/hook": "http:// or https://",
        "http://user:pw@example.com/hook": "credentials",
        "https:///nohost": "no host",
        "https://no-such-host.invalid/hook": "does not resolve",
        "http://10.0.0.7/hook": "private or loopback",
        "http://[::1]:8080/hook": "private or loopback",
        "http://169.254.169.254/latest": "private or loopback",  # cloud metadata
    }.items():
        with pytest.raises(WebhookError, match=why):
            check_destination(url, allow_private=False)
    check_destination("http://10.0.0.7/hook", allow_private=True)
    bad = cli("admin", "--db", svc.db_url, "add-webhook", key, "https://1.1.1.1/h",
              "--events", "order.lost", env=svc.env)  # fmt: skip
    assert bad.returncode == 2 and "order.lost" in bad.stderr
    unknown_key = cli("admin", "--db", svc.db_url, "add-webhook", "nope", "https://1.1.1.1/h",
                      env=svc.env)  # fmt: skip
    assert unknown_key.returncode == 2 and "no such key" in unknown_key.stderr

    svc.admin("remove-webhook", str(listed[0]["id"]))
    assert json.loads(svc.admin("list-webhooks", "--json")) == []
    with client(svc, key) as c:
        wait_final(c, place(c))
    time.sleep(0.5)
    assert receiver.received == []


@ONE_ENGINE
def test_a_rotated_secret_and_the_old_one_both_sign_until_the_grace_period_ends(
    service_factory: Callable[..., Service], receiver: Receiver
) -> None:
    svc = service_factory(extra_args=ALLOW)
    key, old = hook(svc, receiver.url)
    endpoint = json.loads(svc.admin("list-webhooks", "--json"))[0]["id"]
    new = svc.admin("rotate-webhook-secret", str(endpoint), "--grace", "3600").splitlines()[-1]
    assert new.startswith("whsec_") and new != old
    with client(svc, key) as c:
        wait_final(c, place(c))
    during = receiver.wait_for(1)[0]
    assert len(during.headers["webhook-signature"].split(" ")) == 2
    assert library_verifies(during, old) == library_verifies(during, new)

    newest = svc.admin("rotate-webhook-secret", str(endpoint), "--grace", "0").splitlines()[-1]
    with client(svc, key) as c:
        wait_final(c, place(c))
    after = receiver.wait_for(2)[1]
    library_verifies(after, newest)
    for stale in (old, new):
        with pytest.raises(WebhookVerificationError):
            library_verifies(after, stale)


# -- delivery: retries, 410, redirects, timeouts, concurrency -----------------------------------


def test_a_receiver_failing_n_times_gets_retries_with_growing_jittered_delays(
    service_factory: Callable[..., Service], receiver: Receiver
) -> None:
    schedule = (0.4, 0.8, 1.6)
    svc = service_factory(extra_args=(*ALLOW, "--webhook-retries", "0.4,0.8,1.6"))
    receiver.respond = lambda request, index: (500, {}) if index < 3 else (200, {})
    key, secret = hook(svc, receiver.url)
    with client(svc, key) as c:
        order_id = place(c)
        wait_final(c, order_id)
    got = receiver.wait_for(4)
    assert {r.headers["webhook-id"] for r in got} == {f"evt_{order_id}"}
    for request in got:
        library_verifies(request, secret)  # each attempt signed afresh, within the tolerance
    gaps = [b.at - a.at for a, b in itertools.pairwise(got)]
    for gap, delay in zip(gaps, schedule, strict=True):
        assert delay * 0.8 - 0.05 <= gap <= delay * 1.2 + 2.0, (gaps, schedule)
    time.sleep(2.5)
    assert len(receiver.received) == 4  # delivered: no more attempts
    rows = log_rows(svc, f"evt_{order_id}")
    assert [(r["attempt"], r["outcome"], r["status_code"]) for r in reversed(rows)] == [
        (1, "failed", 500), (2, "failed", 500), (3, "failed", 500), (4, "delivered", 200),
    ]  # fmt: skip
    assert all(r["latency_ms"] is not None and r["latency_ms"] >= 0 for r in rows)
    assert query(svc, "SELECT state, attempts FROM webhook_deliveries") == [("DELIVERED", 4)]
    metrics = httpx.get(f"http://127.0.0.1:{svc.port}/metrics").text
    assert 'oneclickdz_webhook_attempts_total{outcome="failed"} 3.0' in metrics
    assert 'oneclickdz_webhook_attempts_total{outcome="delivered"} 1.0' in metrics
    assert "oneclickdz_webhook_latency_seconds_count 4.0" in metrics


def test_a_delivery_fails_for_good_when_its_schedule_runs_out_and_replay_sends_it_again(
    service_factory: Callable[..., Service], receiver: Receiver
) -> None:
    svc = service_factory(extra_args=(*ALLOW, "--webhook-retries", "0.2,0.2"))
    receiver.respond = lambda request, index: (503, {}) if index < 3 else (204, {})
    key, _ = hook(svc, receiver.url)
    with client(svc, key) as c:
        order_id = place(c)
        wait_final(c, order_id)
    receiver.wait_for(3)
    wait_until(lambda: query(svc, "SELECT state FROM webhook_deliveries") == [("FAILED",)])
    time.sleep(1.0)
    assert len(receiver.received) == 3

    out = svc.admin("webhook-replay", f"evt_{order_id}")
    assert "1 deliveries" in out
    again = receiver.wait_for(4)[3]
    assert again.headers["webhook-id"] == f"evt_{order_id}"
    assert again.body == receiver.received[0].body  # the same event, byte for byte
    wait_until(lambda: query(svc, "SELECT state FROM webhook_deliveries") == [("DELIVERED",)])
    unknown = cli("admin", "--db", svc.db_url, "webhook-replay", "evt_nope", env=svc.env)
    assert unknown.returncode == 2 and "no webhook event" in unknown.stderr


def test_a_410_disables_the_endpoint_and_nothing_more_is_sent(
    service_factory: Callable[..., Service], receiver: Receiver
) -> None:
    svc = service_factory(extra_args=ALLOW)
    receiver.respond = lambda request, index: (410, {})
    key, _ = hook(svc, receiver.url)
    with client(svc, key) as c:
        wait_final(c, place(c))
        receiver.wait_for(1)
        wait_until(lambda: query(svc, "SELECT status FROM webhook_endpoints") == [("DISABLED",)])
        listed = json.loads(svc.admin("list-webhooks", "--json"))[0]
        assert "410" in listed["disabledReason"]
        for order_id in [place(c) for _ in range(3)]:
            wait_final(c, order_id)
    time.sleep(1.0)
    assert len(receiver.received) == 1
    assert [r["outcome"] for r in log_rows(svc)] == ["gone"]

    # An operator enables it again: later events reach it.
    receiver.respond = lambda request, index: (204, {})
    svc.admin("enable-webhook", str(listed["id"]))
    with client(svc, key) as c:
        later = place(c)
        wait_final(c, later)
    assert receiver.wait_for(2)[1].headers["webhook-id"] == f"evt_{later}"


@ONE_ENGINE
def test_redirects_are_not_followed(
    service_factory: Callable[..., Service], receiver: Receiver
) -> None:
    svc = service_factory(extra_args=(*ALLOW, "--webhook-retries", ""))
    with receiving() as elsewhere:
        receiver.respond = lambda request, index: (307, {"location": elsewhere.url})
        key, _ = hook(svc, receiver.url)
        with client(svc, key) as c:
            wait_final(c, place(c))
        receiver.wait_for(1)
        wait_until(lambda: query(svc, "SELECT state FROM webhook_deliveries") == [("FAILED",)])
        assert elsewhere.received == []
    [row] = log_rows(svc)
    assert (row["outcome"], row["status_code"]) == ("failed", 307)
    assert "redirect" in row["error"]


@ONE_ENGINE
def test_no_more_deliveries_are_in_flight_than_the_concurrency_limit(
    service_factory: Callable[..., Service], receiver: Receiver
) -> None:
    svc = service_factory(extra_args=(*ALLOW, "--webhook-concurrency", "2"))
    receiver.hold = 0.4
    key, _ = hook(svc, receiver.url)
    with client(svc, key) as c:
        ids = [place(c) for _ in range(8)]
        for order_id in ids:
            wait_final(c, order_id)
    receiver.wait_for(8)
    assert receiver.peak == 2  # reached, never passed


@ONE_ENGINE
def test_a_receiver_slower_than_the_timeout_is_a_failed_attempt(
    service_factory: Callable[..., Service], receiver: Receiver
) -> None:
    svc = service_factory(
        extra_args=(*ALLOW, "--webhook-timeout", "0.3", "--webhook-retries", "0.2")
    )
    receiver.hold = 1.0
    key, _ = hook(svc, receiver.url)
    with client(svc, key) as c:
        wait_final(c, place(c))
    wait_until(lambda: query(svc, "SELECT state FROM webhook_deliveries") == [("FAILED",)])
    rows = log_rows(svc)
    assert [(r["outcome"], r["error"], r["status_code"]) for r in rows] == [
        ("failed", "timed out", None)
    ] * 2
    assert all(250 <= r["latency_ms"] < 900 for r in rows)


@ONE_ENGINE
def test_a_private_address_is_refused_unless_the_service_allows_it(
    service_factory: Callable[..., Service], receiver: Receiver
) -> None:
    svc = service_factory(extra_args=("--webhook-retries", ""))  # no --webhook-allow-private
    key, _ = hook(svc, receiver.url)  # the admin was told to accept it
    hook(svc, receiver.url.replace("127.0.0.1", "localhost"), key=key)  # a name, not an address
    with client(svc, key) as c:
        wait_final(c, place(c))
    wait_until(
        lambda: query(svc, "SELECT state FROM webhook_deliveries") == [("FAILED",), ("FAILED",)]
    )
    rows = log_rows(svc)
    assert len(rows) == 2
    for row in rows:
        assert row["outcome"] == "refused" and "private or loopback" in row["error"], row
    assert receiver.received == []


# -- crash, faults -------------------------------------------------------------------------------


def test_an_event_survives_a_kill_9_between_finalising_and_delivering(
    service_factory: Callable[..., Service], receiver: Receiver
) -> None:
    # The fault holds every delivery 3 s after its claim (its lease extended to 3 + 6 s): the
    # order is final, its event in the outbox and claimed, and nothing is sent when it dies.
    svc = service_factory(
        extra_args=(*ALLOW, "--webhook-timeout", "1", "--faults", "webhook:1:delay=3")
    )
    key, secret = hook(svc, receiver.url)
    with client(svc, key) as c:
        ids = [place(c) for _ in range(3)]
        for order_id in ids:
            wait_final(c, order_id)
    wait_until(
        lambda: (
            len(query(svc, "SELECT 1 FROM webhook_deliveries WHERE lease_owner IS NOT NULL")) == 3
        )
    )
    assert svc.process is not None
    svc.process.kill()
    svc.process.wait()
    assert receiver.received == []
    svc.extra_args = (*ALLOW, "--webhook-timeout", "1")  # restarted without the fault
    svc.start()
    got = receiver.wait_for(3, within=30)  # once the dead process's leases ran out (9 s)
    assert sorted(r.headers["webhook-id"] for r in got) == sorted(f"evt_{i}" for i in ids)
    for request in got:
        library_verifies(request, secret)


@ONE_ENGINE
@pytest.mark.parametrize("fault", ["drop", "duplicate"])
def test_webhook_faults_drop_or_duplicate_deliveries(
    service_factory: Callable[..., Service], receiver: Receiver, fault: str
) -> None:
    svc = service_factory(extra_args=(*ALLOW, "--faults", f"webhook:1:{fault}"))
    key, secret = hook(svc, receiver.url)
    with client(svc, key) as c:
        ids = [place(c) for _ in range(3)]
        for order_id in ids:
            wait_final(c, order_id)
    wait_until(lambda: attempts(svc) == (3 if fault == "drop" else 6))
    if fault == "drop":
        time.sleep(1.0)
        assert receiver.received == []  # lost for good: not retried
        assert {r["outcome"] for r in log_rows(svc)} == {"dropped"}
    else:
        got = receiver.wait_for(6)
        assert sorted(receiver.ids()) == sorted(f"evt_{i}" for i in ids for _ in range(2))
        for request in got:
            library_verifies(request, secret)
        by_id: dict[str, set[bytes]] = {}
        for request in got:
            by_id.setdefault(request.headers["webhook-id"], set()).add(request.body)
        assert all(len(bodies) == 1 for bodies in by_id.values())  # same event, same body


@ONE_ENGINE
def test_a_delayed_webhook_arrives_after_its_order_is_final_and_later_ones(
    service_factory: Callable[..., Service], receiver: Receiver
) -> None:
    # The first delivery is held 1.5 s, the others go at once: they arrive out of order.
    svc = service_factory(extra_args=(*ALLOW, "--faults", "webhook:1:delay=1.5:x1"))
    key, _ = hook(svc, receiver.url)
    with client(svc, key) as c:
        first = place(c)
        wait_final(c, first)
        time.sleep(0.3)
        second = place(c)
        wait_final(c, second)
    got = receiver.wait_for(2)
    assert [r.headers["webhook-id"] for r in got] == [f"evt_{second}", f"evt_{first}"]
    final_at = query(svc, "SELECT final_at FROM orders WHERE id = ?", (first,))[0][0]
    final = datetime.fromisoformat(final_at.replace("Z", "+00:00"))
    assert got[1].at - final.timestamp() >= 1.4


# -- the command line ----------------------------------------------------------------------------


def test_serve_refuses_a_bad_webhook_retry_schedule(tmp_path: Any) -> None:
    for bad in ("5,soon", "-1"):
        done = cli("serve", "--db", f"sqlite:///{tmp_path / 'x.db'}", "--webhook-retries", bad)
        assert done.returncode == 2 and "webhook retries" in done.stderr


def _ids(rows: Sequence[dict[str, Any]]) -> list[str]:
    return [r["event_id"] for r in rows]


@ONE_ENGINE
def test_webhook_log_shows_attempts_newest_first(
    service_factory: Callable[..., Service], receiver: Receiver
) -> None:
    svc = service_factory(extra_args=ALLOW)
    key, _ = hook(svc, receiver.url)
    ids = []
    with client(svc, key) as c:
        for count in (1, 2):  # one after the other: the second is final after the first
            ids.append(place(c))
            wait_final(c, ids[-1])
            receiver.wait_for(count)
    wait_until(lambda: attempts(svc) == 2)
    assert _ids(log_rows(svc)) == [f"evt_{ids[1]}", f"evt_{ids[0]}"]
    assert _ids(log_rows(svc, limit=1)) == [f"evt_{ids[1]}"]
    text = svc.admin("webhook-log")
    assert f"evt_{ids[0]}" in text and "delivered  204" in text


# -- the schedule and the fault rules, without a service ------------------------------------------


def test_the_default_retry_schedule_spans_about_a_day_with_bounded_jitter() -> None:
    import random

    from oneclickdz.server.dispatcher import DEFAULT_SCHEDULE, retry_delay

    rng = random.Random(7)
    assert DEFAULT_SCHEDULE[:4] == (5.0, 60.0, 600.0, 3600.0)
    assert 20 * 3600 <= sum(DEFAULT_SCHEDULE) <= 24 * 3600
    for attempts, base in enumerate(DEFAULT_SCHEDULE, start=1):
        delays = [retry_delay(DEFAULT_SCHEDULE, attempts, rng) for _ in range(200)]
        assert all(d is not None and base * 0.8 <= d <= base * 1.2 for d in delays)
        assert len(set(delays)) > 100  # jittered, not one fixed figure
    assert retry_delay(DEFAULT_SCHEDULE, len(DEFAULT_SCHEDULE) + 1, rng) is None


def test_webhook_fault_rules_parse_and_refuse_what_does_not_apply() -> None:
    from oneclickdz.server.faults import parse_faults

    kinds = [(r.kind, r.seconds) for r in parse_faults("webhook:0.2:drop,webhook:1:delay=2.5")]
    assert kinds == [("drop", 0.0), ("delay", 2.5)]
    assert parse_faults("webhook:0.5:duplicate:x3")[0].limit == 3
    for bad in ("webhook:0.1:503", "webhook:0.1:delay=soon", "webhook:2:drop", "*:0.1:drop"):
        with pytest.raises(ValueError, match="fault rule"):
            parse_faults(bad)


def test_the_senders_resolver_never_connects_to_a_private_address(receiver: Receiver) -> None:
    """The address check at send time and the connection use one DNS answer: a name that
    resolves to loopback (as a rebinding host would, after passing the check) is never reached."""
    import asyncio

    import aiohttp

    from oneclickdz.server.dispatcher import PublicResolver

    async def send(url: str) -> None:
        connector = aiohttp.TCPConnector(resolver=PublicResolver())
        async with aiohttp.ClientSession(connector=connector) as session:
            await session.post(url, data=b"{}")

    url = receiver.url.replace("127.0.0.1", "localhost")
    with pytest.raises(aiohttp.ClientConnectorError):
        asyncio.run(send(url))
    assert receiver.received == []
    asyncio.run(send_plain(url))  # the same URL is reachable without the guard
    assert len(receiver.received) == 1


async def send_plain(url: str) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as session, session.post(url, data=b"{}") as response:
        assert response.status == 204
