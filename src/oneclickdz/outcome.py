"""The outcome of a final order: what was delivered, what it cost, what came back.

`Outcome.from_order` checks the invariants of each final status before it hands anything out:

    FULFILLED         fulfilled_quantity == quantity == len(cards)
    PARTIALLY_FILLED  0 < fulfilled_quantity < quantity, len(cards) == fulfilled_quantity
    REFUNDED          fulfilled_quantity == 0, no cards

and, for all three, fulfilled_amount == fulfilled_quantity * price_per_card, every card has a
code, and no code appears twice. An order that breaks one raises `InconsistentOrderError`: a card
is never dropped or invented, an amount never guessed.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from .errors import InconsistentOrderError
from .models import Card, Order, OrderStatus

__all__ = ["Outcome"]


@dataclass(frozen=True, slots=True)
class Outcome:
    """A final order, checked and accounted for. Its repr shows no card code."""

    order: Order
    status: OrderStatus
    cards: tuple[Card, ...]
    amount_charged: Decimal
    amount_refunded: Decimal

    @property
    def order_id(self) -> str:
        return self.order.id

    @property
    def quantity(self) -> int:
        return self.order.quantity

    @property
    def delivered(self) -> int:
        """How many cards were delivered."""
        return len(self.cards)

    @property
    def price_per_card(self) -> Decimal:
        return self.order.price_per_card or Decimal(0)

    @property
    def summary(self) -> str:
        """One line for a log or a receipt, without any code: id, status, cards, charge, refund."""
        return (
            f"order {self.order.id} {self.status.value}: {self.delivered}/{self.quantity} cards "
            f"delivered, charged {_money(self.amount_charged)} DZD, "
            f"refunded {_money(self.amount_refunded)} DZD"
        )

    def __str__(self) -> str:
        return self.summary

    @classmethod
    def from_order(cls, order: Order) -> Outcome:
        """Check a final order's invariants and account for it; raise InconsistentOrderError."""
        if not order.is_final:
            raise ValueError(f"order {order.id} is {order.status}, not final: wait for it first")
        status = OrderStatus(order.status)
        fulfilled, price, amount = (
            order.fulfilled_quantity,
            order.price_per_card,
            order.fulfilled_amount,
        )
        if fulfilled is None or price is None or amount is None:
            missing = [
                name
                for name, value in (
                    ("fulfilled_quantity", fulfilled),
                    ("price_per_card", price),
                    ("fulfilled_amount", amount),
                )
                if value is None
            ]
            raise InconsistentOrderError(order, f"a final order lacks {', '.join(missing)}")
        cards = order.cards
        _check_counts(order, status, fulfilled, len(cards))
        if price < 0:
            raise InconsistentOrderError(order, f"price_per_card {price} is negative")
        if amount != fulfilled * price:
            raise InconsistentOrderError(
                order,
                f"fulfilled_amount {amount} != fulfilled_quantity {fulfilled} x "
                f"price_per_card {price}",
            )
        if any(not card.value for card in cards):
            raise InconsistentOrderError(order, "a delivered card has no code")
        if len({card.value for card in cards}) != len(cards):
            raise InconsistentOrderError(order, "the same card code is delivered twice")
        refunded = (order.quantity - fulfilled) * price
        return cls(order, status, cards, amount, refunded)


def _check_counts(order: Order, status: OrderStatus, fulfilled: int, n_cards: int) -> None:
    quantity = order.quantity
    if status is OrderStatus.FULFILLED:
        ok = fulfilled == quantity == n_cards
        rule = "fulfilled_quantity == quantity == number of cards"
    elif status is OrderStatus.PARTIALLY_FILLED:
        ok = 0 < fulfilled < quantity and n_cards == fulfilled
        rule = "0 < fulfilled_quantity < quantity and number of cards == fulfilled_quantity"
    else:
        ok = fulfilled == 0 and n_cards == 0
        rule = "nothing delivered"
    if not ok:
        raise InconsistentOrderError(
            order,
            f"expected {rule}; got quantity {quantity}, fulfilled_quantity {fulfilled}, "
            f"{n_cards} card(s)",
        )


def _money(value: Decimal) -> str:
    return f"{value:.2f}"
