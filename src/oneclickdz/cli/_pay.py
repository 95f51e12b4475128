"""`pay create|check|wait`: OCPay payment links and their payments.

A link moves no money when it is created: the payer opens its URL and pays (CONFIRMED: the
amount less the fee is credited to your balance) or cancels (FAILED); unpaid, it expires after
20 minutes (checkPayment answers 410, shown here as FAILED, expired). Exit codes: 0 CONFIRMED,
4 FAILED or expired, 5 still PENDING.
"""

from __future__ import annotations

import sys
from typing import Annotated, NoReturn

import typer

from oneclickdz import FeeMode, Payment, PaymentLinkExpiredError, PollPolicy, PollTimeoutError

from ._app import PAYMENTS, app
from ._core import (
    EXIT_CODES_HELP,
    ApiKeyOption,
    BaseUrlOption,
    ExitCode,
    JsonOption,
    Output,
    Settings,
    interrupted_wait,
    note_resume,
    settings,
)
from ._orders import IntervalOption, MaxAttemptsOption, TimeoutOption, poll_policy
from ._render import jsonable
from ._render_topups import exit_code_for, expired_json, link_text, payment_json, payment_text
from ._waiting import Display, watch

_EPILOG = EXIT_CODES_HELP
LINK_LIFE = PollPolicy.docs_payments().timeout or 1260.0  # 20 minutes and one more

pay_app = typer.Typer(
    help="OCPay payment links: create one, check its payment, wait until it is paid.",
    no_args_is_help=True,
)
app.add_typer(pay_app, name="pay", rich_help_panel=PAYMENTS)

RefArgument = Annotated[
    str, typer.Argument(help="The link's payment ref (OCPL-XXXXXX-XXXX, from `pay create`).")
]


def report_payment(s: Settings, payment: Payment) -> None:
    """Print a payment and exit with its status's code (0 CONFIRMED, 4 FAILED, 5 PENDING)."""
    s.emit({"payment": payment_json(payment)}, lambda out: out.lines(payment_text(payment)))
    code = exit_code_for(payment)
    if code:
        raise typer.Exit(code)


def report_expired(s: Settings, ref: str) -> NoReturn:
    """An unpaid link past its life (410 PAYMENT_LINK_EXPIRED): FAILED, exit 4."""

    def text(out: Output) -> None:
        out.line(f"payment {ref}: FAILED, the link expired before it was paid; create a new one")

    s.emit({"payment": expired_json(ref)}, text)
    raise typer.Exit(ExitCode.REFUNDED)


@pay_app.command("create")
def create(
    ctx: typer.Context,
    title: Annotated[str, typer.Argument(help="What the payer pays for (1-200 characters).")],
    amount: Annotated[int, typer.Argument(help="Whole DZD, 500 to 500,000.")],
    description: Annotated[
        str | None,
        typer.Option(
            help="Shown to the payer (markdown, up to 1,000 characters).", show_default=False
        ),
    ] = None,
    fee_mode: Annotated[
        FeeMode,
        typer.Option(
            "--fee-mode",
            case_sensitive=False,
            help="Who pays the 1% fee: you (NO_FEE), half each (SPLIT_FEE), the payer "
            "(CUSTOMER_FEE).",
        ),
    ] = FeeMode.NO_FEE,
    success_message: Annotated[
        str | None,
        typer.Option(
            help="Shown to the payer once paid (up to 500 characters).", show_default=False
        ),
    ] = None,
    redirect_url: Annotated[
        str | None,
        typer.Option(help="Where the payer goes once paid (http or https).", show_default=False),
    ] = None,
    api_key: ApiKeyOption = None,
    base_url: BaseUrlOption = None,
    json_output: JsonOption = False,
) -> None:
    """Create a payment link for AMOUNT DZD; the payer opens its URL to pay it.

    Nothing is charged or credited now. The link is single-use and expires 20 minutes after
    creation unless paid; follow it with `pay wait REF`.
    """
    s = settings(ctx, api_key, base_url, json_output)
    with s.client() as client:
        link = client.ocpay.create_link(
            title, amount, description, fee_mode, success_message, redirect_url
        )
    s.emit({"link": jsonable(link)}, lambda out: out.lines(link_text(link)))


@pay_app.command("check", epilog=_EPILOG)
def check(
    ctx: typer.Context,
    ref: RefArgument,
    api_key: ApiKeyOption = None,
    base_url: BaseUrlOption = None,
    json_output: JsonOption = False,
) -> None:
    """The link's payment: PENDING, CONFIRMED (with what was paid, the fee and what you were
    credited) or FAILED.

    Exits 0 CONFIRMED, 4 FAILED or expired, 5 still PENDING.
    """
    s = settings(ctx, api_key, base_url, json_output)
    try:
        with s.client() as client:
            payment = client.ocpay.check_payment(ref)
    except PaymentLinkExpiredError:
        report_expired(s, ref)
    report_payment(s, payment)


@pay_app.command("wait", epilog=_EPILOG)
def wait_command(
    ctx: typer.Context,
    ref: RefArgument,
    interval: IntervalOption = 5.0,
    max_attempts: MaxAttemptsOption = 0,
    timeout: TimeoutOption = LINK_LIFE,
    api_key: ApiKeyOption = None,
    base_url: BaseUrlOption = None,
    json_output: JsonOption = False,
) -> None:
    """Check the payment until it is CONFIRMED or FAILED (live progress on stderr).

    By default every 5 s for the link's whole life (20 minutes) and a minute more. Exits
    0 CONFIRMED, 4 FAILED or expired, 5 still PENDING when the wait ran out.
    """
    s = settings(ctx, api_key, base_url, json_output)
    policy = poll_policy(interval, max_attempts, timeout)
    display = Display(sys.stderr, quiet=s.json)
    try:
        with (
            s.client() as client,
            display,
            interrupted_wait(ref, noun="payment", follow="oneclickdz pay wait"),
        ):
            row = display.follow(ref, policy, noun="payment")
            payment = watch(
                row, lambda on_check: client.ocpay.wait(ref, policy=policy, on_check=on_check)
            )
    except PaymentLinkExpiredError:
        report_expired(s, ref)
    except PollTimeoutError as exc:
        note_resume(exc, f"oneclickdz pay wait {ref}")
        raise
    report_payment(s, payment)
