"""What every command shares: the exit codes, the global options, the SDK client, the output,
and the one place where a failure becomes a line on stderr (or a JSON document) and an exit code.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated, Any, NoReturn, TextIO, TypeVar

import typer
from typer.core import TyperGroup

from oneclickdz import (
    APIConnectionError,
    APIError,
    AuthenticationError,
    Client,
    DuplicateRefError,
    InconsistentOrderError,
    InsufficientBalanceError,
    OneClickDZError,
    OutOfStockError,
    Page,
    PlacementUnknownError,
    PlaceOrderRequest,
    PollTimeoutError,
    UnexpectedResponseError,
)
from oneclickdz._redact import mask
from oneclickdz.errors import InvalidInputError, InvalidNumberError

try:  # typer >= 0.20 carries its own copy of click
    from typer._click.exceptions import ClickException
except ImportError:  # pragma: no cover - older typer runs on click itself
    from click.exceptions import ClickException  # type: ignore[assignment]

T = TypeVar("T")

API_KEY_ENV = "ONECLICKDZ_API_KEY"
BASE_URL_ENV = "ONECLICKDZ_BASE_URL"


class ExitCode(enum.IntEnum):
    """What `oneclickdz` exits with; scripts may rely on these."""

    OK = 0  # success; an order or a top-up FULFILLED, a payment CONFIRMED
    INTERNAL = 1  # an unexpected failure inside the command (a bug: please report it)
    USAGE = 2  # bad usage: unknown command or option, invalid value, no API key, bad input file
    PARTIALLY_FILLED = 3  # the order ended PARTIALLY_FILLED: some cards, the rest refunded
    REFUNDED = 4  # an order or top-up ended REFUNDED, a payment FAILED: nothing moved in the end
    NOT_FINAL = 5  # not final yet: a wait ran out (poll timeout), or still HANDLING/PENDING
    API_ERROR = 6  # the API answered with an error (bad key, not found, no balance, 5xx, ...)
    CONNECTION = 7  # no usable answer: refused, reset, timed out, or unreadable (truncated)
    PLACEMENT_UNKNOWN = 8  # placeOrder got no answer: the order may exist, reconcile first
    INCONSISTENT = 9  # a final order breaks its status's rules: nothing was handed out
    CANNOT_LISTEN = 10  # `serve` could not listen: the address is in use or not available
    NEEDS_RESOLUTION = 11  # a mobile top-up ended UNKNOWN_ERROR: charged, resolved by hand later
    QUEUED = 12  # an internet top-up is QUEUED: charged, processed within 12-48 h


EXIT_CODES_HELP = """\
**Exit codes**

* 0 success (an order or a top-up: FULFILLED; a payment: CONFIRMED)
* 1 unexpected internal failure
* 2 bad usage (unknown option, invalid value, no API key)
* 3 order PARTIALLY_FILLED
* 4 order REFUNDED (a top-up: REFUNDED; a payment: FAILED or expired)
* 5 order not final yet (a wait timed out, or it is still HANDLING or PENDING)
* 6 API error (answered with an error: key, not found, balance, stock, 5xx)
* 7 connection error (refused, reset, timeout, unreadable answer)
* 8 placement outcome unknown: the order may exist, reconcile before buying again
* 9 inconsistent order: the final order breaks its rules, nothing handed out
* 10 `serve` cannot listen on its address (in use, or not available)
* 11 mobile top-up UNKNOWN_ERROR: charged, needs resolution; do not resend, check it later
* 12 internet top-up QUEUED: charged, processed within 12-48 h; check it again later"""


class CliError(Exception):
    """A refusal of the command itself (bad usage by default): one line on stderr."""

    def __init__(self, message: str, code: ExitCode = ExitCode.USAGE) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def fail(message: str, code: ExitCode = ExitCode.USAGE) -> NoReturn:
    raise CliError(message, code)


# --------------------------------------------------------------------------- settings

GLOBAL = "Global options"

ApiKeyOption = Annotated[
    str | None,
    typer.Option(
        "--api-key",
        help=f"API key (X-Access-Token); default ${API_KEY_ENV}.",
        show_default=False,
        rich_help_panel=GLOBAL,
    ),
]
BaseUrlOption = Annotated[
    str | None,
    typer.Option(
        "--base-url",
        help=f"API base URL, e.g. http://127.0.0.1:8731/v3; default ${BASE_URL_ENV}, "
        "else https://api.oneclickdz.com/v3.",
        show_default=False,
        rich_help_panel=GLOBAL,
    ),
]
JsonOption = Annotated[
    bool,
    typer.Option(
        "--json",
        help="Print one JSON document on stdout (errors: on stderr) instead of text.",
        rich_help_panel=GLOBAL,
    ),
]

PageOption = Annotated[int, typer.Option("--page", min=1, help="Page number.")]
PageSizeOption = Annotated[int, typer.Option("--page-size", min=1, max=100, help="Items a page.")]
AllOption = Annotated[bool, typer.Option("--all", help="Every page (ignores --page).")]
FromOption = Annotated[
    str | None,
    typer.Option("--from", help="From this time (ISO-8601, e.g. 2025-10-29T00:00:00.000Z)."),
]
ToOption = Annotated[str | None, typer.Option("--to", help="Up to this time (ISO-8601).")]


@dataclass(frozen=True, slots=True)
class Settings:
    """The global options as they apply to one command (its own flags win over the root's)."""

    api_key: str | None = None
    base_url: str | None = None
    json: bool = False
    db_url: str | None = None  # `admin --db`

    def client(self, *, need_key: bool = True) -> Client:
        """An SDK client for these settings; refuses (exit 2) what cannot work."""
        key = self.api_key if self.api_key is not None else os.environ.get(API_KEY_ENV)
        key = key.strip() if key else None
        if need_key and not key:
            fail(f"no API key: pass --api-key or set {API_KEY_ENV}")
        if key and not all(" " <= ch <= "~" for ch in key):
            fail("the API key holds characters an HTTP header cannot carry")
        url = self.base_url if self.base_url is not None else os.environ.get(BASE_URL_ENV)
        url = url.strip() if url else None
        if url is not None and not url.startswith(("http://", "https://")):
            fail(f"the base URL must start with http:// or https://: {url!r}")
        return Client(key, base_url=url)

    def emit(self, data: Any, text: Callable[[Output], None]) -> None:
        """Print `data` as one JSON document, or call `text` to print it for a reader."""
        out = Output(sys.stdout)
        if self.json:
            out.json(data)
        else:
            text(out)


def settings(
    ctx: typer.Context,
    api_key: str | None = None,
    base_url: str | None = None,
    json_output: bool = False,
) -> Settings:
    """The root's settings (`oneclickdz --api-key K CMD`) overridden by the command's own flags."""
    base = ctx.obj if isinstance(ctx.obj, Settings) else Settings()
    return Settings(
        api_key=api_key if api_key is not None else base.api_key,
        base_url=base_url if base_url is not None else base.base_url,
        json=json_output or base.json,
        db_url=base.db_url,
    )


class Output:
    """Plain text for people, JSON for scripts; never rich markup, so any API text is safe."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def line(self, text: str = "") -> None:
        print(text, file=self.stream)

    def lines(self, texts: Sequence[str]) -> None:
        for text in texts:
            self.line(text)

    def json(self, data: Any) -> None:
        print(json.dumps(data, indent=2, ensure_ascii=False), file=self.stream)


# --------------------------------------------------------------------------- failures


def one_or_all_pages(
    all_pages: bool, every: Callable[[], Iterable[T]], one: Callable[[], Page[T]]
) -> Page[T]:
    """`--all`: every page gathered into one (no pagination); otherwise the page asked for."""
    return Page(items=tuple(every())) if all_pages else one()


def exit_code_of(exc: BaseException) -> ExitCode:
    if isinstance(exc, CliError):
        return exc.code
    if isinstance(exc, InvalidInputError):
        return ExitCode.USAGE  # the SDK refused the input before sending anything
    if isinstance(exc, PlacementUnknownError):
        return ExitCode.PLACEMENT_UNKNOWN
    if isinstance(exc, PollTimeoutError):
        return ExitCode.NOT_FINAL
    if isinstance(exc, InconsistentOrderError):
        return ExitCode.INCONSISTENT
    if isinstance(exc, APIConnectionError):
        return ExitCode.CONNECTION
    if isinstance(exc, UnexpectedResponseError) and exc.malformed:
        return ExitCode.CONNECTION  # an empty or cut answer: the connection failed half-way
    if isinstance(exc, APIError):
        return ExitCode.API_ERROR
    if isinstance(exc, ClickException):
        return ExitCode.USAGE
    return ExitCode.INTERNAL


ORDER_ID_ATTR = "_oneclickdz_cli_order_id"
RESUME_ATTR = "_oneclickdz_cli_resume"
ORDER_WAIT = "oneclickdz order wait"


def note_placed(
    exc: BaseException,
    order_id: str,
    *,
    noun: str = "order",
    follow: str = ORDER_WAIT,
    key: str = "order_id",
) -> None:
    """Tell whoever reads the error that an order (a top-up: `noun`, `follow`, `key`) was placed
    before it happened."""
    setattr(exc, ORDER_ID_ATTR, (key, order_id))
    exc.add_note(f"{noun} {order_id} was placed; follow it with: {follow} {order_id}")


def note_resume(exc: BaseException, command: str) -> None:
    """The command that picks up what a wait left (its hint instead of `order wait`)."""
    setattr(exc, RESUME_ATTR, command)


def _hint(exc: BaseException) -> str | None:
    if isinstance(exc, AuthenticationError) and exc.attempts_left is not None:
        return f"{exc.attempts_left} more invalid key(s) from this IP and it is blocked for a while"
    if isinstance(exc, InsufficientBalanceError) and exc.required is not None:
        return f"the order costs {exc.required} DZD, the balance is {exc.available} DZD"
    if isinstance(exc, InvalidNumberError) and exc.reason:
        return exc.reason
    if isinstance(exc, OutOfStockError) and exc.available is not None:
        return f"{exc.available} in stock"
    if isinstance(exc, DuplicateRefError) and exc.order_id:
        return f"order {exc.order_id} holds this ref: oneclickdz order check {exc.order_id}"
    if isinstance(exc, DuplicateRefError) and exc.topup_id:
        return f"top-up {exc.topup_id} holds this ref"
    if isinstance(exc, PollTimeoutError):
        resume = getattr(exc, RESUME_ATTR, f"{ORDER_WAIT} {exc.order_id}")
        return f"it is not lost: {resume}"
    if isinstance(exc, PlacementUnknownError) and exc.request.ref:
        again = getattr(exc, RESUME_ATTR, None)
        r = exc.request
        if again is None and isinstance(r, PlaceOrderRequest):
            again = f"oneclickdz order place {r.product_id} {r.type_id} {r.quantity} --ref {r.ref}"
        if again is not None:
            return f"to learn whether it exists, place it again with the same ref: {again}"
    return None


def error_document(exc: BaseException, code: ExitCode) -> dict[str, Any]:
    """The JSON form of a failure: type, code, message, request_id and what else it carries."""
    error: dict[str, Any] = {
        "type": type(exc).__name__,
        "code": None,
        "message": str(exc),
        "request_id": None,
        "exit_code": int(code),
    }
    if isinstance(exc, CliError):
        error["code"] = "USAGE" if code is ExitCode.USAGE else None
        error["message"] = exc.message
    elif isinstance(exc, ClickException):
        error["code"] = "USAGE"
        error["message"] = exc.format_message()
    elif isinstance(exc, APIError):
        error.update(
            code=exc.code,
            message=exc.message,
            request_id=exc.request_id,
            status_code=exc.status_code,
            details=dict(exc.details),
        )
    if isinstance(exc, PollTimeoutError):
        last = exc.last_order
        error.update(
            order_id=exc.order_id,
            last_status=None if last is None else str(last.status),
            attempts=exc.attempts,
            elapsed=round(exc.elapsed, 3),
        )
    elif isinstance(exc, PlacementUnknownError):
        r = exc.request
        if dataclasses.is_dataclass(r) and not isinstance(r, type):
            error["request"] = dataclasses.asdict(r)  # an order's or a top-up's: no secret in it
    elif isinstance(exc, InconsistentOrderError):
        error.update(order_id=exc.order.id, status=str(exc.order.status), problem=exc.problem)
    placed = getattr(exc, ORDER_ID_ATTR, None)
    if placed is not None:
        key, placed_id = placed
        error[key] = placed_id
    hint = _hint(exc)
    if hint is not None:
        error["hint"] = hint
    return {"error": error}


def error_line(exc: BaseException) -> str:
    """One line: `error: CODE: message (HTTP 403, request req_…)`, then the hint."""
    text = exc.message if isinstance(exc, CliError) else str(exc)
    if not isinstance(exc, OneClickDZError | CliError):
        text = f"internal error: {type(exc).__name__}: {text}"
    parts = [text, *getattr(exc, "__notes__", ())]
    if (hint := _hint(exc)) is not None:
        parts.append(hint)
    return "error: " + "; ".join(" ".join(p.split()) for p in parts)


def secrets_in(argv: Sequence[str]) -> list[str]:
    """The API keys this run may know (to keep them out of anything printed)."""
    found = [os.environ.get(API_KEY_ENV, "")]
    for i, arg in enumerate(argv):
        if arg == "--api-key" and i + 1 < len(argv):
            found.append(argv[i + 1])
        elif arg.startswith("--api-key="):
            found.append(arg.partition("=")[2])
    return [s.strip() for s in found if len(s.strip()) >= 8]


def _redact(value: Any, secrets: Sequence[str]) -> Any:
    if isinstance(value, str):
        for secret in secrets:
            value = value.replace(secret, mask(secret) or "****")
        return value
    if isinstance(value, Mapping):
        return {k: _redact(v, secrets) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact(v, secrets) for v in value]
    return value


def report(exc: BaseException, *, as_json: bool, secrets: Sequence[str]) -> ExitCode:
    """Print a failure on stderr (never a traceback, never a key) and return its exit code."""
    code = exit_code_of(exc)
    if as_json:
        Output(sys.stderr).json(_redact(error_document(exc, code), secrets))
    elif isinstance(exc, ClickException) and not isinstance(exc, CliError):
        _show_usage_error(exc)
    else:
        print(_redact(error_line(exc), secrets), file=sys.stderr)
    return code


def _show_usage_error(exc: ClickException) -> None:
    """As typer shows it (with rich: the usage line and a panel), so help stays familiar.

    (A missing command is NoArgsIsHelpError: typer has printed the help already.)"""
    try:
        from typer import rich_utils
    except ImportError:  # pragma: no cover - rich is in the `cli` extra
        exc.show()
    else:
        rich_utils.rich_format_error(exc)


def wants_json(argv: Sequence[str]) -> bool:
    """Whether `--json` is among the options (read before parsing, for parse errors too)."""
    for arg in argv:
        if arg == "--":
            return False
        if arg == "--json":
            return True
    return False


class RootGroup(TyperGroup):
    """The `oneclickdz` group: every failure of every command ends here, as one exit code."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        argv = list(sys.argv[1:] if args is None else args)
        as_json = wants_json(argv)
        try:
            result = super().main(
                argv,
                prog_name or "oneclickdz",
                complete_var,
                standalone_mode=False,
                windows_expand_args=windows_expand_args,
                **extra,
            )
            code = int(result) if isinstance(result, int) else 0  # typer.Exit(n) returns n
        except typer.Abort:
            print("aborted", file=sys.stderr)
            code = ExitCode.INTERNAL
        except Exception as exc:  # ours, the SDK's, click's usage errors, and bugs
            code = report(exc, as_json=as_json, secrets=secrets_in(argv))
        if not standalone_mode:
            return code
        sys.exit(code)


@contextmanager
def interrupted_wait(
    order_id: str, *, noun: str = "order", follow: str = ORDER_WAIT
) -> Iterator[None]:
    """Ctrl-C during a wait: say how to pick the order (top-up, payment) up again, exit 130."""
    try:
        yield
    except KeyboardInterrupt:
        print(
            f"\ninterrupted: {noun} {order_id} is not lost; follow it with: {follow} {order_id}",
            file=sys.stderr,
        )
        raise typer.Exit(130) from None
