"""The tracker with signed order webhooks: its receiver over real HTTP, the hints it takes, and
the slow safety schedule beside them, against the real service.

A webhook is only a hint: every test counts the API calls (`stats().api_calls`), and an order is
final only once a checkOrder said so. The service's signed webhooks are used end to end once the
service sends them; elsewhere the tests sign events themselves with the `standardwebhooks`
library, exactly as a Standard Webhooks sender does.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from standardwebhooks.webhooks import Webhook
from starlette.requests import Request
from starlette.responses import Response

from oneclickdz import AiohttpTransport, AsyncClient, Client
from oneclickdz.server.testing import Service, free_port
from oneclickdz.tracker import IntentSpec, State, Tracker, TrackerConfig
from oneclickdz.tracker.receiver import WebhookServer, serve_webhooks
from tests.conftest import fresh_account
from tests.test_cli import oneclickdz
from tests.tracker.conftest import Deliveries
from tests.tracker.proxy import RewritingProxy

pytestmark = pytest.mark.anyio

PSN = "507f1f77bcf86cd799439011"
Factory = Callable[..., Tracker]

SECRET = "whsec_" + base64.b64encode(os.urandom(24)).decode()
OTHER_SECRET = "whsec_" + base64.b64encode(os.urandom(24)).decode()
OLD_SECRET = "whsec_" + base64.b64encode(os.urandom(32)).decode()  # before a rotation

# Webhooks on, and a safety schedule far beyond any test: a check is a hint's, or nobody's.
HINTS_ONLY = TrackerConfig(
    interval=0.5,
    deadline=3600.0,
    delivery_backoff=0.05,
    restart_spread=0.2,
    webhooks=True,
    safety_interval=3600.0,
)


def new_key(service: Service) -> str:
    return service.create_key(sandbox=True, account=fresh_account(), balance=100_000)


# --------------------------------------------------------------------------- signed events

_ids = iter(range(1, 1_000_000))


def event_id() -> str:
    return f"msg_test{next(_ids)}_{os.urandom(4).hex()}"


def event_body(
    order_id: str, status: str = "FULFILLED", kind: str = "order.fulfilled", quantity: int = 1
) -> bytes:
    """An order event as the service sends it (the contract of issue 10)."""
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    done = quantity if status == "FULFILLED" else 0
    return json.dumps(
        {
            "type": kind,
            "timestamp": now,
            "data": {
                "orderId": order_id,
                "status": status,
                "quantity": quantity,
                "fulfilled_quantity": done,
                "price_per_card": 490,
                "amount_charged": 490 * done,
                "amount_refunded": 490 * (quantity - done),
                "time": now,
            },
        }
    ).encode()


def signed(
    body: bytes, *, secret: str = SECRET, msg_id: str | None = None, at: float | None = None
) -> dict[str, str]:
    """Standard Webhooks headers, signed by the specification's own library."""
    msg_id = msg_id or event_id()
    stamp = datetime.fromtimestamp(time.time() if at is None else at, tz=UTC)
    return {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(stamp.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, stamp, body.decode()),
    }


async def post(url: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    async with httpx.AsyncClient(timeout=10) as http:
        return await http.post(url, content=body, headers=headers)


async def send_event(
    server: WebhookServer, order_id: str, *, msg_id: str | None = None, **kwargs: Any
) -> httpx.Response:
    body = event_body(order_id, **kwargs)
    return await post(server.url, body, signed(body, msg_id=msg_id))


# --------------------------------------------------------------------------- running it


@contextlib.asynccontextmanager
async def running(
    tracker: Tracker, secrets: tuple[str, ...] = (SECRET,), port: int = 0
) -> AsyncIterator[WebhookServer]:
    """The tracker running with its receiver (a free port by default), until the block ends."""
    async with (
        serve_webhooks(tracker, "127.0.0.1", port, secrets) as server,
        anyio.create_task_group() as tasks,
    ):
        tasks.start_soon(tracker.run)
        try:
            yield server
        finally:
            tracker.stop()


async def until(predicate: Callable[[], Awaitable[bool]]) -> None:
    with anyio.fail_after(30):
        while not await predicate():
            await anyio.sleep(0.02)


async def placed(tracker: Tracker, intent_id: str) -> str:
    """The order id, once the tracker has placed the intent."""
    order_id: str | None = None

    async def known() -> bool:
        nonlocal order_id
        row = await tracker.get(intent_id)
        order_id = row.order_id if row is not None and row.state is State.PLACED else None
        return order_id is not None

    await until(known)
    assert order_id is not None
    return order_id


async def in_state(tracker: Tracker, intent_id: str, *states: State) -> None:
    async def there() -> bool:
        row = await tracker.get(intent_id)
        return row is not None and row.state in states

    await until(there)


async def final_at_service(service: Service | str, key: str, order_id: str) -> None:
    """Wait until the service itself has made the order final (asked on its own client)."""
    base = service if isinstance(service, str) else service.base_url
    async with AsyncClient(key, base_url=base, transport=AiohttpTransport()) as sdk:

        async def final() -> bool:
            return (await sdk.gift_cards.check_order(order_id)).is_final

        await until(final)


async def calls(tracker: Tracker) -> dict[str, int]:
    return dict((await tracker.stats()).api_calls)


async def webhook_counts(tracker: Tracker) -> dict[str, int]:
    counters = (await tracker.stats()).counters
    return {k.removeprefix("webhooks."): n for k, n in counters.items() if k.startswith("webhooks")}


# --------------------------------------------------------------------------- 1. a hint


async def test_a_verified_hint_is_confirmed_by_one_check_at_once(
    service: Service, tracker_factory: Factory, deliveries: Deliveries
) -> None:
    key = new_key(service)
    async with tracker_factory(service, key, config=HINTS_ONLY) as tracker:
        intent = await tracker.place(PSN, "type_001", 2, meta={"shop": "W-1"})
        async with running(tracker) as server:
            order_id = await placed(tracker, intent.id)
            row = await tracker.get(intent.id)
            assert row is not None and row.placed_at is not None
            # Its first check is on the safety schedule (an hour), not at `interval` (0.5 s).
            assert row.next_at - row.placed_at == pytest.approx(HINTS_ONLY.safety_interval)
            await final_at_service(service, key, order_id)
            assert await calls(tracker) == {"placeOrder": 1, "checkOrder": 0, "list": 0}

            answer = await send_event(server, order_id)
            assert (answer.status_code, answer.content) == (204, b"")
            await in_state(tracker, intent.id, State.DELIVERED)

            # One check, the hint's: the safety poll (an hour away) never came.
            assert await calls(tracker) == {"placeOrder": 1, "checkOrder": 1, "list": 0}
            assert await webhook_counts(tracker) == {
                "received": 1, "verified": 1, "hinted": 1,
            }  # fmt: skip
            row = await tracker.get(intent.id)
    assert row is not None
    assert row.status == "FULFILLED"
    assert row.final_at is not None and row.placed_at is not None
    assert row.final_at >= row.placed_at  # when the tracker learnt it: the detection time
    with Client(key, base_url=service.base_url) as sdk:
        truth = sdk.gift_cards.check_order(order_id)
    [delivery] = deliveries.received
    assert (delivery.order_id, delivery.status) == (order_id, "FULFILLED")
    assert [c.value for c in delivery.cards] == [c.value for c in truth.cards]


async def test_without_a_webhook_the_safety_poll_still_delivers(
    service: Service, tracker_factory: Factory, deliveries: Deliveries
) -> None:
    key = new_key(service)
    config = replace(HINTS_ONLY, safety_interval=1.0)
    async with tracker_factory(service, key, config=config) as tracker:
        intent = await tracker.place(PSN, "TEST_PARTIAL", 2)
        async with running(tracker):
            await in_state(tracker, intent.id, State.DELIVERED)
            api = await calls(tracker)
            assert await webhook_counts(tracker) == {}
    assert api["placeOrder"] == 1 and api["checkOrder"] >= 1
    assert [(d.intent_id, d.status) for d in deliveries.received] == [
        (intent.id, "PARTIALLY_FILLED")
    ]


# --------------------------------------------------------------------------- 2. refusals


async def test_forged_replayed_and_malformed_webhooks_are_refused_and_change_nothing(
    service: Service,
    tracker_factory: Factory,
    deliveries: Deliveries,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="oneclickdz")
    key = new_key(service)
    async with tracker_factory(service, key, config=HINTS_ONLY) as tracker:
        target = await tracker.place(PSN, "type_001", 1)
        sentinel = await tracker.place(PSN, "type_001", 1)
        async with running(tracker) as server:
            order_id = await placed(tracker, target.id)
            other_id = await placed(tracker, sentinel.id)
            await final_at_service(service, key, order_id)  # a true hint would finalise it
            before = await tracker.get(target.id)
            assert before is not None
            before_summary = before.summary()

            body = event_body(order_id)
            good = signed(body)
            forged = event_body(order_id, status="REFUNDED", kind="order.refunded")
            stale = signed(body, at=time.time() - 600)  # a replay, 10 minutes late
            refused = {
                "tampered body": await post(server.url, forged, good),
                "wrong secret": await post(server.url, body, signed(body, secret=OTHER_SECRET)),
                "no signature": await post(
                    server.url, body, {k: v for k, v in good.items() if k != "webhook-signature"}
                ),
                "no id": await post(
                    server.url, body, {k: v for k, v in good.items() if k != "webhook-id"}
                ),
                "garbled signature": await post(
                    server.url, body, {**good, "webhook-signature": "v1,not*base64"}
                ),
                "replayed": await post(server.url, body, stale),
                "not an event": await post(
                    server.url, b'{"type": "order.created"}', signed(b'{"type": "order.created"}')
                ),
            }
            assert {why: r.status_code for why, r in refused.items()} == dict.fromkeys(refused, 400)
            huge = b"{" + b" " * 70_000 + b"}"
            assert (await post(server.url, huge, signed(huge))).status_code == 413
            async with httpx.AsyncClient() as http:
                assert (await http.get(server.url)).status_code == 405

            # A true hint for another order: once it is checked, any check the refused ones
            # had scheduled (due earlier) would have gone out too.
            await final_at_service(service, key, other_id)
            assert (await send_event(server, other_id)).status_code == 204
            await in_state(tracker, sentinel.id, State.DELIVERED)
            assert await calls(tracker) == {"placeOrder": 2, "checkOrder": 1, "list": 0}
            after = await tracker.get(target.id)
            assert after is not None
            assert after.summary() == before_summary  # still placed, unchecked, same schedule
            assert await webhook_counts(tracker) == {
                "received": 9, "refused": 8, "verified": 1, "hinted": 1,
            }  # fmt: skip

            # The very same order with a true, fresh webhook: refused ones were the only reason.
            assert (await send_event(server, order_id)).status_code == 204
            await in_state(tracker, target.id, State.DELIVERED)
            assert (await calls(tracker))["checkOrder"] == 2
    assert sorted(d.intent_id for d in deliveries.received) == sorted([target.id, sentinel.id])
    assert "webhook refused" in caplog.text
    for secret in (SECRET, OTHER_SECRET, key):
        assert secret not in caplog.text
        for answer in refused.values():
            assert secret not in answer.text


# --------------------------------------------------------------------------- 3. free ones


async def test_duplicates_and_events_for_final_or_unknown_orders_cost_no_call(
    service: Service, tracker_factory: Factory
) -> None:
    key = new_key(service)
    # No handler: a final order stays `final` in the tracker (its cards sealed).
    async with tracker_factory(service, key, config=HINTS_ONLY, handler=None) as tracker:
        first = await tracker.place(PSN, "type_001", 1)
        second = await tracker.place(PSN, "TEST_REFUND", 1)
        async with running(tracker) as server:
            first_id = await placed(tracker, first.id)
            second_id = await placed(tracker, second.id)
            await final_at_service(service, key, first_id)
            event = event_id()
            assert (await send_event(server, first_id, msg_id=event)).status_code == 204
            await in_state(tracker, first.id, State.FINAL)
            assert (await calls(tracker))["checkOrder"] == 1

            answers = [
                await send_event(server, first_id, msg_id=event),  # delivered again
                await send_event(server, first_id, msg_id=event),  # and again
                await send_event(server, first_id),  # a new id, but the order is final
                await send_event(server, "0" * 24),  # an order this tracker does not follow
            ]
            assert [a.status_code for a in answers] == [204] * 4  # all verified: no retries

            # A true hint for the other order: checked, so the free ones above had their turn.
            await final_at_service(service, key, second_id)
            answer = await send_event(server, second_id, status="REFUNDED", kind="order.refunded")
            assert answer.status_code == 204
            await in_state(tracker, second.id, State.FINAL)
            assert await calls(tracker) == {"placeOrder": 2, "checkOrder": 2, "list": 0}
            assert await webhook_counts(tracker) == {
                "received": 6, "verified": 6, "hinted": 2, "duplicate": 2, "ignored": 2,
            }  # fmt: skip


# --------------------------------------------------------------------------- 4. lies


async def test_an_event_that_lies_or_comes_early_never_finalises_an_order(
    service_factory: Callable[..., Service], tracker_factory: Factory, deliveries: Deliveries
) -> None:
    svc = service_factory(fulfill_delay="4-4")  # HANDLING for 4 s
    key = new_key(svc)
    async with tracker_factory(svc, key, config=HINTS_ONLY) as tracker:
        intent = await tracker.place(PSN, "type_001", 1)
        async with running(tracker) as server:
            order_id = await placed(tracker, intent.id)
            # Says REFUNDED while the service still has it HANDLING (and will fulfil it).
            lie = await send_event(server, order_id, status="REFUNDED", kind="order.refunded")
            assert lie.status_code == 204

            async def checked_once() -> bool:
                return (await calls(tracker))["checkOrder"] == 1

            await until(checked_once)
            row = await tracker.get(intent.id)
            assert row is not None
            assert (row.state, row.status, row.final_at, row.sealed_cards) == (
                State.PLACED, None, None, None,
            )  # fmt: skip
            assert row.amount_refunded is None

            # The truth, later: its own webhook, its own check.
            await final_at_service(svc, key, order_id)
            assert (await send_event(server, order_id)).status_code == 204
            await in_state(tracker, intent.id, State.DELIVERED)
            assert await calls(tracker) == {"placeOrder": 1, "checkOrder": 2, "list": 0}
    [delivery] = deliveries.received
    assert (delivery.status, delivery.delivered) == ("FULFILLED", 1)
    assert delivery.amount_refunded == 0 and delivery.amount_charged == 490


class HoldingProxy(RewritingProxy):
    """Forwards to the service at once, but holds the answers of one kind of request until
    `release` is set (the service has acted: only the answer is late)."""

    def __init__(self, upstream: str, hold: str) -> None:
        self.hold = hold
        self.holding = threading.Event()
        self.release = threading.Event()
        super().__init__(upstream)

    async def _forward(self, request: Request) -> Response:
        answer = await super()._forward(request)
        if request.path_params["rest"].startswith(self.hold):
            self.holding.set()
            while not self.release.is_set():  # another thread sets it
                await asyncio.sleep(0.01)
        return answer


@contextlib.contextmanager
def holding_proxy(upstream: str, hold: str) -> Iterator[HoldingProxy]:
    proxy = HoldingProxy(upstream, hold).start()
    try:
        yield proxy
    finally:
        proxy.release.set()
        proxy.stop()


async def wait_event(event: threading.Event) -> None:
    with anyio.fail_after(30):
        while not event.is_set():  # another thread sets it
            await anyio.sleep(0.01)


async def test_a_hint_during_a_check_gets_a_check_after_it(
    service_factory: Callable[..., Service], tracker_factory: Factory, deliveries: Deliveries
) -> None:
    svc = service_factory(fulfill_delay="1.5-1.5")
    key = new_key(svc)
    with holding_proxy(svc.base_url, "gift-cards/checkOrder") as proxy:
        async with tracker_factory(base_url=proxy.base_url, key=key, config=HINTS_ONLY) as tracker:
            intent = await tracker.place(PSN, "type_001", 1)
            async with running(tracker) as server:
                order_id = await placed(tracker, intent.id)
                assert (await send_event(server, order_id)).status_code == 204  # too early
                await wait_event(proxy.holding)  # its check has its (HANDLING) answer, held
                await final_at_service(svc, key, order_id)
                assert (await send_event(server, order_id)).status_code == 204  # while out
                proxy.release.set()
                # The first answer predates the second hint: one more check, at once.
                await in_state(tracker, intent.id, State.DELIVERED)
                assert await calls(tracker) == {"placeOrder": 1, "checkOrder": 2, "list": 0}
                assert (await webhook_counts(tracker))["hinted"] == 2
    assert [d.status for d in deliveries.received] == ["FULFILLED"]


async def test_a_hint_before_the_placement_answer_is_checked_once_the_id_is_known(
    service: Service, tracker_factory: Factory, deliveries: Deliveries
) -> None:
    key = new_key(service)
    with holding_proxy(service.base_url, "gift-cards/placeOrder") as proxy:
        async with tracker_factory(base_url=proxy.base_url, key=key, config=HINTS_ONLY) as tracker:
            intent = await tracker.place(PSN, "type_001", 1)
            async with running(tracker) as server:
                await wait_event(proxy.holding)  # placed at the service; the answer held
                with Client(key, base_url=service.base_url) as sdk:
                    [order] = list(sdk.gift_cards.list_orders())
                await final_at_service(service, key, order.id)
                assert (await send_event(server, order.id)).status_code == 204
                assert (await webhook_counts(tracker))["ignored"] == 1  # not known here yet
                assert (await calls(tracker))["checkOrder"] == 0
                proxy.release.set()
                await in_state(tracker, intent.id, State.DELIVERED)
                assert await calls(tracker) == {"placeOrder": 1, "checkOrder": 1, "list": 0}
    assert [d.order_id for d in deliveries.received] == [order.id]


# --------------------------------------------------------------------------- the CLI


def sender(service: Service, key: str, port: int, secret: str, done: list[int]) -> threading.Thread:
    """A thread that waits for the order at the service to be final, then sends a forged and a
    true webhook to `track run`'s receiver (recording their answers in `done`)."""

    def send() -> None:
        with Client(key, base_url=service.base_url) as sdk:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                orders = list(sdk.gift_cards.list_orders())
                if orders and orders[0].is_final:
                    break
                time.sleep(0.05)
            order_id = orders[0].id
        body = event_body(order_id)
        url = f"http://127.0.0.1:{port}/hooks/oneclickdz"
        with httpx.Client(timeout=10) as http:
            forged = http.post(url, content=body, headers=signed(body, secret=OTHER_SECRET))
            done.append(forged.status_code)
            true = http.post(url, content=body, headers=signed(body, secret=secret))
            done.append(true.status_code)

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    return thread


def test_track_run_receives_webhooks(service: Service, tmp_path: Path) -> None:
    key = new_key(service)
    store = f"sqlite:///{tmp_path / 'tracker.db'}"
    env = {"ONECLICKDZ_TRACKER_STORE": store}
    assert oneclickdz("track", "place", PSN, "type_001", "1", env=env).code == 0
    port = free_port()
    answers: list[int] = []
    thread = sender(service, key, port, SECRET, answers)
    ran = oneclickdz(
        "track", "run", "--until-idle", "--interval", "0.5", "--safety-interval", "3600",
        "--webhook-listen", f"127.0.0.1:{port}", "--json",
        env={**env, "ONECLICKDZ_API_KEY": key, "ONECLICKDZ_BASE_URL": service.base_url,
             # a rotation: the old secret and the new one both sign
             "ONECLICKDZ_WEBHOOK_SECRET": f"{OLD_SECRET},{SECRET}"},
        secrets=[key, SECRET, OTHER_SECRET, OLD_SECRET],
    )  # fmt: skip
    thread.join(timeout=30)
    assert ran.code == 0, ran.err
    assert answers == [400, 204]
    assert ran.json()["states"] == {"final": 1}
    assert f"webhooks: receiving on http://127.0.0.1:{port}/" in ran.err
    assert "webhook refused: no matching signature" in ran.err
    stats = oneclickdz("track", "stats", "--json", env=env).json()
    assert stats["api_calls"] == {"placeOrder": 1, "checkOrder": 1, "list": 0}
    counters = stats["counters"]
    assert (counters["webhooks.refused"], counters["webhooks.hinted"]) == (1, 1)
    text = oneclickdz("track", "stats", env=env)
    assert "webhooks            received=2 refused=1 verified=1 hinted=1" in text.out


def test_track_run_refuses_bad_webhook_options_with_one_line(
    service: Service, tmp_path: Path
) -> None:
    key = new_key(service)
    env = {
        "ONECLICKDZ_TRACKER_STORE": f"sqlite:///{tmp_path / 'tracker.db'}",
        "ONECLICKDZ_API_KEY": key,
        "ONECLICKDZ_BASE_URL": service.base_url,
        "ONECLICKDZ_WEBHOOK_SECRET": "",
    }
    bad_secret = "whsec_not*base64*" + SECRET[6:]
    cases = {
        ("--webhook-listen", "127.0.0.1:0"): "needs the secret",
        ("--webhook-listen", "nowhere", "--webhook-secret", SECRET): "expected HOST:PORT",
        ("--webhook-secret", SECRET): "--webhook-secret is for --webhook-listen",
        ("--webhook-listen", "127.0.0.1:0", "--webhook-secret", bad_secret): "secret #1",
    }
    for args, message in cases.items():
        ran = oneclickdz(
            "track", "run", "--until-idle", *args, env=env, secrets=[bad_secret, SECRET]
        )
        assert ran.code == 2, (args, ran.err)
        assert message in ran.err and len(ran.err.strip().splitlines()) == 1, ran.err
    with socket_in_use() as port:
        ran = oneclickdz(
            "track", "run", "--until-idle", "--webhook-listen", f"127.0.0.1:{port}",
            "--webhook-secret", SECRET, env=env, secrets=[SECRET],
        )  # fmt: skip
    assert ran.code == 2 and "already in use" in ran.err, ran.err


@contextlib.contextmanager
def socket_in_use() -> Iterator[int]:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


# --------------------------------------------------------------------------- 5. end to end

MIX = [("type_001", 1), ("TEST_PARTIAL", 2), ("TEST_REFUND", 1)]


@pytest.mark.parametrize("engine", ["sqlite"])
@pytest.mark.parametrize(
    ("faults", "safety_interval"),
    [((), 60.0), (("--faults", "webhook:0.3:drop"), 2.0)],
    ids=["all-webhooks", "30pct-dropped"],
)
async def test_the_services_own_webhooks_deliver_every_order_once(
    service_factory: Callable[..., Service],
    tracker_factory: Factory,
    deliveries: Deliveries,
    faults: tuple[str, ...],
    safety_interval: float,
) -> None:
    svc = service_factory(extra_args=["--webhook-allow-private", *faults])
    key = new_key(svc)
    port = free_port()
    url = f"http://127.0.0.1:{port}/oneclickdz/webhooks"
    secret = svc.admin("add-webhook", key, url, "--allow-private").strip().splitlines()[-1]
    assert secret.startswith("whsec_")
    config = replace(HINTS_ONLY, safety_interval=safety_interval)
    n = 30
    async with tracker_factory(svc, key, config=config) as tracker:
        intents = await tracker.place_many(
            IntentSpec(PSN, type_id, quantity, {"n": i})
            for i in range(n)
            for type_id, quantity in [MIX[i % len(MIX)]]
        )
        async with running(tracker, (secret,), port=port):

            async def all_delivered() -> bool:
                return len(deliveries.received) >= n

            await until(all_delivered)
        api = await calls(tracker)
        hooks = await webhook_counts(tracker)

    # Every order delivered exactly once, as the service has it; each bought once.
    assert sorted(d.intent_id for d in deliveries.received) == sorted(o.id for o in intents)
    with Client(key, base_url=svc.base_url) as sdk:
        truth = {o.id: o for o in sdk.gift_cards.list_orders()}
    assert sorted(str(o.ref) for o in truth.values()) == sorted(str(o.ref) for o in intents)
    for delivery in deliveries.received:
        order = truth[delivery.order_id]
        assert delivery.status == order.status
        assert [c.value for c in delivery.cards] == [c.value for c in order.cards]

    assert api["placeOrder"] == n
    assert hooks.get("refused", 0) == 0
    assert hooks["received"] == hooks["verified"]
    if not faults:
        assert hooks["hinted"] == n  # each order hinted by its webhook, and checked once
        assert (api["placeOrder"] + api["checkOrder"] + api["list"]) / n <= 2.0
    else:
        assert 0 < hooks["hinted"] < n  # some webhooks lost: those orders came by safety polls
        assert api["checkOrder"] + api["list"] > hooks["hinted"]
