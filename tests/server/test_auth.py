"""Keys, scopes, IP rules, lockout and rate limits."""

from __future__ import annotations

import time
from collections.abc import Callable

from oneclickdz.server.testing import Service
from tests.server.conftest import Api
from tests.server.helpers import PSN, error, ok

ANOTHER_IP = (
    "127.0.0.2"  # a second loopback address: a different client as far as the service knows
)


def test_a_missing_key_is_refused_and_is_not_a_failed_attempt(api: Api) -> None:
    c = api()
    for path in ("/validate", "/account/balance", "/gift-cards/catalog", "/gift-cards/list"):
        error(c.get(path), 401, "MISSING_ACCESS_TOKEN")
    error(c.post("/gift-cards/placeOrder", json={}), 401, "MISSING_ACCESS_TOKEN")
    for _ in range(5):
        error(c.get("/validate"), 401, "MISSING_ACCESS_TOKEN")
    error(c.get("/validate"), 401, "MISSING_ACCESS_TOKEN")  # not blocked


def test_a_wrong_key_counts_down_then_blocks_the_ip_until_it_expires(
    service_factory: Callable[..., Service], api: Api
) -> None:
    svc = service_factory(extra_args=["--lockout-duration", "2"])
    good = svc.create_key(sandbox=True)
    intruder = api("00000000-0000-4000-8000-000000000000", ANOTHER_IP, svc=svc)
    left = [
        error(intruder.get("/validate"), 401, "INVALID_ACCESS_TOKEN")["details"]["attemptsLeft"]
        for _ in range(5)
    ]
    assert left == [4, 3, 2, 1, 0]
    blocked = [line for line in svc.logs().splitlines() if "ip blocked" in line]
    assert len(blocked) == 1
    assert '"ip":"127.0.0.2"' in blocked[0]
    # Blocked now, even with a good key; other addresses are not affected.
    from_blocked_ip = api(good, ANOTHER_IP, svc=svc)
    error(from_blocked_ip.get("/validate"), 403, "IP_BLOCKED")
    error(intruder.get("/validate"), 403, "IP_BLOCKED")
    assert ok(api(good, svc=svc).get("/validate"))["apiKey"]["type"] == "SANDBOX"
    time.sleep(2.2)
    assert ok(from_blocked_ip.get("/validate"))["apiKey"]["type"] == "SANDBOX"
    # The count starts over after the block.
    assert error(intruder.get("/validate"), 401, "INVALID_ACCESS_TOKEN")["details"] == {
        "attemptsLeft": 4
    }


def test_a_disabled_key_is_refused_and_can_be_enabled_again(service: Service, api: Api) -> None:
    key = service.create_key(sandbox=True)
    c = api(key)
    ok(c.get("/validate"))
    service.admin("disable-key", key)
    time.sleep(1.1)  # the service caches a key for up to a second
    error(c.get("/validate"), 403, "KEY_DISABLED")
    error(c.get("/account/balance"), 403, "KEY_DISABLED")
    service.admin("enable-key", key)
    time.sleep(1.1)
    ok(c.get("/validate"))


def test_allowed_ips_restrict_where_a_key_works(service: Service, api: Api) -> None:
    key = service.create_key(sandbox=True, allow_ips=["127.0.0.1", "10.0.0.0/8"])
    assert ok(api(key).get("/validate"))["apiKey"]["allowedips"] == ["127.0.0.1", "10.0.0.0/8"]
    error(api(key, ANOTHER_IP).get("/validate"), 403, "IP_NOT_ALLOWED")
    network_key = service.create_key(sandbox=True, allow_ips=["127.0.0.0/30"])
    ok(api(network_key, ANOTHER_IP).get("/validate"))


def test_a_read_only_key_reads_but_cannot_order(service: Service, api: Api) -> None:
    key = service.create_key(sandbox=True, balance=5000, read_only=True)
    c = api(key)
    assert ok(c.get("/validate"))["apiKey"]["scope"] == "READ-ONLY"
    ok(c.get("/gift-cards/catalog"))
    ok(c.get(f"/gift-cards/checkProduct/{PSN}"))
    body = {"productId": PSN, "typeId": "type_001", "quantity": 1}
    error(c.post("/gift-cards/placeOrder", json=body), 403, "INSUFFICIENT_SCOPE")
    assert ok(c.get("/account/balance"))["balance"] == 5000
    assert ok(c.get("/gift-cards/list"))["items"] == []


def test_rate_limit_is_per_key_with_retry_after(
    service_factory: Callable[..., Service], api: Api
) -> None:
    svc = service_factory(extra_args=["--rate-limit", "6"])
    busy, calm = svc.create_key(sandbox=True), svc.create_key(sandbox=True)
    c = api(busy, svc=svc)
    for _ in range(6):
        ok(c.get("/validate"))
    response = c.get("/validate")
    err = error(response, 429, "RATE_LIMIT_EXCEEDED")
    assert response.headers["retry-after"] == "10"  # 6 a minute: a token every 10 s
    assert err["details"] == {"retryAfter": 10}
    ok(api(calm, svc=svc).get("/validate"))


def test_the_key_never_reaches_the_logs(service: Service, api: Api) -> None:
    key = service.create_key(sandbox=True, balance=1000)
    c = api(key)
    ok(c.get("/validate"))
    error(api(key[::-1], "127.0.0.3").get("/validate"), 401, "INVALID_ACCESS_TOKEN")
    assert key not in service.logs()
    assert key[::-1] not in service.logs()
