"""Fixtures shared by every test: the real service on 127.0.0.1, and fresh API keys for it."""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from oneclickdz.server.testing import Service
from tests import pg

_accounts = itertools.count(1)


ENGINES = ("sqlite", "postgresql")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A module that sets `BOTH_ENGINES = True` runs its service tests on each database engine
    (its `service` and `service_factory` use SQLite, then PostgreSQL); the others on SQLite."""
    if "db_engine" in metafunc.fixturenames:
        both = getattr(metafunc.module, "BOTH_ENGINES", False)
        if metafunc.definition.get_closest_marker("sqlite_only"):
            both = False  # it looks at SQLite's own files
        metafunc.parametrize("db_engine", ENGINES if both else ENGINES[:1], scope="session")


@pytest.fixture(scope="session")
def db_engine() -> str:
    return "sqlite"


def new_service(workdir: Path, engine: str, **kwargs: Any) -> Service:
    """A `Service` (not started) on a fresh database of `engine`."""
    if engine == "postgresql":
        kwargs.setdefault("db", pg.fresh_url())
        kwargs["env"] = {"ONECLICKDZ_VAULT_KEY": secrets.token_hex(32), **kwargs.get("env", {})}
    return Service(workdir, **kwargs)


@pytest.fixture(scope="session")
def service(tmp_path_factory: pytest.TempPathFactory, db_engine: str) -> Iterator[Service]:
    """One service per engine for the whole session, with short fulfilment delays (0.2-0.5 s)."""
    svc = new_service(tmp_path_factory.mktemp(f"service-{db_engine}"), db_engine).start()
    yield svc
    svc.stop()


@pytest.fixture
def service_factory(tmp_path: Path, db_engine: str) -> Iterator[Callable[..., Service]]:
    """Start dedicated services (own database, own options); all are stopped after the test."""
    started: list[Service] = []

    def make(**kwargs: Any) -> Service:
        workdir = tmp_path / f"svc{len(started)}"
        workdir.mkdir()
        svc = new_service(workdir, db_engine, **kwargs)
        started.append(svc)
        return svc.start()

    yield make
    for svc in started:
        svc.stop()


def fresh_account() -> str:
    """A new account name, so each test has its own balance and order history."""
    return f"acct-{next(_accounts)}"


@pytest.fixture
def sandbox_key(service: Service) -> str:
    """A READ-WRITE sandbox key on a new account holding 100,000 DZD."""
    return service.create_key(sandbox=True, account=fresh_account(), balance=100_000)


@pytest.fixture
def production_key(service: Service) -> str:
    """A READ-WRITE production key on a new account holding 100,000 DZD."""
    return service.create_key(sandbox=False, account=fresh_account(), balance=100_000)
