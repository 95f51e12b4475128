"""The real `oneclickdz` process: the console script, `python -m oneclickdz`, the terminal."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

from oneclickdz import Client, OrderStatus, PollPolicy
from oneclickdz.cli import ExitCode
from oneclickdz.cli._waiting import Display, wait_for
from oneclickdz.server.testing import Service, free_port

PSN = "507f1f77bcf86cd799439011"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    """`python -m oneclickdz ARGS`, without any ONECLICKDZ_* setting from outside."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ONECLICKDZ_")}
    return subprocess.run(
        [sys.executable, "-m", "oneclickdz", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def test_the_console_script_is_installed() -> None:
    script = Path(sys.executable).with_name("oneclickdz")
    result = subprocess.run([script, "--version"], capture_output=True, text=True, check=False)
    assert (result.returncode, result.stdout.split()[0]) == (0, "oneclickdz")


def test_the_process_exits_with_the_outcome_and_prints_plain_progress(
    service: Service, sandbox_key: str
) -> None:
    result = run(
        "order", "place", PSN, "TEST_PARTIAL", "4", "--wait", "--interval", "0.1",
        "--api-key", sandbox_key, "--base-url", service.base_url,
    )  # fmt: skip
    assert result.returncode == ExitCode.PARTIALLY_FILLED, result.stderr
    assert "PARTIALLY_FILLED, 2 of 4 card(s) delivered" in result.stdout
    assert ": PARTIALLY_FILLED (attempt " in result.stderr
    assert "\x1b[" not in result.stdout + result.stderr  # not a terminal: no escape codes
    assert sandbox_key not in result.stdout + result.stderr


def test_the_process_exit_codes_for_failures(sandbox_key: str) -> None:
    unreachable = run("balance", "--api-key", sandbox_key, "--base-url",
                      f"http://127.0.0.1:{free_port()}/v3")  # fmt: skip
    assert unreachable.returncode == ExitCode.CONNECTION
    assert unreachable.stderr.startswith("error: ConnectError")
    assert "Traceback" not in unreachable.stderr
    usage = run("order", "place", PSN)
    assert usage.returncode == ExitCode.USAGE
    assert "Missing argument" in usage.stderr and usage.stdout == ""


def test_help_and_the_sdk_commands_do_not_load_the_server() -> None:
    code = (
        "import sys; import oneclickdz.cli; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'starlette', 'uvicorn', 'cryptography', 'orjson'}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_on_a_terminal_the_progress_is_live(service: Service, sandbox_key: str) -> None:
    screen = Terminal()
    policy = PollPolicy(interval=0.1, max_attempts=50)
    with Client(sandbox_key, base_url=service.base_url) as client:
        placed = client.gift_cards.place_order(PSN, "type_001", 1, ref="live-1")
        display = Display(screen)
        assert display.mode == "live"
        with display:
            row = display.follow(placed.order_id, policy, label="psn")
            order = wait_for(client, placed.order_id, policy, row)
    assert order.status is OrderStatus.FULFILLED
    drawn = screen.getvalue()
    assert "\x1b[" in drawn  # redrawn in place
    assert placed.order_id in drawn and "FULFILLED" in drawn and "attempt " in drawn
    assert f"order {placed.order_id}: FULFILLED (attempt" not in drawn  # not the plain lines


def test_json_output_has_no_progress(service: Service, sandbox_key: str) -> None:
    result = run(
        "order", "place", PSN, "type_001", "1", "--wait", "--interval", "0.1", "--json",
        "--api-key", sandbox_key, "--base-url", service.base_url,
    )  # fmt: skip
    assert result.returncode == 0
    assert result.stderr == ""
    assert result.stdout.startswith("{") and result.stdout.rstrip().endswith("}")
