"""Signed order webhooks (Standard Webhooks): verify one, and read it as a typed event.

    from oneclickdz.webhooks import verify

    event = verify(request_body, request_headers, secret="whsec_…")  # or raises
    if event.type == "order.fulfilled":
        outcome = client.gift_cards.check_order(event.data.order_id)  # the cards come from here

A webhook says that an order turned final; it never carries card codes: fetch them with
`checkOrder`. The signature follows the Standard Webhooks specification (headers
`webhook-id`, `webhook-timestamp`, `webhook-signature`: `v1,` + base64 HMAC-SHA256 of
`id.timestamp.body` under the `whsec_…` secret; 5 minutes of tolerance on the timestamp) and is
checked by the `standardwebhooks` library itself, so any sender that follows the specification
interoperates. The event id (`webhook-id`) is the deduplication key: deliveries are at least once.
"""

from __future__ import annotations

import binascii
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Literal

from pydantic import AliasChoices, Field, ValidationError
from standardwebhooks.webhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError as _LibraryError

from .errors import OneClickDZError
from .models import APIModel, OrderStatus

__all__ = ["EVENT_TYPES", "OrderEvent", "OrderEventData", "WebhookVerificationError", "verify"]

EVENT_TYPES = ("order.fulfilled", "order.partially_filled", "order.refunded")
EventType = Literal["order.fulfilled", "order.partially_filled", "order.refunded"]


class WebhookVerificationError(OneClickDZError):
    """The webhook is not one to trust: a header is missing, no signature matches, the timestamp
    is outside the tolerance, or the body is not an order event. Answer it with a 4xx."""


class OrderEventData(APIModel):
    """The order an event is about, as it was when it turned final (amounts in DZD)."""

    order_id: str = Field(validation_alias=AliasChoices("orderId", "order_id"))
    ref: str | None = Field(default=None, validation_alias=AliasChoices("orderRef", "ref"))
    status: OrderStatus
    quantity: int
    fulfilled_quantity: int
    price_per_card: Decimal
    amount_charged: Decimal
    amount_refunded: Decimal
    time: datetime


class OrderEvent(APIModel):
    """One verified webhook: its id (`webhook-id`, the deduplication key), type and order."""

    id: str
    type: EventType
    timestamp: datetime
    data: OrderEventData


def verify(
    body: bytes | str, headers: Mapping[str, str], secret: str | Sequence[str]
) -> OrderEvent:
    """The event this webhook carries, once its signature, timestamp and shape check out; else
    `WebhookVerificationError`. `secret` may list several secrets (during a rotation both sign),
    and the webhook passes if any of them signed it."""
    secrets = [secret] if isinstance(secret, str) else list(secret)
    if not secrets:
        raise ValueError("give at least one webhook secret")
    lowered = {name.lower(): value for name, value in headers.items()}
    for candidate in secrets:
        try:
            Webhook(candidate).verify(body, lowered, json_parse=False)
        except _LibraryError as exc:
            reason = str(exc)
            if "signature" not in reason.lower():  # headers or timestamp: no secret helps
                raise WebhookVerificationError(f"webhook refused: {reason}") from None
            continue
        except (ValueError, binascii.Error, UnicodeDecodeError):  # a malformed signature
            raise WebhookVerificationError(
                "webhook refused: malformed webhook-signature header"
            ) from None
        break
    else:
        raise WebhookVerificationError("webhook refused: no matching signature")
    try:
        document = json.loads(body)
        if not isinstance(document, dict):
            raise TypeError("not an object")
        return OrderEvent.model_validate({**document, "id": lowered["webhook-id"]})
    except (ValueError, TypeError, ValidationError):
        raise WebhookVerificationError("webhook refused: the body is not an order event") from None
