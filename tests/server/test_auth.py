"""Keys, scopes, IP rules, lockout and rate limits.

Windows in time (a lockout, the key cache, a rate-limit wait) are crossed by moving the
service's clock (`RunningService.advance`) rather than by sleeping.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from oneclickdz.server import admin
from oneclickdz.server.config import ServerConfig
from oneclickdz.server.runtime import RunningService, start_in_thread
from oneclickdz.server.testing import Service
from tests.server.conftest import Api
from tests.server.helpers import PSN, error, ok

# The HTTP tests run on SQLite and on PostgreSQL (see tests/conftest.py).
BOTH_ENGINES = True

ANOTHER_IP = (
    "127.0.0.2"  # a second loopback address: a different client as far as the service knows
)
BAD_KEY = "00000000-0000-4000-8000-000000000000"


class InProcess:
    """A service in this process (its clock can be moved) and HTTP clients for it."""

    def __init__(self, running: RunningService, clients: ExitStack) -> None:
        self.running = running
        self._clients = clients

    def key(self) -> str:
        return admin.create_key(self.running.backend.store, "SANDBOX")

    def api(self, key: str | None = None, source_ip: str | None = None) -> httpx.Client:
        """A client sending `key`, optionally from another loopback address."""
        transport = httpx.HTTPTransport(local_address=source_ip) if source_ip else None
        headers = {"X-Access-Token": key} if key is not None else {}
        return self._clients.enter_context(
            httpx.Client(
                base_url=self.running.base_url, headers=headers, transport=transport, timeout=10
            )
        )


@pytest.fixture
def in_process(tmp_path: Path) -> Iterator[Callable[..., InProcess]]:
    """`in_process(**config)`: a service with these `ServerConfig` settings; stopped after."""
    numbers = itertools.count()
    with ExitStack() as stack:

        def start(**settings: Any) -> InProcess:
            db = tmp_path / f"auth-{next(numbers)}.db"
            config = replace(ServerConfig(db_url=f"sqlite:///{db}", port=0, seed=1), **settings)
            running = stack.enter_context(start_in_thread(config))
            clients = stack.enter_context(ExitStack())
            return InProcess(running, clients)

        yield start


def test_a_missing_key_is_refused_and_is_not_a_failed_attempt(api: Api) -> None:
    c = api()
    for path in ("/validate", "/account/balance", "/gift-cards/catalog", "/gift-cards/list"):
        error(c.get(path), 401, "MISSING_ACCESS_TOKEN")
    error(c.post("/gift-cards/placeOrder", json={}), 401, "MISSING_ACCESS_TOKEN")
    for _ in range(5):
        error(c.get("/validate"), 401, "MISSING_ACCESS_TOKEN")
    error(c.get("/validate"), 401, "MISSING_ACCESS_TOKEN")  # not blocked


def test_a_wrong_key_counts_down_then_blocks_the_ip_until_it_expires(
    in_process: Callable[..., InProcess], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="oneclickdz.server.auth")
    svc = in_process()  # the default lockout: 5 attempts, then 900 s
    good = svc.key()
    intruder = svc.api(BAD_KEY, ANOTHER_IP)
    left = [
        error(intruder.get("/validate"), 401, "INVALID_ACCESS_TOKEN")["details"]["attemptsLeft"]
        for _ in range(5)
    ]
    assert left == [4, 3, 2, 1, 0]
    blocked = [r for r in caplog.records if r.getMessage().startswith("ip blocked")]
    assert [r.__dict__["ip"] for r in blocked] == ["127.0.0.2"]
    # Blocked now, even with a good key; other addresses are not affected.
    from_blocked_ip = svc.api(good, ANOTHER_IP)
    error(from_blocked_ip.get("/validate"), 403, "IP_BLOCKED")
    error(intruder.get("/validate"), 403, "IP_BLOCKED")
    assert ok(svc.api(good).get("/validate"))["apiKey"]["type"] == "SANDBOX"
    svc.running.advance(899)
    error(from_blocked_ip.get("/validate"), 403, "IP_BLOCKED")  # a second before the end
    svc.running.advance(2)
    assert ok(from_blocked_ip.get("/validate"))["apiKey"]["type"] == "SANDBOX"
    # The count starts over after the block.
    assert error(intruder.get("/validate"), 401, "INVALID_ACCESS_TOKEN")["details"] == {
        "attemptsLeft": 4
    }


def test_a_disabled_key_is_refused_and_can_be_enabled_again(
    in_process: Callable[..., InProcess],
) -> None:
    svc = in_process()
    store = svc.running.backend.store
    key = svc.key()
    c = svc.api(key)
    ok(c.get("/validate"))
    admin.set_key_enabled(store, key, False)
    svc.running.advance(1.0)  # the service caches a key for up to a second
    error(c.get("/validate"), 403, "KEY_DISABLED")
    error(c.get("/account/balance"), 403, "KEY_DISABLED")
    admin.set_key_enabled(store, key, True)
    svc.running.advance(1.0)
    ok(c.get("/validate"))


def test_a_rate_limited_key_is_served_again_after_retry_after(
    in_process: Callable[..., InProcess],
) -> None:
    svc = in_process(rate_limit=6)
    c = svc.api(svc.key())
    for _ in range(6):
        ok(c.get("/validate"))
    response = c.get("/validate")
    error(response, 429, "RATE_LIMIT_EXCEEDED")
    svc.running.advance(float(response.headers["retry-after"]))
    ok(c.get("/validate"))
    error(c.get("/validate"), 429, "RATE_LIMIT_EXCEEDED")  # one token came back, not a burst


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
