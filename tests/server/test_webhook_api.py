"""The `/v3/webhooks` API: a key's webhook endpoints, over real HTTP, on both engines.

An extension of this service (not in OneClickDZ's API): list, create (the `whsec_` secret shown
once), delete and rotate-secret, each scoped to the calling key, in the API's envelopes. The
session's service runs without `--webhook-allow-private`, so a loopback receiver is refused
there; a service of this module's own runs with it, and an endpoint made through the API
receives signed webhooks that the `standardwebhooks` library itself verifies.
"""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from oneclickdz.server.openapi import EXTENSION
from oneclickdz.server.testing import Service
from oneclickdz.server.webhooks import DEFAULT_GRACE, EVENT_TYPES, MAX_GRACE
from tests.conftest import fresh_account, new_service
from tests.server.helpers import client, error, ok, place, query, wait_final
from tests.webhook_receiver import Received, Receiver, receiving

BOTH_ENGINES = True

Api = Callable[..., httpx.Client]
# A public address (nothing is sent to it: no order is ever placed with the keys that use it).
PUBLIC_URL = "https://1.1.1.1/hooks/oneclickdz"
SECRET = re.compile(r"whsec_([A-Za-z0-9+/=]+)")


@pytest.fixture(scope="module")
def private_service(tmp_path_factory: pytest.TempPathFactory, db_engine: str) -> Iterator[Service]:
    """A service run with `--webhook-allow-private`: it sends to a receiver on 127.0.0.1."""
    workdir = tmp_path_factory.mktemp(f"webhook-api-{db_engine}")
    svc = new_service(workdir, db_engine, extra_args=["--webhook-allow-private"]).start()
    yield svc
    svc.stop()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with receiving() as r:
        yield r


def new_key(svc: Service, **kwargs: Any) -> str:
    """A funded sandbox key on a new account (unless `account` says which)."""
    kwargs.setdefault("account", fresh_account())
    return svc.create_key(sandbox=True, balance=100_000, **kwargs)


def create(c: httpx.Client, url: str = PUBLIC_URL, **body: Any) -> dict[str, Any]:
    made: dict[str, Any] = ok(c.post("/webhooks", json={"url": url, **body}))
    return made


def listed(c: httpx.Client) -> list[dict[str, Any]]:
    views: list[dict[str, Any]] = ok(c.get("/webhooks"))
    return views


def secret_bytes(secret: str) -> bytes:
    """The random bytes of a `whsec_` secret (fails the test if it is not one)."""
    found = SECRET.fullmatch(secret)
    assert found is not None, "not a whsec_ secret"
    return base64.b64decode(found.group(1), validate=True)


def refused(response: httpx.Response, field: str) -> dict[str, Any]:
    """The details of a 400 ERR_VALIDATION naming `field`."""
    details: dict[str, Any] = error(response, 400, "ERR_VALIDATION")["details"]
    assert details["field"] == field, details
    return details


def delivery(receiver: Receiver, event_id: str, within: float = 20.0) -> Received:
    """The first webhook of this event to reach the receiver (fails after `within` s)."""
    deadline = time.monotonic() + within
    while True:
        for request in list(receiver.received):
            if request.headers.get("webhook-id") == event_id:
                return request
        assert time.monotonic() < deadline, f"no webhook {event_id} within {within}s"
        time.sleep(0.02)


# -- create, list ---------------------------------------------------------------------------


def test_create_shows_the_secret_once_and_the_list_never(service: Service, api: Api) -> None:
    c = api(new_key(service))
    some = create(c, events=["order.refunded", "order.fulfilled"])
    every = create(c, f"{PUBLIC_URL}/2")
    assert set(some) == {"id", "url", "events", "status", "createdAt", "secret"}
    assert some["url"] == PUBLIC_URL and some["status"] == "ENABLED"
    assert some["events"] == ["order.fulfilled", "order.refunded"]  # in the types' own order
    assert every["events"] == list(EVENT_TYPES)  # none named: all of them
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", some["createdAt"])
    for made in (some, every):
        assert len(secret_bytes(made["secret"])) == 24
    assert some["secret"] != every["secret"] and some["id"] != every["id"]

    response = c.get("/webhooks")
    views = ok(response)
    assert [v["id"] for v in views] == [some["id"], every["id"]]  # oldest first
    assert views[0] == {k: v for k, v in some.items() if k != "secret"}
    for made in (some, every):  # shown once: no listing shows it, in any form
        assert made["secret"] not in response.text
        assert made["secret"].removeprefix("whsec_") not in response.text


def test_the_events_must_be_known_types(service: Service, api: Api) -> None:
    c = api(new_key(service))
    for events in (["order.shipped"], ["order.fulfilled", "ORDER.REFUNDED"], ["*"]):
        details = refused(c.post("/webhooks", json={"url": PUBLIC_URL, "events": events}), "events")
        assert details["value"] == events
    malformed: list[Any] = ["order.fulfilled", {"type": "order.fulfilled"}, [1], [None]]
    for shape in malformed:
        refused(c.post("/webhooks", json={"url": PUBLIC_URL, "events": shape}), "events")
    assert listed(c) == []  # nothing was made by a refusal
    # Absent, null or empty: every type; a type named twice is taken once.
    assert create(c, events=[])["events"] == list(EVENT_TYPES)
    assert create(c, events=None)["events"] == list(EVENT_TYPES)
    assert create(c, events=["order.refunded"] * 2)["events"] == ["order.refunded"]


REFUSED_URLS = [
    "ftp://1.1.1.1/hooks",  # not http(s)
    "http:///hooks",  # no host
    "https://",
    "https://merchant:s3cr3t-pw@1.1.1.1/hooks",  # credentials
    "https://merchant@1.1.1.1/hooks",
    "http://127.0.0.1:8080/hooks",  # loopback, and the service does not allow private
    "http://localhost:8080/hooks",  # a name that resolves to loopback
    "http://[::1]/hooks",
    "http://10.1.2.3/hooks",  # private
    "http://169.254.169.254/latest/meta-data",  # link-local (cloud metadata)
    "http://1.1.1.1:99999/hooks",  # no such port
    "https://1.1.1.1/" + "a" * 2048,  # too long
    "https://1.1.1.1/a b",  # whitespace
    "not a url",
    "",
]


def test_a_url_that_cannot_be_an_endpoint_is_refused(
    service: Service, api: Api, subtests: pytest.Subtests
) -> None:
    c = api(new_key(service))
    for url in REFUSED_URLS:
        with subtests.test(url=url[:60]):
            response = c.post("/webhooks", json={"url": url})
            details = refused(response, "url")
            assert details["value"] is None  # a URL is never echoed back
            assert "s3cr3t-pw" not in response.text
    assert listed(c) == []


def test_a_body_that_is_not_an_endpoint_is_refused(service: Service, api: Api) -> None:
    c = api(new_key(service))
    refused(c.post("/webhooks", json={"events": ["order.fulfilled"]}), "url")  # no url
    refused(c.post("/webhooks", json={"url": 123}), "url")
    refused(c.post("/webhooks", json=[PUBLIC_URL]), "body")
    refused(c.post("/webhooks", content=b"{not json"), "body")
    refused(c.post("/webhooks", content=b""), "body")  # creating needs a body
    assert listed(c) == []


def test_loopback_is_allowed_when_the_service_allows_private(private_service: Service) -> None:
    with client(private_service, new_key(private_service)) as c:
        assert create(c, "http://127.0.0.1:9/hooks")["url"] == "http://127.0.0.1:9/hooks"
        assert create(c, "http://localhost:9/hooks")["status"] == "ENABLED"
        # What no service sends to is refused all the same.
        refused(c.post("/webhooks", json={"url": "ftp://127.0.0.1/hooks"}), "url")
        refused(c.post("/webhooks", json={"url": "http://user:pw@127.0.0.1/hooks"}), "url")
        assert len(listed(c)) == 2


# -- scope: each key its own endpoints ------------------------------------------------------


def test_each_key_sees_and_changes_only_its_own_endpoints(service: Service, api: Api) -> None:
    account = fresh_account()
    a = api(new_key(service, account=account))
    same_account = api(new_key(service, account=account))  # endpoints are per key, not account
    other_account = api(new_key(service))
    mine = create(a)
    theirs = create(other_account, f"{PUBLIC_URL}/b")
    for other in (same_account, other_account):
        assert mine["id"] not in [v["id"] for v in listed(other)]
        # Another key's endpoint is as unknown as a missing one: nothing reveals it.
        error(other.delete(f"/webhooks/{mine['id']}"), 404, "NOT_FOUND")
        error(other.post(f"/webhooks/{mine['id']}/rotate-secret"), 404, "NOT_FOUND")
    assert listed(same_account) == []
    assert [v["id"] for v in listed(other_account)] == [theirs["id"]]
    # Untouched: not removed, never rotated.
    assert listed(a) == [{k: v for k, v in mine.items() if k != "secret"}]


def test_a_read_only_key_lists_but_cannot_write(service: Service, api: Api) -> None:
    account = fresh_account()
    writer = api(new_key(service, account=account))
    reader = api(new_key(service, account=account, read_only=True))
    made = create(writer)
    assert listed(reader) == []  # its own endpoints: none
    error(reader.post("/webhooks", json={"url": PUBLIC_URL}), 403, "INSUFFICIENT_SCOPE")
    error(reader.delete(f"/webhooks/{made['id']}"), 403, "INSUFFICIENT_SCOPE")
    error(reader.post(f"/webhooks/{made['id']}/rotate-secret"), 403, "INSUFFICIENT_SCOPE")
    error(api().get("/webhooks"), 401, "MISSING_ACCESS_TOKEN")
    error(api().post("/webhooks", json={"url": PUBLIC_URL}), 401, "MISSING_ACCESS_TOKEN")
    assert listed(reader) == []
    assert listed(writer) == [{k: v for k, v in made.items() if k != "secret"}]


# -- delete, rotate, unknown ids ------------------------------------------------------------


def test_delete_removes_the_endpoint(service: Service, api: Api) -> None:
    c = api(new_key(service))
    gone, kept = create(c), create(c, f"{PUBLIC_URL}/kept")
    removed = ok(c.delete(f"/webhooks/{gone['id']}"))
    assert removed == {k: v for k, v in gone.items() if k != "secret"} | {"status": "REMOVED"}
    assert [v["id"] for v in listed(c)] == [kept["id"]]
    # Removed is gone for good: not found again, nor to rotate.
    error(c.delete(f"/webhooks/{gone['id']}"), 404, "NOT_FOUND")
    error(c.post(f"/webhooks/{gone['id']}/rotate-secret"), 404, "NOT_FOUND")


def test_rotate_gives_a_new_secret_and_keeps_the_old_for_the_grace(
    service: Service, api: Api
) -> None:
    c = api(new_key(service))
    made = create(c)
    assert "previousSecretUntil" not in made

    def rotate(**body: Any) -> tuple[dict[str, Any], float, float]:
        before = time.time()
        if body:
            rotated = ok(c.post(f"/webhooks/{made['id']}/rotate-secret", json=body))
        else:  # no body at all: the default grace
            rotated = ok(c.post(f"/webhooks/{made['id']}/rotate-secret"))
        return rotated, before, time.time()

    first, before, after = rotate()
    assert len(secret_bytes(first["secret"])) == 24 and first["secret"] != made["secret"]
    assert {k: first[k] for k in ("id", "url", "events", "status")} == {
        k: made[k] for k in ("id", "url", "events", "status")
    }
    until = _epoch(first["previousSecretUntil"])
    assert before + DEFAULT_GRACE - 0.001 <= until <= after + DEFAULT_GRACE + 0.001

    second, before, after = rotate(graceSeconds=90)
    assert second["secret"] not in (made["secret"], first["secret"])
    assert before + 90 - 0.001 <= _epoch(second["previousSecretUntil"]) <= after + 90 + 0.001

    view = listed(c)[0]
    assert view["previousSecretUntil"] == second["previousSecretUntil"]
    assert "secret" not in view

    path = f"/webhooks/{made['id']}/rotate-secret"
    for bad in (-1, MAX_GRACE + 1, "60", True, [60]):
        details = refused(c.post(path, json={"graceSeconds": bad}), "graceSeconds")
        assert details["value"] == bad
    refused(c.post(path, json=[60]), "body")
    refused(c.post(path, content=b"{not json"), "body")
    assert listed(c)[0] == view  # a refused rotation changed nothing


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def test_an_unknown_id_or_method_is_refused(
    service: Service, api: Api, subtests: pytest.Subtests
) -> None:
    c = api(new_key(service))
    for endpoint_id in ("999999", "0", "-1", "abc", "1.0", "9" * 40):
        with subtests.test(endpoint_id=endpoint_id):
            error(c.delete(f"/webhooks/{endpoint_id}"), 404, "NOT_FOUND")
            error(c.post(f"/webhooks/{endpoint_id}/rotate-secret", json={}), 404, "NOT_FOUND")
    # A wrong method is answered with every method of the path (one route each).
    response = c.put("/webhooks", json={"url": PUBLIC_URL})
    error(response, 405, "METHOD_NOT_ALLOWED")
    assert {"GET", "POST"} <= set(response.headers["allow"].replace(" ", "").split(","))
    assert listed(c) == []


# -- the OpenAPI document --------------------------------------------------------------------

OPERATIONS = {
    ("GET", "/v3/webhooks"): "listWebhooks",
    ("POST", "/v3/webhooks"): "createWebhook",
    ("DELETE", "/v3/webhooks/{id}"): "deleteWebhook",
    ("POST", "/v3/webhooks/{id}/rotate-secret"): "rotateWebhookSecret",
}
HEADERS = {"webhook-id", "webhook-timestamp", "webhook-signature"}


def document_of(svc: Service) -> dict[str, Any]:
    document: dict[str, Any] = httpx.get(f"{svc.base_url}/openapi.json", timeout=10).json()
    return document


def test_the_document_marks_the_webhooks_as_an_extension(service: Service) -> None:
    document = document_of(service)
    tagged, marked = {}, set()
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if "webhooks" in operation["tags"]:
                tagged[(method.upper(), path)] = operation["operationId"]
            if operation.get(EXTENSION):
                marked.add((method.upper(), path))
    # The four operations, and only they, are tagged and marked as not OneClickDZ's.
    assert tagged == OPERATIONS
    assert marked == set(OPERATIONS)
    tags = {tag["name"]: tag["description"] for tag in document["tags"]}
    assert "not in OneClickDZ's real API" in tags["webhooks"]
    # The webhooks it sends: one per event type, signed with the Standard Webhooks headers.
    assert set(document["webhooks"]) == set(EVENT_TYPES)
    for item in document["webhooks"].values():
        post = item["post"]
        assert post[EXTENSION] is True and post["tags"] == ["webhooks"]
        assert {p["name"] for p in post["parameters"] if p["in"] == "header"} == HEADERS
        schema = post["requestBody"]["content"]["application/json"]["schema"]
        assert schema["allOf"][0] == {"$ref": "#/components/schemas/OrderEvent"}
    # The secret is in what create and rotate answer, never in the list.
    responses = {
        name: document["paths"][path][method.lower()]["responses"]["200"]["content"]
        for (method, path), name in OPERATIONS.items()
    }
    data = {
        name: content["application/json"]["schema"]["properties"]["data"]
        for name, content in responses.items()
    }
    assert "secret" in data["createWebhook"]["required"]
    assert "secret" in data["rotateWebhookSecret"]["required"]
    assert "secret" not in data["listWebhooks"]["items"]["properties"]
    assert "secret" not in data["deleteWebhook"]["properties"]


def fits(value: Any, schema: dict[str, Any]) -> None:
    """`value` has the keys a closed object schema requires, and no others, all the way down."""
    if schema.get("type") != "object":
        return
    assert isinstance(value, dict)
    assert set(schema["required"]) <= set(value) <= set(schema["properties"]), (value, schema)
    for name, item in value.items():
        fits(item, schema["properties"][name])


# -- an endpoint made through the API receives signed webhooks -------------------------------


def test_an_endpoint_made_through_the_api_receives_signed_webhooks(
    private_service: Service, receiver: Receiver
) -> None:
    svc = private_service
    with client(svc, new_key(svc)) as c, client(svc, new_key(svc)) as neighbour:
        made = create(c, receiver.url)
        removed = create(c, receiver.url + "/removed")
        ok(c.delete(f"/webhooks/{removed['id']}"))
        create(neighbour, receiver.url + "/neighbour")  # another key's endpoint

        order_id = place(c)
        assert wait_final(c, order_id)["status"] == "FULFILLED"
        first = delivery(receiver, f"evt_{order_id}")
        event = Webhook(made["secret"]).verify(first.body, first.headers)
        fits(event, document_of(svc)["components"]["schemas"]["OrderEvent"])  # as documented
        assert event["type"] == "order.fulfilled"
        assert event["data"]["orderId"] == order_id
        assert event["data"]["status"] == "FULFILLED"
        assert first.path == "/hooks"
        # Made in the transaction that finalised the order: one delivery, to this endpoint only
        # (not the removed one, nor the other key's).
        rows = query(svc, "SELECT endpoint_id FROM webhook_deliveries WHERE event_id = ?",
                     [f"evt_{order_id}"])  # fmt: skip
        assert rows == [(made["id"],)]

        # Rotated with a grace period: both secrets sign.
        rotated = ok(c.post(f"/webhooks/{made['id']}/rotate-secret", json={"graceSeconds": 600}))
        order_id = place(c)
        wait_final(c, order_id)
        second = delivery(receiver, f"evt_{order_id}")
        for secret in (rotated["secret"], made["secret"]):
            assert (
                Webhook(secret).verify(second.body, second.headers)["data"]["orderId"] == order_id
            )
        assert len(second.headers["webhook-signature"].split()) == 2

        # Rotated without one: only the newest secret signs.
        newest = ok(c.post(f"/webhooks/{made['id']}/rotate-secret", json={"graceSeconds": 0}))
        order_id = place(c, type_id="TEST_REFUND")
        assert wait_final(c, order_id)["status"] == "REFUNDED"
        third = delivery(receiver, f"evt_{order_id}")
        assert Webhook(newest["secret"]).verify(third.body, third.headers)["type"] == (
            "order.refunded"
        )
        for stale in (rotated["secret"], made["secret"]):
            with pytest.raises(WebhookVerificationError):
                Webhook(stale).verify(third.body, third.headers)
        assert all(r.path == "/hooks" for r in receiver.received)
