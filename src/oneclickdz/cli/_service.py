"""`serve` and `admin …`: the local API service and the operator's commands on its database.

The server's modules (starlette, uvicorn, cryptography, ...) are imported inside the commands,
so that `oneclickdz --help` and the SDK commands start without them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer

from oneclickdz._redact import mask
from oneclickdz.server.config import (
    BODY_TIMEOUT,
    DEFAULT_DB,
    DEFAULT_HOST,
    DEFAULT_PORT,
    HEADER_TIMEOUT,
    KEEPALIVE_TIMEOUT,
    MAX_BODY_BYTES,
    MAX_HEADER_BYTES,
    MAX_HEADERS,
    MAX_WORKERS,
)

from ._app import EXTRAS, SERVICE, app, needs_extra
from ._core import ExitCode, JsonOption, Output, Settings, fail, settings

if TYPE_CHECKING:
    from oneclickdz.server.store import Store
    from oneclickdz.server.vault import Vault

admin_app = typer.Typer(
    help="Manage a service database: keys, deposits, card inventory, catalog, webhooks.",
    no_args_is_help=True,
)
app.add_typer(admin_app, name="admin", rich_help_panel=SERVICE)

DbOption = Annotated[
    str, typer.Option("--db", envvar="ONECLICKDZ_DB", help="Database URL.", show_default=True)
]


@contextmanager
def refusals() -> Iterator[None]:
    """The known refusals of the service and admin commands: one line on stderr, exit 2."""
    from oneclickdz.server.admin import AdminError
    from oneclickdz.server.catalog import CatalogError
    from oneclickdz.server.store import StoreUnavailable
    from oneclickdz.server.vault import VaultError

    try:
        yield
    except (AdminError, CatalogError, VaultError, StoreUnavailable, ValueError, OSError) as exc:
        fail(str(exc))
    except ModuleNotFoundError as exc:  # one the extra check did not import up front
        if (exc.name or "").partition(".")[0] not in EXTRAS["server"]:
            raise
        needs_extra("server")


def _var(name: str) -> str:
    """The environment variable that sets a `serve` option: `ONECLICKDZ_<NAME>`."""
    return f"ONECLICKDZ_{name}"


LIMITS = "Connection limits"
WEBHOOKS = "Webhooks"


@app.command(rich_help_panel=SERVICE)
def serve(
    ctx: typer.Context,
    db: DbOption = DEFAULT_DB,
    host: Annotated[
        str, typer.Option(envvar=_var("HOST"), help="Interface to listen on.")
    ] = DEFAULT_HOST,
    port: Annotated[int, typer.Option(envvar=_var("PORT"), help="TCP port.")] = DEFAULT_PORT,
    fulfill_delay: Annotated[
        str,
        typer.Option(
            envvar=_var("FULFILL_DELAY"), help="Seconds an order stays HANDLING: LOW-HIGH, uniform."
        ),
    ] = "2-10",
    seed: Annotated[
        int | None,
        typer.Option(envvar=_var("SEED"), help="Seed of every random choice (logged when absent)."),
    ] = None,
    faults: Annotated[
        str,
        typer.Option(
            envvar=_var("FAULTS"),
            help="Fault rules route:rate:fault[:xN], comma-separated, e.g. "
            "'checkOrder:0.2:503,placeOrder:0.05:reset,*:0.1:delay=2'. Faults: 429[=S], 500, "
            "503, delay=S, reset, reset-after, empty, malformed.",
        ),
    ] = "",
    rate_limit: Annotated[
        int,
        typer.Option(
            envvar=_var("RATE_LIMIT"),
            min=0,
            help="Requests a minute per key (token bucket); 0 turns it off.",
        ),
    ] = 600,
    lockout_attempts: Annotated[
        int,
        typer.Option(
            envvar=_var("LOCKOUT_ATTEMPTS"),
            min=1,
            help="Bad keys from one IP, within the window, that block it.",
        ),
    ] = 5,
    lockout_window: Annotated[
        float,
        typer.Option(
            envvar=_var("LOCKOUT_WINDOW"), min=0, help="Seconds in which bad keys are counted."
        ),
    ] = 900.0,
    lockout_duration: Annotated[
        float,
        typer.Option(envvar=_var("LOCKOUT_DURATION"), min=0, help="Seconds an IP stays blocked."),
    ] = 900.0,
    log_level: Annotated[
        str, typer.Option(envvar=_var("LOG_LEVEL"), help="debug, info, warning or error.")
    ] = "info",
    busy_timeout: Annotated[
        float,
        typer.Option(
            envvar=_var("BUSY_TIMEOUT"),
            min=0,
            help="Seconds a write waits for another process's lock before a 503.",
        ),
    ] = 5.0,
    max_header_bytes: Annotated[
        int,
        typer.Option(
            envvar=_var("MAX_HEADER_BYTES"),
            min=1024,
            help="Largest request head (request line and headers), in bytes: 431 beyond.",
            rich_help_panel=LIMITS,
        ),
    ] = MAX_HEADER_BYTES,
    max_headers: Annotated[
        int,
        typer.Option(
            envvar=_var("MAX_HEADERS"),
            min=1,
            help="Most header fields in a request: 431 beyond.",
            rich_help_panel=LIMITS,
        ),
    ] = MAX_HEADERS,
    max_body_bytes: Annotated[
        int,
        typer.Option(
            envvar=_var("MAX_BODY_BYTES"),
            min=1,
            help="Largest request body, in bytes: 413 beyond.",
            rich_help_panel=LIMITS,
        ),
    ] = MAX_BODY_BYTES,
    header_timeout: Annotated[
        float,
        typer.Option(
            envvar=_var("HEADER_TIMEOUT"),
            min=0.1,
            help="Seconds to receive a whole request head once it started: 408 after.",
            rich_help_panel=LIMITS,
        ),
    ] = HEADER_TIMEOUT,
    body_timeout: Annotated[
        float,
        typer.Option(
            envvar=_var("BODY_TIMEOUT"),
            min=0.1,
            help="Seconds to receive a whole request body: 408 after.",
            rich_help_panel=LIMITS,
        ),
    ] = BODY_TIMEOUT,
    keepalive_timeout: Annotated[
        float,
        typer.Option(
            envvar=_var("KEEPALIVE_TIMEOUT"),
            min=0.1,
            help="Seconds an idle connection (one that sends nothing) stays open.",
            rich_help_panel=LIMITS,
        ),
    ] = KEEPALIVE_TIMEOUT,
    metrics: Annotated[
        bool,
        typer.Option(
            "--metrics/--no-metrics",
            envvar=_var("METRICS"),
            help="Serve Prometheus metrics at /metrics.",
        ),
    ] = True,
    fulfil_lease: Annotated[
        float,
        typer.Option(
            envvar=_var("FULFIL_LEASE"),
            min=0.5,
            max=3600,
            help="Seconds a process holds the orders it claimed for fulfilment; a process that "
            "dies holding some, its orders are finished by another once this runs out.",
        ),
    ] = 10.0,
    workers: Annotated[
        int,
        typer.Option(
            envvar=_var("WORKERS"),
            min=1,
            max=MAX_WORKERS,
            help="Service processes sharing the port and the database, supervised: a worker "
            "that dies is restarted. 1 runs the service in this process alone.",
        ),
    ] = 1,
    redis: Annotated[
        str | None,
        typer.Option(
            "--redis",
            envvar=_var("REDIS"),
            metavar="URL",
            help="Keep the rate limits and the IP lockout in this Redis (e.g. "
            "redis://127.0.0.1:6379/0), shared by every process using it. Without it they are "
            "kept in the database when it is PostgreSQL, else in each process's memory.",
            show_default=False,
        ),
    ] = None,
    redis_prefix: Annotated[
        str,
        typer.Option(
            envvar=_var("REDIS_PREFIX"),
            help="Prefix of this service's keys in Redis: one per service sharing a Redis.",
        ),
    ] = "oneclickdz",
    webhook_allow_private: Annotated[
        bool,
        typer.Option(
            "--webhook-allow-private",
            envvar=_var("WEBHOOK_ALLOW_PRIVATE"),
            help="Send webhooks to private and loopback addresses too (tests on 127.0.0.1).",
            rich_help_panel=WEBHOOKS,
        ),
    ] = False,
    webhook_concurrency: Annotated[
        int,
        typer.Option(
            envvar=_var("WEBHOOK_CONCURRENCY"),
            min=1,
            max=1024,
            help="Webhook deliveries in flight at once, per process.",
            rich_help_panel=WEBHOOKS,
        ),
    ] = 32,
    webhook_timeout: Annotated[
        float,
        typer.Option(
            envvar=_var("WEBHOOK_TIMEOUT"),
            min=0.1,
            max=60,
            help="Seconds one webhook attempt may take.",
            rich_help_panel=WEBHOOKS,
        ),
    ] = 10.0,
    webhook_retries: Annotated[
        str,
        typer.Option(
            envvar=_var("WEBHOOK_RETRIES"),
            help="Seconds before each retry of a failed webhook, comma-separated (each ±20%); "
            "after the last, the delivery is FAILED.",
            rich_help_panel=WEBHOOKS,
        ),
    ] = "5,60,600,3600,21600,57600",
    payment_link_ttl: Annotated[
        float,
        typer.Option(
            envvar=_var("PAYMENT_LINK_TTL"),
            metavar="SECONDS",
            min=1,
            max=30 * 86400,
            help="Seconds an OCPay payment link can be paid after its creation; then "
            "checkPayment answers 410 and its page says it expired.",
        ),
    ] = 1200.0,
    topup_delay_scale: Annotated[
        float,
        typer.Option(
            envvar=_var("TOPUP_DELAY_SCALE"),
            metavar="FACTOR",
            min=0,
            max=100,
            help="Multiplies every documented top-up delay (mobile PENDING 2-15 s and HANDLING "
            "3-8 s, internet HANDLING 3-45 s, QUEUED 12-48 h): 0.01 for a quick demo.",
        ),
    ] = 1.0,
    json_output: JsonOption = False,
) -> None:
    """Run the OneClickDZ v3 gift-card API on HOST:PORT (JSON logs on stderr).

    Every option can also be set by the environment variable shown beside it.
    """
    settings(ctx, json_output=json_output)
    from oneclickdz.server.config import ServerConfig, parse_delay, parse_schedule

    try:
        delay = parse_delay(fulfill_delay)
        retries = parse_schedule(webhook_retries)
    except ValueError as exc:
        fail(str(exc))
    config = ServerConfig(
        db_url=db, host=host, port=port, fulfill_delay=delay, seed=seed, faults=faults,
        rate_limit=rate_limit, lockout_attempts=lockout_attempts, lockout_window=lockout_window,
        lockout_duration=lockout_duration, log_level=log_level, busy_timeout=busy_timeout,
        max_header_bytes=max_header_bytes, max_headers=max_headers,
        max_body_bytes=max_body_bytes, header_timeout=header_timeout, body_timeout=body_timeout,
        keepalive_timeout=keepalive_timeout, metrics=metrics, workers=workers,
        fulfil_lease=fulfil_lease, redis_url=redis, redis_prefix=redis_prefix,
        webhook_allow_private=webhook_allow_private, webhook_concurrency=webhook_concurrency,
        webhook_timeout=webhook_timeout, webhook_retries=retries,
        payment_link_ttl=payment_link_ttl, topup_delay_scale=topup_delay_scale,
    )  # fmt: skip
    from oneclickdz.server.limits import LimitsUnavailable
    from oneclickdz.server.runtime import CannotListen
    from oneclickdz.server.runtime import serve as run
    from oneclickdz.server.workers import WorkersFailing

    with refusals():
        try:
            run(config)
        except CannotListen as exc:
            fail(str(exc), ExitCode.CANNOT_LISTEN)
        except LimitsUnavailable as exc:
            fail(str(exc), ExitCode.CONNECTION)
        except WorkersFailing as exc:
            fail(str(exc), ExitCode.INTERNAL)


# -- admin ----------------------------------------------------------------------------------


@admin_app.callback()
def admin(ctx: typer.Context, db: DbOption = DEFAULT_DB) -> None:
    """Manage a service database (it may be in use by a running service)."""
    ctx.obj = replace(settings(ctx), db_url=db)


@contextmanager
def database(s: Settings) -> Iterator[tuple[Store, Vault]]:
    """The admin database, opened (migrated, vault key checked) and closed again."""
    from oneclickdz.server.runtime import open_database

    with refusals():
        store, vault = open_database(s.db_url or DEFAULT_DB)
        try:
            yield store, vault
        finally:
            store.close()


def _env(sandbox: bool, production: bool) -> Literal["SANDBOX", "PRODUCTION"]:
    if sandbox == production:
        fail("choose exactly one of --sandbox or --production")
    return "SANDBOX" if sandbox else "PRODUCTION"


Sandbox = Annotated[bool, typer.Option("--sandbox", help="The sandbox environment.")]
Production = Annotated[bool, typer.Option("--production", help="The production environment.")]
Account = Annotated[str, typer.Option(help="Account (username) the key belongs to.")]


@admin_app.command("create-key")
def create_key(
    ctx: typer.Context,
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
    json_output: JsonOption = False,
) -> None:
    """Create an API key; prints the key, which is shown this once only."""
    from oneclickdz.server import admin as ops

    s = settings(ctx, json_output=json_output)
    env = _env(sandbox, production)
    with database(s) as (store, _):
        key = ops.create_key(store, env, account, balance, read_only, allow_ip or [])
    data = {
        "key": key,
        "type": env,
        "account": account,
        "scope": "READ-ONLY" if read_only else "READ-WRITE",
        "allowed_ips": allow_ip or [],
    }
    s.emit(data, lambda out: out.line(key))


@admin_app.command()
def deposit(
    ctx: typer.Context,
    amount: Annotated[str, typer.Argument(help="Amount in DZD, e.g. 5000 or 1250.50.")],
    sandbox: Sandbox = False,
    production: Production = False,
    account: Account = "default",
    json_output: JsonOption = False,
) -> None:
    """Credit an account's balance; prints the new balance."""
    from oneclickdz.server import admin as ops

    s = settings(ctx, json_output=json_output)
    env = _env(sandbox, production)
    with database(s) as (store, _):
        new_balance: Decimal = ops.deposit(store, account, env, amount)
    data = {"account": account, "type": env, "balance": str(new_balance)}
    s.emit(data, lambda out: out.line(str(new_balance)))


@admin_app.command("import-cards")
def import_cards(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="CSV: productId,typeId,value,serial.")],
    json_output: JsonOption = False,
) -> None:
    """Add card codes to the production inventory, sealed with the vault key."""
    from oneclickdz.server import admin as ops

    s = settings(ctx, json_output=json_output)
    with database(s) as (store, vault):
        count = ops.import_cards(store, vault, file)
    s.emit({"imported": count}, lambda out: out.line(f"imported {count} cards"))


@admin_app.command("load-catalog")
def load_catalog(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="Catalog JSON (see the README).")],
    json_output: JsonOption = False,
) -> None:
    """Insert or update products and types from a catalog file."""
    from oneclickdz.server import admin as ops

    s = settings(ctx, json_output=json_output)
    with database(s) as (store, _):
        count = ops.load_catalog_file(store, file)
    s.emit({"loaded": count}, lambda out: out.line(f"loaded {count} products"))


@admin_app.command("disable-key")
def disable_key(
    ctx: typer.Context,
    key: Annotated[str, typer.Argument(help="The key to disable.")],
    json_output: JsonOption = False,
) -> None:
    """Refuse every request made with KEY (403 KEY_DISABLED) from now on."""
    _set_enabled(settings(ctx, json_output=json_output), key, False)


@admin_app.command("enable-key")
def enable_key(
    ctx: typer.Context,
    key: Annotated[str, typer.Argument(help="The key to enable again.")],
    json_output: JsonOption = False,
) -> None:
    """Accept KEY again."""
    _set_enabled(settings(ctx, json_output=json_output), key, True)


def _set_enabled(s: Settings, key: str, enabled: bool) -> None:
    from oneclickdz.server import admin as ops

    with database(s) as (store, _):
        ops.set_key_enabled(store, key, enabled)
    s.emit({"key": mask(key), "enabled": enabled}, lambda out: None)


# -- webhooks -------------------------------------------------------------------------------


def _endpoint_line(view: dict[str, Any]) -> str:
    status = view["status"] + (f" ({view['disabledReason']})" if "disabledReason" in view else "")
    return f"{view['id']}  {view['url']}  {','.join(view['events'])}  {status}"


@admin_app.command("add-webhook")
def add_webhook(
    ctx: typer.Context,
    key: Annotated[str, typer.Argument(help="The API key whose orders the webhooks are about.")],
    url: Annotated[str, typer.Argument(help="Where to POST them: an http(s) URL.")],
    events: Annotated[
        list[str] | None,
        typer.Option(
            "--events",
            help="Event types, comma-separated or repeated (default: all): order.fulfilled, "
            "order.partially_filled, order.refunded.",
        ),
    ] = None,
    allow_private: Annotated[
        bool,
        typer.Option(
            "--allow-private",
            help="Accept a private or loopback address (the service must run with "
            "--webhook-allow-private to send there).",
        ),
    ] = False,
    json_output: JsonOption = False,
) -> None:
    """Add a webhook endpoint; prints its whsec_ secret on the last line, this once only."""
    from oneclickdz.server import admin as ops
    from oneclickdz.server.webhooks import endpoint_view

    s = settings(ctx, json_output=json_output)
    types = [t.strip() for item in events or [] for t in item.split(",") if t.strip()]
    with database(s) as (store, vault):
        made = ops.add_webhook(store, vault, key, url, types, allow_private)
    view = endpoint_view(made.endpoint)

    def human(out: Output) -> None:
        out.line(_endpoint_line(view))
        out.line(made.secret)

    s.emit({**view, "secret": made.secret}, human)


@admin_app.command("list-webhooks")
def list_webhooks(
    ctx: typer.Context,
    key: Annotated[str | None, typer.Option("--key", help="Only this API key's endpoints.")] = None,
    json_output: JsonOption = False,
) -> None:
    """List webhook endpoints (never their secrets): id, URL, events, status."""
    from oneclickdz.server import admin as ops
    from oneclickdz.server.webhooks import endpoint_view

    s = settings(ctx, json_output=json_output)
    with database(s) as (store, _):
        views = [endpoint_view(e) for e in ops.list_webhooks(store, key)]

    def human(out: Output) -> None:
        for view in views:
            out.line(_endpoint_line(view))

    s.emit(views, human)


EndpointId = Annotated[int, typer.Argument(help="The endpoint's id (see list-webhooks).")]


@admin_app.command("remove-webhook")
def remove_webhook(
    ctx: typer.Context, endpoint: EndpointId, json_output: JsonOption = False
) -> None:
    """Remove an endpoint: nothing more is sent to it; its pending deliveries are cancelled."""
    from oneclickdz.server import admin as ops

    s = settings(ctx, json_output=json_output)
    with database(s) as (store, _):
        ops.remove_webhook(store, endpoint)
    s.emit({"id": endpoint, "status": "REMOVED"}, lambda out: out.line(f"removed {endpoint}"))


@admin_app.command("enable-webhook")
def enable_webhook(
    ctx: typer.Context, endpoint: EndpointId, json_output: JsonOption = False
) -> None:
    """Send to a disabled endpoint again (one a 410 disabled, say)."""
    _webhook_enabled(settings(ctx, json_output=json_output), endpoint, True)


@admin_app.command("disable-webhook")
def disable_webhook(
    ctx: typer.Context, endpoint: EndpointId, json_output: JsonOption = False
) -> None:
    """Stop sending to an endpoint; its pending deliveries are cancelled."""
    _webhook_enabled(settings(ctx, json_output=json_output), endpoint, False)


def _webhook_enabled(s: Settings, endpoint: int, enabled: bool) -> None:
    from oneclickdz.server import admin as ops
    from oneclickdz.server.webhooks import endpoint_view

    with database(s) as (store, _):
        view = endpoint_view(ops.set_webhook_enabled(store, endpoint, enabled))
    s.emit(view, lambda out: out.line(_endpoint_line(view)))


@admin_app.command("rotate-webhook-secret")
def rotate_webhook_secret(
    ctx: typer.Context,
    endpoint: EndpointId,
    grace: Annotated[
        float,
        typer.Option(
            min=0, help="Seconds the old secret keeps signing beside the new one (default 24 h)."
        ),
    ] = 86400.0,
    json_output: JsonOption = False,
) -> None:
    """Give an endpoint a new secret (printed on the last line, once); both sign meanwhile."""
    from oneclickdz.server import admin as ops
    from oneclickdz.server.webhooks import endpoint_view

    s = settings(ctx, json_output=json_output)
    with database(s) as (store, vault):
        made = ops.rotate_webhook_secret(store, vault, endpoint, grace)
    view = endpoint_view(made.endpoint)

    def human(out: Output) -> None:
        out.line(f"{_endpoint_line(view)}  old secret signs until {view['previousSecretUntil']}")
        out.line(made.secret)

    s.emit({**view, "secret": made.secret}, human)


@admin_app.command("webhook-log")
def webhook_log(
    ctx: typer.Context,
    event: Annotated[str | None, typer.Argument(help="Only this event's attempts.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10000, help="Most attempts shown.")] = 50,
    json_output: JsonOption = False,
) -> None:
    """The latest webhook delivery attempts, newest first: outcome, HTTP status, latency."""
    from dataclasses import asdict

    from oneclickdz.server import admin as ops

    s = settings(ctx, json_output=json_output)
    with database(s) as (store, _):
        attempts = ops.webhook_log(store, event, limit)

    def human(out: Output) -> None:
        for a in attempts:
            status = "-" if a.status_code is None else str(a.status_code)
            latency = "-" if a.latency_ms is None else f"{a.latency_ms:.1f} ms"
            error = f"  {a.error}" if a.error else ""
            out.line(
                f"{a.time}  {a.event_id}  endpoint {a.endpoint_id}  #{a.attempt}  "
                f"{a.outcome}  {status}  {latency}{error}"
            )

    s.emit([asdict(a) for a in attempts], human)


@admin_app.command("webhook-replay")
def webhook_replay(
    ctx: typer.Context,
    event: Annotated[str, typer.Argument(help="The event id (evt_…, the webhook-id header).")],
    json_output: JsonOption = False,
) -> None:
    """Send an event again, now, to every enabled endpoint it was for."""
    from oneclickdz.server import admin as ops

    s = settings(ctx, json_output=json_output)
    with database(s) as (store, _):
        count = ops.replay_webhook(store, event)
    s.emit(
        {"event": event, "deliveries": count},
        lambda out: out.line(f"{event}: {count} deliveries due now"),
    )


@admin_app.command("resolve-topup")
def resolve_topup(
    ctx: typer.Context,
    topup: Annotated[str, typer.Argument(help="The top-up id (topupId).")],
    fulfilled: Annotated[
        bool, typer.Option("--fulfilled", help="The credit arrived: the charge stands.")
    ] = False,
    refunded: Annotated[
        bool, typer.Option("--refunded", help="It did not: the charge goes back.")
    ] = False,
    json_output: JsonOption = False,
) -> None:
    """Settle a mobile top-up left in UNKNOWN_ERROR (it is never refunded by itself)."""
    from oneclickdz.server import admin as ops

    s = settings(ctx, json_output=json_output)
    if fulfilled == refunded:
        fail("give exactly one of --fulfilled or --refunded", ExitCode.USAGE)
    with database(s) as (store, _):
        done = ops.resolve_topup(store, topup, fulfilled)
    data = {"topupId": done.id, "status": done.status.value}
    s.emit(data, lambda out: out.line(f"{done.id}: {done.status.value}"))
