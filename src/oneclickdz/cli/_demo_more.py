"""`oneclickdz demo --all`: beside the gift-card orders, one of each other kind, end to end.

- a mobile top-up: PREPAID_DJEZZY, 1,000 DZD to 0770123456 (FULFILLED, charged 980.00);
- an internet recharge: ADSL, the 1,000 DZD card for 036362608 (FULFILLED with a card, charged
  980.00; the code masked);
- a payment link of 5,000 DZD (NO_FEE), paid by a payer on the service's pay page (`POST
  /pay/{ref}`, the form submitted as a browser does), then checkPayment CONFIRMED and 4,950.00
  credited (the 1% fee kept).

Each is a `Step`: what it moved on the balance (`change`: a charge is negative, a credit
positive) is checked against what the guide says, as the orders are.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import httpx

from oneclickdz import (
    AsyncClient,
    FeeMode,
    InternetTopup,
    MobileTopup,
    OneClickDZError,
    Payment,
    PollPolicy,
    TopupOutcome,
    TopupSent,
)
from oneclickdz.polling import PollRun
from oneclickdz.topup_outcome import DebitWatch
from oneclickdz.topups import AsyncInternet, AsyncMobile

from ._payer import PayPageAnswer, submit_async
from ._render import jsonable, money, money_text
from ._render_topups import (
    link_text,
    outcome_json,
    outcome_text,
    payment_json,
    payment_text,
    topup_json,
)
from ._waiting import Display, watch_async

TOPUP_DELAY_SCALE = 0.05  # the documented 5-45 s of a top-up become 0.25-2.25 s
MOBILE = ("PREPAID_DJEZZY", "0770123456", 1000)  # plan, MSSIDN, amount: not a sandbox trigger
INTERNET = ("ADSL", "036362608", 1000)  # type, number, value: the docs' example line
LINK = ("Demo checkout: 2 x PSN 500 DA", 5000, FeeMode.NO_FEE)
FEE_RATE = Decimal("0.01")


@dataclass(slots=True)
class Step:
    """One operation of the demo besides the orders, and what came of it."""

    name: str
    label: str
    about: str
    expected: str  # the final status the guide says
    expected_change: Decimal  # on the balance: a charge negative, a credit positive
    status: str | None = None
    change: Decimal | None = None
    document: dict[str, Any] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)
    error: str | None = None

    def problems(self) -> list[str]:
        if self.error is not None or self.status is None:
            return [f"{self.name}: {self.error or 'no outcome'}"]
        if (self.status, self.change) != (self.expected, self.expected_change):
            return [
                f"{self.name}: expected {self.expected} moving {self.expected_change} on the "
                f"balance; got {self.status} moving {self.change}"
            ]
        return []

    def json(self) -> dict[str, Any]:
        return {
            "step": self.name,
            "expected_status": self.expected,
            "expected_change": money(self.expected_change),
            "status": self.status,
            "change": None if self.change is None else money(self.change),
            **self.document,
            "error": self.error,
        }


def steps() -> list[Step]:
    """The steps of `demo --all`, before they run."""
    plan, msisdn, amount = MOBILE
    kind, number, value = INTERNET
    _, price, mode = LINK
    net = price - (price * FEE_RATE).quantize(Decimal("0.01"))
    return [
        Step(
            "mobile",
            f"{plan} {money_text(Decimal(amount))} DZD to {msisdn}",
            "a mobile top-up at the plan's cost (0.98)",
            "FULFILLED",
            -Decimal(amount) * Decimal("0.98"),
        ),
        Step(
            "internet",
            f"{kind} {money_text(Decimal(value))} DZD for {number}",
            "an internet recharge: a card and its code",
            "FULFILLED",
            -Decimal(value) * Decimal("0.98"),
        ),
        Step(
            "payment",
            f"a link of {money_text(Decimal(price))} DZD ({mode.value})",
            "paid on the service's pay page, less the 1% fee",
            "CONFIRMED",
            net,
        ),
    ]


Runner = Callable[[AsyncClient, Step, Display, PollPolicy], Awaitable[None]]


async def run_step(client: AsyncClient, step: Step, display: Display, policy: PollPolicy) -> None:
    """Run one step; an SDK error becomes the step's `error` (a problem of the demo)."""
    runner: Runner = {"mobile": _mobile, "internet": _internet, "payment": _payment}[step.name]
    try:
        await runner(client, step, display, policy)
    except OneClickDZError as exc:
        step.error = f"{type(exc).__name__}: {exc}"


def _ref(name: str) -> str:
    return f"demo-{name}-{uuid.uuid4().hex[:12]}"


def _settle(step: Step, outcome: TopupOutcome, sent: TopupSent) -> None:
    charged = outcome.amount_charged if outcome.amount_charged is not None else Decimal(0)
    step.status = outcome.status.value
    step.change = -charged
    step.document = {
        "sent": jsonable(sent),
        "topup": topup_json(outcome.topup, show_codes=False),  # the card code masked
        "outcome": outcome_json(outcome),
    }
    step.lines = outcome_text(outcome, show_codes=False, hint=False)


async def _follow(
    group: AsyncMobile | AsyncInternet,
    sent: TopupSent,
    step: Step,
    display: Display,
    policy: PollPolicy,
) -> None:
    """Wait for a sent top-up on its row, then settle the step with its checked outcome."""
    row = display.follow(sent.topup_id, policy, label=step.name, noun=f"{step.name} top-up")
    debits = DebitWatch()
    topup: MobileTopup | InternetTopup = await watch_async(
        row,
        lambda on_check: group.wait(
            sent.topup_id, policy=policy, on_update=debits.see, on_check=on_check
        ),
    )
    _settle(step, TopupOutcome.from_topup(topup, debits.debited), sent)


async def _mobile(client: AsyncClient, step: Step, display: Display, policy: PollPolicy) -> None:
    plan, msisdn, amount = MOBILE
    sent = await client.mobile.send(plan, msisdn, amount, _ref(step.name))
    await _follow(client.mobile, sent, step, display, policy)


async def _internet(client: AsyncClient, step: Step, display: Display, policy: PollPolicy) -> None:
    kind, number, value = INTERNET
    sent = await client.internet.send(kind, number, value, _ref(step.name))
    await _follow(client.internet, sent, step, display, policy)


async def _payment(client: AsyncClient, step: Step, display: Display, policy: PollPolicy) -> None:
    """Create the link and wait for its payment; once checkPayment has said PENDING, the payer
    pays on the link's page, and the wait ends on CONFIRMED."""
    title, price, mode = LINK
    link = await client.ocpay.create_link(title, price, fee_mode=mode)
    row = display.follow(link.payment_ref, policy, label=step.name, noun="payment")
    seen = asyncio.Event()

    def on_check(run: PollRun, result: Payment | OneClickDZError) -> None:
        row.on_check(run, result)
        seen.set()

    async def payer() -> PayPageAnswer:
        await seen.wait()  # the merchant has seen it PENDING: now the payer pays
        return await submit_async(link.payment_url, method="CIB")

    waiting = asyncio.create_task(
        watch_async(
            row, lambda _: client.ocpay.wait(link.payment_ref, policy=policy, on_check=on_check)
        )
    )
    try:
        answer = await payer()
    except httpx.HTTPError as exc:  # the payer's browser could not reach the page
        await _stop(waiting)
        step.error = f"the pay page: {type(exc).__name__}: {exc}"
        return
    except BaseException:
        await _stop(waiting)
        raise
    if not answer.ok:
        await _stop(waiting)
        step.error = f"the pay page answered {answer.status_code} ({answer.heading})"
        return
    payment = await waiting
    details = payment.transaction_details
    step.status = str(payment.status)
    step.change = None if details is None else details.net_amount
    step.document = {
        "link": jsonable(link),
        "pay_page": {"status_code": answer.status_code, "heading": answer.heading},
        "payment": payment_json(payment),
    }
    step.lines = [
        *link_text(link)[:2],
        f"  payer     on the pay page, with a CIB card: {answer.heading}",
        *payment_text(payment),
    ]


async def _stop(task: asyncio.Task[Any]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, OneClickDZError):
        await task


def balance_terms(steps: list[Step]) -> str:
    """` - 980.00 (mobile) - 980.00 (internet) + 4,950.00 (payment)` for the balance line."""
    terms = []
    for step in steps:
        change = step.change if step.change is not None else Decimal(0)
        sign = "-" if change < 0 else "+"
        terms.append(f" {sign} {money_text(abs(change))} ({step.name})")
    return "".join(terms)
