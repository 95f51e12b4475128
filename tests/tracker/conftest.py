"""Fixtures of the tracker's tests: a client of the real service and a tracker on a temp store.

`store_url` is parametrised over both engines: a SQLite file in the test's directory, and a
fresh schema in the run's PostgreSQL database (tests/pg.py; skipped where none answers).
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from oneclickdz import AiohttpTransport, AsyncClient
from oneclickdz.server.testing import Service
from oneclickdz.tracker import Delivery, Tracker, TrackerConfig
from tests import pg
from tests.conftest import fresh_account

# Checks twice a second: the test service fulfils within 0.2-0.5 s.
FAST = TrackerConfig(interval=0.5, deadline=60.0, delivery_backoff=0.05, restart_spread=0.2)


@pytest.fixture(name="anyio_backend")
def anyio_backend_fixture() -> str:
    return "asyncio"


class Deliveries:
    """A handler that records what it receives (and can be told to fail)."""

    def __init__(self) -> None:
        self.received: list[Delivery] = []
        self.fail_times = 0

    async def __call__(self, delivery: Delivery) -> None:
        if self.fail_times > 0:
            self.fail_times -= 1
            raise RuntimeError(
                f"mail server down (card {delivery.cards[0].value if delivery.cards else '-'})"
            )
        self.received.append(delivery)


@pytest.fixture
def deliveries() -> Deliveries:
    return Deliveries()


# The card key of the PostgreSQL stores (no key file beside a database).
PG_KEY = "5f" * 32


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest) -> str:
    """The store's engine; a test about one engine only parametrises `engine` itself."""
    engine: str = request.param
    return engine


@pytest.fixture
def store_url(engine: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    if engine == "sqlite":
        return f"sqlite:///{tmp_path / 'tracker.db'}"
    monkeypatch.setenv("ONECLICKDZ_TRACKER_KEY", PG_KEY)
    return pg.fresh_url()


def raw(url: str, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """One statement on the store's database from another connection, committed at once.

    `{t}` in `sql` is the tables' prefix (SQLite: none; PostgreSQL: `tracker_`), `?` a parameter.
    """
    if url.startswith("sqlite:///"):
        db = sqlite3.connect(url.removeprefix("sqlite:///"))
        try:
            with db:
                return db.execute(sql.format(t=""), params).fetchall()
        finally:
            db.close()
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(sql.format(t="tracker_").replace("?", "%s"), params)
        return cur.fetchall() if cur.description else []


def client_for(service: Service, key: str) -> AsyncClient:
    return AsyncClient(key, base_url=service.base_url, transport=AiohttpTransport(), max_retries=0)


@pytest.fixture
async def tracker_factory(
    store_url: str, deliveries: Deliveries
) -> AsyncIterator[Callable[..., Tracker]]:
    """Build trackers on the test's store; closed (and their clients) after the test."""
    made: list[tuple[Tracker, AsyncClient | None]] = []

    def make(
        service: Service | None = None,
        key: str | None = None,
        *,
        config: TrackerConfig = FAST,
        base_url: str | None = None,
        **kwargs: object,
    ) -> Tracker:
        client = None
        if service is not None or base_url is not None:
            url = base_url or (service.base_url if service else None)
            if key is None:
                assert service is not None
                key = service.create_key(sandbox=True, account=fresh_account(), balance=100_000)
            client = AsyncClient(key, base_url=url, transport=AiohttpTransport(), max_retries=0)
        kwargs.setdefault("handler", deliveries)
        tracker = Tracker(client, store_url, config=config, **kwargs)  # type: ignore[arg-type]
        made.append((tracker, client))
        return tracker

    yield make
    for tracker, client in made:
        await tracker.close()
        if client is not None:
            await client.close()
