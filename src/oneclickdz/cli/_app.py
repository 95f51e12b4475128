"""The root `oneclickdz` application, its global options, and the extras its commands need."""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from typing import Annotated, Any, NoReturn

import typer

from oneclickdz._version import __version__

from ._core import API_KEY_ENV, BASE_URL_ENV, EXIT_CODES_HELP, GLOBAL, RootGroup, Settings, fail

# The modules of each optional extra (see pyproject.toml), looked up before a command that needs
# them runs, so that a missing one is a hint rather than a traceback deep inside the command.
EXTRAS: dict[str, tuple[str, ...]] = {
    "server": (
        "starlette",
        "uvicorn",
        "httptools",
        "orjson",
        "cryptography",
        "prometheus_client",
        "swagger_ui",
        "redis",
        "psycopg",
        "psycopg_pool",
        "aiohttp",
    ),
    "tracker": ("aiohttp", "cryptography", "psycopg", "psycopg_pool", "starlette", "uvicorn"),
}
NEEDS_EXTRA = {"serve": "server", "admin": "server", "demo": "server", "track": "tracker"}


def missing_extra(extra: str) -> bool:
    """Whether a module of `extra` is not installed (found without importing it: importing them
    all would cost a `track` or `admin` command about a second)."""
    for module in EXTRAS[extra]:
        try:
            if importlib.util.find_spec(module) is None:
                return True
        except ImportError:
            return True
    return False


def needs_extra(extra: str) -> NoReturn:
    """Refuse the command: one `error:` line saying what to install, exit 2."""
    fail(f'this command needs the {extra} extra: pip install "oneclickdz[{extra}]"')


class CommandGroup(RootGroup):
    """The root group, refusing a command whose extra is missing: one line and exit 2.

    Asking for help (`oneclickdz serve --help`) and shell completion still work without it.
    """

    def resolve_command(  # ctx: click's Context (typer >= 0.20 carries its own copy)
        self, ctx: Any, args: list[str]
    ) -> tuple[str | None, Any, list[str]]:
        name, command, rest = super().resolve_command(ctx, args)
        extra = NEEDS_EXTRA.get(name or "")
        if extra and not ctx.resilient_parsing and not _asks_help(rest) and missing_extra(extra):
            needs_extra(extra)
        return name, command, rest


def _asks_help(args: Sequence[str]) -> bool:
    for arg in args:
        if arg == "--":
            return False
        if arg == "--help":
            return True
    return False


SERVICE = "Service"
ACCOUNT = "Account"
GIFT_CARDS = "Gift cards"
TOPUPS = "Mobile and internet top-ups"
PAYMENTS = "Payment links (OCPay)"

app = typer.Typer(
    name="oneclickdz",
    cls=CommandGroup,
    help="OneClickDZ v3 API from a terminal: account, gift-card catalog and orders, mobile and "
    "internet top-ups, OCPay payment links, through the SDK; the local API service and its admin "
    "commands; a demo of the whole system.\n\n"
    "Global options work before or after the command: `oneclickdz balance --json`.",
    epilog=EXIT_CODES_HELP,
    no_args_is_help=True,
    add_completion=True,
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
