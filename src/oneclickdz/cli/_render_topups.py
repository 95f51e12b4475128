"""How mobile top-ups, internet recharges and OCPay payments look in a terminal and in JSON, and
the exit code each status ends a command with.

As in `_render`: JSON keeps the models' field names, amounts are strings with two decimals, times
ISO-8601 UTC. An internet recharge's card code is masked (`"****9012"`) unless `--show-codes`.

Exit codes (`ExitCode`): FULFILLED and CONFIRMED 0; REFUNDED, and a payment FAILED or expired, 4
(nothing moved in the end); UNKNOWN_ERROR 11 (charged, resolved by hand later: never resend it);
QUEUED 12 (charged, processed within 12-48 h); anything not final 5.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from oneclickdz import (
    InternetTopup,
    MobilePlans,
    MobileTopup,
    Payment,
    PaymentLink,
    TopupOutcome,
    TopupSent,
)
from oneclickdz._redact import mask

from ._core import ExitCode
from ._render import iso, jsonable, money, money_text

Topup = MobileTopup | InternetTopup

_FINAL_EXIT = {
    "FULFILLED": ExitCode.OK,
    "CONFIRMED": ExitCode.OK,
    "REFUNDED": ExitCode.REFUNDED,
    "FAILED": ExitCode.REFUNDED,
    "UNKNOWN_ERROR": ExitCode.NEEDS_RESOLUTION,
    "QUEUED": ExitCode.QUEUED,
}


def exit_code_for(item: Topup | Payment) -> ExitCode:
    """The exit code of a top-up's or a payment's status (5 while it is not final)."""
    if not item.is_final:
        return ExitCode.NOT_FINAL
    return _FINAL_EXIT.get(str(item.status), ExitCode.NOT_FINAL)


def kind_of(topup: Topup) -> str:
    return "mobile" if isinstance(topup, MobileTopup) else "internet"


# --------------------------------------------------------------------------- JSON


def topup_json(topup: Topup, show_codes: bool) -> dict[str, Any]:
    """A top-up's fields; an internet recharge's card code (and any field this SDK does not
    know, which may one day carry one) masked unless `show_codes`."""
    data: dict[str, Any] = jsonable(topup.model_dump())
    if isinstance(topup, InternetTopup) and not show_codes:
        for key in ("card_code", *(topup.model_extra or {})):
            if data.get(key) is not None:
                data[key] = mask(str(data[key]))
    return data


def outcome_json(outcome: TopupOutcome) -> dict[str, Any]:
    return {
        "kind": outcome.kind,
        "status": outcome.status.value,
        "delivered": outcome.delivered,
        "refunded": outcome.refunded,
        "needs_resolution": outcome.needs_resolution,
        "queued": outcome.queued,
        "amount_charged": _money_or_none(outcome.amount_charged),
        "amount_refunded": _money_or_none(outcome.amount_refunded),
        "summary": outcome.summary,
    }


def topup_document(topup: Topup, outcome: TopupOutcome | None, show_codes: bool) -> dict[str, Any]:
    """`check`/`wait`: the top-up and, once final, its outcome (`codes_masked` for internet)."""
    doc: dict[str, Any] = {
        "topup": topup_json(topup, show_codes),
        "outcome": None if outcome is None else outcome_json(outcome),
    }
    if isinstance(topup, InternetTopup):
        doc["codes_masked"] = not show_codes
    return doc


def sent_json(sent: TopupSent) -> dict[str, Any]:
    return dict(jsonable(sent))


def _money_or_none(value: Decimal | None) -> str | None:
    return None if value is None else money(value)


# --------------------------------------------------------------------------- text


def sent_text(kind: str, sent: TopupSent) -> str:
    text = f"sent {kind} top-up {sent.topup_id}"
    if sent.topup_ref:
        text += f" (ref {sent.topup_ref})"
    if sent.recovered:
        text += ": an earlier attempt had sent it; recovered by its ref, not sent twice"
    elif sent.new_balance is not None:
        text += f"; balance now {money_text(sent.new_balance)} DZD"
    return text


def topup_text(topup: Topup) -> list[str]:
    """A top-up that is not final (yet): what it is and since when."""
    when = f", sent {iso(topup.created_at)}" if topup.created_at else ""
    return [f"{kind_of(topup)} top-up {topup.id}: {topup.status}, {_what(topup)}{when}"]


def _what(topup: Topup) -> str:
    amount = money_text(topup.topup_amount)
    if isinstance(topup, MobileTopup):
        return f"{topup.plan_code} {amount} DZD to {topup.msisdn}"
    return f"{topup.type or '?'} {amount} DZD for {topup.number or '?'}"


def outcome_text(outcome: TopupOutcome, show_codes: bool, *, hint: bool = True) -> list[str]:
    """A final top-up: what reached the number, what was charged, what came back, what next."""
    topup, status = outcome.topup, outcome.status.value
    head = f"{outcome.kind} top-up {topup.id}: {status}, "
    if outcome.delivered:
        head += f"{_what(topup)}"
    elif outcome.needs_resolution:
        head += "the operator's answer is unknown: charged until resolved (1-24 h)"
    elif outcome.queued:
        head += "scheduled for later (12-48 h); charged, not a failure"
    else:
        head += f"nothing delivered ({_what(topup)})"
    lines = [head]
    if outcome.card_code:
        code = outcome.card_code if show_codes else mask(outcome.card_code)
        lines.append(f"  card      {code}")
    if isinstance(topup, InternetTopup) and topup.num_trans:
        when = f", processed {iso(topup.date_traitement)}" if topup.date_traitement else ""
        lines.append(f"  num_trans {topup.num_trans}{when}")
    charged = money_text(outcome.amount_charged)
    if outcome.amount_refunded is None:  # REFUNDED, and no check showed the charge before
        lines.append(f"  charged   {charged} DZD")
        lines.append("  refunded  in full (the amount is not shown once refunded)")
    else:
        refunded = money_text(outcome.amount_refunded)
        width = max(len(charged), len(refunded))
        lines.append(f"  charged   {charged:>{width}} DZD")
        lines.append(f"  refunded  {refunded:>{width}} DZD")
    if isinstance(topup, MobileTopup):
        if topup.refund_message:
            lines.append(f"  message   {topup.refund_message}")
        for offer in topup.suggested_offers:
            amount = "" if offer.amount is None else f" {money_text(offer.amount)} DZD"
            name = f" ({offer.typename})" if offer.typename else ""
            lines.append(f"  suggested {offer.plan_code}{amount}{name}")
    if hint and outcome.needs_resolution:
        lines.append(f"  do not send it again; check it later: oneclickdz mobile check {topup.id}")
    if hint and outcome.queued:
        lines.append(f"  check it again after 24 h: oneclickdz internet check {topup.id}")
    if hint and outcome.card_code and not show_codes:
        lines.append("  (card code masked: --show-codes shows it)")
    return lines


def plans_rows(plans: MobilePlans) -> list[list[str]]:
    rows = []
    for plan in plans.all():
        if plan.is_dynamic:
            low, high = money_text(plan.min_amount), money_text(plan.max_amount)
            amount = f"{low} - {high}"
        else:
            amount = money_text(plan.amount)
        name = (plan.name or "") + ("" if plan.is_enabled else " (disabled)")
        kind = "dynamic" if plan.is_dynamic else "fixed"
        cost = "-" if plan.cost is None else str(plan.cost)
        rows.append([plan.code, plan.operator or "-", kind, amount, cost, name])
    return rows


# --------------------------------------------------------------------------- payments


def link_text(link: PaymentLink) -> list[str]:
    info = link.product_info
    what = "" if info is None else f": {money_text(info.amount)} DZD for {info.title!r}"
    env = "" if link.is_sandbox is None else (" (sandbox)" if link.is_sandbox else "")
    return [
        f"payment link {link.payment_ref}{what}{env}",
        f"  pay at    {link.payment_url}",
        f"  fees      {link.fee_mode}",
        "  expires   20 minutes after creation unless paid; single-use",
        f"  follow    oneclickdz pay wait {link.payment_ref}",
    ]


def payment_json(payment: Payment) -> dict[str, Any]:
    return dict(jsonable(payment))


def expired_json(ref: str) -> dict[str, Any]:
    """An expired link (410) as checkPayment would show it if it answered: FAILED."""
    return {
        "payment_ref": ref,
        "status": "FAILED",
        "message": "Payment link expired unpaid",
        "transaction_details": None,
        "expired": True,
    }


def payment_text(payment: Payment) -> list[str]:
    head = f"payment {payment.payment_ref}: {payment.status}"
    if payment.message:
        head += f", {payment.message}"
    lines = [head]
    details = payment.transaction_details
    if details is not None:
        paid = money_text(details.amount)
        fee = money_text(details.fee)
        net = money_text(details.net_amount)
        width = max(len(paid), len(fee), len(net))
        method = f" ({details.payment_method})" if details.payment_method else ""
        lines.append(f"  paid      {paid:>{width}} DZD by the payer{method}")
        lines.append(f"  fee       {fee:>{width}} DZD")
        lines.append(f"  credited  {net:>{width}} DZD to your balance")
        if details.transaction_ref or details.completed_at:
            when = f", completed {iso(details.completed_at)}" if details.completed_at else ""
            lines.append(f"  transaction {details.transaction_ref or '-'}{when}")
    return lines
