"""`oneclickdz demo`: the whole system in one command, and a smoke test of it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

from oneclickdz import Order, Outcome
from oneclickdz.cli._demo import SCENARIOS, START_BALANCE, Result, Run, problems


def demo(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ONECLICKDZ_")}
    return subprocess.run(
        [sys.executable, "-m", "oneclickdz", "demo", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,  # the promise: done within a minute
        check=False,
    )


def test_the_demo_runs_the_guides_orders_end_to_end() -> None:
    result = demo()
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    lines = out.splitlines()
    assert lines[0].startswith("service   http://127.0.0.1:")
    assert "balance   10,000.00 DZD" in lines
    for outcome in (
        ": FULFILLED, 2 of 2 card(s) delivered",
        ": PARTIALLY_FILLED, 2 of 4 card(s) delivered",
        ": REFUNDED, 0 of 2 card(s) delivered",
    ):
        assert sum(outcome in line for line in lines) == 1, outcome
    assert lines.count("  refunded  980.00 DZD (2 x 490.00)") == 2
    assert "balance before  10,000.00 DZD" in lines
    assert (
        "balance after   8,040.00 DZD = 10,000.00 - 980.00 (normal) - 980.00 (partial) "
        "- 0.00 (refund)"
    ) in lines
    assert lines[-1].startswith("demo passed in ")
    assert "SANDBOX-" not in out  # the codes are masked
    assert "\x1b[" not in out  # not a terminal: plain lines
    assert result.stderr == ""  # the service's log lines (and its vault-key warning) stay out
    assert sorted(_shape(out)) == sorted(_shape(_readme_demo())), (
        "the README's quick start is stale"
    )


def _readme_demo() -> str:
    """The captured run in the README's quick start (without the two command lines)."""
    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    block = readme.split("$ make demo\n", 1)[1].split("```", 1)[0]
    return block.split("\n", 1)[1]  # make's echo of the recipe


def _shape(text: str) -> list[str]:
    """A run's lines with what changes between runs (ids, port, codes, timings) blanked out."""
    for pattern, same in (
        (r"[0-9a-f]{24}", "ID"),
        (r"127\.0\.0\.1:\d+", "HOST"),
        (r"\*\*\*\*\S{4}", "****"),
        (r"attempt \d+/", "attempt N/"),
        (r"\d+\.\d s", "T s"),
    ):
        text = re.sub(pattern, same, text)
    return text.splitlines()


def test_the_demo_in_json() -> None:
    result = demo("--json", "--seed", "7")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert (data["ok"], data["problems"]) == (True, [])
    assert (data["balance_before"], data["balance_after"], data["expected_balance_after"]) == (
        "10000.00",
        "8040.00",
        "8040.00",
    )
    got = {
        o["scenario"]: (
            o["type_id"],
            o["quantity"],
            o["outcome"]["status"],
            len(o["order"]["cards"]),
        )
        for o in data["orders"]
    }
    assert got == {
        "normal": ("type_001", 2, "FULFILLED", 2),
        "partial": ("TEST_PARTIAL", 4, "PARTIALLY_FILLED", 2),
        "refund": ("TEST_REFUND", 2, "REFUNDED", 0),
    }
    cards = [c["value"] for o in data["orders"] for c in o["order"]["cards"]]
    assert cards and all(c.startswith("****") and len(c) == 8 for c in cards)
    assert data["elapsed"] < 60


def _outcome(status: str, quantity: int, fulfilled: int) -> Outcome:
    return Outcome.from_order(
        Order.model_validate(
            {
                "_id": f"o-{status}",
                "status": status,
                "quantity": quantity,
                "fulfilled_quantity": fulfilled,
                "fulfilled_amount": fulfilled * 490,
                "price_per_card": 490,
                "cards": [
                    {"value": f"CODE-{status}-{i}", "serial": str(i)} for i in range(fulfilled)
                ],
            }
        )
    )


def _run(statuses: dict[str, tuple[str, int]], after: Decimal) -> Run:
    results = [
        Result(sc, outcome=_outcome(statuses[sc.name][0], sc.quantity, statuses[sc.name][1]))
        for sc in SCENARIOS
    ]
    return Run("http://x", Decimal(490), START_BALANCE, after, results)


def test_the_demo_fails_when_an_outcome_or_the_balance_is_not_the_guides() -> None:
    right = {
        "normal": ("FULFILLED", 2),
        "partial": ("PARTIALLY_FILLED", 2),
        "refund": ("REFUNDED", 0),
    }
    assert problems(_run(right, Decimal(8040))) == []
    [wrong_balance] = problems(_run(right, Decimal(8530)))
    assert wrong_balance.startswith("balance after is 8530; expected 8040")
    wrong_status = {**right, "partial": ("REFUNDED", 0)}
    found = problems(_run(wrong_status, Decimal(9020)))
    assert found[0].startswith("partial: expected PARTIALLY_FILLED with 2 card(s)")
    failed = Run(
        "http://x", Decimal(490), START_BALANCE, START_BALANCE, [Result(SCENARIOS[0], error="boom")]
    )
    assert "normal: boom" in problems(failed)
