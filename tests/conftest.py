"""Fixtures shared by every test: the real service on 127.0.0.1, and fresh API keys for it."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from oneclickdz.server.testing import Service

_accounts = itertools.count(1)


@pytest.fixture(scope="session")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """One service for the whole session, with short fulfilment delays (0.2-0.5 s)."""
    svc = Service(tmp_path_factory.mktemp("service")).start()
    yield svc
    svc.stop()


@pytest.fixture
def service_factory(tmp_path: Path) -> Iterator[Callable[..., Service]]:
    """Start dedicated services (own database, own options); all are stopped after the test."""
    started: list[Service] = []

    def make(**kwargs: Any) -> Service:
        workdir = tmp_path / f"svc{len(started)}"
        workdir.mkdir()
        svc = Service(workdir, **kwargs)
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
