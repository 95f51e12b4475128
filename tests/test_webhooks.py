"""`oneclickdz.webhooks.verify`: Standard Webhooks signatures, checked as the specification and
its own library check them, and the order event read from a verified body."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import time
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from standardwebhooks.webhooks import Webhook

from oneclickdz import OneClickDZError
from oneclickdz.models import OrderStatus
from oneclickdz.webhooks import WebhookVerificationError, verify

SECRET = "whsec_" + base64.b64encode(os.urandom(24)).decode()
OTHER = "whsec_" + base64.b64encode(os.urandom(24)).decode()
EVENT = {
    "type": "order.partially_filled",
    "timestamp": "2026-11-27T10:00:05.120Z",
    "data": {
        "orderId": "6b09f2750c3c3bfadeb5f2c0",
        "orderRef": "cart-42",
        "status": "PARTIALLY_FILLED",
        "quantity": 4,
        "fulfilled_quantity": 2,
        "price_per_card": 490,
        "amount_charged": 980,
        "amount_refunded": 980,
        "time": "2026-11-27T10:00:00.000Z",
    },
}


def signed(
    body: bytes, secret: str = SECRET, msg_id: str = "evt_1", at: float | None = None
) -> dict[str, str]:
    """Headers as a Standard Webhooks sender writes them, signed by the library itself."""
    stamp = datetime.fromtimestamp(time.time() if at is None else at, tz=UTC)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(stamp.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, stamp, body.decode()),
    }


def by_hand(body: bytes, secret: str, msg_id: str, stamp: int) -> str:
    """The specification's signature, computed without the library."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    digest = hmac.new(key, f"{msg_id}.{stamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


BODY = json.dumps(EVENT).encode()


def test_a_webhook_signed_by_the_library_is_read_as_a_typed_event() -> None:
    event = verify(BODY, signed(BODY, msg_id="evt_42"), SECRET)
    assert event.id == "evt_42"  # the deduplication key
    assert event.type == "order.partially_filled"
    data = event.data
    assert (data.order_id, data.ref, data.status) == (
        "6b09f2750c3c3bfadeb5f2c0",
        "cart-42",
        OrderStatus.PARTIALLY_FILLED,
    )
    assert (data.quantity, data.fulfilled_quantity) == (4, 2)
    assert (data.price_per_card, data.amount_charged, data.amount_refunded) == (
        Decimal(490),
        Decimal(980),
        Decimal(980),
    )
    assert data.time == datetime(2026, 11, 27, 10, 0, tzinfo=UTC)


def test_a_signature_computed_from_the_specification_verifies_and_matches_the_library() -> None:
    stamp = int(time.time())
    signature = by_hand(BODY, SECRET, "evt_7", stamp)
    moment = datetime.fromtimestamp(stamp, tz=UTC)
    assert signature == Webhook(SECRET).sign("evt_7", moment, BODY.decode())  # byte for byte
    decoy = "v1," + base64.b64encode(b"x" * 32).decode()
    headers = {"Webhook-Id": "evt_7", "Webhook-Timestamp": str(stamp),
               "Webhook-Signature": f"{decoy} {signature}"}  # fmt: skip
    assert verify(BODY, headers, SECRET).id == "evt_7"  # any header case; any of several sigs


def test_during_a_rotation_either_secret_is_accepted() -> None:
    assert verify(BODY, signed(BODY, secret=OTHER), [SECRET, OTHER]).type == EVENT["type"]
    with pytest.raises(WebhookVerificationError, match="no matching signature"):
        verify(BODY, signed(BODY, secret=OTHER), [SECRET])


@pytest.mark.parametrize(
    "spoil",
    [
        pytest.param(lambda h, b: ({**h}, b + b" "), id="body-changed"),
        pytest.param(lambda h, b: ({**h, "webhook-id": "evt_2"}, b), id="id-changed"),
        pytest.param(
            lambda h, b: ({**h, "webhook-timestamp": str(int(h["webhook-timestamp"]) + 1)}, b),
            id="timestamp-changed",
        ),
        pytest.param(lambda h, b: (signed(b, secret=OTHER), b), id="other-secret"),
    ],
)
def test_a_forged_or_altered_webhook_is_refused(spoil: object) -> None:
    headers, body = spoil(signed(BODY), BODY)  # type: ignore[operator]
    with pytest.raises(WebhookVerificationError, match="no matching signature"):
        verify(body, headers, SECRET)


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_a_missing_header_is_refused(missing: str) -> None:
    headers = signed(BODY)
    del headers[missing]
    with pytest.raises(WebhookVerificationError, match="Missing required headers"):
        verify(BODY, headers, SECRET)


@pytest.mark.parametrize("offset", [-301.0, 301.0])
def test_a_timestamp_outside_five_minutes_is_refused_even_when_signed(offset: float) -> None:
    headers = signed(BODY, at=time.time() + offset)  # a replay, or a clock far ahead
    with pytest.raises(WebhookVerificationError, match="timestamp too"):
        verify(BODY, headers, [OTHER, SECRET])


def test_a_timestamp_within_the_tolerance_is_accepted() -> None:
    assert verify(BODY, signed(BODY, at=time.time() - 240), SECRET).id == "evt_1"


@pytest.mark.parametrize("signature", ["v1", "v1,not base64!", "garbage", "v1,,", "v2,abc"])
def test_a_malformed_signature_header_is_refused(signature: str) -> None:
    headers = {**signed(BODY), "webhook-signature": signature}
    with pytest.raises(WebhookVerificationError):
        verify(BODY, headers, SECRET)


@pytest.mark.parametrize(
    "document",
    [
        b"not json",
        b"[1, 2]",
        json.dumps({**EVENT, "type": "order.placed"}).encode(),
        json.dumps({**EVENT, "data": {**EVENT["data"], "status": None}}).encode(),  # type: ignore[dict-item]
        json.dumps({"type": "order.refunded"}).encode(),
    ],
)
def test_a_signed_body_that_is_not_an_order_event_is_refused(document: bytes) -> None:
    with pytest.raises(WebhookVerificationError, match="not an order event"):
        verify(document, signed(document), SECRET)


def test_refusals_are_sdk_errors_that_never_show_the_secret_or_the_body() -> None:
    with pytest.raises(OneClickDZError) as caught:
        verify(BODY, signed(BODY, secret=OTHER), [SECRET])
    message = str(caught.value)
    assert SECRET not in message and OTHER not in message and "cart-42" not in message
    with pytest.raises(ValueError, match="at least one webhook secret"):
        verify(BODY, signed(BODY), [])
