"""`oneclickdz demo`: the whole system in one command, and a smoke test of it.

It starts the API service in this process (a free loopback port, a temporary SQLite database,
short fulfilment delays), creates a sandbox key holding 10,000 DZD, and through the SDK's
AsyncClient runs the seed guide's scenarios at once: a normal order of 2 x type_001, TEST_PARTIAL x
4 and TEST_REFUND x 2. It prints each outcome and the balance before and after, and exits 0 only if
every order ended as the guide says and the balance moved by exactly what the outcomes charged.

`demo --all` adds one of each other kind at the same time (`_demo_more`): a mobile top-up, an
internet recharge, and a payment link paid on the service's pay page; the balance must then move
by the charges less the payment's credit.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import typer

from oneclickdz import AsyncClient, OneClickDZError, OrderStatus, Outcome, PollPolicy

from ._app import SERVICE, app
from ._core import ExitCode, JsonOption, Output, fail, settings
from ._demo_more import TOPUP_DELAY_SCALE, Step, balance_terms, run_step, steps
from ._render import money, money_text, order_json, outcome_json, outcome_text
from ._waiting import Display, wait_for_async

PRODUCT_ID = "507f1f77bcf86cd799439011"  # the guide's PlayStation Network
START_BALANCE = Decimal(10_000)
FULFILL_DELAY = (0.5, 3.0)
POLICY = PollPolicy(interval=0.25, max_attempts=160, timeout=40.0)  # within the 60 s promise
LOGGERS = ("oneclickdz.server", "uvicorn")


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    type_id: str
    quantity: int
    expected: OrderStatus
    about: str

    @property
    def label(self) -> str:
        return f"{self.name} {self.quantity} x {self.type_id}"

    def expected_cards(self) -> int:
        if self.expected is OrderStatus.FULFILLED:
            return self.quantity
        if self.expected is OrderStatus.PARTIALLY_FILLED:
            return self.quantity // 2  # the sandbox delivers half (the service's rule)
        return 0


SCENARIOS = (
    Scenario("normal", "type_001", 2, OrderStatus.FULFILLED, "a normal order"),
    Scenario(
        "partial",
        "TEST_PARTIAL",
        4,
        OrderStatus.PARTIALLY_FILLED,
        "sandbox: half the cards delivered, the rest refunded",
    ),
    Scenario(
        "refund", "TEST_REFUND", 2, OrderStatus.REFUNDED, "sandbox: the order fails, all refunded"
    ),
)


@dataclass(slots=True)
class Result:
    scenario: Scenario
    order_id: str | None = None
    outcome: Outcome | None = None
    error: str | None = None


@dataclass(slots=True)
class Run:
    base_url: str
    price: Decimal
    before: Decimal
    after: Decimal
    results: list[Result]
    elapsed: float = 0.0
    extras: list[Step] = field(default_factory=list)  # `demo --all`: the other kinds

    @property
    def charged(self) -> Decimal:
        return sum((r.outcome.amount_charged for r in self.results if r.outcome), Decimal(0))

    @property
    def moved(self) -> Decimal:
        """What the other kinds moved on the balance (charges negative, credits positive)."""
        return sum((x.change for x in self.extras if x.change is not None), Decimal(0))

    def expected_after(self) -> Decimal:
        charges = sum((sc.expected_cards() * self.price for sc in SCENARIOS), Decimal(0))
        return START_BALANCE - charges + sum((x.expected_change for x in self.extras), Decimal(0))


def problems(run: Run) -> list[str]:
    """What did not go as the guide says: statuses, cards, amounts, and the balance."""
    found: list[str] = []
    if run.before != START_BALANCE:
        found.append(f"balance before is {run.before}, not {START_BALANCE}")
    for r in run.results:
        sc, outcome = r.scenario, r.outcome
        if outcome is None:
            found.append(f"{sc.name}: {r.error or 'no outcome'}")
            continue
        cards = sc.expected_cards()
        expected = (sc.expected, cards, cards * run.price, (sc.quantity - cards) * run.price)
        got = (outcome.status, outcome.delivered, outcome.amount_charged, outcome.amount_refunded)
        if got != expected:
            found.append(
                f"{sc.name}: expected {sc.expected.value} with {cards} card(s), charged "
                f"{expected[2]}, refunded {expected[3]}; got {outcome.status.value} with "
                f"{outcome.delivered}, charged {outcome.amount_charged}, refunded "
                f"{outcome.amount_refunded}"
            )
    for step in run.extras:
        found.extend(step.problems())
    expected_after = run.expected_after()
    if run.after != expected_after or run.after != run.before - run.charged + run.moved:
        sign = "-" if run.moved < 0 else "+"
        moved = f" {sign} {abs(run.moved)} moved by the other kinds" if run.extras else ""
        found.append(
            f"balance after is {run.after}; expected {expected_after} "
            f"(= {run.before} - {run.charged} charged{moved})"
        )
    return found


@contextmanager
def service_logs(path: Path) -> Iterator[None]:
    """The service's JSON log lines go to `path` instead of the screen, for this block only."""
    from oneclickdz.server.logs import JsonFormatter

    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(JsonFormatter())
    saved = []
    for name in LOGGERS:
        logger = logging.getLogger(name)
        saved.append((logger, logger.handlers[:], logger.propagate, logger.level))
        logger.handlers[:] = [handler]
        logger.propagate = False
        logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        for logger, handlers, propagate, level in saved:
            logger.handlers[:] = handlers
            logger.propagate = propagate
            logger.setLevel(level)
        handler.close()


def _sandbox_key(db_url: str) -> str:
    from oneclickdz.server.admin import create_key
    from oneclickdz.server.runtime import open_database

    store, _ = open_database(db_url)
    try:
        return create_key(store, "SANDBOX", account="demo", balance=START_BALANCE)
    finally:
        store.close()


async def _one(client: AsyncClient, sc: Scenario, display: Display) -> Result:
    result = Result(sc)
    try:
        ref = f"demo-{sc.name}-{uuid.uuid4().hex[:12]}"
        placed = await client.gift_cards.place_order(PRODUCT_ID, sc.type_id, sc.quantity, ref)
        result.order_id = placed.order_id
        row = display.follow(placed.order_id, POLICY, label=sc.name)
        order = await wait_for_async(client, placed.order_id, POLICY, row)
        result.outcome = Outcome.from_order(order)
    except OneClickDZError as exc:
        result.error = f"{type(exc).__name__}: {exc}"
    return result


async def _scenarios(
    base_url: str, key: str, display: Display, say: Callable[[str], None], extras: list[Step]
) -> Run:
    async with AsyncClient(key, base_url=base_url) as client:
        catalog = await client.gift_cards.catalog()
        product = await client.gift_cards.check_product(PRODUCT_ID)
        kind = product.get_type("type_001")
        if kind is None:
            fail(f"the demo catalog has no type_001 in {PRODUCT_ID}", ExitCode.INTERNAL)
        products = sum(1 for _ in catalog.products())
        say(f"catalog   {products} products in {len(catalog.categories)} categories")
        say(
            f"product   {product.product_title}: {kind.id} {kind.name} at "
            f"{money_text(kind.price)} DZD, {kind.quantity} in stock"
        )
        before = (await client.account.balance()).balance
        say(f"balance   {money_text(before)} DZD")
        say("")
        say(f"placing {len(SCENARIOS)} orders at once, checking each every {POLICY.interval:g} s:")
        width = display.label_width
        types = max(len(sc.type_id) for sc in SCENARIOS)
        for sc in SCENARIOS:
            say(f"  {sc.name:<{width}}  {sc.quantity} x {sc.type_id:<{types}}  {sc.about}")
        if extras:
            scale = f"1/{1 / TOPUP_DELAY_SCALE:g}"
            say(f"and at once, one of each other kind (top-ups at {scale} of their delays):")
            for step in extras:
                say(f"  {step.name:<{width}}  {step.label}: {step.about}")
        with display:
            results = await asyncio.gather(
                *(_one(client, sc, display) for sc in SCENARIOS),
                *(run_step(client, step, display, POLICY) for step in extras),
            )
        after = (await client.account.balance()).balance
    orders = [r for r in results if isinstance(r, Result)]
    return Run(base_url, kind.price, before, after, orders, extras=extras)


def _document(run: Run, found: list[str]) -> dict[str, Any]:
    expected_after = run.expected_after()
    document = {
        "service": run.base_url,
        "balance_before": money(run.before),
        "balance_after": money(run.after),
        "expected_balance_after": money(expected_after),
        "orders": [
            {
                "scenario": r.scenario.name,
                "product_id": PRODUCT_ID,
                "type_id": r.scenario.type_id,
                "quantity": r.scenario.quantity,
                "expected_status": r.scenario.expected.value,
                "order_id": r.order_id,
                "order": None if r.outcome is None else order_json(r.outcome.order, False),
                "outcome": None if r.outcome is None else outcome_json(r.outcome),
                "error": r.error,
            }
            for r in run.results
        ],
        "problems": found,
        "ok": not found,
        "elapsed": round(run.elapsed, 2),
    }
    if run.extras:
        document["steps"] = [step.json() for step in run.extras]
    return document


def _text(run: Run, found: list[str], out: Output) -> None:
    for r in run.results:
        out.line()
        out.line(f"{r.scenario.label}: expected {r.scenario.expected.value}")
        if r.outcome is not None:
            out.lines(outcome_text(r.outcome, show_codes=False, hint=False))
        else:
            out.line(f"  failed: {r.error}")
    for step in run.extras:
        out.line()
        out.line(f"{step.name} {step.label}: expected {step.expected}")
        out.lines(step.lines if step.error is None else [*step.lines, f"  failed: {step.error}"])
    out.line()
    terms = " - ".join(
        f"{money_text(r.outcome.amount_charged if r.outcome else Decimal(0))} ({r.scenario.name})"
        for r in run.results
    )
    terms += balance_terms(run.extras)
    out.line(f"balance before  {money_text(run.before)} DZD")
    out.line(f"balance after   {money_text(run.after)} DZD = {money_text(run.before)} - {terms}")
    what = "every order" if not run.extras else "every order, top-up and payment"
    if found:
        out.line(f"demo FAILED after {run.elapsed:.1f} s:")
        out.lines([f"  {problem}" for problem in found])
    else:
        out.line(f"demo passed in {run.elapsed:.1f} s: {what} ended as the guide says")


@app.command(rich_help_panel=SERVICE)
def demo(
    ctx: typer.Context,
    seed: Annotated[
        int | None, typer.Option(help="Seed of the service's random choices (replays a run).")
    ] = None,
    every_kind: Annotated[
        bool,
        typer.Option(
            "--all",
            help="Also one of each other kind, at the same time: a mobile top-up, an internet "
            "recharge, and a payment link paid on the service's pay page.",
        ),
    ] = False,
    json_output: JsonOption = False,
) -> None:
    """Start a local service and run the guide's orders through it, end to end (about 5 s).

    The service runs in this process on a free loopback port with a temporary SQLite database;
    a sandbox key holds 10,000 DZD. Three orders run at once: 2 x type_001 (FULFILLED),
    TEST_PARTIAL x 4 (PARTIALLY_FILLED) and TEST_REFUND x 2 (REFUNDED). Exits 0 when every
    outcome and the final balance (8,040.00 DZD) are as expected, 1 otherwise.

    With --all (about 5 s too), at the same time: a mobile top-up (PREPAID_DJEZZY 1,000 DZD,
    FULFILLED, 980.00 charged), an internet recharge (ADSL 1,000 DZD card, FULFILLED, 980.00),
    and a payment link of 5,000 DZD paid on the service's pay page (CONFIRMED, 4,950.00
    credited): the final balance is then 11,030.00 DZD. Top-ups run at 1/20 of their documented
    delays.
    """
    s = settings(ctx, json_output=json_output)
    from oneclickdz.server.config import ServerConfig
    from oneclickdz.server.runtime import start_in_thread

    started = time.monotonic()
    display = Display(sys.stdout, quiet=s.json)
    extras = steps() if every_kind else []
    display.label_width = max(
        len(name) for name in [sc.name for sc in SCENARIOS] + [x.name for x in extras]
    )
    say = display.print
    with tempfile.TemporaryDirectory(prefix="oneclickdz-demo-") as tmp:
        log_path = Path(tmp) / "service.log"
        try:
            with service_logs(log_path):
                db_url = f"sqlite:///{Path(tmp) / 'demo.db'}"
                key = _sandbox_key(db_url)
                config = ServerConfig(
                    db_url=db_url,
                    port=0,
                    fulfill_delay=FULFILL_DELAY,
                    seed=seed,
                    topup_delay_scale=TOPUP_DELAY_SCALE,
                )
                service = start_in_thread(config)
                say(
                    f"service   {service.base_url} (in this process; temporary SQLite "
                    f"database; orders resolve in {FULFILL_DELAY[0]:g}-{FULFILL_DELAY[1]:g} s)"
                )
                deposited = money_text(START_BALANCE)
                say(f"key       a new SANDBOX key, account 'demo', {deposited} DZD deposited")
                try:
                    run = asyncio.run(_scenarios(service.base_url, key, display, say, extras))
                finally:
                    service.stop()
            run.elapsed = time.monotonic() - started
            found = problems(run)
            s.emit(_document(run, found), lambda out: _text(run, found, out))
            if found:
                fail("demo: " + "; ".join(found), ExitCode.INTERNAL)
        except Exception:
            if not s.json:  # the temporary directory, and the log with it, is about to go
                _log_tail(log_path)
            raise


def _log_tail(path: Path, lines: int = 10) -> None:
    tail = path.read_text(errors="replace").splitlines()[-lines:] if path.exists() else []
    if tail:
        print("service log, last lines:", *tail, sep="\n  ", file=sys.stderr)
