"""Typed models of mobile top-ups and internet recharges, tolerant of the documented variants.

As in `models`: snake_case names with the wire's spellings as aliases (`_id`, `MSSIDN`,
`topupId`, ...), unknown fields kept, amounts `Decimal` read from the JSON text, an internet
top-up's `card_code` masked in every repr. A status this SDK does not know is kept as its string
and is not final. Each kind's final states are the documented ones:

    mobile    FULFILLED, REFUNDED, UNKNOWN_ERROR (resolved by hand later; never a refund)
    internet  FULFILLED, REFUNDED, QUEUED (processed within 12-48 h; still to be followed)
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

from pydantic import Field, model_validator

from ._redact import mask
from .models import APIModel, _names

__all__ = [
    "INTERNET_FINAL_STATES",
    "MOBILE_FINAL_STATES",
    "InternetProduct",
    "InternetProducts",
    "InternetTopup",
    "InternetTopupRequest",
    "InternetTopupStatus",
    "MobilePlan",
    "MobilePlans",
    "MobileTopup",
    "MobileTopupRequest",
    "MobileTopupStatus",
    "NumberCheck",
    "SuggestedOffer",
    "TopupSent",
]


class MobileTopupStatus(enum.StrEnum):
    """The documented states of a mobile top-up: PENDING (2-15 s), HANDLING (3-8 s), then final."""

    PENDING = "PENDING"
    HANDLING = "HANDLING"
    FULFILLED = "FULFILLED"
    REFUNDED = "REFUNDED"
    UNKNOWN_ERROR = "UNKNOWN_ERROR"

    @property
    def is_final(self) -> bool:
        return self in MOBILE_FINAL_STATES


class InternetTopupStatus(enum.StrEnum):
    """The documented states of an internet recharge: HANDLING (3-45 s), then final."""

    HANDLING = "HANDLING"
    FULFILLED = "FULFILLED"
    REFUNDED = "REFUNDED"
    QUEUED = "QUEUED"

    @property
    def is_final(self) -> bool:
        return self in INTERNET_FINAL_STATES


MOBILE_FINAL_STATES = frozenset(
    {MobileTopupStatus.FULFILLED, MobileTopupStatus.REFUNDED, MobileTopupStatus.UNKNOWN_ERROR}
)
INTERNET_FINAL_STATES = frozenset(
    {InternetTopupStatus.FULFILLED, InternetTopupStatus.REFUNDED, InternetTopupStatus.QUEUED}
)

MobileStatus = Annotated[MobileTopupStatus | str, Field(union_mode="left_to_right")]
InternetStatus = Annotated[InternetTopupStatus | str, Field(union_mode="left_to_right")]


# --------------------------------------------------------------------------- mobile


class MobilePlan(APIModel):
    """A mobile plan: dynamic (any amount within min..max) or fixed (one `amount`).

    `cost` is a multiplier of the face value (0.98: 1000 DZD costs 980); the documentation shows a
    plan without one, so it may be None. `is_enabled` false means temporarily disabled.
    """

    code: str
    name: str | None = None
    operator: str | None = None
    cost: Decimal | None = None
    is_enabled: bool = Field(True, validation_alias=_names("isEnabled", "is_enabled"))
    min_amount: Decimal | None = Field(None, validation_alias=_names("min_amount", "minAmount"))
    max_amount: Decimal | None = Field(None, validation_alias=_names("max_amount", "maxAmount"))
    amount: Decimal | None = None

    @property
    def is_dynamic(self) -> bool:
        """A dynamic plan takes the amount from the caller; a fixed plan has its own."""
        return self.amount is None

    def accepts(self, amount: int | Decimal) -> bool:
        """Whether a dynamic plan takes this amount (within min..max); a fixed plan ignores it."""
        if not self.is_dynamic:
            return True
        low, high = self.min_amount, self.max_amount
        return (low is None or amount >= low) and (high is None or amount <= high)


class MobilePlans(APIModel):
    """The plans answer: dynamic and fixed plans (stable: cache them, refresh daily)."""

    dynamic_plans: tuple[MobilePlan, ...] = Field(
        (), validation_alias=_names("dynamicPlans", "dynamic_plans")
    )
    fixed_plans: tuple[MobilePlan, ...] = Field(
        (), validation_alias=_names("fixedPlans", "fixed_plans")
    )

    def all(self) -> Iterator[MobilePlan]:
        """Every plan, dynamic first."""
        yield from self.dynamic_plans
        yield from self.fixed_plans

    def get(self, code: str) -> MobilePlan | None:
        """The plan with this code, or None."""
        return next((plan for plan in self.all() if plan.code == code), None)


class SuggestedOffer(APIModel):
    """An offer the operator suggests when the plan sent does not suit the number."""

    plan_code: str
    typename: str | None = None
    amount: Decimal | None = None


class MobileTopup(APIModel):
    """A mobile top-up as check-id, check-ref and list return it.

    `balance_amount` is what the top-up takes from the balance: 0 once REFUNDED. `refund_message`
    (Arabic) comes with REFUNDED and UNKNOWN_ERROR; `suggested_offers` when the operator has some.
    """

    id: str = Field(validation_alias=_names("_id", "id", "topupId"))
    status: MobileStatus
    plan_code: str
    msisdn: str = Field(validation_alias=_names("MSSIDN", "msisdn", "MSISDN"))
    topup_amount: Decimal
    balance_amount: Decimal
    ref: str | None = Field(None, validation_alias=_names("ref", "topupRef"))
    created_at: datetime | None = None
    refund_message: str | None = None
    suggested_offers: tuple[SuggestedOffer, ...] = ()
    follow_orderid: str | None = None
    retry_orderid: str | None = None

    @property
    def is_final(self) -> bool:
        """True for FULFILLED, REFUNDED and UNKNOWN_ERROR; false for the rest and unknowns."""
        return isinstance(self.status, MobileTopupStatus) and self.status.is_final

    @property
    def has_known_status(self) -> bool:
        return isinstance(self.status, MobileTopupStatus)


# --------------------------------------------------------------------------- internet


class InternetProduct(APIModel):
    """One denomination of ADSL or 4G credit: face `value`, your `cost` (both DZD), stock."""

    value: Decimal
    cost: Decimal
    available: bool = True


class InternetProducts(APIModel):
    """The products answer: `{type, products: [...]}`, or a bare list (another page's example)."""

    type: str | None = None
    products: tuple[InternetProduct, ...] = ()

    @model_validator(mode="before")
    @classmethod
    def _bare_list(cls, data: Any) -> Any:
        return {"products": data} if isinstance(data, list) else data

    def get(self, value: int | Decimal) -> InternetProduct | None:
        """The product of this face value, or None."""
        return next((p for p in self.products if p.value == value), None)


class NumberCheck(APIModel):
    """check-number's answer: the line's masked `ncli`, its `offre` (ADSL) and `type`
    ("ADSL", or "4GLTE" for a 4G number)."""

    ncli: str | None = None
    offre: str | None = None
    type: str | None = None


class InternetTopup(APIModel):
    """An internet recharge as check-id, check-ref and list return it.

    A FULFILLED one carries the recharge card: `card_code` (a secret, masked in the repr),
    `num_trans` (Algérie Télécom's transaction number) and `date_traitement`. `balance_amount` is
    this service's addition (absent from the documentation's examples).
    """

    id: str = Field(validation_alias=_names("_id", "id", "topupId"))
    status: InternetStatus
    type: str | None = None
    number: str | None = None
    topup_amount: Decimal | None = None
    balance_amount: Decimal | None = None
    ref: str | None = Field(None, validation_alias=_names("ref", "topupRef"))
    created_at: datetime | None = None
    card_code: str | None = None
    num_trans: str | None = None
    date_traitement: datetime | None = None

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        extra = self.model_extra or {}
        for name, value in super().__repr_args__():
            if name == "card_code" or (name in extra and value is not None):
                yield name, mask(None if value is None else str(value))
            else:
                yield name, value

    @property
    def is_final(self) -> bool:
        """True for FULFILLED, REFUNDED and QUEUED; false for HANDLING and unknowns."""
        return isinstance(self.status, InternetTopupStatus) and self.status.is_final

    @property
    def has_known_status(self) -> bool:
        return isinstance(self.status, InternetTopupStatus)


# --------------------------------------------------------------------------- sending


class TopupSent(APIModel):
    """A send's answer: the new top-up's id and its ref (the caller's, or the one the service
    made up). `recovered` is true when a retried send met DUPLICATED_REF and this is the top-up
    the earlier, unanswered attempt created. `new_balance` when the service reports it."""

    topup_id: str = Field(validation_alias=_names("topupId", "_id", "id"))
    topup_ref: str | None = Field(None, validation_alias=_names("topupRef", "ref"))
    new_balance: Decimal | None = Field(None, validation_alias=_names("newBalance", "new_balance"))
    recovered: bool = False
    request_id: str | None = Field(None, validation_alias=_names("requestId", "request_id"))


@dataclass(frozen=True, slots=True)
class MobileTopupRequest:
    """What mobile/send sends; kept on PlacementUnknownError so the caller can reconcile."""

    plan_code: str
    msisdn: str
    amount: int | None = None
    ref: str | None = None

    @property
    def operation(self) -> str:
        return "mobile/send"

    @property
    def listing(self) -> str:
        return "client.mobile.list()"

    def describe(self) -> str:
        amount = "" if self.amount is None else f", amount {self.amount}"
        return f"a mobile top-up (plan {self.plan_code}{amount})"

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"plan_code": self.plan_code, "MSSIDN": self.msisdn}
        if self.amount is not None:
            body["amount"] = self.amount
        if self.ref is not None:
            body["ref"] = self.ref
        return body


@dataclass(frozen=True, slots=True)
class InternetTopupRequest:
    """What internet/send sends; kept on PlacementUnknownError so the caller can reconcile."""

    type: str
    number: str
    value: int
    ref: str | None = None

    @property
    def operation(self) -> str:
        return "internet/send"

    @property
    def listing(self) -> str:
        return "client.internet.list()"

    def describe(self) -> str:
        return f"an internet top-up ({self.type}, value {self.value})"

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"type": self.type, "number": self.number, "value": self.value}
        if self.ref is not None:
            body["ref"] = self.ref
        return body
