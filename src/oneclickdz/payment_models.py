"""Typed models of OCPay payment links, tolerant of the documented variants.

The documentation's examples and the official OCPay SDK spell a link differently (`ref`/`time`/
`uid` against `paymentRef`/`createdAt`), and a payment's details differently (`currency`/
`createdDate` against `transactionRef`/`fee`/`netAmount`/`completedAt`): both are read.
"""

from __future__ import annotations

import enum
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

from pydantic import Field, model_validator

from .models import APIModel, _names

__all__ = [
    "PAYMENT_FINAL_STATES",
    "FeeMode",
    "Payment",
    "PaymentLink",
    "PaymentStatus",
    "ProductInfo",
    "TransactionDetails",
]


class FeeMode(enum.StrEnum):
    """Who pays the 1% fee: the merchant (NO_FEE), half each (SPLIT_FEE), the payer."""

    NO_FEE = "NO_FEE"
    SPLIT_FEE = "SPLIT_FEE"
    CUSTOMER_FEE = "CUSTOMER_FEE"


class PaymentStatus(enum.StrEnum):
    """A link's payment: PENDING until the payer pays (CONFIRMED) or it fails (FAILED)."""

    PENDING = "PENDING"
    CONFIRMED = "CONFIRMED"
    FAILED = "FAILED"

    @property
    def is_final(self) -> bool:
        return self in PAYMENT_FINAL_STATES


PAYMENT_FINAL_STATES = frozenset({PaymentStatus.CONFIRMED, PaymentStatus.FAILED})


class ProductInfo(APIModel):
    """What the payer is asked to pay for: a title, a whole amount in DZD, a description."""

    title: str
    amount: Decimal
    description: str | None = None


class PaymentLink(APIModel):
    """createLink's answer, read from `data.paymentLink` with `data.paymentUrl` and
    `data.paymentRef` beside it (either place gives the ref and the URL)."""

    payment_ref: str = Field(validation_alias=_names("paymentRef", "ref"))
    payment_url: str = Field(validation_alias=_names("paymentUrl", "url"))
    product_info: ProductInfo | None = Field(
        None, validation_alias=_names("productInfo", "product_info")
    )
    fee_mode: Annotated[FeeMode | str, Field(union_mode="left_to_right")] = Field(
        FeeMode.NO_FEE, validation_alias=_names("feeMode", "fee_mode")
    )
    is_sandbox: bool | None = Field(None, validation_alias=_names("isSandbox", "is_sandbox"))
    created_at: datetime | None = Field(None, validation_alias=_names("createdAt", "time"))
    success_message: str | None = Field(
        None, validation_alias=_names("successMessage", "success_message")
    )
    redirect_url: str | None = Field(None, validation_alias=_names("redirectUrl", "redirect_url"))
    uid: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _unwrap(cls, data: Any) -> Any:
        """`{paymentLink: {...}, paymentUrl, paymentRef}` becomes one flat object."""
        if isinstance(data, dict) and isinstance(data.get("paymentLink"), dict):
            link = dict(data["paymentLink"])
            for key in ("paymentUrl", "paymentRef"):
                if key not in link and key in data:
                    link[key] = data[key]
            return link
        return data


class TransactionDetails(APIModel):
    """A confirmed payment's transaction: `amount` paid by the payer, the `fee`, the `net_amount`
    credited to the merchant (the OCPay SDK's fields); `currency`, `created_date` (the docs')."""

    amount: Decimal
    transaction_ref: str | None = Field(
        None, validation_alias=_names("transactionRef", "transaction_ref")
    )
    fee: Decimal | None = None
    net_amount: Decimal | None = Field(None, validation_alias=_names("netAmount", "net_amount"))
    payment_method: str | None = Field(
        None, validation_alias=_names("paymentMethod", "payment_method")
    )
    completed_at: datetime | None = Field(
        None, validation_alias=_names("completedAt", "completed_at")
    )
    currency: str = "DZD"
    is_sandbox: bool | None = Field(None, validation_alias=_names("isSandbox", "is_sandbox"))
    created_date: datetime | None = Field(
        None, validation_alias=_names("createdDate", "created_date")
    )


class Payment(APIModel):
    """checkPayment's answer: the status, a message, and the transaction once CONFIRMED."""

    payment_ref: str = Field(validation_alias=_names("paymentRef", "ref"))
    status: Annotated[PaymentStatus | str, Field(union_mode="left_to_right")]
    message: str | None = None
    transaction_details: TransactionDetails | None = Field(
        None, validation_alias=_names("transactionDetails", "transaction_details")
    )

    @property
    def id(self) -> str:
        """The payment's ref: what a wait and its messages name it by."""
        return self.payment_ref

    @property
    def is_final(self) -> bool:
        """True for CONFIRMED and FAILED; false for PENDING and unknowns."""
        return isinstance(self.status, PaymentStatus) and self.status.is_final

    @property
    def has_known_status(self) -> bool:
        return isinstance(self.status, PaymentStatus)

    @property
    def confirmed(self) -> bool:
        return self.status is PaymentStatus.CONFIRMED
