"""Following orders until they are final, with live progress.

The loops drive the SDK's `PollRun` (interval, attempts, timeout, transient-failure rules) just as
`client.gift_cards.wait` does, so that every check, failed ones included, reaches the display.

On a terminal the display is a rich table updated in place: order id, status, attempt n/N,
elapsed. Otherwise it prints plain lines: the first status, every change, every failed check,
and a reminder every 10 s while nothing changes. With `--json` it prints nothing.
"""

from __future__ import annotations

import asyncio
import time
from types import TracebackType
from typing import TYPE_CHECKING, Literal, TextIO

from oneclickdz import (
    APIError,
    AsyncClient,
    Client,
    OneClickDZError,
    Order,
    OrderStatus,
    PollTimeoutError,
)
from oneclickdz.polling import PollPolicy, PollRun

if TYPE_CHECKING:
    from rich.console import RenderableType
    from rich.progress import Progress, Task, TaskID

HEARTBEAT = 10.0  # seconds between plain lines while the status does not change
Mode = Literal["live", "plain", "off"]

_STYLES = {
    OrderStatus.HANDLING.value: "cyan",
    OrderStatus.FULFILLED.value: "green",
    OrderStatus.PARTIALLY_FILLED.value: "yellow",
    OrderStatus.REFUNDED.value: "red",
}
_MARKS = {
    OrderStatus.FULFILLED.value: "✓",
    OrderStatus.PARTIALLY_FILLED.value: "◐",
    OrderStatus.REFUNDED.value: "↺",
}


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

    def follow(self, order_id: str, policy: PollPolicy, label: str = "") -> Row:
        task = None
        if self._progress is not None:
            task = self._progress.add_task(
                label,
                total=None,
                label=label,
                order_id=order_id,
                status="placed",
                attempt=f"0/{_max(policy)}",
                mark="",
            )
        return Row(self, order_id, policy, label.ljust(self.label_width), task)

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
    ) -> None:
        self._display = display
        self._order_id = order_id
        self._max = _max(policy)
        self._label = label
        self._task = task
        self._shown: str | None = None
        self._shown_at = 0.0

    def checked(self, run: PollRun, order: Order) -> None:
        status = str(order.status)
        self._update(status, run)
        if status != self._shown or run.elapsed - self._shown_at >= HEARTBEAT:
            self._line(f"{status} (attempt {run.attempts}/{self._max}, {run.elapsed:.1f} s)", run)
            self._shown = status
        if order.is_final:
            self._finish(_MARKS.get(status, "✓"))

    def failed(self, run: PollRun, exc: OneClickDZError) -> None:
        reason = _reason(exc)
        self._update(f"{self._shown or 'placed'}, {reason}, retrying", run)
        self._line(
            f"check failed ({reason}), retrying (attempt {run.attempts}/{self._max}, "
            f"{run.elapsed:.1f} s)",
            run,
        )

    def gave_up(self, run: PollRun, why: str) -> None:
        self._update(f"{self._shown or 'placed'}, {why}", run)
        self._line(f"{why} (attempt {run.attempts}/{self._max}, {run.elapsed:.1f} s)", run)
        self._finish("✗")

    def _line(self, text: str, run: PollRun) -> None:
        if self._display.mode == "plain":
            self._display.print(f"{self._label}  order {self._order_id}: {text}".lstrip())
            self._shown_at = run.elapsed

    def _update(self, status: str, run: PollRun) -> None:
        progress = self._display._progress
        if progress is not None and self._task is not None:
            progress.update(self._task, status=status, attempt=f"{run.attempts}/{self._max}")

    def _finish(self, mark: str) -> None:
        progress = self._display._progress
        if progress is not None and self._task is not None:
            progress.update(self._task, total=1, completed=1, mark=mark)
            progress.stop_task(self._task)


def _max(policy: PollPolicy) -> str:
    return "∞" if policy.max_attempts is None else str(policy.max_attempts)


def _reason(exc: OneClickDZError) -> str:
    if isinstance(exc, APIError):
        return f"HTTP {exc.status_code} {exc.code or ''}".strip()
    return type(exc).__name__


def wait_for(client: Client, order_id: str, policy: PollPolicy, row: Row) -> Order:
    """Check the order until it is final; a transient failure uses up one check (as the SDK)."""
    run = PollRun(order_id, policy)
    checker = client.with_options(max_retries=0)  # the policy does the retrying
    try:
        while True:
            try:
                order = checker.gift_cards.check_order(order_id)
            except OneClickDZError as exc:
                run.record_error(exc)  # raises the errors that end a wait
                row.failed(run, exc)
            else:
                final = run.record(order)
                row.checked(run, order)
                if final:
                    return order
            time.sleep(run.next_delay())  # raises PollTimeoutError when the policy is used up
    except BaseException as exc:
        row.gave_up(run, _why(exc))
        raise


async def wait_for_async(client: AsyncClient, order_id: str, policy: PollPolicy, row: Row) -> Order:
    """`wait_for` for an AsyncClient."""
    run = PollRun(order_id, policy)
    checker = client.with_options(max_retries=0)
    try:
        while True:
            try:
                order = await checker.gift_cards.check_order(order_id)
            except OneClickDZError as exc:
                run.record_error(exc)
                row.failed(run, exc)
            else:
                final = run.record(order)
                row.checked(run, order)
                if final:
                    return order
            await asyncio.sleep(run.next_delay())
    except BaseException as exc:
        row.gave_up(run, _why(exc))
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
