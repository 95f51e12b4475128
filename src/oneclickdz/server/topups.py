"""Mobile top-ups and internet recharges: the plans and products, placement (validate, debit,
create — one transaction), each step of the lifecycle, and an operator's resolution.

Plain functions of a `Tx`, like `orders`. A top-up's path is decided at placement (`outcome`,
and for the sandbox the trigger numbers below); the fulfilment worker then moves it one step
each time its `due_at` comes: mobile PENDING -> HANDLING -> FULFILLED | REFUNDED | UNKNOWN_ERROR,
internet HANDLING -> FULFILLED | REFUNDED | QUEUED, and QUEUED -> FULFILLED | REFUNDED hours
later. UNKNOWN_ERROR waits for `resolve`. Money: the charge is debited at placement (FLEXY,
ADSL) and credited back when the top-up ends REFUNDED (REFUND-FLEXY, REFUND-ADSL).
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass, replace
from decimal import ROUND_HALF_UP, Decimal

from oneclickdz.server import ledger
from oneclickdz.server.errors import ServiceError
from oneclickdz.server.formats import iso
from oneclickdz.server.store import (
    Conflict,
    EntryType,
    KeyRecord,
    TopupKind,
    TopupRecord,
    TopupStatus,
    Tx,
)
from oneclickdz.server.vault import Vault

MOBILE, INTERNET = TopupKind.MOBILE, TopupKind.INTERNET
PENDING, HANDLING = TopupStatus.PENDING, TopupStatus.HANDLING
FULFILLED, REFUNDED = TopupStatus.FULFILLED, TopupStatus.REFUNDED
UNKNOWN_ERROR, QUEUED = TopupStatus.UNKNOWN_ERROR, TopupStatus.QUEUED
RESTING = frozenset({FULFILLED, REFUNDED, UNKNOWN_ERROR})  # never move by themselves

MSSIDN = re.compile(r"0[567][0-9]{8}")
NUMBERS = {"ADSL": re.compile(r"0[0-9]{8}"), "4G": re.compile(r"213[0-9]{9}")}
INTERNET_TYPES = tuple(NUMBERS)
MAX_REF_LENGTH = 100

# The documented durations, in seconds, before the scale factor of `serve --topup-delay-scale`.
PENDING_DELAY = (2.0, 15.0)
MOBILE_HANDLING_DELAY = (3.0, 8.0)
INTERNET_HANDLING_DELAY = (3.0, 45.0)
QUEUED_DELAY = (12 * 3600.0, 48 * 3600.0)

# Our refund text, in Arabic as the API writes it, and the docs' "number refuses this offer".
REFUND_MESSAGE = "تعذر إتمام عملية الشحن، تم إرجاع المبلغ إلى رصيدكم"
OFFER_REFUSED = "هذا رقم الهاتف لا يقبل العرض المرسل، الرجاء إرسال أحد العروض التالية"
UNKNOWN_MESSAGE = "حالة العملية غير معروفة، سيتم التحقق منها لاحقاً"


@dataclass(frozen=True, slots=True)
class Plan:
    """A mobile plan: dynamic (`min_amount`..`max_amount`) or fixed (`amount`). `cost` is what
    the merchant pays per dinar of credit (0.98: 1,000 DZD of credit costs 980)."""

    code: str
    name: str
    operator: str
    cost: Decimal
    min_amount: int | None = None
    max_amount: int | None = None
    amount: int | None = None
    show_cost: bool = True  # GROS_MOBILIS is documented without a `cost`

    @property
    def dynamic(self) -> bool:
        return self.amount is None


def _dynamic(
    code: str, name: str, op: str, cost: str, low: int, high: int, show: bool = True
) -> Plan:
    return Plan(code, name, op, Decimal(cost), min_amount=low, max_amount=high, show_cost=show)


PLANS: tuple[Plan, ...] = (
    _dynamic("PREPAID_DJEZZY", "📱 PREPAID | عادي", "Djezzy", "0.98", 50, 5000),
    _dynamic("PREPAID_MOBILIS", "📱 PREPAID | عادي", "Mobilis", "0.96", 40, 3999),
    _dynamic("PREPAID_OOREDOO", "📱 PREPAID | عادي", "Ooredoo", "0.97", 50, 5000),
    _dynamic("FACTURE_DJEZZY", "📋 FACTURE | فاتورة", "Djezzy", "0.99", 100, 10000),
    _dynamic("GROS_MOBILIS", "📱 GROS MOBILIS | جملة", "GMobilis", "1", 5000, 300000, False),
    _dynamic("GETMENU_Mobilis", "Mobilis GetMenu", "Mobilis", "0.98", 50, 5000),
    _dynamic("GETMENU_Djezzy", "Djezzy GetMenu", "Djezzy", "0.98", 50, 5000),
    _dynamic("GETMENU_Ooredoo", "Ooredoo GetMenu", "Ooredoo", "0.98", 50, 5000),
    Plan("PIXX_500", "Pixx 500 DA", "Pixx", Decimal("0.97"), amount=500),
    Plan("PIXX_1000", "Pixx 1000 DA", "Pixx", Decimal("0.97"), amount=1000),
    Plan("MIX500_MOBILIS", "📱🌐 AUTO | MIX 500", "Mobilis", Decimal("0.98"), amount=500),
)
PLANS_BY_CODE = {p.code: p for p in PLANS}
# Which numbers each operator serves (ours: the Algerian prefixes; Pixx is a Mobilis offer).
PREFIX = {"Mobilis": "06", "GMobilis": "06", "Pixx": "06", "Djezzy": "07", "Ooredoo": "05"}
# What a refused offer suggests instead, by operator: the docs' FACTURE example.
SUGGESTIONS = {"07": "FACTURE_DJEZZY", "06": "PREPAID_MOBILIS", "05": "PREPAID_OOREDOO"}


@dataclass(frozen=True, slots=True)
class Product:
    """An internet recharge card: its face `value` and what it costs the merchant, in DZD."""

    type: str
    value: int
    cost: int
    available: bool = True


PRODUCTS: dict[str, tuple[Product, ...]] = {
    "ADSL": tuple(Product("ADSL", v, v * 98 // 100) for v in (500, 1000, 2000, 3000)),
    "4G": (
        *(Product("4G", v, v * 98 // 100) for v in (500, 1000, 1500, 2000)),
        Product("4G", 5000, 4900, available=False),
    ),
}


@dataclass(frozen=True, slots=True)
class SendTopup:
    """A validated send request: a mobile plan and MSSIDN, or an internet type and number."""

    kind: TopupKind
    plan_code: str  # the mobile plan, or the internet type (ADSL, 4G)
    number: str
    amount: int  # the credit (mobile) or the card's face value (internet), in DZD
    ref: str | None


# -- sandbox triggers -------------------------------------------------------------------------

# The last 8 digits of a sandbox number choose its path; any other number is fulfilled.
TRIGGERS: dict[TopupKind, dict[str, tuple[TopupStatus, ...]]] = {
    MOBILE: {
        "00000001": (REFUNDED,),
        "00000002": (REFUNDED,),  # with suggested offers
        "00000003": (UNKNOWN_ERROR,),
    },
    INTERNET: {
        "00000001": (REFUNDED,),
        "00000002": (QUEUED, FULFILLED),
        "00000003": (QUEUED, REFUNDED),
    },
}
SUGGEST_TRIGGER = "00000002"


def path(topup: TopupRecord) -> tuple[TopupStatus, ...]:
    """The states a top-up takes after HANDLING, its last one being `outcome`."""
    if topup.env == "SANDBOX":
        found = TRIGGERS[topup.kind].get(topup.number[-8:])
        if found is not None:
            return found
    return (topup.outcome,)


def suggests_offers(topup: TopupRecord) -> bool:
    return (
        topup.kind is MOBILE
        and topup.env == "SANDBOX"
        and topup.status is REFUNDED
        and topup.number[-8:] == SUGGEST_TRIGGER
    )


# -- money ------------------------------------------------------------------------------------


def mobile_charge_cents(plan: Plan, amount: int) -> int:
    """What the balance pays for `amount` DZD of credit: amount × cost, to the centime."""
    cents = (Decimal(amount) * plan.cost * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP)
    return int(cents)


def _entry_types(kind: TopupKind) -> tuple[EntryType, EntryType]:
    if kind is MOBILE:
        return EntryType.FLEXY, EntryType.REFUND_FLEXY
    return EntryType.ADSL, EntryType.REFUND_ADSL


# -- placement --------------------------------------------------------------------------------


def place(
    tx: Tx,
    key: KeyRecord,
    cmd: SendTopup,
    *,
    topup_id: str,
    ref: str,
    now: str,
    due_at: float,
    charge_cents: int,
) -> tuple[TopupRecord, int]:
    """Debit the charge and create the top-up, or refuse without changing anything; the top-up
    and the balance after the debit (in cents)."""
    if existing := tx.topups.by_ref(key.account_id, key.env, cmd.kind, ref):
        raise duplicated_ref(existing.id)
    debit, _ = _entry_types(cmd.kind)
    label = "mobile top-up" if cmd.kind is MOBILE else f"{cmd.plan_code} recharge"
    moved = ledger.move(
        tx, key.account_id, key.env, -charge_cents, debit, f"{label} {topup_id}", now,
        objid=topup_id,
    )  # fmt: skip
    topup = TopupRecord(
        id=topup_id,
        kind=cmd.kind,
        account_id=key.account_id,
        env=key.env,
        key_id=key.id,
        ref=ref,
        plan_code=cmd.plan_code,
        number=cmd.number,
        amount_cents=cmd.amount * 100,
        charge_cents=charge_cents,
        status=PENDING if cmd.kind is MOBILE else HANDLING,
        outcome=FULFILLED,  # the simulated operator delivers; the sandbox triggers may not
        created_at=now,
        due_at=due_at,
    )
    topup = replace(topup, outcome=path(topup)[-1])
    try:
        tx.topups.add(topup)
    except Conflict:
        existing = tx.topups.by_ref(key.account_id, key.env, cmd.kind, ref)
        if existing is None:
            raise
        raise duplicated_ref(existing.id) from None
    return topup, moved.new_balance_cents


def duplicated_ref(topup_id: str) -> ServiceError:
    return ServiceError(
        403, "DUPLICATED_REF", "This reference ID is already in use", {"topupId": topup_id}
    )


# -- the lifecycle ----------------------------------------------------------------------------


def first_delay(kind: TopupKind) -> tuple[float, float]:
    """How long a new top-up stays in its first state (PENDING, or internet HANDLING)."""
    return PENDING_DELAY if kind is MOBILE else INTERNET_HANDLING_DELAY


def card_context(topup_id: str) -> str:
    """What a sealed internet card is bound to: it opens only as this top-up's card."""
    return f"internet/{topup_id}"


def internet_card(seed: int, topup_id: str, at: float) -> tuple[str, str]:
    """A simulated Algérie Télécom card: 12 digits, and its transaction number."""
    digest = hashlib.blake2b(f"{seed}:{topup_id}".encode(), digest_size=16).digest()
    code = f"{int.from_bytes(digest[:8]) % 10**12:012d}"
    trans = f"AT-{iso(at)[:4]}-{int.from_bytes(digest[8:]) % 10**5:05d}"
    return code, trans


def step(
    tx: Tx,
    vault: Vault,
    topup_id: str,
    *,
    now: str,
    at: float,
    seed: int,
    scale: float,
) -> TopupRecord | None:
    """Move a due top-up one step (`at`: the fulfilment clock; `seed`: its delays and card,
    drawn by the caller from the service's seeded generator). None when it was not due to
    move (finished elsewhere), which makes a repeat harmless."""
    rng = random.Random(seed)
    topup = tx.topups.lock(topup_id)
    if topup is None or topup.due_at is None or topup.status in RESTING:
        return None
    later = path(topup)
    since = topup.due_at  # the next state lasts from when this step was due, however late
    if topup.status is PENDING:
        low, high = MOBILE_HANDLING_DELAY
        moved = replace(topup, status=HANDLING, due_at=since + rng.uniform(low, high) * scale)
    elif topup.status is HANDLING and later[0] is QUEUED:
        low, high = QUEUED_DELAY
        moved = replace(topup, status=QUEUED, due_at=since + rng.uniform(low, high) * scale)
    else:
        moved = _finish(tx, vault, topup, later[-1], now=now, at=at, seed=rng.getrandbits(64))
    tx.topups.update(moved)
    return moved


def _finish(
    tx: Tx, vault: Vault, topup: TopupRecord, status: TopupStatus, *, now: str, at: float,
    seed: int,
) -> TopupRecord:  # fmt: skip
    """The final state (or UNKNOWN_ERROR, which waits for an operator), with the refund or the
    sealed card."""
    final = replace(topup, status=status, due_at=None, final_at=now)
    if status is REFUNDED:
        _refund(tx, topup, now)
    elif status is FULFILLED and topup.kind is INTERNET:
        code, trans = internet_card(seed, topup.id, at)
        final = replace(
            final,
            card_secret=vault.seal_card(code, trans, card_context(topup.id)),
            num_trans=trans,
            date_traitement=now,
        )
    return final


def _refund(tx: Tx, topup: TopupRecord, now: str) -> None:
    _, credit = _entry_types(topup.kind)
    what = "mobile top-up" if topup.kind is MOBILE else "internet recharge"
    ledger.move(
        tx, topup.account_id, topup.env, topup.charge_cents, credit,
        f"refund from failed {what}", now, objid=topup.id,
    )  # fmt: skip


class NotResolvable(Exception):
    """`resolve` refused: no such top-up, or it is not waiting for an operator."""


def resolve(tx: Tx, topup_id: str, *, fulfilled: bool, now: str) -> TopupRecord:
    """An operator's verdict on a mobile top-up in UNKNOWN_ERROR: FULFILLED (the credit arrived;
    the charge stands) or REFUNDED (the charge goes back). Anything else is refused."""
    topup = tx.topups.lock(topup_id)
    if topup is None:
        raise NotResolvable(f"no top-up {topup_id!r}")
    if topup.status is not UNKNOWN_ERROR:
        raise NotResolvable(f"top-up {topup_id} is {topup.status.value}, not UNKNOWN_ERROR")
    if not fulfilled:
        _refund(tx, topup, now)
    status = FULFILLED if fulfilled else REFUNDED
    final = replace(topup, status=status, outcome=status, due_at=None, final_at=now)
    tx.topups.update(final)
    return final
