"""PostgreSQL for the tests: one database per test run, one schema per test.

The server is `$ONECLICKDZ_TEST_POSTGRES` (default `postgresql://postgres@127.0.0.1:5432/postgres`,
trust auth). The run's database, `oneclickdz_test_<pid>_<random>`, is created on first use and
dropped when the run ends; each test gets a fresh schema in it (`fresh_url()`), through the
URL's `search_path`, which is cheaper than a database per test. Where no server answers, the
PostgreSQL tests skip with one line, or fail when `ONECLICKDZ_REQUIRE_POSTGRES=1` (CI).
"""

from __future__ import annotations

import atexit
import itertools
import os
import secrets
from typing import NoReturn
from urllib.parse import quote

import pytest

__all__ = ["ADMIN_URL", "REQUIRED", "fresh_url", "require", "unavailable"]

ADMIN_URL = os.environ.get(
    "ONECLICKDZ_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REQUIRED = os.environ.get("ONECLICKDZ_REQUIRE_POSTGRES") == "1"

_schemas = itertools.count(1)
_state: dict[str, str] = {}  # "db": the run's database URL, or "error": why there is none


def _database() -> str:
    """The run's database URL (created on first call), or raises RuntimeError with the reason."""
    if "db" in _state:
        return _state["db"]
    if "error" in _state:
        raise RuntimeError(_state["error"])
    try:
        import psycopg

        name = f"oneclickdz_test_{os.getpid()}_{secrets.token_hex(4)}"
        with psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except Exception as exc:  # no driver, no server, no rights: one reason
        _state["error"] = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
        raise RuntimeError(_state["error"]) from None
    base, _, _ = ADMIN_URL.partition("?")
    _state["db"] = base.rsplit("/", 1)[0] + "/" + name
    atexit.register(_drop, name)
    return _state["db"]


def _drop(name: str) -> None:
    import psycopg

    with psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=3) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def unavailable(
    reason: str, *, required: bool = REQUIRED, because: str = "ONECLICKDZ_REQUIRE_POSTGRES=1"
) -> NoReturn:
    """Something the calling test needs is not here (a service that does not answer, a
    browser not installed): skip it with one line, as the issue asks, or fail when it is
    `required` (in CI), so CI can never skip it; `because` says why it is required."""
    if required:
        pytest.fail(f"{because} but {reason}", pytrace=False)
    pytest.skip(reason)


def require() -> None:
    """Skip the calling test when no PostgreSQL answers (fail instead when it is required)."""
    try:
        _database()
    except RuntimeError as exc:
        unavailable(f"no PostgreSQL at {ADMIN_URL} ({exc})")


def fresh_url() -> str:
    """The URL of a new, empty schema in the run's database (calls `require()` first)."""
    require()
    import psycopg

    url = _database()
    schema = f"t{next(_schemas)}_{secrets.token_hex(3)}"
    with psycopg.connect(url, autocommit=True, connect_timeout=3) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    return f"{url}?options={quote(f'-csearch_path={schema}', safe='')}"
