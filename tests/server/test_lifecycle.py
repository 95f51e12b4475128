"""Orders survive the service: stopped or crashed while HANDLING, they finish after a restart."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from oneclickdz.server.testing import Service, cli, free_port
from tests import pg
from tests.server.conftest import Api
from tests.server.helpers import balance, ok, place, query, wait_final

BOTH_ENGINES = True


def handling_in_database(svc: Service) -> set[str]:
    return {row[0] for row in query(svc, "SELECT id FROM orders WHERE status = 'HANDLING'")}


@pytest.mark.parametrize("how", ["stop", "kill"])
def test_orders_left_handling_are_finished_after_a_restart(
    service_factory: Callable[..., Service], api: Api, how: str
) -> None:
    svc = service_factory(fulfill_delay="5-6")
    key = svc.create_key(sandbox=True, balance=10_000)
    c = api(key, svc=svc)
    normal, refund, partial = (
        place(c, "type_001", 2),
        place(c, "TEST_REFUND", 1),
        place(c, "TEST_PARTIAL", 4),
    )
    assert balance(c) == 10_000 - 980 - 490 - 1960
    svc.stop() if how == "stop" else svc.kill()
    assert handling_in_database(svc) == {normal, refund, partial}

    svc.start()  # nothing is reloaded: the new process claims the due orders from the database
    c = api(key, svc=svc)
    assert [wait_final(c, o)["status"] for o in (normal, refund, partial)] == [
        "FULFILLED",
        "REFUNDED",
        "PARTIALLY_FILLED",
    ]
    assert balance(c) == 10_000 - 980 - 980  # the refund and half the partial came back
    assert handling_in_database(svc) == set()
    assert len(ok(c.get("/account/transactions"))["items"]) == 6  # deposit, 3 debits, 2 refunds


def test_overdue_orders_are_finished_at_once_after_a_restart(
    service_factory: Callable[..., Service], api: Api
) -> None:
    svc = service_factory(fulfill_delay="1-1")
    key = svc.create_key(sandbox=True, balance=10_000)
    order_id = place(api(key, svc=svc), "type_001", 1)
    svc.kill()
    svc.fulfill_delay = "30-30"  # new orders would wait; the overdue one must not
    svc.start()
    order = wait_final(api(key, svc=svc), order_id, within=5)
    assert order["status"] == "FULFILLED"


def test_fulfilment_delay_may_not_exceed_the_45_second_promise() -> None:
    result = cli(
        "serve",
        "--db",
        "sqlite:////tmp/never-created.db",
        "--port",
        str(free_port()),
        "--fulfill-delay",
        "10-60",
    )
    assert result.returncode == 2
    assert "HIGH <= 40" in result.stderr


def test_the_database_password_is_never_logged(tmp_path: Path) -> None:
    url = pg.fresh_url()  # trust auth here: any password is accepted, and must never show
    secret_url = url.replace("://postgres@", "://postgres:Pw-s3cret-9@", 1)
    assert secret_url != url
    svc = Service(tmp_path, db=secret_url, env={"ONECLICKDZ_VAULT_KEY": os.urandom(32).hex()})
    svc.start()
    try:
        c = httpx.Client(
            base_url=svc.base_url, headers={"X-Access-Token": svc.create_key(balance=1000)}
        )
        with c:
            wait_final(c, place(c))
    finally:
        svc.stop()
    logs = svc.logs()
    assert "postgres:***@" in logs  # the start-up line names the database
    assert "Pw-s3cret-9" not in logs
