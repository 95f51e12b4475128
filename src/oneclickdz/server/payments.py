"""OCPay payment links: a merchant creates one; the payer pays it or cancels it, once.

Plain functions of a `Tx`, like `orders`: run through `Store.write`, each is atomic. Paying and
cancelling lock the link's row first (`tx.payments.lock`), so of two payers racing on one link
the second finds it final and is refused: a link credits the merchant at most once.

Fees (ours; the docs say only "1% withdrawal fee"): the fee is 1% of the amount, rounded to the
centime (half up). NO_FEE: the payer pays the amount, the merchant nets amount - fee.
SPLIT_FEE: the payer pays amount + floor(fee / 2), the merchant bears the rest (an odd centime
included). CUSTOMER_FEE: the payer pays amount + fee, the merchant nets the amount. Always
paid - net = fee. The merchant's balance in the link's environment receives `net` (ledger
RECEIVE, objid = the link's ref).
"""

from __future__ import annotations

import re
import secrets
import string
from dataclasses import dataclass, replace
from enum import StrEnum

from oneclickdz.server import ledger
from oneclickdz.server.store import (
    EntryType,
    FeeMode,
    KeyRecord,
    PaymentLinkRecord,
    PaymentStatus,
    Tx,
)

FEE_BASIS_POINTS = 100  # 1% of the amount
METHODS = ("CIB", "EDAHABIA")  # the Algerian cards a payer chooses from
REF_PATTERN = re.compile(r"OCPL-[A-Z0-9]{6}-[A-Z0-9]{4}")
_REF_CHARS = string.ascii_uppercase + string.digits

PENDING = PaymentStatus.PENDING
CONFIRMED = PaymentStatus.CONFIRMED
FAILED = PaymentStatus.FAILED


@dataclass(frozen=True, slots=True)
class CreateLink:
    """A validated createLink request (amounts in centimes)."""

    title: str
    amount_cents: int
    description: str | None = None
    fee_mode: FeeMode = FeeMode.NO_FEE
    success_message: str | None = None
    redirect_url: str | None = None


@dataclass(frozen=True, slots=True)
class Charges:
    """What a payment moves: `paid` by the payer, `net` to the merchant, `fee` between them."""

    fee_cents: int
    paid_cents: int
    net_cents: int


class Refusal(StrEnum):
    """Why a payer's move on a link is refused (each edge picks its own answer)."""

    UNKNOWN = "UNKNOWN"
    EXPIRED = "EXPIRED"
    PAID = "PAID"
    CANCELLED = "CANCELLED"


class PaymentRefused(Exception):
    """A payer's move refused, nothing changed; `link` is the link as found (None: unknown)."""

    def __init__(self, refusal: Refusal, ref: str, link: PaymentLinkRecord | None = None) -> None:
        super().__init__(f"payment link {ref}: {refusal.value.lower()}")
        self.refusal = refusal
        self.ref = ref
        self.link = link


def charges(amount_cents: int, mode: FeeMode) -> Charges:
    """The fee rule (see the module's docstring), in exact centimes."""
    fee = (amount_cents * FEE_BASIS_POINTS + 5_000) // 10_000
    payer_share = {FeeMode.NO_FEE: 0, FeeMode.SPLIT_FEE: fee // 2, FeeMode.CUSTOMER_FEE: fee}[mode]
    return Charges(
        fee_cents=fee,
        paid_cents=amount_cents + payer_share,
        net_cents=amount_cents - (fee - payer_share),
    )


def new_ref() -> str:
    """A fresh `OCPL-XXXXXX-XXXX` reference (A-Z, 0-9: about 52 bits of chance)."""
    chars = "".join(secrets.choice(_REF_CHARS) for _ in range(10))
    return f"OCPL-{chars[:6]}-{chars[6:]}"


def expired(link: PaymentLinkRecord, at: float) -> bool:
    """Whether the link can no longer be paid: still PENDING at or after its expiry."""
    return link.status is PENDING and at >= link.expires_at


def refusal_of(link: PaymentLinkRecord, at: float) -> Refusal | None:
    """Why the payer cannot act on this link now, or None if they can."""
    if link.status is CONFIRMED:
        return Refusal.PAID
    if link.status is FAILED:
        return Refusal.CANCELLED
    return Refusal.EXPIRED if expired(link, at) else None


def create_link(
    tx: Tx, key: KeyRecord, cmd: CreateLink, ref: str, now: str, expires_at: float
) -> PaymentLinkRecord:
    """Store a new PENDING link of the key's account and environment (`Conflict` if `ref` is
    taken: the caller draws another)."""
    link = PaymentLinkRecord(
        ref=ref,
        account_id=key.account_id,
        env=key.env,
        key_id=key.id,
        title=cmd.title,
        description=cmd.description,
        amount_cents=cmd.amount_cents,
        fee_mode=cmd.fee_mode,
        success_message=cmd.success_message,
        redirect_url=cmd.redirect_url,
        status=PENDING,
        created_at=now,
        expires_at=expires_at,
    )
    tx.payments.add(link)
    return link


def pay(tx: Tx, ref: str, method: str, now: str, at: float) -> PaymentLinkRecord:
    """Confirm the payment and credit the merchant `net`, or refuse (`PaymentRefused`) without
    moving money: unknown, expired (`at` is the fulfilment clock), already paid or cancelled."""
    link = _open(tx, ref, at)
    due = charges(link.amount_cents, link.fee_mode)
    entry = ledger.move(
        tx, link.account_id, link.env, due.net_cents, EntryType.RECEIVE,
        f"OCPay payment {ref} ({method})", now, objid=ref,
    )  # fmt: skip
    paid = replace(
        link,
        status=CONFIRMED,
        transaction_ref=entry.id,  # the RECEIVE row of /account/transactions
        paid_cents=due.paid_cents,
        fee_cents=due.fee_cents,
        net_cents=due.net_cents,
        payment_method=method,
        completed_at=now,
    )
    tx.payments.update(paid)
    return paid


def cancel(tx: Tx, ref: str, now: str, at: float) -> PaymentLinkRecord:
    """The payer gives up: the link turns FAILED (`completed_at`: when), or `PaymentRefused`."""
    link = _open(tx, ref, at)
    cancelled = replace(link, status=FAILED, completed_at=now)
    tx.payments.update(cancelled)
    return cancelled


def _open(tx: Tx, ref: str, at: float) -> PaymentLinkRecord:
    """The link, locked, if the payer may act on it now."""
    link = tx.payments.lock(ref)
    if link is None:
        raise PaymentRefused(Refusal.UNKNOWN, ref)
    refusal = refusal_of(link, at)
    if refusal is not None:
        raise PaymentRefused(refusal, ref, link)
    return link
