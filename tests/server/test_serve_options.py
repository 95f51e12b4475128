"""`oneclickdz serve`'s settings: environment variables, a busy port, page bounds."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from oneclickdz.server.testing import Service, cli, free_port
from tests.server.helpers import client, error, ok

Factory = Callable[..., Service]


def test_every_serve_option_has_an_environment_variable() -> None:
    """`serve --help` names an ONECLICKDZ_* variable beside each of its options."""
    out = cli("serve", "--help", env={"COLUMNS": "250", "TERM": "dumb"}).stdout
    options = [
        "--db", "--host", "--port", "--fulfill-delay", "--seed", "--faults", "--rate-limit",
        "--lockout-attempts", "--lockout-window", "--lockout-duration", "--log-level",
        "--busy-timeout", "--max-header-bytes", "--max-headers", "--max-body-bytes",
        "--header-timeout", "--body-timeout", "--keepalive-timeout", "--metrics",
    ]  # fmt: skip
    for option in options:
        name = option.removeprefix("--").replace("-", "_").upper()
        line = next((ln for ln in out.splitlines() if f"{option} " in ln), "")
        assert f"ONECLICKDZ_{name}" in out, (option, line)


def test_settings_come_from_the_environment(service_factory: Factory) -> None:
    """ONECLICKDZ_RATE_LIMIT and ONECLICKDZ_LOCKOUT_ATTEMPTS act as the options would."""
    svc = service_factory(env={"ONECLICKDZ_RATE_LIMIT": "3", "ONECLICKDZ_LOCKOUT_ATTEMPTS": "2"})
    key = svc.create_key(balance=0)
    with client(svc, key) as api:
        for _ in range(3):
            ok(api.get("/account/balance"))
        error(api.get("/account/balance"), 429, "RATE_LIMIT_EXCEEDED")
    with client(svc, "not-a-key") as bad:
        assert error(bad.get("/validate"), 401, "INVALID_ACCESS_TOKEN")["details"] == {
            "attemptsLeft": 1
        }
        error(bad.get("/validate"), 401, "INVALID_ACCESS_TOKEN")
        error(bad.get("/validate"), 403, "IP_BLOCKED")


def test_an_option_wins_over_its_environment_variable(service_factory: Factory) -> None:
    svc = service_factory(extra_args=["--rate-limit", "0"], env={"ONECLICKDZ_RATE_LIMIT": "1"})
    key = svc.create_key(balance=0)
    with client(svc, key) as api:
        for _ in range(5):
            ok(api.get("/account/balance"))


def test_a_busy_port_is_its_own_exit_code_and_touches_nothing(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        db = tmp_path / "never.db"
        proc = cli("serve", "--db", f"sqlite:///{db}", "--port", str(port))
    assert proc.returncode == 10, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"error: cannot listen on 127.0.0.1:{port}: the address is already in use"
    ]
    assert not db.exists()


def test_an_address_of_another_machine_cannot_be_listened_on(tmp_path: Path) -> None:
    proc = cli("serve", "--db", f"sqlite:///{tmp_path / 'x.db'}", "--host", "192.0.2.1",
               "--port", str(free_port()))  # fmt: skip
    assert proc.returncode == 10, proc.stderr
    assert proc.stderr.startswith("error: cannot listen on 192.0.2.1:")


@pytest.mark.parametrize("path", ["/gift-cards/list", "/account/transactions"])
@pytest.mark.parametrize(
    ("page", "message"),
    [
        ("1000000000000000000", "querystring/page must be <= 1000000"),
        ("9" * 5000, "querystring/page must be <= 1000000"),
        ("1_000", "querystring/page must be integer"),
        ("٣", "querystring/page must be integer"),
        (" 2", "querystring/page must be integer"),
        ("-1", "querystring/page must be >= 1"),
    ],
)
def test_page_numbers_out_of_range_are_refused_not_a_server_error(
    service: Service, sandbox_key: str, path: str, page: str, message: str
) -> None:
    params = {"page": page}
    if path.endswith("transactions"):
        params |= {"from": "2025-01-01T00:00:00Z", "to": "2025-12-31T00:00:00Z"}
    with client(service, sandbox_key) as api:
        err = error(api.get(path, params=params), 400, "ERR_VALIDATION")
    assert err["message"] == message
    assert err["details"]["field"] == "page"


def test_the_last_allowed_page_is_an_empty_page(service: Service, sandbox_key: str) -> None:
    with client(service, sandbox_key) as api:
        data = ok(api.get("/gift-cards/list", params={"page": 1_000_000, "pageSize": 100}))
    assert data["items"] == []
    assert data["pagination"]["page"] == 1_000_000


def test_the_page_size_bound_is_documented_by_the_answer(
    service: Service, sandbox_key: str
) -> None:
    with httpx.Client(base_url=service.base_url, headers={"X-Access-Token": sandbox_key}) as api:
        err = error(api.get("/gift-cards/list", params={"pageSize": 101}), 400, "ERR_VALIDATION")
    assert err["message"] == "querystring/pageSize must be <= 100"
