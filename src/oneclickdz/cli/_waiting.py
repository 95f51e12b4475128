"""Following orders (top-ups, payments) until they are final, with live progress.

The waits are the SDK's (`client.gift_cards.wait`, `client.mobile.wait`, ...); their `on_check`
hands every check, failed ones included, with the run's progress, to the display.

On a terminal the display is a rich table updated in place: order id, status, attempt n/N,
elapsed. Otherwise it prints plain lines: the first status, every change, every failed check,
and a reminder every 10 s while nothing changes. With `--json` it prints nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, TextIO, TypeVar

from oneclickdz import (
    APIError,
    AsyncClient,
    Client,
    OneClickDZError,
    Order,
    OrderStatus,
    PollTimeoutError,
)
from oneclickdz.polling import Pollable, PollPolicy, PollRun

if TYPE_CHECKING:
    from rich.console import RenderableType
    from rich.progress import Progress, Task, TaskID

T = TypeVar("T")
HEARTBEAT = 10.0  # seconds between plain lines while the status does not change
Mode = Literal["live", "plain", "off"]
# The SDK's `on_check`: the run so far and what the check read (or the error that used it up).
OnCheck = Callable[[PollRun, Any], object]

_STYLES = {
    "PENDING": "cyan",  # a top-up or a payment
    OrderStatus.HANDLING.value: "cyan",
    OrderStatus.FULFILLED.value: "green",
    "CONFIRMED": "green",
    OrderStatus.PARTIALLY_FILLED.value: "yellow",
    "QUEUED": "yellow",
    "UNKNOWN_ERROR": "magenta",
    OrderStatus.REFUNDED.value: "red",
    "FAILED": "red",
}
_MARKS = {
    OrderStatus.FULFILLED.value: "✓",
    "CONFIRMED": "✓",
    OrderStatus.PARTIALLY_FILLED.value: "◐",
    OrderStatus.REFUNDED.value: "↺",
    "FAILED": "✗",
    "QUEUED": "…",
    "UNKNOWN_ERROR": "?",
}
# What the status column says before the first check, by what is waited for.
_BEFORE = {"order": "placed", "top-up": "sent", "payment": "created"}


class Display:
    """Where the progress of one or more waits goes; use it as a context manager."""

    def __init__(self, stream: TextIO, *, quiet: bool = False) -> None:
        self.stream = stream
        self.mode: Mode = "off" if quiet else ("live" if stream.isatty() else "plain")
        self._progress: Progress | None = None
        self.label_width = 0

    def __enter__(self) -> Display:
        if self.mode == "live":
            self._progress = _live_progress(self.stream)
            self._progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def follow(
        self, order_id: str, policy: PollPolicy, label: str = "", noun: str = "order"
    ) -> Row:
        """A row for one wait; `noun` names what is waited for ("order", "top-up", "payment")."""
        task = None
        if self._progress is not None:
            task = self._progress.add_task(
                label,
                total=None,
                label=label,
                order_id=order_id,
                status=_before(noun),
                attempt=f"0/{_max(policy)}",
                mark="",
            )
        return Row(self, order_id, policy, label.ljust(self.label_width), task, noun)

    def print(self, text: str) -> None:
        """A line beside the progress (above the live table on a terminal)."""
        if self.mode == "off":
            return
        if self._progress is not None:
            self._progress.console.print(text, markup=False, highlight=False)
        else:
            print(text, file=self.stream, flush=True)


class Row:
    """The progress of one wait."""

    def __init__(
        self,
        display: Display,
        order_id: str,
        policy: PollPolicy,
        label: str,
        task: TaskID | None,
        noun: str = "order",
    ) -> None:
        self._display = display
        self._order_id = order_id
        self._noun = noun
        self._before = _before(noun)
        self._max = _max(policy)
        self._label = label
        self._task = task
        self._shown: str | None = None
        self._shown_at = 0.0
        self._run: PollRun | None = None

    def on_check(self, run: PollRun, result: Pollable | OneClickDZError) -> None:
        """The SDK's `on_check`: one check of the wait, what it read or its transient failure."""
        self._run = run
        if isinstance(result, OneClickDZError):
            self.failed(run, result)
        else:
            self.checked(run, result)

    def checked(self, run: PollRun, order: Pollable) -> None:
        status = str(order.status)
        self._update(status, run)
        if status != self._shown or run.elapsed - self._shown_at >= HEARTBEAT:
            self._line(f"{status} (attempt {run.attempts}/{self._max}, {run.elapsed:.1f} s)", run)
            self._shown = status
        if order.is_final:
            self._finish(_MARKS.get(status, "✓"))

    def failed(self, run: PollRun, exc: OneClickDZError) -> None:
        reason = _reason(exc)
        self._update(f"{self._shown or self._before}, {reason}, retrying", run)
        self._line(
            f"check failed ({reason}), retrying (attempt {run.attempts}/{self._max}, "
            f"{run.elapsed:.1f} s)",
            run,
        )

    def gave_up(self, why: str) -> None:
        run = self._run
        if run is None:  # the very first check ended the wait
            self._line(why, None)
        else:
            self._update(f"{self._shown or self._before}, {why}", run)
            self._line(f"{why} (attempt {run.attempts}/{self._max}, {run.elapsed:.1f} s)", run)
        self._finish("✗")

    def _line(self, text: str, run: PollRun | None) -> None:
        if self._display.mode == "plain":
            self._display.print(f"{self._label}  {self._noun} {self._order_id}: {text}".lstrip())
            self._shown_at = run.elapsed if run is not None else 0.0

    def _update(self, status: str, run: PollRun) -> None:
        progress = self._display._progress
        if progress is not None and self._task is not None:
            progress.update(self._task, status=status, attempt=f"{run.attempts}/{self._max}")

    def _finish(self, mark: str) -> None:
        progress = self._display._progress
        if progress is not None and self._task is not None:
            progress.update(self._task, total=1, completed=1, mark=mark)
            progress.stop_task(self._task)


def _before(noun: str) -> str:
    """What a row says before its first check: placed (order), sent (top-up), created (link)."""
    return _BEFORE.get(noun.rsplit(" ", 1)[-1], "placed")


def _max(policy: PollPolicy) -> str:
    return "∞" if policy.max_attempts is None else str(policy.max_attempts)


def _reason(exc: OneClickDZError) -> str:
    if isinstance(exc, APIError):
        return f"HTTP {exc.status_code} {exc.code or ''}".strip()
    return type(exc).__name__


def wait_for(client: Client, order_id: str, policy: PollPolicy, row: Row) -> Order:
    """Wait for an order through the SDK, showing every check (failed ones included) on `row`."""
    return watch(
        row, lambda on_check: client.gift_cards.wait(order_id, policy=policy, on_check=on_check)
    )


async def wait_for_async(client: AsyncClient, order_id: str, policy: PollPolicy, row: Row) -> Order:
    """`wait_for` for an AsyncClient."""
    return await watch_async(
        row, lambda on_check: client.gift_cards.wait(order_id, policy=policy, on_check=on_check)
    )


def watch(row: Row, wait: Callable[[OnCheck], T]) -> T:
    """Run a wait of the SDK (`wait(on_check)`), showing every check on `row`."""
    try:
        return wait(row.on_check)
    except BaseException as exc:
        row.gave_up(_why(exc))
        raise


async def watch_async(row: Row, wait: Callable[[OnCheck], Awaitable[T]]) -> T:
    """`watch` for an AsyncClient's wait."""
    try:
        return await wait(row.on_check)
    except BaseException as exc:
        row.gave_up(_why(exc))
        raise


def _why(exc: BaseException) -> str:
    if isinstance(exc, KeyboardInterrupt | asyncio.CancelledError):
        return "interrupted"
    if isinstance(exc, PollTimeoutError):
        return "gave up waiting"
    if isinstance(exc, OneClickDZError):
        return f"failed: {_reason(exc)}"
    return f"failed: {type(exc).__name__}"


def _live_progress(stream: TextIO) -> Progress:
    from rich.console import Console
    from rich.progress import Progress, ProgressColumn, SpinnerColumn, TextColumn
    from rich.table import Column
    from rich.text import Text

    class Mark(SpinnerColumn):
        def render(self, task: Task) -> RenderableType:
            if task.finished:
                return Text(str(task.fields.get("mark", "✓")))
            return super().render(task)

    class Status(ProgressColumn):
        def render(self, task: Task) -> RenderableType:
            status = str(task.fields.get("status", ""))
            return Text(status, style=_STYLES.get(status.split(",", maxsplit=1)[0], ""))

    class Elapsed(ProgressColumn):
        def render(self, task: Task) -> RenderableType:
            return Text(f"{task.elapsed or 0.0:5.1f} s", style="dim")

    # When the terminal is narrow, the label and the order id give way; the rest stays whole.
    return Progress(
        Mark(table_column=Column(no_wrap=True, width=1)),
        TextColumn("{task.fields[label]}", markup=False, table_column=Column(no_wrap=True)),
        TextColumn(
            "{task.fields[order_id]}",
            markup=False,
            table_column=Column(no_wrap=True, overflow="ellipsis", min_width=8),
        ),
        Status(table_column=Column(no_wrap=True, min_width=16)),
        TextColumn(
            "attempt {task.fields[attempt]}", markup=False, table_column=Column(no_wrap=True)
        ),
        Elapsed(table_column=Column(no_wrap=True, min_width=7)),
        console=Console(file=stream, highlight=False),
        refresh_per_second=10,
    )
