"""`ping`, `validate`, `balance`, `transactions`."""

from __future__ import annotations

import typer

from oneclickdz import Page, Transaction

from ._app import ACCOUNT, app
from ._core import (
    AllOption,
    ApiKeyOption,
    BaseUrlOption,
    ExitCode,
    FromOption,
    JsonOption,
    Output,
    PageOption,
    PageSizeOption,
    ToOption,
    one_or_all_pages,
    settings,
)
from ._render import iso, jsonable, money_text, page_footer, table, token_json


@app.command(rich_help_panel=ACCOUNT)
def ping(
    ctx: typer.Context,
    api_key: ApiKeyOption = None,
    base_url: BaseUrlOption = None,
    json_output: JsonOption = False,
) -> None:
    """Is the API up? (No key needed; exit 6 if the API reports a problem.)"""
    s = settings(ctx, api_key, base_url, json_output)
    with s.client(need_key=False) as client:
        health = client.ping()

    def text(out: Output) -> None:
        operators = ", ".join(f"{name} {state}" for name, state in health.operators.items())
        out.line(f"API {health.api}" + (f"; operators: {operators}" if operators else ""))

    s.emit(jsonable(health), text)
    if not health.ok:
        raise typer.Exit(ExitCode.API_ERROR)


@app.command(rich_help_panel=ACCOUNT)
def validate(
    ctx: typer.Context,
    api_key: ApiKeyOption = None,
    base_url: BaseUrlOption = None,
    json_output: JsonOption = False,
) -> None:
    """Who the key belongs to, its environment (SANDBOX/PRODUCTION), scope and allowed IPs."""
    s = settings(ctx, api_key, base_url, json_output)
    with s.client() as client:
        info = client.validate()
    data = token_json(info)
    key = data["api_key"]

    def text(out: Output) -> None:
        enabled = {True: "enabled", False: "DISABLED", None: "?"}[info.api_key.is_enabled]
        ips = ", ".join(info.api_key.allowed_ips) or "any"
        out.lines(
            [
                f"account      {info.username or '?'}",
                f"key          {key['key']}  {key['type']}  {key['scope']}  {enabled}",
                f"allowed IPs  {ips}",
            ]
        )

    s.emit(data, text)


@app.command(rich_help_panel=ACCOUNT)
def balance(
    ctx: typer.Context,
    api_key: ApiKeyOption = None,
    base_url: BaseUrlOption = None,
    json_output: JsonOption = False,
) -> None:
    """The account's balance (of the key's environment)."""
    s = settings(ctx, api_key, base_url, json_output)
    with s.client() as client:
        result = client.account.balance()
    s.emit(
        jsonable(result), lambda out: out.line(f"{money_text(result.balance)} {result.currency}")
    )


@app.command(rich_help_panel=ACCOUNT)
def transactions(
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
    """The ledger: deposits, orders (debits) and refunds, newest first."""
    s = settings(ctx, api_key, base_url, json_output)
    with s.client() as client:
        result: Page[Transaction] = one_or_all_pages(
            all_pages,
            lambda: client.account.transactions(page_size=page_size, from_=from_, to=to),
            lambda: client.account.transactions_page(page, page_size=page_size, from_=from_, to=to),
        )

    def text(out: Output) -> None:
        if not result.items:
            out.line("no transactions")
        else:
            rows = [
                [
                    iso(t.time) if t.time else "-",
                    t.type,
                    money_text(t.amount),
                    money_text(t.new_balance),
                    t.objid or "",
                    t.note or "",
                ]
                for t in result.items
            ]
            out.lines(table(["TIME", "TYPE", "AMOUNT", "BALANCE", "OBJID", "NOTE"], rows, (2, 3)))
        out.line(page_footer(result, "transaction"))

    s.emit(jsonable(result), text)
