"""Prometheus metrics at /metrics: what an operator's dashboards and alerts read."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from oneclickdz.server.testing import Service
from tests.server.helpers import PSN, client, error, ok

# The HTTP tests run on SQLite and on PostgreSQL (see tests/conftest.py).
BOTH_ENGINES = True

OTHER_IP = "127.0.0.2"  # a second loopback address: its lockout does not block the test's own
BAD_KEY = "bad-key-7f3e9c1a-do-not-log"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(svc: Service) -> tuple[str, Samples]:
    """GET /metrics with no API key: the text, and each sample by (name, labels)."""
    response = httpx.get(f"http://127.0.0.1:{svc.port}/metrics", timeout=10.0)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return response.text, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def test_metrics_count_requests_refusals_and_orders(
    service_factory: Callable[..., Service],
) -> None:
    svc = service_factory(
        fulfill_delay="0.1-0.2",
        extra_args=["--rate-limit", "30", "--lockout-attempts", "2", "--faults", "ping:1:503"],
    )
    key, limited_key = svc.create_key(balance=1000), svc.create_key(balance=1000)
    with client(svc, key) as c, client(svc, limited_key) as limited:
        error(c.get("/no-such-route"), 404, "NOT_FOUND")
        error(c.get("/ping"), 503, "SERVICE_UNAVAILABLE")  # injected before routing
        with client(svc, BAD_KEY, OTHER_IP) as stranger:
            error(stranger.get("/validate"), 401, "INVALID_ACCESS_TOKEN")
            error(stranger.get("/validate"), 401, "INVALID_ACCESS_TOKEN")  # blocks the IP
            error(stranger.get("/validate"), 403, "IP_BLOCKED")
        answers = [limited.get("/account/balance").status_code for _ in range(40)]
        assert 429 in answers
        order_id = ok(
            c.post(
                "/gift-cards/placeOrder",
                json={"productId": PSN, "typeId": "type_001", "quantity": 1},
            )
        )["orderId"]
        checks, order = final_order(c, order_id)
    codes = [card["value"] for card in order["cards"]]
    assert order["status"] == "FULFILLED" and codes

    text, samples = scrape(svc)

    def requests(route: str, status: int) -> float:
        return value(samples, "oneclickdz_requests_total", route=route, status=str(status))

    # Requests by route name and status, the order id never in a label.
    assert requests("unmatched", 404) == 1
    assert requests("ping", 503) == 1
    assert requests("validate", 401) == 2
    assert requests("validate", 403) == 1
    assert requests("balance", 200) == answers.count(200)
    assert requests("balance", 429) == answers.count(429)
    assert requests("placeOrder", 200) == 1
    assert requests("checkOrder", 200) == checks
    checks_timed = value(samples, "oneclickdz_request_duration_seconds_count", route="checkOrder")
    assert checks_timed == checks
    slowest_bucket = value(
        samples, "oneclickdz_request_duration_seconds_bucket", route="checkOrder", le="+Inf"
    )
    assert slowest_bucket == checks
    # Refusals.
    assert value(samples, "oneclickdz_auth_failures_total") == 2
    assert value(samples, "oneclickdz_ip_blocks_total") == 1
    assert value(samples, "oneclickdz_rate_limited_requests_total") == answers.count(429)
    # Orders by status (read from the database), fulfilment lag, the write queue.
    assert value(samples, "oneclickdz_orders", env="SANDBOX", status="FULFILLED") == 1
    assert value(samples, "oneclickdz_orders", env="SANDBOX", status="HANDLING") == 0
    assert value(samples, "oneclickdz_orders", env="PRODUCTION", status="FULFILLED") == 0
    assert value(samples, "oneclickdz_fulfilment_lag_seconds_count") == 1
    assert value(samples, "oneclickdz_fulfilment_pending") == 0
    assert value(samples, "oneclickdz_db_write_queue") >= 0
    # Nothing a client sent, and nothing secret, ever reaches the metrics.
    for secret in (key, limited_key, BAD_KEY, order_id, *codes):
        assert secret not in text


def final_order(c: httpx.Client, order_id: str) -> tuple[int, dict[str, Any]]:
    """Poll checkOrder until the order is final: how many checks it took, and the order."""
    for checks in range(1, 200):
        order: dict[str, Any] = ok(c.get(f"/gift-cards/checkOrder/{order_id}"))
        if order["status"] != "HANDLING":
            return checks, order
        time.sleep(0.05)
    raise AssertionError(f"order {order_id} still HANDLING")


def test_metrics_need_no_key_and_count_the_scrapes(service: Service) -> None:
    scraped = ("oneclickdz_requests_total", frozenset({("route", "metrics"), ("status", "200")}))
    _, before = scrape(service)
    _, after = scrape(service)
    assert after[scraped] == before.get(scraped, 0) + 1


def test_no_metrics_answers_404_in_the_envelope(service_factory: Callable[..., Service]) -> None:
    svc = service_factory(extra_args=["--no-metrics"])
    response = httpx.get(f"http://127.0.0.1:{svc.port}/metrics", timeout=10.0)
    details = error(response, 404, "NOT_FOUND")
    assert "/metrics" in details["message"]
    with client(svc) as c:
        assert ok(c.get("/ping"))


def test_faults_spare_the_scrape_and_are_counted_by_route(
    service_factory: Callable[..., Service],
) -> None:
    svc = service_factory(extra_args=["--faults", "*:1:503"])
    with client(svc) as c:
        error(c.get("/validate"), 503, "SERVICE_UNAVAILABLE")
        error(c.get("/gift-cards/checkOrder/6900000000000000000000aa"), 503, "SERVICE_UNAVAILABLE")
    _, samples = scrape(svc)  # every other request fails by rule; the scrape does not

    # Answered before routing, yet labelled with the route it would have reached.
    assert value(samples, "oneclickdz_requests_total", route="validate", status="503") == 1
    assert value(samples, "oneclickdz_requests_total", route="checkOrder", status="503") == 1
