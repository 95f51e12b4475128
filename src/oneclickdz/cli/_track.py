"""`track …`: the durable order tracker (`oneclickdz.tracker`) from a terminal.

    oneclickdz track place PRODUCT_ID TYPE_ID QUANTITY [--meta K=V]...   one intent, no API call
    oneclickdz track place --from-csv FILE                               many, all or nothing
    oneclickdz track run [--deliver-exec CMD] [--until-idle]             place, follow, deliver
    oneclickdz track run --webhook-listen HOST:PORT                      ... hinted by webhooks
    oneclickdz track list | show ID | reveal ID | retry ID | stats       the store, no API call

Every command works on one store (`--store URL`, $ONECLICKDZ_TRACKER_STORE, default
`sqlite:///oneclickdz-tracker.db`), whose card key comes from $ONECLICKDZ_TRACKER_KEY or the key
file beside it. Only `run` calls the API (and needs a key); `reveal` is the one command that
prints card codes.

The tracker's modules (cryptography, aiohttp) are imported inside the commands, so that
`oneclickdz --help` and the SDK commands start without them.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import json
import logging
import os
import signal
import sys
import time
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Iterator,
    Mapping,
    Sequence,
)
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, TextIO, TypeVar

import typer

from ._app import GIFT_CARDS, app
from ._core import (
    API_KEY_ENV,
    GLOBAL,
    ApiKeyOption,
    BaseUrlOption,
    ExitCode,
    JsonOption,
    Output,
    Settings,
    fail,
    settings,
)
from ._render import money_text, table

if TYPE_CHECKING:
    from rich.console import RenderableType
    from rich.live import Live

    from oneclickdz import AsyncClient
    from oneclickdz.tracker import Delivery, RunSummary, TrackedOrder, Tracker, TrackerConfig

T = TypeVar("T")

STORE_ENV = "ONECLICKDZ_TRACKER_STORE"
TRACKER_KEY_ENV = "ONECLICKDZ_TRACKER_KEY"
DEFAULT_STORE = "sqlite:///oneclickdz-tracker.db"  # = oneclickdz.tracker.DEFAULT_STORE_URL
DELIVERY_KEY_ENV = "ONECLICKDZ_DELIVERY_KEY"  # set for the --deliver-exec command
WEBHOOK_SECRET_ENV = "ONECLICKDZ_WEBHOOK_SECRET"  # noqa: S105 - a variable's name

# What `track run` exits with besides 0 and 2 (see TRACK_EXIT_CODES).
NEEDS_ATTENTION = ExitCode.NOT_FINAL  # --until-idle ended with orders that need someone
SIGINT_EXIT = 130  # Ctrl-C, as shells expect
SIGTERM_EXIT = 143  # 128 + SIGTERM: stopped by a service manager
ATTENTION_STATES = ("delivery_failed", "stuck", "needs_operator", "needs_resolution")  # .ok

TRACK_EXIT_CODES = """\
**Exit codes of `track`**

* 0 success (`run --until-idle`: every order settled well)
* 2 bad usage, bad input file or store, unknown ID, another `track run` holds the store
* 5 `run --until-idle` left orders delivery_failed, stuck, needs_operator or needs_resolution
  (rejected intents are reported, not failed: nothing was bought; queued recharges are on
  their way); `reveal`: the order is not final yet
* 130 `run` stopped by Ctrl-C; 143 stopped by SIGTERM (both after the calls in flight answered)"""

track_app = typer.Typer(
    help="The durable order tracker: intents written before anything is bought, every order "
    "followed to its final state, its cards sealed on disk and delivered once.",
    epilog=TRACK_EXIT_CODES,
    no_args_is_help=True,
)
app.add_typer(track_app, name="track", rich_help_panel=GIFT_CARDS)

StoreOption = Annotated[
    str | None,
    typer.Option(
        "--store",
        help=f"Tracker store URL (sqlite:///PATH or postgresql://USER@HOST/DB); default "
        f"${STORE_ENV}, else {DEFAULT_STORE}.",
        show_default=False,
        rich_help_panel=GLOBAL,
    ),
]
IdArgument = Annotated[str, typer.Argument(help="Intent id (trk_…), order id or ref.")]

RUN = "Run"
DELIVERY = "Delivery"
WEBHOOKS = "Webhooks"


@track_app.callback()
def track(
    ctx: typer.Context,
    store: Annotated[
        str,
        typer.Option(
            "--store",
            envvar=STORE_ENV,
            help="Tracker store URL: sqlite:///PATH (sqlite:////abs/path), or "
            "postgresql://USER@HOST/DB (several `track run` share it). Its card key: "
            f"${TRACKER_KEY_ENV}, else the key file ${TRACKER_KEY_ENV}_FILE, else PATH.key "
            "beside a SQLite store (created on first use).",
            show_default=True,
        ),
    ] = DEFAULT_STORE,
) -> None:
    """The order tracker: `place` intents, `run` it, look at what it did.

    Only `run` calls the API (and needs an API key); `reveal` is the one command that prints
    card codes.
    """
    ctx.obj = replace(settings(ctx), db_url=store)


def _settings(
    ctx: typer.Context,
    store: str | None,
    api_key: str | None = None,
    base_url: str | None = None,
    json_output: bool = False,
) -> Settings:
    """The root's and `track`'s options, overridden by the command's own."""
    s = settings(ctx, api_key, base_url, json_output)
    if store is not None:
        s = replace(s, db_url=store)
    elif s.db_url is None:
        s = replace(s, db_url=os.environ.get(STORE_ENV) or DEFAULT_STORE)
    return s


def _store_url(s: Settings) -> str:
    return s.db_url or DEFAULT_STORE


# --------------------------------------------------------------------------- refusals


@contextlib.contextmanager
def _refusals(url: str) -> Iterator[None]:
    """The tracker's known refusals: one line on stderr, exit 2; Ctrl-C: exit 130."""
    try:
        from oneclickdz.tracker import RunnerActiveError, TrackerKeyError
        from oneclickdz.tracker.store import redact_url, store_errors
    except ImportError as exc:
        fail(
            f"`oneclickdz track` needs the tracker extra ({exc.name or exc} is missing): "
            'pip install "oneclickdz[tracker]"'
        )
    try:
        yield
    except (TrackerKeyError, RunnerActiveError, ValueError, LookupError) as exc:
        fail(" ".join(str(exc).split()))
    except store_errors() as exc:  # SQLite's, and PostgreSQL's (psycopg) once in use
        fail(f"tracker store {redact_url(url)}: {' '.join(str(exc).split())}")
    except OSError as exc:
        fail(f"tracker store {url}: {exc.strerror or exc}")
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        raise typer.Exit(SIGINT_EXIT) from None


def _require_store(url: str) -> None:
    """Commands that only read refuse a store that does not exist (rather than create one)."""
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        if not path.exists():
            fail(f"no tracker store at {path}: `oneclickdz track place` creates it (or --store)")


class _Sink(logging.Handler):
    """The SDK's and the tracker's log lines, one plain line each; never a traceback."""

    def __init__(self, say: Callable[[str], None], level: int) -> None:
        super().__init__(level)
        self._say = say

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
            if record.exc_info and record.exc_info[1] is not None:
                exc = record.exc_info[1]
                text += f" ({type(exc).__name__}: {exc})"
            name = "tracker" if record.name.startswith("oneclickdz.tracker") else "oneclickdz"
            self._say(f"{name}: {' '.join(text.split())}")
        except Exception:  # pragma: no cover - a log line must never end the command
            self.handleError(record)


@contextlib.contextmanager
def _logs(say: Callable[[str], None], level: int = logging.WARNING) -> Iterator[None]:
    logger = logging.getLogger("oneclickdz")
    sink = _Sink(say, level)
    saved = logger.level
    logger.addHandler(sink)
    if logger.level == logging.NOTSET or logger.level > level:
        logger.setLevel(level)
    try:
        yield
    finally:
        logger.removeHandler(sink)
        logger.setLevel(saved)


def _stderr_line(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _with_tracker(s: Settings, body: Callable[[Tracker], Awaitable[T]], *, create: bool) -> T:
    """Open the store (no API client: these commands make no call), run `body`, close it."""
    url = _store_url(s)
    if not create:
        _require_store(url)
    with _refusals(url), _logs(_stderr_line):
        from oneclickdz.tracker import Tracker

        async def main() -> T:
            async with Tracker(None, url) as tracker:
                return await body(tracker)

        return asyncio.run(main())


# --------------------------------------------------------------------------- place


def _meta_options(pairs: Sequence[str]) -> dict[str, str]:
    meta: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            fail(f"--meta takes KEY=VALUE: {pair!r}")
        meta[key.strip()] = value
    return meta


REQUIRED_COLUMNS = ("product_id", "type_id", "quantity")


def read_intents_csv(text: str, name: str, meta: Mapping[str, str]) -> list[Any]:
    """The intents of a CSV file (`product_id,type_id,quantity` plus metadata columns).

    Any bad row refuses the whole file (exit 2, naming the line): nothing is written.
    """
    from oneclickdz.tracker import IntentSpec

    reader = csv.reader(io.StringIO(text))
    try:
        header = next(reader)
    except StopIteration:
        fail(f"{name}: empty file (expected a header: {','.join(REQUIRED_COLUMNS)},…)")
    except csv.Error as exc:
        fail(f"{name}, line {reader.line_num}: {exc}")
    columns = [c.strip() for c in header]
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        fail(f"{name}, line 1: missing column(s) {', '.join(missing)} (found: {','.join(columns)})")
    if any(not c for c in columns):
        fail(f"{name}, line 1: a column has no name")
    duplicates = sorted({c for c in columns if columns.count(c) > 1})
    if duplicates:
        fail(f"{name}, line 1: column(s) named twice: {', '.join(duplicates)}")
    specs = []
    try:
        for values in reader:
            line = reader.line_num
            if not any(v.strip() for v in values):
                continue  # a blank line
            if len(values) != len(columns):
                fail(f"{name}, line {line}: {len(values)} value(s) for {len(columns)} column(s)")
            row = dict(zip(columns, values, strict=True))
            product_id, type_id = row["product_id"].strip(), row["type_id"].strip()
            for column, value in (("product_id", product_id), ("type_id", type_id)):
                if not value:
                    fail(f"{name}, line {line}: empty {column}")
            try:
                quantity = int(row["quantity"].strip())
            except ValueError:
                fail(f"{name}, line {line}: quantity {row['quantity']!r} is not an integer")
            if not 1 <= quantity <= 100:
                fail(f"{name}, line {line}: quantity {quantity} is not within 1..100")
            extra = {k: v for k, v in row.items() if k not in REQUIRED_COLUMNS}
            try:
                specs.append(IntentSpec(product_id, type_id, quantity, {**meta, **extra}))
            except ValueError as exc:
                fail(f"{name}, line {line}: {exc}")
    except csv.Error as exc:
        fail(f"{name}, line {reader.line_num}: {exc}")
    if not specs:
        fail(f"{name}: no intents (only a header)")
    return specs


def _read_text(path: str) -> tuple[str, str]:
    if path == "-":
        return sys.stdin.read(), "<stdin>"
    try:
        return Path(path).read_text(encoding="utf-8-sig"), path
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"--from-csv {path}: {getattr(exc, 'strerror', None) or exc}")


@track_app.command("place", epilog=TRACK_EXIT_CODES)
def place(
    ctx: typer.Context,
    product_id: Annotated[
        str | None, typer.Argument(help="Product id (see `catalog`).", show_default=False)
    ] = None,
    type_id: Annotated[
        str | None, typer.Argument(help="Type id (see `product PRODUCT_ID`).", show_default=False)
    ] = None,
    quantity: Annotated[
        int | None,
        typer.Argument(min=1, max=100, help="Number of cards (1..100).", show_default=False),
    ] = None,
    meta: Annotated[
        list[str] | None,
        typer.Option(
            "--meta",
            help="Your metadata KEY=VALUE (repeatable), handed to the delivery as is. With "
            "--from-csv: added to every row (the file's columns win).",
            show_default=False,
        ),
    ] = None,
    from_csv: Annotated[
        str | None,
        typer.Option(
            "--from-csv",
            help="Many intents from a CSV file (`-`: stdin): columns product_id,type_id,quantity; "
            "any other column is kept as metadata. One bad row refuses the whole file.",
            show_default=False,
        ),
    ] = None,
    store: StoreOption = None,
    json_output: JsonOption = False,
) -> None:
    """Write intents to the store (no API call, nothing bought yet); `track run` places them.

    Prints the new intent ids, one a line (the last line: the last id).
    """
    s = _settings(ctx, store, json_output=json_output)
    extra = _meta_options(meta or [])
    url = _store_url(s)
    if from_csv is not None:
        if product_id is not None:
            fail("give PRODUCT_ID TYPE_ID QUANTITY or --from-csv FILE, not both")
        text, name = _read_text(from_csv)
        with _refusals(url):
            specs = read_intents_csv(text, name, extra)
    else:
        if product_id is None or type_id is None or quantity is None:
            fail("give PRODUCT_ID TYPE_ID QUANTITY, or --from-csv FILE")
        with _refusals(url):
            from oneclickdz.tracker import IntentSpec

            specs = [IntentSpec(product_id, type_id, quantity, extra)]

    async def write(tracker: Tracker) -> list[TrackedOrder]:
        return await tracker.place_many(specs)

    rows = _with_tracker(s, write, create=True)
    if not s.json:
        _stderr_line(
            f"wrote {len(rows)} intent(s) to {url}; `oneclickdz track run` places "
            f"{'it' if len(rows) == 1 else 'them'}"
        )
    s.emit({"items": [row.summary() for row in rows]}, lambda out: out.lines([r.id for r in rows]))


# --------------------------------------------------------------------------- run


def tracker_client(s: Settings) -> AsyncClient:
    """The tracker's API client: the global key and base URL (refused, exit 2, when unusable),
    the aiohttp transport, and no retries of its own (the tracker schedules every retry)."""
    from oneclickdz import AiohttpTransport, AsyncClient

    probe = s.client()  # the one place that checks the key and the URL
    try:
        key, url = probe.api_key, probe.base_url
    finally:
        probe.close()
    return AsyncClient(key, base_url=url, transport=AiohttpTransport(), max_retries=0)


class DeliverExecError(Exception):
    """The --deliver-exec command failed: non-zero exit, killed, or timed out."""


def exec_handler(
    command: str, timeout: float, say: Callable[[str], None]
) -> Callable[[Delivery], Coroutine[Any, Any, None]]:
    """A tracker handler that runs `command` (sh -c) with the delivery's JSON on stdin.

    Exit 0 acknowledges the delivery; anything else (or `timeout` seconds) is a failure the
    tracker retries. The command's stderr is shown (prefixed with the intent id), its stdout
    ignored. It runs in its own session, so a Ctrl-C meant for `track run` does not cut a
    delivery short; it does not inherit the API key, the tracker key or the webhook secrets
    from the environment.
    """
    hidden = (API_KEY_ENV, TRACKER_KEY_ENV, WEBHOOK_SECRET_ENV)
    environment = {k: v for k, v in os.environ.items() if k not in hidden}

    async def deliver(delivery: Delivery) -> None:
        document = (json.dumps(delivery.to_json(), ensure_ascii=False) + "\n").encode()
        proc = await asyncio.create_subprocess_shell(
            command,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            env={**environment, DELIVERY_KEY_ENV: delivery.delivery_key},
            start_new_session=True,
        )
        try:
            _, err = await asyncio.wait_for(proc.communicate(document), timeout)
        except TimeoutError:
            await _kill(proc)
            raise DeliverExecError(f"--deliver-exec timed out after {timeout:g} s") from None
        except BaseException:  # cancelled (a forced stop): leave no orphan behind
            await _kill(proc)
            raise
        lines = [ln for ln in err.decode(errors="replace").splitlines() if ln.strip()]
        for line in lines[-20:]:
            say(f"deliver-exec {delivery.intent_id}: {line[:500]}")
        code = proc.returncode
        if code != 0:
            why = f"killed by signal {-code}" if code is not None and code < 0 else f"exited {code}"
            last = f": {lines[-1][:200]}" if lines else ""
            raise DeliverExecError(f"--deliver-exec {why}{last}")

    return deliver


async def _kill(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # its own session: the shell and its children
    with contextlib.suppress(ProcessLookupError):
        proc.kill()
    await proc.wait()


@dataclass(slots=True)
class Snapshot:
    """What the progress shows: rows by state, this run's API calls, what is in flight."""

    states: Mapping[str, int]
    calls: Mapping[str, int]
    throttled: int
    in_flight: int
    delivering: int
    elapsed: float

    def line(self) -> str:
        shown = [f"{name}={n}" for name, n in self.states.items() if n]
        total = sum(self.calls.values())
        return (
            f"{' '.join(shown) or 'no orders'} | API calls {total}, 429s {self.throttled}, "
            f"in flight {self.in_flight}"
        )


STATE_ORDER = (
    "intent", "sent", "uncertain", "placed", "stuck", "queued", "needs_resolution", "final",
    "delivered", "delivery_failed", "needs_operator", "rejected",
)  # fmt: skip
CALL_KINDS = (("placeOrder", "calls.placeOrder"), ("checkOrder", "calls.checkOrder"),
              ("list", "calls.list"))  # fmt: skip
ALWAYS_SHOWN = ("intent", "placed", "final", "delivered")  # in the live table, even at 0
PLAIN_EVERY = 2.0  # seconds between plain progress lines (only when something changed)
TICK = 0.5  # seconds between two looks at the store


def _ordered(states: Mapping[str, int]) -> dict[str, int]:
    known = {name: int(states.get(name, 0)) for name in STATE_ORDER}
    return known | {k: int(v) for k, v in states.items() if k not in known}


class RunView:
    """The progress of `track run` on stderr: a live table on a terminal, plain lines otherwise.

    Plain mode prints a line every PLAIN_EVERY seconds when the counts changed. `print` puts a
    line beside the progress (tracker warnings, the delivery command's stderr) in every mode.
    """

    def __init__(self, stream: TextIO, *, progress: bool = True) -> None:
        self.stream = stream
        self.mode: Literal["live", "plain", "off"] = (
            "off" if not progress else ("live" if stream.isatty() else "plain")
        )
        self._live: Live | None = None
        self._shown: str | None = None
        self._shown_at = -PLAIN_EVERY

    def __enter__(self) -> RunView:
        if self.mode == "live":
            from rich.console import Console
            from rich.live import Live
            from rich.text import Text

            console = Console(file=self.stream, highlight=False)
            self._live = Live(
                Text("starting…"),
                console=console,
                refresh_per_second=4,
                redirect_stdout=False,
                redirect_stderr=False,
            )
            self._live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    def print(self, text: str) -> None:
        if self._live is not None:
            self._live.console.print(text, markup=False, highlight=False, soft_wrap=True)
        else:
            print(text, file=self.stream, flush=True)

    def update(self, snap: Snapshot, *, final: bool = False) -> None:
        if self._live is not None:
            self._live.update(_render(snap), refresh=final)
        elif self.mode == "plain":
            line = snap.line()
            due = snap.elapsed - self._shown_at >= PLAIN_EVERY
            if line != self._shown and (due or final):
                self.print(f"track: {line} ({snap.elapsed:.1f} s)")
                self._shown, self._shown_at = line, snap.elapsed


def _render(snap: Snapshot) -> RenderableType:
    """One row of counts under the state names (the side states only when not zero)."""
    from rich.console import Group
    from rich.table import Column, Table
    from rich.text import Text

    styles = {"delivered": "green", "final": "cyan", "placed": "cyan", "stuck": "yellow",
              "queued": "cyan", "needs_resolution": "yellow",
              "delivery_failed": "red", "needs_operator": "red", "rejected": "red"}  # fmt: skip
    shown = {k: n for k, n in snap.states.items() if n or k in ALWAYS_SHOWN}
    columns = [
        Column(k, justify="right", style=styles.get(k, ""), no_wrap=True, min_width=len(k))
        for k in shown
    ]
    grid = Table(*columns, box=None, pad_edge=False, show_edge=False, header_style="bold")
    grid.add_row(*(str(n) for n in shown.values()))
    calls = ", ".join(f"{kind} {n}" for kind, n in snap.calls.items())
    lines = (
        f"API calls {sum(snap.calls.values())}: {calls} · 429s {snap.throttled}",
        f"in flight {snap.in_flight} · delivering {snap.delivering} · {snap.elapsed:.1f} s",
    )
    return Group(grid, *(Text(t, style="dim", no_wrap=True, overflow="ellipsis") for t in lines))


async def _snapshot(tracker: Tracker, base: Mapping[str, int], started: float) -> Snapshot:
    from oneclickdz.tracker.stats import CALLS_PREFIX, PAYMENT_CALLS, TOPUP_CALLS

    counters = await tracker.store.counters()
    states = await tracker.store.state_counts()

    def since(name: str) -> int:
        return counters.get(name, 0) - base.get(name, 0)

    calls_out, delivering = tracker.in_flight
    calls = {kind: since(name) for kind, name in CALL_KINDS}
    for endpoint in (*TOPUP_CALLS, *PAYMENT_CALLS):  # top-ups' and links' calls, once made
        if n := since(CALLS_PREFIX + endpoint):
            calls[endpoint] = n
    return Snapshot(
        states=_ordered(states),
        calls=calls,
        throttled=since("throttled_429"),
        in_flight=calls_out,
        delivering=delivering,
        elapsed=time.monotonic() - started,
    )


@dataclass(frozen=True, slots=True)
class WebhookOptions:
    """Where `track run` receives webhooks, and the secrets that sign them (never printed)."""

    host: str
    port: int
    secrets: tuple[str, ...]

    def __repr__(self) -> str:
        shown = f"<{len(self.secrets)} secret(s)>"
        return f"WebhookOptions(host={self.host!r}, port={self.port}, secrets={shown})"


def webhook_options(listen: str | None, secrets: Sequence[str]) -> WebhookOptions | None:
    """--webhook-listen and the secrets (--webhook-secret, else $ONECLICKDZ_WEBHOOK_SECRET; each
    may list several, comma-separated), checked; exit 2 with a line that shows no secret."""
    given = [part for value in secrets for part in value.split(",") if part.strip()]
    if listen is None:
        if given:
            fail("--webhook-secret is for --webhook-listen HOST:PORT")
        return None
    if not given:
        given = [p for p in os.environ.get(WEBHOOK_SECRET_ENV, "").split(",") if p.strip()]
    if not given:
        fail(f"--webhook-listen needs the secret that signs the webhooks: ${WEBHOOK_SECRET_ENV} "
             "or --webhook-secret whsec_…")  # fmt: skip
    try:
        from oneclickdz.tracker.receiver import check_secrets, parse_listen
    except ImportError as exc:
        fail(
            f"--webhook-listen needs Starlette and uvicorn ({exc.name or exc} is missing): "
            'pip install "oneclickdz[tracker]"'
        )
    try:
        host, port = parse_listen(listen)
        checked = check_secrets(given)
    except ValueError as exc:
        fail(f"--webhook-listen: {exc}")
    return WebhookOptions(host, port, tuple(checked))


@contextlib.asynccontextmanager
async def _receiver(
    tracker: Tracker, webhooks: WebhookOptions | None, view: RunView
) -> AsyncIterator[None]:
    """The webhook receiver beside the tracker (nothing without --webhook-listen)."""
    if webhooks is None:
        yield
        return
    from oneclickdz.tracker.receiver import WebhookListenError, serve_webhooks

    async with contextlib.AsyncExitStack() as stack:
        receiver = serve_webhooks(tracker, webhooks.host, webhooks.port, webhooks.secrets)
        try:
            where = await stack.enter_async_context(receiver)
        except WebhookListenError as exc:
            fail(f"--webhook-listen: {exc}")
        view.print(
            f"webhooks: receiving on {where.url}; each open order is also checked every "
            f"{tracker.config.safety_interval:g} s"
        )
        yield


@dataclass(slots=True)
class RunResult:
    states: dict[str, int]
    ok: bool
    stopped_by: int | None = None  # the signal that stopped the run
    forced: bool = False  # a second signal: the calls in flight were not awaited


async def _run(
    client: AsyncClient,
    url: str,
    config: TrackerConfig,
    handler: Callable[[Delivery], Awaitable[None]] | None,
    until_idle: bool,
    view: RunView,
    webhooks: WebhookOptions | None = None,
) -> RunResult:
    from oneclickdz import AuthenticationError, OneClickDZError, PermissionDeniedError

    async with client:
        try:
            await client.validate()  # a bad key would otherwise be retried for many minutes
        except (AuthenticationError, PermissionDeniedError):
            raise  # exit 6, as any command refused by the API
        except OneClickDZError as exc:
            view.print(f"the API does not answer now ({exc}); the tracker keeps trying")
        return await _track_run(client, url, config, handler, until_idle, view, webhooks)


async def _track_run(
    client: AsyncClient,
    url: str,
    config: TrackerConfig,
    handler: Callable[[Delivery], Awaitable[None]] | None,
    until_idle: bool,
    view: RunView,
    webhooks: WebhookOptions | None = None,
) -> RunResult:
    from oneclickdz.tracker import Tracker

    async with (
        Tracker(client, url, handler=handler, config=config) as tracker,
        _receiver(tracker, webhooks, view),
    ):
        loop = asyncio.get_running_loop()
        stopped: list[int] = []
        started = time.monotonic()
        base = await tracker.store.counters()
        run_task: asyncio.Task[RunSummary] = asyncio.create_task(tracker.run(until_idle=until_idle))

        def on_signal(signum: int) -> None:
            if not stopped:
                stopped.append(signum)
                view.print(
                    "stopping: waiting for the calls and deliveries in flight "
                    "(again to stop at once)"
                )
                tracker.stop()
            else:
                run_task.cancel()

        signals = (signal.SIGINT, signal.SIGTERM)
        for signum in signals:
            loop.add_signal_handler(signum, on_signal, signum)

        async def monitor() -> None:
            await asyncio.sleep(0.1)  # a run refused at once (RunnerActiveError) shows nothing
            while True:
                view.update(await _snapshot(tracker, base, started))
                await asyncio.sleep(TICK)

        watcher = asyncio.create_task(monitor())
        forced = False
        try:
            try:
                summary: RunSummary | None = await run_task
            except asyncio.CancelledError:
                if not run_task.cancelled() or not stopped:
                    raise
                summary, forced = None, True
        finally:
            for signum in signals:
                loop.remove_signal_handler(signum)
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        view.update(await _snapshot(tracker, base, started), final=True)
        states = dict(summary.states) if summary is not None else await tracker.store.state_counts()
        ok = summary.ok if summary is not None else False
        return RunResult(_ordered(states), ok, stopped[0] if stopped else None, forced)


@track_app.command("run", epilog=TRACK_EXIT_CODES)
def run(
    ctx: typer.Context,
    deliver_exec: Annotated[
        str | None,
        typer.Option(
            "--deliver-exec",
            help="Run CMD (sh -c) once per final order with one JSON document on stdin: the "
            "delivery key, ids, status, amounts, metadata and the cards IN CLEAR. Exit 0 "
            f"acknowledges it; ${DELIVERY_KEY_ENV} holds the key to drop repeats by. Without "
            "it, final orders stay `final` (cards sealed; `track reveal`).",
            show_default=False,
            rich_help_panel=DELIVERY,
        ),
    ] = None,
    deliver_timeout: Annotated[
        float,
        typer.Option(
            "--deliver-timeout",
            min=0.001,
            help="Seconds before a delivery command is killed (a failure).",
            rich_help_panel=DELIVERY,
        ),
    ] = 60.0,
    max_delivery_attempts: Annotated[
        int,
        typer.Option(
            "--max-delivery-attempts",
            min=1,
            help="Failed deliveries before an order is delivery_failed (`track retry`).",
            rich_help_panel=DELIVERY,
        ),
    ] = 5,
    delivery_backoff: Annotated[
        float,
        typer.Option(
            "--delivery-backoff",
            min=0.0,
            help="Seconds before the first redelivery, doubling each time (at most 60).",
            rich_help_panel=DELIVERY,
        ),
    ] = 1.0,
    until_idle: Annotated[
        bool,
        typer.Option(
            "--until-idle",
            help="Return once nothing is left to place, follow or deliver (default: run until "
            "stopped). Exit 0 if every order settled well, 5 if any is delivery_failed, stuck "
            "or needs_operator (rejected intents are reported, not failed).",
            rich_help_panel=RUN,
        ),
    ] = False,
    rate: Annotated[
        int,
        typer.Option(
            "--rate", min=0, help="API calls a minute at most; 0: no limit.", rich_help_panel=RUN
        ),
    ] = 600,
    interval: Annotated[
        float,
        typer.Option(
            "--interval", help="Seconds between two checks of an order.", rich_help_panel=RUN
        ),
    ] = 5.0,
    deadline: Annotated[
        float,
        typer.Option(
            "--deadline",
            help="Seconds after placement before an order is flagged stuck (still followed, "
            "slowly).",
            rich_help_panel=RUN,
        ),
    ] = 600.0,
    webhook_listen: Annotated[
        str | None,
        typer.Option(
            "--webhook-listen",
            metavar="HOST:PORT",
            help="Receive signed order webhooks (Standard Webhooks) on HOST:PORT, a POST on any "
            "path. Each verified one makes the tracker check its order at once (refused: 400; "
            "never trusted without that check); every open order is still checked each "
            "--safety-interval, in case one is lost.",
            show_default=False,
            rich_help_panel=WEBHOOKS,
        ),
    ] = None,
    webhook_secret: Annotated[
        list[str] | None,
        typer.Option(
            "--webhook-secret",
            help=f"A whsec_… secret that signs them (repeatable: during a rotation give both). "
            f"Default ${WEBHOOK_SECRET_ENV} (comma-separated), which other users cannot read "
            "in the process list.",
            show_default=False,
            rich_help_panel=WEBHOOKS,
        ),
    ] = None,
    safety_interval: Annotated[
        float,
        typer.Option(
            "--safety-interval",
            min=0.001,
            help="With --webhook-listen: seconds between two checks of an open order (instead "
            "of --interval); a lost webhook delays an order by at most this much.",
            rich_help_panel=WEBHOOKS,
        ),
    ] = 60.0,
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose",
            "-v",
            help="Log every step (intent placed, final, delivered).",
            rich_help_panel=RUN,
        ),
    ] = False,
    store: StoreOption = None,
    api_key: ApiKeyOption = None,
    base_url: BaseUrlOption = None,
    json_output: JsonOption = False,
) -> None:
    """Place the pending intents, follow every open order to its final state, deliver it.

    Progress on stderr: a live table on a terminal, a line every few seconds otherwise. Ctrl-C
    or SIGTERM stops after the calls in flight (exit 130 / 143; a second one stops at once);
    nothing is lost, the next `track run` goes on. One `track run` per store at a time.
    """
    s = _settings(ctx, store, api_key, base_url, json_output)
    url = _store_url(s)
    webhooks = webhook_options(webhook_listen, webhook_secret or [])
    with _refusals(url):
        from oneclickdz.tracker import TrackerConfig

        config = TrackerConfig(
            rate_per_minute=float(rate) if rate else None,
            interval=interval,
            deadline=deadline,
            max_delivery_attempts=max_delivery_attempts,
            delivery_backoff=delivery_backoff,
            webhooks=webhooks is not None,
            safety_interval=safety_interval,
        )
    client = tracker_client(s)  # no API key, a bad URL: refused before the store is opened
    view = RunView(sys.stderr, progress=not s.json)
    handler = exec_handler(deliver_exec, deliver_timeout, view.print) if deliver_exec else None
    with view, _refusals(url), _logs(view.print, logging.INFO if verbose else logging.WARNING):
        result = asyncio.run(_run(client, url, config, handler, until_idle, view, webhooks))
    _report_run(s, result, until_idle, delivers=handler is not None)


def _report_run(s: Settings, result: RunResult, until_idle: bool, *, delivers: bool) -> None:
    attention = {k: result.states.get(k, 0) for k in ATTENTION_STATES if result.states.get(k)}
    stopped = None if result.stopped_by is None else signal.Signals(result.stopped_by).name
    doc = {
        "states": {k: v for k, v in result.states.items() if v},
        "ok": result.ok,
        "needs_attention": attention,
        "stopped_by": stopped,
    }

    def text(out: Output) -> None:
        rows = [[name, str(n)] for name, n in result.states.items() if n]
        out.lines(table(["STATE", "ORDERS"], rows, (1,)) if rows else ["no tracked orders"])
        if attention:
            out.line(
                "needs attention: "
                + ", ".join(f"{n} {k}" for k, n in attention.items())
                + " (oneclickdz track list --state STATE)"
            )
        if result.states.get("final") and not delivers:
            out.line("final orders keep their cards sealed: `track reveal ID`, or --deliver-exec")

    s.emit(doc, text)
    if result.forced:
        _stderr_line("stopped at once: what was in flight is resolved by the next `track run`")
    if result.stopped_by == signal.SIGINT:
        raise typer.Exit(SIGINT_EXIT)
    if result.stopped_by is not None:
        raise typer.Exit(SIGTERM_EXIT)
    if until_idle and not result.ok:
        raise typer.Exit(NEEDS_ATTENTION)


# --------------------------------------------------------------------------- list, show


def _compact(meta: Mapping[str, Any], width: int = 40) -> str:
    text = ",".join(f"{k}={v}" for k, v in meta.items())
    return text if len(text) <= width else text[: width - 1] + "…"


def _states_filter(values: Sequence[str]) -> tuple[list[Any] | None, bool | None]:
    from oneclickdz.tracker import State

    valid = [state.value for state in State]
    states: list[State] = []
    stuck: bool | None = None
    for value in values:
        if value == "stuck":
            stuck = True
        elif value in valid:
            states.append(State(value))
        else:
            fail(f"--state {value!r}: not a state; valid: {', '.join([*valid, 'stuck'])}")
    return (states or None), stuck


@track_app.command("list", epilog=TRACK_EXIT_CODES)
def list_command(
    ctx: typer.Context,
    state: Annotated[
        list[str] | None,
        typer.Option(
            "--state",
            help="Only orders in this state (repeatable): intent, sent, uncertain, placed, "
            "queued, needs_resolution, final, delivered, delivery_failed, needs_operator, "
            "rejected; `stuck`: the flag.",
            show_default=False,
        ),
    ] = None,
    store: StoreOption = None,
    json_output: JsonOption = False,
) -> None:
    """The tracked orders, oldest first (never their codes). No API call, no key needed."""
    s = _settings(ctx, store, json_output=json_output)
    with _refusals(_store_url(s)):
        states, stuck = _states_filter(state or [])

    async def select(tracker: Tracker) -> list[TrackedOrder]:
        return await tracker.orders(states, stuck=stuck)

    rows = _with_tracker(s, select, create=False)

    def text(out: Output) -> None:
        if not rows:
            out.line("no tracked orders")
            return
        body = [
            [
                o.id,
                o.state.value + (" stuck" if o.stuck else ""),
                o.order_id or "-",
                o.type_id or "-",
                "-" if o.quantity is None else str(o.quantity),
                o.status or "-",
                "-" if o.fulfilled_quantity is None else str(o.fulfilled_quantity),
                money_text(o.amount_charged),
                _compact(o.meta) or "-",
            ]
            for o in rows
        ]
        headers = ["ID", "STATE", "ORDER", "TYPE", "QTY", "STATUS", "CARDS", "CHARGED", "META"]
        out.lines(table(headers, body, (4, 6, 7)))
        out.line(f"{len(rows)} tracked order(s)")

    s.emit({"items": [o.summary() for o in rows]}, text)


async def _get(tracker: Tracker, ident: str) -> TrackedOrder:
    order = await tracker.get(ident)
    if order is None:
        fail(f"no tracked order {ident!r} (an intent id, order id or ref)")
    return order


def _field_text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


@track_app.command("show", epilog=TRACK_EXIT_CODES)
def show(
    ctx: typer.Context,
    ident: IdArgument,
    store: StoreOption = None,
    json_output: JsonOption = False,
) -> None:
    """One tracked order: every field but its codes (see `reveal`). Unknown ID: exit 2."""
    s = _settings(ctx, store, json_output=json_output)

    async def one(tracker: Tracker) -> TrackedOrder:
        return await _get(tracker, ident)

    summary = _with_tracker(s, one, create=False).summary()

    def text(out: Output) -> None:
        width = max(len(k) for k in summary)
        out.lines([f"{k.ljust(width)}  {_field_text(v)}" for k, v in summary.items()])

    s.emit(summary, text)


@track_app.command("reveal", epilog=TRACK_EXIT_CODES)
def reveal(
    ctx: typer.Context,
    ident: IdArgument,
    store: StoreOption = None,
    json_output: JsonOption = False,
) -> None:
    """Print an order's cards IN CLEAR (value and serial). The reveal is logged, not the codes.

    An order not final yet has none: exit 5.
    """
    s = _settings(ctx, store, json_output=json_output)

    async def open_cards(tracker: Tracker) -> tuple[TrackedOrder, list[dict[str, Any]]]:
        order = await _get(tracker, ident)
        if order.state.to_place or order.state.value == "placed":
            fail(f"{order.id} is {order.state.value}: not final yet, no cards", ExitCode.NOT_FINAL)
        cards = await tracker.reveal(order.id)
        return order, [{"value": c.value, "serial": c.serial} for c in cards]

    order, cards = _with_tracker(s, open_cards, create=False)
    doc = {
        "id": order.id,
        "order_id": order.order_id,
        "status": order.status,
        "state": order.state.value,
        "delivery_key": order.delivery_key,
        "cards": cards,
    }

    def text(out: Output) -> None:
        out.line(f"{order.id} order {order.order_id}: {order.status}, {len(cards)} card(s)")
        for n, card in enumerate(cards, 1):
            out.line(f"  card {n}  {card['value']}  serial {card['serial']}")

    s.emit(doc, text)


@track_app.command("retry", epilog=TRACK_EXIT_CODES)
def retry(
    ctx: typer.Context,
    ident: IdArgument,
    store: StoreOption = None,
    json_output: JsonOption = False,
) -> None:
    """Put a delivery_failed order back to `final`: the running (or next) `track run` delivers
    it again. Any other state: exit 2."""
    s = _settings(ctx, store, json_output=json_output)

    async def requeue(tracker: Tracker) -> TrackedOrder:
        order = await _get(tracker, ident)
        if order.state.value != "delivery_failed":
            fail(f"order {order.id} is {order.state.value}, not delivery_failed: nothing to retry")
        return await tracker.retry_delivery(order.id)

    order = _with_tracker(s, requeue, create=False)
    s.emit(
        {"retried": order.summary()},
        lambda out: out.line(
            f"{order.id} is final again: the running `oneclickdz track run` (or the next one) "
            "delivers it"
        ),
    )


# --------------------------------------------------------------------------- stats


def _latency_text(lat: Mapping[str, Any]) -> str:
    if not lat.get("count"):
        return "-"
    return f"p50 {lat['p50']:.3f} s, p99 {lat['p99']:.3f} s ({lat['count']} order(s))"


@track_app.command("stats", epilog=TRACK_EXIT_CODES)
def stats(
    ctx: typer.Context,
    store: StoreOption = None,
    json_output: JsonOption = False,
) -> None:
    """Orders by state, API calls by kind, 429s, latencies, stuck orders. No API call."""
    s = _settings(ctx, store, json_output=json_output)

    async def gather(tracker: Tracker) -> dict[str, Any]:
        return (await tracker.stats()).to_dict()

    doc = _with_tracker(s, gather, create=False)

    def text(out: Output) -> None:
        states = " ".join(f"{k}={v}" for k, v in _ordered(doc["states"]).items() if v)
        calls = " ".join(f"{k}={v}" for k, v in doc["api_calls"].items())
        stuck = doc["stuck"]
        out.lines(
            [
                f"orders              {states or 'none'}",
                f"API calls           {calls}",
                f"429s                {doc['throttled_429']}",
                f"placement→final     {_latency_text(doc['placement_to_final_s'])}",
                f"final→delivered     {_latency_text(doc['final_to_delivered_s'])}",
                f"stuck               {', '.join(stuck) if stuck else 'none'}",
            ]
        )
        hooks = {k.removeprefix("webhooks."): n for k, n in doc["counters"].items()
                 if k.startswith("webhooks.") and n}  # fmt: skip
        if hooks:
            out.line("webhooks            " + " ".join(f"{k}={n}" for k, n in hooks.items()))

    s.emit(doc, text)
