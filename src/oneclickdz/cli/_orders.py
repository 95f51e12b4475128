"""`order place|check|wait` and `orders list`."""

from __future__ import annotations

import sys
import uuid
from typing import Annotated, Any

import typer

from oneclickdz import (
    Client,
    Order,
    OrderStatus,
    Outcome,
    Page,
    PlacedOrder,
    PollPolicy,
    PollTimeoutError,
)

from ._app import GIFT_CARDS, app
from ._core import (
    EXIT_CODES_HELP,
    AllOption,
    ApiKeyOption,
    BaseUrlOption,
    ExitCode,
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
    one_or_all_pages,
    settings,
)
from ._render import (
    iso,
    jsonable,
    money_text,
    order_document,
    order_json,
    order_text,
    outcome_text,
    page_footer,
    status_text,
    table,
)
from ._waiting import Display, wait_for

_EPILOG = EXIT_CODES_HELP

order_app = typer.Typer(
    help="Place an order, check it, wait until it is final.", no_args_is_help=True
)
orders_app = typer.Typer(help="The order history.", no_args_is_help=True)
app.add_typer(order_app, name="order", rich_help_panel=GIFT_CARDS)
app.add_typer(orders_app, name="orders", rich_help_panel=GIFT_CARDS)

WAITING = "Waiting"
ShowCodesOption = Annotated[
    bool,
    typer.Option(
        "--show-codes", help="Print card codes and serials in full (default: last 4 characters)."
    ),
]
IntervalOption = Annotated[
    float,
    typer.Option("--interval", help="Seconds between checks.", rich_help_panel=WAITING),
]
MaxAttemptsOption = Annotated[
    int,
    typer.Option(
        "--max-attempts", help="Checks before giving up; 0: no limit.", rich_help_panel=WAITING
    ),
]
TimeoutOption = Annotated[
    float | None,
    typer.Option(
        "--timeout",
        help="Seconds before giving up (default: no limit but --max-attempts).",
        show_default=False,
        rich_help_panel=WAITING,
    ),
]

_STATUS_EXIT = {
    OrderStatus.FULFILLED: ExitCode.OK,
    OrderStatus.PARTIALLY_FILLED: ExitCode.PARTIALLY_FILLED,
    OrderStatus.REFUNDED: ExitCode.REFUNDED,
}


def poll_policy(interval: float, max_attempts: int, timeout: float | None) -> PollPolicy:
    try:
        return PollPolicy(
            interval=interval,
            max_attempts=max_attempts or None,
            timeout=timeout,
            max_interval=max(interval, 60.0),
        )
    except ValueError as exc:
        fail(f"--interval/--max-attempts/--timeout: {exc}")


def exit_code_for(order: Order) -> ExitCode:
    """0 FULFILLED, 3 PARTIALLY_FILLED, 4 REFUNDED, 5 anything not final."""
    if isinstance(order.status, OrderStatus):
        return _STATUS_EXIT.get(order.status, ExitCode.NOT_FINAL)
    return ExitCode.NOT_FINAL


def _placed_json(placed: PlacedOrder) -> dict[str, Any]:
    return dict(jsonable(placed))


def _placed_text(placed: PlacedOrder) -> str:
    text = f"placed order {placed.order_id}"
    if placed.order_ref:
        text += f" (ref {placed.order_ref})"
    if placed.recovered:
        text += ": an earlier attempt had placed it; recovered by its ref, not bought twice"
    return text


def report_order(
    s: Settings, order: Order, show_codes: bool, placed: PlacedOrder | None = None
) -> None:
    """Print an order (its outcome once final) and exit with its status's code."""
    outcome = Outcome.from_order(order) if order.is_final else None  # InconsistentOrderError: 9
    doc = order_document(order, outcome, show_codes)
    if placed is not None:
        doc = {"placed": _placed_json(placed), **doc}

    def text(out: Output) -> None:
        out.lines(outcome_text(outcome, show_codes) if outcome else order_text(order))

    s.emit(doc, text)
    code = exit_code_for(order)
    if code is not ExitCode.OK:
        raise typer.Exit(code)


def _follow(
    s: Settings, client: Client, order_id: str, policy: PollPolicy, intro: str = ""
) -> Order:
    display = Display(sys.stderr, quiet=s.json)
    with display, interrupted_wait(order_id):
        if intro:
            display.print(intro)
        return wait_for(client, order_id, policy, display.follow(order_id, policy))


@order_app.command("place", epilog=_EPILOG)
def place(
    ctx: typer.Context,
    product_id: Annotated[str, typer.Argument(help="Product id (see `catalog`).")],
    type_id: Annotated[str, typer.Argument(help="Type id (see `product PRODUCT_ID`).")],
    quantity: Annotated[int, typer.Argument(min=1, help="Number of cards.")],
    ref: Annotated[
        str | None,
        typer.Option(
            help="Your unique reference (e.g. an invoice number); default: a new cli-… ref. "
            "With a ref a lost answer is retried safely, never bought twice.",
            show_default=False,
        ),
    ] = None,
    wait: Annotated[
        bool, typer.Option("--wait", help="Wait until the order is final; print its outcome.")
    ] = False,
    interval: IntervalOption = 5.0,
    max_attempts: MaxAttemptsOption = 60,
    timeout: TimeoutOption = None,
    show_codes: ShowCodesOption = False,
    api_key: ApiKeyOption = None,
    base_url: BaseUrlOption = None,
    json_output: JsonOption = False,
) -> None:
    """Buy QUANTITY cards of TYPE_ID; the balance is charged now.

    With --wait: follow the order to its final state and exit with its code (0 FULFILLED,
    3 PARTIALLY_FILLED, 4 REFUNDED, 5 not final in time).
    """
    s = settings(ctx, api_key, base_url, json_output)
    policy = poll_policy(interval, max_attempts, timeout)  # refuse a bad policy before buying
    ref = ref if ref is not None else f"cli-{uuid.uuid4().hex}"
    with s.client() as client:
        placed = client.gift_cards.place_order(product_id, type_id, quantity, ref)
        if not wait:
            s.emit({"placed": _placed_json(placed)}, lambda out: out.line(_placed_text(placed)))
            return
        try:
            order = _follow(s, client, placed.order_id, policy, intro=_placed_text(placed))
        except (PollTimeoutError, typer.Exit):
            raise  # a poll timeout names the order already
        except Exception as exc:
            note_placed(exc, placed.order_id)
            raise
    report_order(s, order, show_codes, placed)


@order_app.command("check", epilog=_EPILOG)
def check(
    ctx: typer.Context,
    order_id: Annotated[str, typer.Argument(help="Order id (from `order place`).")],
    show_codes: ShowCodesOption = False,
    api_key: ApiKeyOption = None,
    base_url: BaseUrlOption = None,
    json_output: JsonOption = False,
) -> None:
    """An order's current state; once final, its cards and amounts.

    Exits with the order's code: 0 FULFILLED, 3 PARTIALLY_FILLED, 4 REFUNDED, 5 still HANDLING.
    """
    s = settings(ctx, api_key, base_url, json_output)
    with s.client() as client:
        order = client.gift_cards.check_order(order_id)
    report_order(s, order, show_codes)


@order_app.command("wait", epilog=_EPILOG)
def wait_command(
    ctx: typer.Context,
    order_id: Annotated[str, typer.Argument(help="Order id (from `order place`).")],
    interval: IntervalOption = 5.0,
    max_attempts: MaxAttemptsOption = 60,
    timeout: TimeoutOption = None,
    show_codes: ShowCodesOption = False,
    api_key: ApiKeyOption = None,
    base_url: BaseUrlOption = None,
    json_output: JsonOption = False,
) -> None:
    """Check an order until it is final (live progress on stderr), then print its outcome.

    The default schedule is the guide's: a check every 5 s, 60 checks. Connection errors,
    timeouts, 429 and 5xx use up a check and the wait goes on; other errors end it. Exits with
    the order's code: 0 FULFILLED, 3 PARTIALLY_FILLED, 4 REFUNDED, 5 not final in time.
    """
    s = settings(ctx, api_key, base_url, json_output)
    policy = poll_policy(interval, max_attempts, timeout)
    with s.client() as client:
        order = _follow(s, client, order_id, policy)
    report_order(s, order, show_codes)


@orders_app.command("list")
def list_orders(
    ctx: typer.Context,
    page: PageOption = 1,
    page_size: PageSizeOption = 20,
    all_pages: AllOption = False,
    from_: FromOption = None,
    to: ToOption = None,
    show_codes: ShowCodesOption = False,
    api_key: ApiKeyOption = None,
    base_url: BaseUrlOption = None,
    json_output: JsonOption = False,
) -> None:
    """Orders, newest first (cards only with --json; codes masked unless --show-codes)."""
    s = settings(ctx, api_key, base_url, json_output)
    with s.client() as client:
        result: Page[Order] = one_or_all_pages(
            all_pages,
            lambda: client.gift_cards.list_orders(page_size=page_size, from_=from_, to=to),
            lambda: client.gift_cards.list_orders_page(
                page, page_size=page_size, from_=from_, to=to
            ),
        )
    doc = {
        "items": [order_json(order, show_codes) for order in result.items],
        "pagination": jsonable(result.pagination),
        "codes_masked": not show_codes,
    }

    def text(out: Output) -> None:
        if not result.items:
            out.line("no orders")
        else:
            rows = [
                [
                    o.id,
                    iso(o.time) if o.time else "-",
                    o.product or "-",
                    o.type or "-",
                    str(o.quantity),
                    status_text(o.status),
                    "-" if o.fulfilled_quantity is None else str(o.fulfilled_quantity),
                    money_text(o.fulfilled_amount),
                ]
                for o in result.items
            ]
            headers = ["ORDER", "TIME", "PRODUCT", "TYPE", "QTY", "STATUS", "CARDS", "CHARGED"]
            out.lines(table(headers, rows, (4, 6, 7)))
        out.line(page_footer(result, "order"))

    s.emit(doc, text)
