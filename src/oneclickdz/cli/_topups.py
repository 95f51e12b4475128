"""`mobile plans|send|check|wait|list` and `internet products|check-number|send|check|wait|list`.

As `order …`: a send always carries a ref (yours or a new `cli-…` one), so a lost answer is
retried safely and recovered by its ref, never sent twice; `--wait` follows the top-up with the
progress display of `order wait` and prints its outcome. The exit code is the top-up's status:
0 FULFILLED, 4 REFUNDED, 11 UNKNOWN_ERROR (mobile: charged, resolved by hand later), 12 QUEUED
(internet: charged, processed within 12-48 h), 5 not final yet.
"""

from __future__ import annotations

import enum
import sys
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Annotated, Any

import typer

from oneclickdz import (
    Client,
    InternetTopup,
    MobileTopup,
    Page,
    PlacementUnknownError,
    PollPolicy,
    PollTimeoutError,
    TopupOutcome,
    TopupSent,
)
from oneclickdz.client import _iterate
from oneclickdz.topup_outcome import DebitWatch
from oneclickdz.topups import Internet, Mobile

from ._app import TOPUPS, app
from ._core import (
    EXIT_CODES_HELP,
    AllOption,
    ApiKeyOption,
    BaseUrlOption,
    FromOption,
    JsonOption,
    Output,
    PageOption,
    PageSizeOption,
    Settings,
    ToOption,
    fail,
    interrupted_wait,
    note_placed,
    note_resume,
    one_or_all_pages,
    settings,
)
from ._orders import IntervalOption, MaxAttemptsOption, TimeoutOption, poll_policy
from ._render import iso, jsonable, money_text, page_footer, table
from ._render_topups import (
    exit_code_for,
    outcome_text,
    plans_rows,
    sent_json,
    sent_text,
    topup_document,
    topup_json,
    topup_text,
)
from ._waiting import Display, watch

Topup = MobileTopup | InternetTopup
Group = Mobile | Internet

_EPILOG = EXIT_CODES_HELP

mobile_app = typer.Typer(
    help="Mobile top-ups (flexy): plans, send, check, wait, list.", no_args_is_help=True
)
internet_app = typer.Typer(
    help="Internet recharges (ADSL, 4G): products, number check, send, check, wait, list.",
    no_args_is_help=True,
)
app.add_typer(mobile_app, name="mobile", rich_help_panel=TOPUPS)
app.add_typer(internet_app, name="internet", rich_help_panel=TOPUPS)


class ServiceType(enum.StrEnum):
    """An internet recharge's service."""

    ADSL = "ADSL"
    G4 = "4G"


RefOption = Annotated[
    str | None,
    typer.Option(
        "--ref",
        help="Your unique reference (e.g. an invoice number, 1-100 characters); default: a new "
        "cli-… ref. With a ref a lost answer is retried safely, never sent twice.",
        show_default=False,
    ),
]
WaitOption = Annotated[
    bool, typer.Option("--wait", help="Wait until the top-up is final; print its outcome.")
]
CheckRefOption = Annotated[
    str | None,
    typer.Option(
        "--ref", help="Find the top-up by your ref instead of its id.", show_default=False
    ),
]
TopupIdArgument = Annotated[str, typer.Argument(help="Top-up id (topupId, from `send`).")]
OptionalTopupId = Annotated[
    str | None,
    typer.Argument(help="Top-up id (topupId, from `send`); or give --ref.", show_default=False),
]
TypeArgument = Annotated[
    ServiceType, typer.Argument(help="ADSL or 4G.", case_sensitive=False, show_default=False)
]
ShowCodeOption = Annotated[
    bool,
    typer.Option(
        "--show-codes", help="Print the recharge card's code in full (default: last 4 characters)."
    ),
]


# --------------------------------------------------------------------------- shared


def _noun(kind: str) -> str:
    return f"{kind} top-up"


def _group(client: Client, kind: str) -> Group:
    """`client.mobile` or `client.internet`."""
    return client.mobile if kind == "mobile" else client.internet


def report_topup(
    s: Settings,
    topup: Topup,
    show_codes: bool,
    sent: TopupSent | None = None,
    debited: Decimal | None = None,
) -> None:
    """Print a top-up (its outcome once final) and exit with its status's code."""
    # InconsistentOrderError (exit 9) for a final top-up that breaks its status's rules
    outcome = TopupOutcome.from_topup(topup, debited) if topup.is_final else None
    doc = topup_document(topup, outcome, show_codes)
    if sent is not None:
        doc = {"sent": sent_json(sent), **doc}

    def text(out: Output) -> None:
        out.lines(outcome_text(outcome, show_codes) if outcome else topup_text(topup))

    s.emit(doc, text)
    code = exit_code_for(topup)
    if code:
        raise typer.Exit(code)


def follow(
    s: Settings, group: Group, kind: str, topup_id: str, policy: PollPolicy, intro: str = ""
) -> tuple[Topup, Decimal | None]:
    """Wait for a top-up with live progress on stderr; the top-up and what it was seen to debit
    (the refund of a REFUNDED one, whose own view shows 0)."""
    display = Display(sys.stderr, quiet=s.json)
    debits = DebitWatch()
    resume = f"oneclickdz {kind} wait"
    with display, interrupted_wait(topup_id, noun=_noun(kind), follow=resume):
        if intro:
            display.print(intro)
        row = display.follow(topup_id, policy, noun=_noun(kind))
        try:
            topup: Topup = watch(
                row,
                lambda on_check: group.wait(
                    topup_id, policy=policy, on_update=debits.see, on_check=on_check
                ),
            )
        except PollTimeoutError as exc:
            note_resume(exc, f"{resume} {topup_id}")
            raise
    return topup, debits.debited


def send_and_report(
    s: Settings,
    client: Client,
    kind: str,
    send: Callable[[], TopupSent],
    again: str,
    wait: bool,
    policy: PollPolicy,
    show_codes: bool = False,
) -> None:
    """`send()` the top-up; print what was sent, or with `wait` follow it to its outcome.

    `again` is the command that sends it again with the same ref (the way to reconcile)."""
    try:
        sent = send()
    except PlacementUnknownError as exc:
        note_resume(exc, again)
        raise
    if not wait:
        s.emit({"sent": sent_json(sent)}, lambda out: out.line(sent_text(kind, sent)))
        return
    try:
        intro = sent_text(kind, sent)
        topup, debited = follow(s, _group(client, kind), kind, sent.topup_id, policy, intro)
    except (PollTimeoutError, typer.Exit):
        raise  # a poll timeout names the top-up already
    except Exception as exc:
        follow_cmd = f"oneclickdz {kind} wait"
        note_placed(exc, sent.topup_id, noun=_noun(kind), follow=follow_cmd, key="topup_id")
        raise
    report_topup(s, topup, show_codes, sent, debited)


def check_and_report(
    s: Settings, kind: str, topup_id: str | None, ref: str | None, show_codes: bool = False
) -> None:
    if (topup_id is None) == (ref is None):
        fail("give the top-up id or --ref REF (one of them)")
    with s.client() as client:
        group = _group(client, kind)
        topup = group.check(topup_id) if topup_id is not None else group.check_ref(ref or "")
    report_topup(s, topup, show_codes)


def wait_and_report(
    s: Settings, kind: str, topup_id: str, policy: PollPolicy, show_codes: bool = False
) -> None:
    with s.client() as client:
        topup, debited = follow(s, _group(client, kind), kind, topup_id, policy)
    report_topup(s, topup, show_codes, debited=debited)


def list_and_report(
    s: Settings,
    kind: str,
    page: int,
    page_size: int,
    all_pages: bool,
    from_: str | None,
    to: str | None,
    show_codes: bool = False,
) -> None:
    with s.client() as client:
        group = _group(client, kind)
        result: Page[Any] = one_or_all_pages(
            all_pages,
            lambda: _iterate(lambda n: group.list(n, page_size=page_size, from_=from_, to=to)),
            lambda: group.list(page, page_size=page_size, from_=from_, to=to),
        )
    doc: dict[str, Any] = {
        "items": [topup_json(t, show_codes) for t in result.items],
        "pagination": jsonable(result.pagination),
    }
    if kind == "internet":
        doc["codes_masked"] = not show_codes

    def text(out: Output) -> None:
        if not result.items:
            out.line("no top-ups")
        else:
            rows = [_row(t) for t in result.items]
            target = "MSSIDN" if kind == "mobile" else "NUMBER"
            what = "PLAN" if kind == "mobile" else "TYPE"
            headers = ["TOPUP", "TIME", what, target, "AMOUNT", "STATUS", "CHARGED"]
            out.lines(table(headers, rows, (4, 6)))
        out.line(page_footer(result, "top-up"))

    s.emit(doc, text)


def _row(t: Topup) -> list[str]:
    when = iso(t.created_at) if t.created_at else "-"
    if isinstance(t, MobileTopup):
        what, target = t.plan_code, t.msisdn
    else:
        what, target = t.type or "-", t.number or "-"
    return [
        t.id,
        when,
        what,
        target,
        money_text(t.topup_amount),
        str(t.status),
        money_text(t.balance_amount),
    ]


def _ref(ref: str | None) -> str:
    return ref if ref is not None else f"cli-{uuid.uuid4().hex}"


# --------------------------------------------------------------------------- mobile


@mobile_app.command("plans")
def mobile_plans(
    ctx: typer.Context,
    api_key: ApiKeyOption = None,
    base_url: BaseUrlOption = None,
    json_output: JsonOption = False,
) -> None:
    """The plans: dynamic (any amount within a range) and fixed (one amount), with your cost.

    COST is a multiplier of the amount: 0.98 means 1,000 DZD of credit costs 980 DZD.
    """
    s = settings(ctx, api_key, base_url, json_output)
    with s.client() as client:
        plans = client.mobile.plans()

    def text(out: Output) -> None:
        rows = plans_rows(plans)
        headers = ["PLAN", "OPERATOR", "KIND", "AMOUNT DZD", "COST", "NAME"]
        out.lines(table(headers, rows, (3, 4)))
        out.line(
            f"{len(rows)} plan(s): {len(plans.dynamic_plans)} dynamic (send --amount N), "
            f"{len(plans.fixed_plans)} fixed"
        )

    s.emit(jsonable(plans), text)


@mobile_app.command("send", epilog=_EPILOG)
def mobile_send(
    ctx: typer.Context,
    plan_code: Annotated[str, typer.Argument(help="Plan code (see `mobile plans`).")],
    mssidn: Annotated[
        str, typer.Argument(metavar="MSSIDN", help="Phone number: 05, 06 or 07 and 8 digits.")
    ],
    amount: Annotated[
        int | None,
        typer.Option(
            "--amount",
            min=1,
            help="DZD of credit: required for a dynamic plan (within its range), ignored for a "
            "fixed one.",
            show_default=False,
        ),
    ] = None,
    ref: RefOption = None,
    wait: WaitOption = False,
    interval: IntervalOption = 5.0,
    max_attempts: MaxAttemptsOption = 60,
    timeout: TimeoutOption = None,
    api_key: ApiKeyOption = None,
    base_url: BaseUrlOption = None,
    json_output: JsonOption = False,
) -> None:
    """Top up MSSIDN with PLAN_CODE; the balance is charged now.

    With --wait: follow the top-up to its final state (PENDING 2-15 s, HANDLING 3-8 s) and exit
    with its code: 0 FULFILLED, 4 REFUNDED, 11 UNKNOWN_ERROR (charged; resolved by hand within
    hours: do not send it again), 5 not final in time.
    """
    s = settings(ctx, api_key, base_url, json_output)
    policy = poll_policy(interval, max_attempts, timeout)  # refuse a bad policy before sending
    ref = _ref(ref)
    with_amount = "" if amount is None else f" --amount {amount}"
    again = f"oneclickdz mobile send {plan_code} {mssidn}{with_amount} --ref {ref}"
    with s.client() as client:
        send_and_report(
            s,
            client,
            "mobile",
            lambda: client.mobile.send(plan_code, mssidn, amount, ref),
            again,
            wait,
            policy,
        )


@mobile_app.command("check", epilog=_EPILOG)
def mobile_check(
    ctx: typer.Context,
    topup_id: OptionalTopupId = None,
    ref: CheckRefOption = None,
    api_key: ApiKeyOption = None,
    base_url: BaseUrlOption = None,
    json_output: JsonOption = False,
) -> None:
    """A mobile top-up's state (by id, or by your ref); once final, its outcome.

    Exits with its code: 0 FULFILLED, 4 REFUNDED, 11 UNKNOWN_ERROR, 5 still PENDING or HANDLING.
    """
    check_and_report(settings(ctx, api_key, base_url, json_output), "mobile", topup_id, ref)


@mobile_app.command("wait", epilog=_EPILOG)
def mobile_wait(
    ctx: typer.Context,
    topup_id: TopupIdArgument,
    interval: IntervalOption = 5.0,
    max_attempts: MaxAttemptsOption = 60,
    timeout: TimeoutOption = None,
    api_key: ApiKeyOption = None,
    base_url: BaseUrlOption = None,
    json_output: JsonOption = False,
) -> None:
    """Check a mobile top-up until it is final (live progress on stderr), then its outcome.

    The documented schedule by default: every 5 s, 60 checks. Exits with its code: 0 FULFILLED,
    4 REFUNDED, 11 UNKNOWN_ERROR, 5 not final in time.
    """
    s = settings(ctx, api_key, base_url, json_output)
    wait_and_report(s, "mobile", topup_id, poll_policy(interval, max_attempts, timeout))


@mobile_app.command("list")
def mobile_list(
    ctx: typer.Context,
    page: PageOption = 1,
    page_size: PageSizeOption = 20,
    all_pages: AllOption = False,
    from_: FromOption = None,
    to: ToOption = None,
    api_key: ApiKeyOption = None,
    base_url: BaseUrlOption = None,
    json_output: JsonOption = False,
) -> None:
    """Mobile top-ups, newest first (--from and --to go together)."""
    s = settings(ctx, api_key, base_url, json_output)
    list_and_report(s, "mobile", page, page_size, all_pages, from_, to)


# --------------------------------------------------------------------------- internet


@internet_app.command("products")
def internet_products(
    ctx: typer.Context,
    service: TypeArgument,
    api_key: ApiKeyOption = None,
    base_url: BaseUrlOption = None,
    json_output: JsonOption = False,
) -> None:
    """The recharge cards of a service (ADSL or 4G): face VALUE, your COST, stock."""
    s = settings(ctx, api_key, base_url, json_output)
    with s.client() as client:
        result = client.internet.products(service.value)

    def text(out: Output) -> None:
        out.line(result.type or service.value)
        rows = [
            [
                money_text(p.value),
                money_text(p.cost),
                "available" if p.available else "out of stock",
            ]
            for p in result.products
        ]
        out.lines(table(["VALUE DZD", "COST DZD", "STOCK"], rows, (0, 1)))

    s.emit(jsonable(result), text)


@internet_app.command("check-number")
def internet_check_number(
    ctx: typer.Context,
    service: TypeArgument,
    number: Annotated[str, typer.Argument(help="ADSL: 0 and 8 digits; 4G: 213 and 9 digits.")],
    api_key: ApiKeyOption = None,
    base_url: BaseUrlOption = None,
    json_output: JsonOption = False,
) -> None:
    """Whether NUMBER is a valid line for the service (exit 6, ERR_PHONE, if not)."""
    s = settings(ctx, api_key, base_url, json_output)
    with s.client() as client:
        result = client.internet.check_number(service.value, number)

    def text(out: Output) -> None:
        offre = f", offre {result.offre}" if result.offre else ""
        out.line(
            f"{number}: a valid {result.type or service.value} line, ncli {result.ncli}{offre}"
        )

    s.emit(jsonable(result), text)


@internet_app.command("send", epilog=_EPILOG)
def internet_send(
    ctx: typer.Context,
    service: TypeArgument,
    number: Annotated[str, typer.Argument(help="ADSL: 0 and 8 digits; 4G: 213 and 9 digits.")],
    value: Annotated[
        int, typer.Argument(min=1, help="Face value in DZD (see `internet products TYPE`).")
    ],
    ref: RefOption = None,
    wait: WaitOption = False,
    interval: IntervalOption = 5.0,
    max_attempts: MaxAttemptsOption = 60,
    timeout: TimeoutOption = None,
    show_codes: ShowCodeOption = False,
    api_key: ApiKeyOption = None,
    base_url: BaseUrlOption = None,
    json_output: JsonOption = False,
) -> None:
    """Recharge NUMBER with the card of face VALUE; the balance is charged now.

    With --wait: follow it to its final state (HANDLING 3-45 s) and exit with its code:
    0 FULFILLED (the card's code masked unless --show-codes), 4 REFUNDED, 12 QUEUED (charged,
    processed within 12-48 h: check it again later), 5 not final in time.
    """
    s = settings(ctx, api_key, base_url, json_output)
    policy = poll_policy(interval, max_attempts, timeout)
    ref = _ref(ref)
    again = f"oneclickdz internet send {service.value} {number} {value} --ref {ref}"
    with s.client() as client:
        send_and_report(
            s,
            client,
            "internet",
            lambda: client.internet.send(service.value, number, value, ref),
            again,
            wait,
            policy,
            show_codes,
        )


@internet_app.command("check", epilog=_EPILOG)
def internet_check(
    ctx: typer.Context,
    topup_id: OptionalTopupId = None,
    ref: CheckRefOption = None,
    show_codes: ShowCodeOption = False,
    api_key: ApiKeyOption = None,
    base_url: BaseUrlOption = None,
    json_output: JsonOption = False,
) -> None:
    """An internet recharge's state (by id, or by your ref); once final, its outcome.

    Exits with its code: 0 FULFILLED, 4 REFUNDED, 12 QUEUED, 5 still HANDLING.
    """
    s = settings(ctx, api_key, base_url, json_output)
    check_and_report(s, "internet", topup_id, ref, show_codes)


@internet_app.command("wait", epilog=_EPILOG)
def internet_wait(
    ctx: typer.Context,
    topup_id: TopupIdArgument,
    interval: IntervalOption = 5.0,
    max_attempts: MaxAttemptsOption = 60,
    timeout: TimeoutOption = None,
    show_codes: ShowCodeOption = False,
    api_key: ApiKeyOption = None,
    base_url: BaseUrlOption = None,
    json_output: JsonOption = False,
) -> None:
    """Check an internet recharge until it is final (live progress on stderr), then its outcome.

    The documented schedule by default: every 5 s, 60 checks. QUEUED is final for a wait (it is
    processed within 12-48 h). Exits with its code: 0 FULFILLED, 4 REFUNDED, 12 QUEUED,
    5 not final in time.
    """
    s = settings(ctx, api_key, base_url, json_output)
    policy = poll_policy(interval, max_attempts, timeout)
    wait_and_report(s, "internet", topup_id, policy, show_codes)


@internet_app.command("list")
def internet_list(
    ctx: typer.Context,
    page: PageOption = 1,
    page_size: PageSizeOption = 20,
    all_pages: AllOption = False,
    from_: FromOption = None,
    to: ToOption = None,
    show_codes: ShowCodeOption = False,
    api_key: ApiKeyOption = None,
    base_url: BaseUrlOption = None,
    json_output: JsonOption = False,
) -> None:
    """Internet recharges, newest first (card codes only with --json, masked unless
    --show-codes)."""
    s = settings(ctx, api_key, base_url, json_output)
    list_and_report(s, "internet", page, page_size, all_pages, from_, to, show_codes)
