"""The `oneclickdz` command."""

from __future__ import annotations

import sys
from decimal import Decimal
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from oneclickdz.server.config import DEFAULT_DB, DEFAULT_HOST, DEFAULT_PORT

app = typer.Typer(
    name="oneclickdz",
    help="OneClickDZ gift-card API toolkit: the local API service and its admin commands.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
admin_app = typer.Typer(
    help="Manage a service database: keys, deposits, card inventory, catalog.",
    no_args_is_help=True,
)
app.add_typer(admin_app, name="admin")

EXIT_USAGE = 2

DbOption = Annotated[
    str, typer.Option("--db", envvar="ONECLICKDZ_DB", help="Database URL.", show_default=True)
]


def _fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


@app.command()
def serve(
    db: DbOption = DEFAULT_DB,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = DEFAULT_HOST,
    port: Annotated[int, typer.Option(help="TCP port.")] = DEFAULT_PORT,
    fulfill_delay: Annotated[
        str, typer.Option(help="Seconds an order stays HANDLING: LOW-HIGH, uniform.")
    ] = "2-10",
    seed: Annotated[
        int | None, typer.Option(help="Seed of every random choice (logged when absent).")
    ] = None,
    faults: Annotated[
        str,
        typer.Option(
            help="Fault rules route:rate:fault[:xN], comma-separated, e.g. "
            "'checkOrder:0.2:503,placeOrder:0.05:reset,*:0.1:delay=2'. Faults: 429[=S], 500, "
            "503, delay=S, reset, reset-after, empty, malformed."
        ),
    ] = "",
    rate_limit: Annotated[
        int, typer.Option(help="Requests a minute per key (token bucket); 0 turns it off.")
    ] = 600,
    lockout_window: Annotated[
        float, typer.Option(help="Seconds in which 5 bad keys from one IP block it.")
    ] = 900.0,
    lockout_duration: Annotated[float, typer.Option(help="Seconds an IP stays blocked.")] = 900.0,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
    busy_timeout: Annotated[
        float,
        typer.Option(help="Seconds a write waits for another process's lock before a 503."),
    ] = 5.0,
) -> None:
    """Run the OneClickDZ v3 gift-card API on HOST:PORT (JSON logs on stderr)."""
    from oneclickdz.server.config import ServerConfig, parse_delay
    from oneclickdz.server.faults import parse_faults

    try:
        delay = parse_delay(fulfill_delay)
        parse_faults(faults)
    except ValueError as exc:
        _fail(str(exc))
    config = ServerConfig(
        db_url=db, host=host, port=port, fulfill_delay=delay, seed=seed, faults=faults,
        rate_limit=rate_limit, lockout_window=lockout_window, lockout_duration=lockout_duration,
        log_level=log_level, busy_timeout=busy_timeout,
    )  # fmt: skip
    from oneclickdz.server.runtime import serve as run

    with _admin_errors():
        run(config)


# -- admin ----------------------------------------------------------------------------------


class _admin_errors:
    """Turn the known refusals of admin commands into one line on stderr and exit code 2."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: object) -> bool:
        from oneclickdz.server.admin import AdminError
        from oneclickdz.server.catalog import CatalogError
        from oneclickdz.server.vault import VaultError

        if isinstance(exc, AdminError | CatalogError | VaultError | ValueError | OSError):
            _fail(str(exc))
        return False


_db_url = DEFAULT_DB


@admin_app.callback()
def admin(db: DbOption = DEFAULT_DB) -> None:
    """Manage a service database (it may be in use by a running service)."""
    global _db_url
    _db_url = db


def _env(sandbox: bool, production: bool) -> str:
    if sandbox == production:
        _fail("choose exactly one of --sandbox or --production")
    return "SANDBOX" if sandbox else "PRODUCTION"


Sandbox = Annotated[bool, typer.Option("--sandbox", help="The sandbox environment.")]
Production = Annotated[bool, typer.Option("--production", help="The production environment.")]
Account = Annotated[str, typer.Option(help="Account (username) the key belongs to.")]


@admin_app.command("create-key")
def create_key(
    sandbox: Sandbox = False,
    production: Production = False,
    account: Account = "default",
    balance: Annotated[
        str | None, typer.Option(help="Deposit this many DZD into the key's environment.")
    ] = None,
    read_only: Annotated[bool, typer.Option("--read-only", help="Scope READ-ONLY.")] = False,
    allow_ip: Annotated[
        list[str] | None, typer.Option("--allow-ip", help="Allowed IP or network (repeatable).")
    ] = None,
) -> None:
    """Create an API key; prints the key, which is shown this once only."""
    from oneclickdz.server import admin as ops
    from oneclickdz.server.runtime import open_database

    env = _env(sandbox, production)
    with _admin_errors():
        store, _ = open_database(_db_url)
        try:
            key = ops.create_key(
                store, env, account, balance, read_only, allow_ip or []  # type: ignore[arg-type]
            )
        finally:
            store.close()
    typer.echo(key)


@admin_app.command()
def deposit(
    amount: Annotated[str, typer.Argument(help="Amount in DZD, e.g. 5000 or 1250.50.")],
    sandbox: Sandbox = False,
    production: Production = False,
    account: Account = "default",
) -> None:
    """Credit an account's balance; prints the new balance."""
    from oneclickdz.server import admin as ops
    from oneclickdz.server.runtime import open_database

    env = _env(sandbox, production)
    with _admin_errors():
        store, _ = open_database(_db_url)
        try:
            new_balance: Decimal = ops.deposit(store, account, env, amount)  # type: ignore[arg-type]
        finally:
            store.close()
    typer.echo(str(new_balance))


@admin_app.command("import-cards")
def import_cards(
    file: Annotated[Path, typer.Argument(help="CSV: productId,typeId,value,serial.")],
) -> None:
    """Add card codes to the production inventory, sealed with the vault key."""
    from oneclickdz.server import admin as ops
    from oneclickdz.server.runtime import open_database

    with _admin_errors():
        store, vault = open_database(_db_url)
        try:
            count = ops.import_cards(store, vault, file)
        finally:
            store.close()
    typer.echo(f"imported {count} cards")


@admin_app.command("load-catalog")
def load_catalog(
    file: Annotated[Path, typer.Argument(help="Catalog JSON (see the README).")],
) -> None:
    """Insert or update products and types from a catalog file."""
    from oneclickdz.server import admin as ops
    from oneclickdz.server.runtime import open_database

    with _admin_errors():
        store, _ = open_database(_db_url)
        try:
            count = ops.load_catalog_file(store, file)
        finally:
            store.close()
    typer.echo(f"loaded {count} products")


@admin_app.command("disable-key")
def disable_key(key: Annotated[str, typer.Argument(help="The key to disable.")]) -> None:
    """Refuse every request made with KEY (403 KEY_DISABLED) from now on."""
    _set_enabled(key, False)


@admin_app.command("enable-key")
def enable_key(key: Annotated[str, typer.Argument(help="The key to enable again.")]) -> None:
    """Accept KEY again."""
    _set_enabled(key, True)


def _set_enabled(key: str, enabled: bool) -> None:
    from oneclickdz.server import admin as ops
    from oneclickdz.server.runtime import open_database

    with _admin_errors():
        store, _ = open_database(_db_url)
        try:
            ops.set_key_enabled(store, key, enabled)
        finally:
            store.close()


def main() -> None:
    app(prog_name="oneclickdz")
    sys.exit(0)
