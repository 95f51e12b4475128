"""The root `oneclickdz` application and its global options."""

from __future__ import annotations

from typing import Annotated

import typer

from oneclickdz._version import __version__

from ._core import API_KEY_ENV, BASE_URL_ENV, EXIT_CODES_HELP, GLOBAL, RootGroup, Settings

SERVICE = "Service"
ACCOUNT = "Account"
GIFT_CARDS = "Gift cards"

app = typer.Typer(
    name="oneclickdz",
    cls=RootGroup,
    help="OneClickDZ v3 gift-card API from a terminal: account, catalog and orders through the "
    "SDK; the local API service and its admin commands; a demo of the whole system.\n\n"
    "Global options work before or after the command: `oneclickdz balance --json`.",
    epilog=EXIT_CODES_HELP,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
)


def _version(value: bool) -> None:
    if value:
        print(f"oneclickdz {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    api_key: Annotated[
        str | None,
        typer.Option(
            "--api-key",
            envvar=API_KEY_ENV,
            help="API key (X-Access-Token).",
            show_default=False,
            rich_help_panel=GLOBAL,
        ),
    ] = None,
    base_url: Annotated[
        str | None,
        typer.Option(
            "--base-url",
            envvar=BASE_URL_ENV,
            help="API base URL (default: https://api.oneclickdz.com/v3; "
            "a local service: http://127.0.0.1:8731/v3).",
            show_default=False,
            rich_help_panel=GLOBAL,
        ),
    ] = None,
    json_output: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Print one JSON document on stdout (an error: on stderr) instead of text.",
            rich_help_panel=GLOBAL,
        ),
    ] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """OneClickDZ v3 gift-card API toolkit.

    The global options also work after the command (`oneclickdz balance --json`).
    """
    ctx.obj = Settings(api_key=api_key, base_url=base_url, json=json_output)
