"""The outcome of a final top-up: delivered or not, what it cost, what came back, what is left.

`TopupOutcome.from_topup` checks the invariants of each final status before it hands anything out:

    every final status  topup_amount > 0, no negative amount
    FULFILLED           internet: a card code
    REFUNDED            balance_amount 0 (when given); internet: no card code
    UNKNOWN_ERROR       (mobile) still charged, refunded 0: it waits for a manual resolution
    QUEUED              (internet) still charged, no card code yet: follow it (12-48 h)

A top-up that breaks one raises `InconsistentOrderError`. An amount is never guessed: a REFUNDED
top-up's view shows 0, so its refund is known only from an earlier check (`debited`), else None.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import NoReturn, TypeVar

from ._redact import mask
from .errors import InconsistentOrderError
from .topup_models import InternetTopup, InternetTopupStatus, MobileTopup, MobileTopupStatus

__all__ = ["DebitWatch", "TopupOutcome"]

Topup = MobileTopup | InternetTopup
U = TypeVar("U", MobileTopup, InternetTopup)
R = TypeVar("R")
ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class TopupOutcome:
    """A final top-up, checked and accounted for. Its repr masks the card code.

    `amount_charged` is what it costs in the end (None when the service does not say);
    `amount_refunded` what came back (None: refunded in full, by an amount no check showed).
    """

    topup: Topup
    status: MobileTopupStatus | InternetTopupStatus
    amount_charged: Decimal | None
    amount_refunded: Decimal | None

    @property
    def kind(self) -> str:
        """Which kind of top-up: `mobile` or `internet`."""
        return "mobile" if isinstance(self.topup, MobileTopup) else "internet"

    @property
    def topup_id(self) -> str:
        return self.topup.id

    @property
    def ref(self) -> str | None:
        return self.topup.ref

    @property
    def delivered(self) -> bool:
        """The credit reached the number (FULFILLED)."""
        return self.status.value == "FULFILLED"

    @property
    def refunded(self) -> bool:
        """The charge came back (REFUNDED); never true for UNKNOWN_ERROR."""
        return self.status.value == "REFUNDED"

    @property
    def needs_resolution(self) -> bool:
        """UNKNOWN_ERROR: final for polling, but an operator resolves it later (1-24 h) to
        FULFILLED or REFUNDED. Neither deliver nor refund on it: recheck it daily."""
        return self.status is MobileTopupStatus.UNKNOWN_ERROR

    @property
    def queued(self) -> bool:
        """QUEUED: final for polling, processed within 12-48 h; recheck after 24 h."""
        return self.status is InternetTopupStatus.QUEUED

    @property
    def card_code(self) -> str | None:
        """The internet recharge card's code once FULFILLED (a secret: never log it)."""
        return self.topup.card_code if isinstance(self.topup, InternetTopup) else None

    @property
    def summary(self) -> str:
        """One line for a log or a receipt, without any code."""
        head = f"{self.kind} top-up {self.topup.id} {self.status.value}"
        if self.needs_resolution:
            what = "needs resolution"
        elif self.queued:
            what = "queued (12-48 h)"
        elif self.delivered:
            what = f"{_money(self.topup.topup_amount)} DZD delivered"
        else:
            what = "nothing delivered"
        charged = (
            "charge not reported"
            if self.amount_charged is None
            else f"charged {_money(self.amount_charged)} DZD"
        )
        refunded = (
            "refunded in full (amount not shown)"
            if self.amount_refunded is None
            else f"refunded {_money(self.amount_refunded)} DZD"
        )
        return f"{head}: {what}, {charged}, {refunded}"

    def __str__(self) -> str:
        return self.summary

    def __repr__(self) -> str:
        return (
            f"TopupOutcome(kind={self.kind!r}, topup_id={self.topup.id!r}, "
            f"status={self.status.value!r}, amount_charged={self.amount_charged!r}, "
            f"amount_refunded={self.amount_refunded!r}, card_code={mask(self.card_code)!r})"
        )

    @classmethod
    def from_topup(cls, topup: Topup, debited: Decimal | None = None) -> TopupOutcome:
        """Check a final top-up's invariants and account for it; raise InconsistentOrderError.

        `debited` is what an earlier check showed taken from the balance (see `DebitWatch`): the
        refund of a REFUNDED top-up, whose own view shows 0.
        """
        if not topup.is_final:
            raise ValueError(f"top-up {topup.id} is {topup.status}, not final: wait for it first")
        status = _status(topup)
        balance, face = topup.balance_amount, topup.topup_amount
        if face is not None and face <= 0:
            _broken(topup, f"topup_amount {face} is not positive")
        if balance is not None and balance < 0:
            _broken(topup, f"balance_amount {balance} is negative")
        has_card = bool(topup.card_code) if isinstance(topup, InternetTopup) else False
        if status is InternetTopupStatus.FULFILLED and not has_card:
            _broken(topup, "a FULFILLED internet top-up has no card code")
        if status.value != "FULFILLED" and has_card:
            _broken(topup, "only a FULFILLED top-up carries a card code")
        if status.value == "REFUNDED":
            if balance not in (None, ZERO):
                _broken(topup, f"balance_amount is {balance}, not 0, once REFUNDED")
            return cls(topup, status, ZERO, debited)
        return cls(topup, status, balance, ZERO)


class DebitWatch:
    """Remembers what a top-up's checks showed taken from the balance while it was not refunded,
    so that a REFUNDED outcome knows its refund: pass `see` as a wait's on_update."""

    def __init__(self) -> None:
        self.debited: Decimal | None = None

    def see(self, topup: Topup) -> None:
        if topup.balance_amount and topup.status != "REFUNDED":
            self.debited = topup.balance_amount

    def before(self, on_update: Callable[[U], R] | None) -> Callable[[U], R | None]:
        """A wait's on_update that sees each state, then hands it to `on_update` (if any) and
        returns what that returns (an awaitable, for an async wait to await)."""

        def seen(topup: U) -> R | None:
            self.see(topup)
            return None if on_update is None else on_update(topup)

        return seen


def _status(topup: Topup) -> MobileTopupStatus | InternetTopupStatus:
    if isinstance(topup, MobileTopup):
        return MobileTopupStatus(topup.status)
    return InternetTopupStatus(topup.status)


def _broken(topup: Topup, problem: str) -> NoReturn:
    raise InconsistentOrderError(topup, problem, noun="top-up")


def _money(value: Decimal | None) -> str:
    return "?" if value is None else f"{value:.2f}"
