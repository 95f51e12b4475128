"""What the tracker remembers about one order, and what it hands to the merchant's handler.

An order's life, each step written down before the next one starts:

    intent ──► sent ──► placed ──► final ──► delivered
      │          │         │          └────► delivery_failed   (handler kept failing; retry)
      │          └──► uncertain ─┘  (answer lost: the same ref is sent again)
      └──► rejected          (the API refused the placement: nothing was bought)
    needs_operator           (cannot be resolved automatically: never placed blindly again)

`stuck` is a flag beside the state: a placed order past its deadline, still followed, slowly.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from oneclickdz._redact import mask
from oneclickdz.models import Card

__all__ = ["Delivery", "IntentSpec", "State", "TrackedOrder"]

MetaValue = str | int | float | bool | None


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

    @property
    def to_place(self) -> bool:
        """Not placed yet, or not known to be: the ref is (re)sent."""
        return self in _TO_PLACE

    @property
    def settled(self) -> bool:
        """Nothing more happens to it unless someone acts (retry, operator)."""
        return self in _SETTLED


_TO_PLACE = frozenset({State.INTENT, State.SENT, State.UNCERTAIN})
_SETTLED = frozenset({State.DELIVERED, State.DELIVERY_FAILED, State.NEEDS_OPERATOR, State.REJECTED})


@dataclass(frozen=True, slots=True)
class IntentSpec:
    """One purchase to make: what to buy and the merchant's own metadata for it."""

    product_id: str
    type_id: str
    quantity: int
    meta: Mapping[str, MetaValue] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("product_id", "type_id"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"{name} must be a non-empty string")
        if isinstance(self.quantity, bool) or not isinstance(self.quantity, int):
            raise ValueError("quantity must be an integer")
        if not 1 <= self.quantity <= 100:
            raise ValueError("quantity must be within 1..100")
        try:
            json.dumps(dict(self.meta))
        except (TypeError, ValueError):
            raise ValueError("meta must be a JSON object of plain values") from None


@dataclass(slots=True)
class TrackedOrder:
    """One row of the tracker's store. Times are wall-clock seconds since the epoch (UTC).

    `sealed_cards` is the AES-256-GCM ciphertext of the delivered cards: the codes are never held
    here in clear (`Tracker.reveal` opens them).
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
    """What the merchant's handler receives for one final order. The repr masks the codes."""

    delivery_key: str
    intent_id: str
    order_id: str
    status: str
    quantity: int
    delivered: int
    price_per_card: Decimal
    amount_charged: Decimal
    amount_refunded: Decimal
    meta: Mapping[str, MetaValue]
    cards: tuple[Card, ...]

    def __repr__(self) -> str:
        cards = ", ".join(f"{mask(c.value)}" for c in self.cards)
        return (
            f"Delivery(delivery_key={self.delivery_key!r}, order_id={self.order_id!r}, "
            f"status={self.status!r}, delivered={self.delivered}/{self.quantity}, "
            f"cards=[{cards}])"
        )

    def to_json(self) -> dict[str, Any]:
        """The document `track run --deliver-exec` writes on the command's stdin: cards in clear."""
        return {
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


def _money(value: Decimal | None) -> str | None:
    return None if value is None else f"{value:.2f}"


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
