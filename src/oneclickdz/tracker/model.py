"""What the tracker remembers about one operation, and what it hands to the merchant's handler.

An operation is of a `Kind`: a gift-card order, a mobile top-up, an internet recharge or an
OCPay payment link. Its life, each step written down before the next one starts:

    intent ──► sent ──► placed ──► final ──► delivered
      │          │         │  ▲       └────► delivery_failed   (handler kept failing; retry)
      │          │         │  └── needs_resolution  (mobile UNKNOWN_ERROR: an operator of the
      │          │         │  └── queued             API settles it)  (internet QUEUED: 12-48 h)
      │          └──► uncertain ─┘  (answer lost: the same ref is sent again)
      └──► rejected          (the API refused the placement: nothing was bought)
    needs_operator           (cannot be resolved automatically: never placed blindly again)

`needs_resolution` and `queued` are final for polling but not for the merchant: the tracker
checks them on a slow schedule (`TrackerConfig.resolution_interval`, `queued_interval`) and
delivers them once, when they end FULFILLED or REFUNDED. An UNKNOWN_ERROR is never delivered as
a refund. A payment link has no ref of its own: its intent is written, the link created at once
(`Tracker.create_payment`), and its ref stored as `order_id`; it ends CONFIRMED or FAILED
(expired links too).

`stuck` is a flag beside the state: a placed order past its deadline, still followed, slowly.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, ClassVar

from oneclickdz._redact import mask
from oneclickdz.models import Card

__all__ = [
    "Delivery",
    "IntentSpec",
    "InternetSpec",
    "Kind",
    "MobileSpec",
    "PaymentSpec",
    "Spec",
    "State",
    "TrackedOrder",
]

MetaValue = str | int | float | bool | None


class Kind(enum.StrEnum):
    """What a tracked operation is: each kind has its own calls and final states."""

    GIFT_CARD = "gift_card"
    MOBILE = "mobile"
    INTERNET = "internet"
    PAYMENT = "payment"

    @property
    def is_topup(self) -> bool:
        return self in (Kind.MOBILE, Kind.INTERNET)


class State(enum.StrEnum):
    """Where a tracked order is in its life (see the module's diagram)."""

    INTENT = "intent"
    SENT = "sent"
    UNCERTAIN = "uncertain"
    PLACED = "placed"
    FINAL = "final"
    DELIVERED = "delivered"
    DELIVERY_FAILED = "delivery_failed"
    NEEDS_OPERATOR = "needs_operator"
    REJECTED = "rejected"
    NEEDS_RESOLUTION = "needs_resolution"  # a mobile top-up in UNKNOWN_ERROR
    QUEUED = "queued"  # an internet recharge QUEUED by the provider

    @property
    def to_place(self) -> bool:
        """Not placed yet, or not known to be: the ref is (re)sent."""
        return self in _TO_PLACE

    @property
    def followed(self) -> bool:
        """Its id is known and its checks go on: placed, or waiting slowly for its end."""
        return self in _FOLLOWED

    @property
    def slow(self) -> bool:
        """Final for polling, not yet for the merchant: checked on a slow schedule."""
        return self in _SLOW

    @property
    def settled(self) -> bool:
        """Nothing more happens to it unless someone acts (retry, operator)."""
        return self in _SETTLED


_TO_PLACE = frozenset({State.INTENT, State.SENT, State.UNCERTAIN})
_SETTLED = frozenset({State.DELIVERED, State.DELIVERY_FAILED, State.NEEDS_OPERATOR, State.REJECTED})
_SLOW = frozenset({State.NEEDS_RESOLUTION, State.QUEUED})
_FOLLOWED = _SLOW | {State.PLACED}


def _check_meta(meta: Mapping[str, MetaValue]) -> None:
    try:
        json.dumps(dict(meta))
    except (TypeError, ValueError):
        raise ValueError("meta must be a JSON object of plain values") from None


def _text(name: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} must be a non-empty string")
    return value


def _whole(name: str, value: object, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer")
    if value < low or (high is not None and value > high):
        raise ValueError(f"{name} must be within {low}..{high if high is not None else ''}")
    return value


@dataclass(frozen=True, slots=True)
class IntentSpec:
    """One purchase to make: what to buy and the merchant's own metadata for it."""

    product_id: str
    type_id: str
    quantity: int
    meta: Mapping[str, MetaValue] = field(default_factory=dict)

    kind: ClassVar[Kind] = Kind.GIFT_CARD

    def __post_init__(self) -> None:
        for name in ("product_id", "type_id"):
            _text(name, getattr(self, name))
        if isinstance(self.quantity, bool) or not isinstance(self.quantity, int):
            raise ValueError("quantity must be an integer")
        if not 1 <= self.quantity <= 100:
            raise ValueError("quantity must be within 1..100")
        _check_meta(self.meta)

    def params(self) -> dict[str, Any]:
        """What is sent besides the ref, beyond the order's own columns: nothing."""
        return {}


@dataclass(frozen=True, slots=True)
class MobileSpec:
    """One mobile top-up to send: a plan, a number (MSSIDN), an amount (dynamic plans)."""

    plan_code: str
    msisdn: str
    amount: int | None = None
    meta: Mapping[str, MetaValue] = field(default_factory=dict)

    kind: ClassVar[Kind] = Kind.MOBILE

    def __post_init__(self) -> None:
        _text("plan_code", self.plan_code)
        _text("msisdn", self.msisdn)
        if self.amount is not None:
            _whole("amount", self.amount, 1)
        _check_meta(self.meta)

    def params(self) -> dict[str, Any]:
        return {"plan_code": self.plan_code, "msisdn": self.msisdn, "amount": self.amount}


@dataclass(frozen=True, slots=True)
class InternetSpec:
    """One internet recharge to send: ADSL or 4G, the line's number, a product's value."""

    type: str
    number: str
    value: int
    meta: Mapping[str, MetaValue] = field(default_factory=dict)

    kind: ClassVar[Kind] = Kind.INTERNET

    def __post_init__(self) -> None:
        _text("type", self.type)
        _text("number", self.number)
        _whole("value", self.value, 1)
        _check_meta(self.meta)

    def params(self) -> dict[str, Any]:
        return {"type": self.type, "number": self.number, "value": self.value}


@dataclass(frozen=True, slots=True)
class PaymentSpec:
    """One OCPay payment link to create (amount in whole DZD, 500..500,000)."""

    title: str
    amount: int
    description: str | None = None
    fee_mode: str = "NO_FEE"
    success_message: str | None = None
    redirect_url: str | None = None
    meta: Mapping[str, MetaValue] = field(default_factory=dict)

    kind: ClassVar[Kind] = Kind.PAYMENT

    def __post_init__(self) -> None:
        _text("title", self.title)
        _whole("amount", self.amount, 500, 500_000)
        _text("fee_mode", self.fee_mode)
        _check_meta(self.meta)

    def params(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "amount": self.amount,
            "description": self.description,
            "fee_mode": str(self.fee_mode),
            "success_message": self.success_message,
            "redirect_url": self.redirect_url,
        }


# What `Tracker.place_many` writes (a payment link is created at once: `create_payment`).
Spec = IntentSpec | MobileSpec | InternetSpec


@dataclass(slots=True)
class TrackedOrder:
    """One row of the tracker's store. Times are wall-clock seconds since the epoch (UTC).

    `sealed_cards` is the AES-256-GCM ciphertext of the delivered cards (an internet recharge's
    card code too): the codes are never held here in clear (`Tracker.reveal` opens them).

    By kind: `order_id` is the order's id, the top-up's id, or the payment link's ref;
    `product_id`, `type_id` and `quantity` are a gift-card order's. `params` is what a top-up
    or a link was sent with (mobile: plan_code, msisdn, amount; internet: type, number, value;
    payment: title, amount, description, fee_mode, success_message, redirect_url); `details`
    what the API said of it that is not a secret (a link's payment_url, a refund message, a
    recharge's num_trans, a payment's transaction).
    """

    id: str
    ref: str | None
    product_id: str | None
    type_id: str | None
    quantity: int | None
    meta: dict[str, MetaValue]
    state: State
    created_at: float
    order_id: str | None = None
    order_time: float | None = None  # the API's creation time of the order, once seen
    status: str | None = None
    fulfilled_quantity: int | None = None
    price_per_card: Decimal | None = None
    amount_charged: Decimal | None = None
    amount_refunded: Decimal | None = None
    sealed_cards: bytes | None = None
    sent_at: float | None = None  # first time a placement request left
    placed_at: float | None = None  # when the order id became known (or adopted)
    final_at: float | None = None  # when the tracker saw it final
    delivered_at: float | None = None
    attempts: int = 0  # checks made (or placement attempts, while placing)
    started_at: float | None = None  # when the poll schedule began (wall clock)
    next_at: float = 0.0  # when the next step is due: a placement, a check or a delivery
    deadline: float | None = None
    stuck: bool = False
    delivery_attempts: int = 0
    last_error: str | None = None
    adopted: bool = False
    kind: Kind = Kind.GIFT_CARD
    params: dict[str, Any] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def payment_url(self) -> str | None:
        """A payment link's URL, to hand to the payer (None for other kinds)."""
        url = self.details.get("payment_url")
        return None if url is None else str(url)

    def requeue_for_delivery(self) -> None:
        """Back to FINAL, due now, with a fresh count of delivery attempts (`track retry`)."""
        self.state = State.FINAL
        self.delivery_attempts = 0
        self.next_at = 0.0
        self.last_error = None

    @property
    def delivery_key(self) -> str:
        """Stable across restarts and retries: the merchant's handler drops a repeat by it."""
        return f"dlv_{self.id}"

    def summary(self) -> dict[str, Any]:
        """Everything but the cards, JSON-ready (amounts as 2-decimal strings)."""
        return {
            "id": self.id,
            "kind": self.kind.value,
            "state": self.state.value,
            "stuck": self.stuck,
            "ref": self.ref,
            "order_id": self.order_id,
            "product_id": self.product_id,
            "type_id": self.type_id,
            "quantity": self.quantity,
            "status": self.status,
            "fulfilled_quantity": self.fulfilled_quantity,
            "price_per_card": _money(self.price_per_card),
            "amount_charged": _money(self.amount_charged),
            "amount_refunded": _money(self.amount_refunded),
            "meta": self.meta,
            "params": self.params,
            "details": self.details,
            "attempts": self.attempts,
            "delivery_attempts": self.delivery_attempts,
            "last_error": self.last_error,
            "adopted": self.adopted,
            "delivery_key": self.delivery_key,
            "created_at": _iso(self.created_at),
            "sent_at": _iso(self.sent_at),
            "placed_at": _iso(self.placed_at),
            "final_at": _iso(self.final_at),
            "delivered_at": _iso(self.delivered_at),
            "next_at": _iso(self.next_at) if not self.state.settled else None,
        }


@dataclass(frozen=True, slots=True)
class Delivery:
    """What the merchant's handler receives for one final operation. The repr masks the codes.

    `kind` says what it is; `status` is the API's final status: FULFILLED, PARTIALLY_FILLED or
    REFUNDED (gift cards), FULFILLED or REFUNDED (top-ups: an UNKNOWN_ERROR or a QUEUED one is
    delivered only once it ends in one of these), CONFIRMED or FAILED (payments; an expired
    link is FAILED with `details["expired"]`). `order_id` is the order's id, the top-up's id or
    the link's ref. `cards` are a gift-card order's cards, or an internet recharge's card (its
    `value` is the card code: `card_code`). `delivered` counts the cards; a top-up that reached
    its number, or a confirmed payment, counts 1. `amount_refunded` is None only for a top-up
    refunded in full by an amount no check showed. `params` is what was sent, `details` what
    the API said (no secret).
    """

    delivery_key: str
    intent_id: str
    order_id: str
    status: str
    quantity: int
    delivered: int
    price_per_card: Decimal
    amount_charged: Decimal
    amount_refunded: Decimal | None
    meta: Mapping[str, MetaValue]
    cards: tuple[Card, ...]
    kind: Kind = Kind.GIFT_CARD
    params: Mapping[str, Any] = field(default_factory=dict)
    details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def card_code(self) -> str | None:
        """An internet recharge's card code (a secret: never log it); None for other kinds."""
        if self.kind is Kind.INTERNET and self.cards:
            return self.cards[0].value
        return None

    @property
    def refunded(self) -> bool:
        """Nothing was delivered and the charge came back (never true for a payment)."""
        return self.status == "REFUNDED"

    @property
    def amount_received(self) -> Decimal:
        """A confirmed payment's net amount, credited to the merchant's balance (else 0)."""
        net = self.details.get("net_amount")
        return Decimal(str(net)) if net is not None else Decimal(0)

    def __repr__(self) -> str:
        cards = ", ".join(f"{mask(c.value)}" for c in self.cards)
        return (
            f"Delivery(kind={self.kind.value!r}, delivery_key={self.delivery_key!r}, "
            f"order_id={self.order_id!r}, status={self.status!r}, "
            f"delivered={self.delivered}/{self.quantity}, cards=[{cards}])"
        )

    def to_json(self) -> dict[str, Any]:
        """The document `track run --deliver-exec` writes on the command's stdin: cards in clear."""
        doc = {
            "kind": self.kind.value,
            "delivery_key": self.delivery_key,
            "intent_id": self.intent_id,
            "order_id": self.order_id,
            "status": self.status,
            "quantity": self.quantity,
            "delivered": self.delivered,
            "price_per_card": _money(self.price_per_card),
            "amount_charged": _money(self.amount_charged),
            "amount_refunded": _money(self.amount_refunded),
            "meta": dict(self.meta),
            "cards": [{"value": c.value, "serial": c.serial} for c in self.cards],
        }
        if self.kind is not Kind.GIFT_CARD:
            doc["params"] = dict(self.params)
            doc["details"] = dict(self.details)
        if self.kind is Kind.INTERNET:
            doc["card_code"] = self.card_code
        return doc


def _money(value: Decimal | None) -> str | None:
    return None if value is None else f"{value:.2f}"


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
