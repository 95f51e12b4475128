"""Rate limits and the IP lockout held across several service processes (issue 8).

Two parts: the decisions of each limit state (memory, Redis, PostgreSQL) through the
`LimitState` protocol, on a clock the test sets; then two real service processes on one SQLite
database sharing their limits through Redis, over HTTP. Redis and PostgreSQL tests skip with one
line where no server answers, and fail instead under `ONECLICKDZ_REQUIRE_POSTGRES=1` (CI).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from oneclickdz.server.auth import MovableClock
from oneclickdz.server.config import ServerConfig
from oneclickdz.server.limits import (
    FailOpen,
    LimitPolicy,
    LimitState,
    LimitsUnavailable,
    MemoryLimits,
    PostgresLimits,
    RedisLimits,
    open_limits,
)
from oneclickdz.server.testing import Service, cli, free_port
from tests import pg, redis_server
from tests.server.helpers import client, error, ok

KINDS = ["memory", "redis", "postgresql"]
SHARED = ["redis", "postgresql"]
BAD_KEY = "00000000-0000-4000-8000-000000000000"
IP = "203.0.113.7"
OTHER_IP = "203.0.113.8"
PATIENCE = 30.0  # how long a test waits for a service to act: generous, never asserted


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Now:
    """The time the states are told: the test moves it."""

    def __init__(self) -> None:
        self.t = 1_700_000_000.0

    def __call__(self) -> float:
        return self.t


class Backends:
    """Opens states of one kind that share their storage, as the processes of one service do
    (memory states never share: each is a process of its own)."""

    def __init__(self, kind: str, stack: AsyncExitStack) -> None:
        self.kind = kind
        self._stack = stack
        self._prefix = redis_server.fresh_prefix() if kind == "redis" else ""
        self._pg_url = pg.fresh_url() if kind == "postgresql" else ""

    async def open(self, policy: LimitPolicy, now: Callable[[], float]) -> LimitState:
        state: LimitState
        if self.kind == "memory":
            state = MemoryLimits(policy, now)
        elif self.kind == "redis":
            state = RedisLimits(redis_server.URL, policy, now, self._prefix)
        else:
            pg_state = PostgresLimits(self._pg_url, policy, now)
            pg_state.setup()
            state = pg_state
        self._stack.push_async_callback(state.aclose)
        return state

    def config(self, workdir: Path, **settings: Any) -> ServerConfig:
        """A service configuration that `open_limits` maps to this kind."""
        db = self._pg_url or f"sqlite:///{workdir / 'x.db'}"
        redis_url = redis_server.URL if self.kind == "redis" else None
        return ServerConfig(
            db_url=db, redis_url=redis_url, redis_prefix=self._prefix or "unused", **settings
        )

    def tidy(self) -> None:
        if self.kind == "redis":
            redis_server.forget(self._prefix)


@asynccontextmanager
async def backends(kind: str) -> AsyncIterator[Backends]:
    async with AsyncExitStack() as stack:
        opened = Backends(kind, stack)
        try:
            yield opened
        finally:
            await stack.aclose()
            opened.tidy()


# -- decisions of each state ------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("kind", KINDS)
async def test_bad_keys_count_down_block_the_ip_then_the_block_expires(kind: str) -> None:
    now = Now()
    async with backends(kind) as b:
        state = await b.open(LimitPolicy(per_minute=600), now)
        assert [await state.fail(IP) for _ in range(5)] == [4, 3, 2, 1, 0]
        assert await state.blocked(IP)
        assert not await state.blocked(OTHER_IP)
        assert await state.fail(IP) is None  # blocked: not counted
        assert await state.admit(IP, 1) is None  # blocked even with a good key
        assert await state.admit(OTHER_IP, 1) == 0
        now.t += 899
        assert await state.blocked(IP)
        now.t += 2
        assert not await state.blocked(IP)
        assert await state.admit(IP, 1) == 0
        assert await state.fail(IP) == 4  # a fresh count after the block


@pytest.mark.anyio
@pytest.mark.parametrize("kind", KINDS)
async def test_failures_older_than_the_window_are_forgotten(kind: str) -> None:
    now = Now()
    async with backends(kind) as b:
        state = await b.open(LimitPolicy(attempts=5, window=900, duration=900), now)
        assert [await state.fail(IP) for _ in range(3)] == [4, 3, 2]
        now.t += 600
        assert await state.fail(IP) == 1
        now.t += 301  # the first three are out of the window, the fourth is not
        assert await state.fail(IP) == 3
        assert not await state.blocked(IP)


@pytest.mark.anyio
@pytest.mark.parametrize("kind", KINDS)
async def test_one_attempt_blocks_at_once_and_a_zero_window_never_does(kind: str) -> None:
    now = Now()
    async with backends(kind) as b:
        strict = await b.open(LimitPolicy(attempts=1, window=60, duration=60), now)
        assert await strict.fail(IP) == 0
        assert await strict.blocked(IP)
    async with backends(kind) as b:
        lenient = await b.open(LimitPolicy(attempts=2, window=0, duration=60), now)
        assert [await lenient.fail(IP) for _ in range(3)] == [2, 2, 2]
        assert not await lenient.blocked(IP)


@pytest.mark.anyio
@pytest.mark.parametrize("kind", KINDS)
async def test_a_bucket_bursts_then_refills_at_its_rate(kind: str) -> None:
    now = Now()
    async with backends(kind) as b:
        state = await b.open(LimitPolicy(per_minute=6), now)  # a token every 10 s
        assert [await state.admit(IP, 1) for _ in range(6)] == [0] * 6
        assert await state.admit(IP, 1) == 10
        assert await state.admit(OTHER_IP, 2) == 0  # another key has its own bucket
        now.t += 10
        assert await state.admit(IP, 1) == 0
        assert await state.admit(IP, 1) == 10  # one token came back, not a burst
        now.t += 4
        assert await state.admit(IP, 1) == 6  # 0.4 of a token: 6 s more
        now.t += 3600
        assert [await state.admit(IP, 1) for _ in range(7)] == [0] * 6 + [10]  # full, no more


@pytest.mark.anyio
@pytest.mark.parametrize("kind", KINDS)
async def test_no_rate_limit_admits_all_but_a_blocked_ip(kind: str) -> None:
    async with backends(kind) as b:
        state = await b.open(LimitPolicy(per_minute=0, attempts=1), Now())
        assert [await state.admit(IP, 1) for _ in range(50)] == [0] * 50
        await state.fail(IP)
        assert await state.admit(IP, 1) is None


@pytest.mark.anyio
@pytest.mark.parametrize("kind", SHARED)
async def test_two_processes_share_the_lockout_and_the_buckets(kind: str) -> None:
    now = Now()
    async with backends(kind) as b:
        policy = LimitPolicy(per_minute=10)
        first, second = await b.open(policy, now), await b.open(policy, now)
        turns = [first, second] * 5
        assert [await s.fail(IP) for s in turns[:5]] == [4, 3, 2, 1, 0]
        assert await first.blocked(IP) and await second.blocked(IP)
        assert [await s.admit(OTHER_IP, 7) for s in turns] == [0] * 10
        assert await first.admit(OTHER_IP, 7) == 6
        assert await second.admit(OTHER_IP, 7) == 6


@pytest.mark.anyio
@pytest.mark.parametrize("kind", KINDS)
async def test_concurrent_decisions_are_atomic(kind: str) -> None:
    now = Now()
    async with backends(kind) as b:
        policy = LimitPolicy(per_minute=10, attempts=5)
        states = [await b.open(policy, now)]
        if kind != "memory":
            states.append(await b.open(policy, now))
        taken = await asyncio.gather(*(states[i % len(states)].admit(IP, 3) for i in range(40)))
        assert (taken.count(0), taken.count(6)) == (10, 30)  # 10 a minute: then wait 6 s
        failed = await asyncio.gather(*(states[i % len(states)].fail(IP) for i in range(12)))
        assert sorted(x for x in failed if x is not None) == [0, 1, 2, 3, 4]
        assert failed.count(None) == 7
        assert all([await s.blocked(IP) for s in states])


@pytest.mark.anyio
@pytest.mark.parametrize("kind", KINDS)
async def test_open_limits_follows_the_services_clock_offset(kind: str, tmp_path: Path) -> None:
    async with backends(kind) as b:
        clock = MovableClock()
        state = open_limits(b.config(tmp_path, rate_limit=6), clock)
        try:
            assert state.name == kind
            assert [await state.fail(IP) for _ in range(5)] == [4, 3, 2, 1, 0]
            clock.advance(450)  # half of the 900 s block: margins far beyond a slow machine
            assert await state.blocked(IP)
            clock.advance(451)
            assert not await state.blocked(IP)
            assert [await state.admit(IP, 5) for _ in range(6)] == [0] * 6
            assert await state.admit(IP, 5) in (9, 10)  # a token every 10 s, less time passed
            clock.advance(30)
            assert await state.admit(IP, 5) == 0
        finally:
            await state.aclose()


@pytest.mark.anyio
async def test_redis_keys_expire_by_themselves_and_stay_under_their_prefix() -> None:
    import redis.asyncio

    now = Now()
    async with backends("redis") as b:
        state = await b.open(LimitPolicy(attempts=2), now)
        await state.fail(IP)  # a failure list
        await state.fail(OTHER_IP)
        await state.fail(OTHER_IP)  # a block
        await state.admit(IP, 9)  # a bucket
        assert isinstance(state, RedisLimits)
        async with redis.asyncio.Redis.from_url(redis_server.URL) as r:
            keys = [k.decode() async for k in r.scan_iter(match=f"{state.prefix}:*")]
            assert sorted(k.removeprefix(state.prefix) for k in keys) == [
                f":block:{OTHER_IP}",
                ":bucket:9",
                f":fails:{IP}",
            ]
            ttls = [await r.pttl(k) for k in keys]
            assert all(0 < ms <= 900_000 for ms in ttls), ttls
        neighbour = RedisLimits(redis_server.URL, state.policy, now, state.prefix + "-other")
        try:
            assert not await neighbour.blocked(OTHER_IP)  # another service's prefix
        finally:
            await neighbour.aclose()


@pytest.mark.anyio
async def test_postgresql_tables_are_unlogged_and_created_once() -> None:
    import psycopg

    async with backends("postgresql") as b:
        state = await b.open(LimitPolicy(), Now())
        assert isinstance(state, PostgresLimits)
        state.setup()  # a second process starting: nothing to create, nothing lost
        await state.fail(IP)
        state.setup()
        assert await state.fail(IP) == 3
        async with await psycopg.AsyncConnection.connect(state.url) as conn:
            cursor = await conn.execute(
                "SELECT relname, relpersistence FROM pg_class WHERE relname LIKE 'limit_%%' "
                "AND relkind = 'r' AND relnamespace = current_schema()::regnamespace "
                "ORDER BY relname"
            )
            assert await cursor.fetchall() == [("limit_buckets", "u"), ("limit_lockouts", "u")]


# -- an unreachable state ---------------------------------------------------------------------


class Switch:
    """A shared state whose server the test turns off and on."""

    name = "switch"

    def __init__(self, inner: LimitState) -> None:
        self.inner = inner
        self.up = True
        self.calls = 0

    def _reach(self) -> None:
        self.calls += 1
        if not self.up:
            raise LimitsUnavailable("switched off")

    async def blocked(self, ip: str) -> bool:
        self._reach()
        return await self.inner.blocked(ip)

    async def fail(self, ip: str) -> int | None:
        self._reach()
        return await self.inner.fail(ip)

    async def admit(self, ip: str, key_id: int) -> int | None:
        self._reach()
        return await self.inner.admit(ip, key_id)

    async def aclose(self) -> None:
        await self.inner.aclose()


@pytest.mark.anyio
async def test_fail_open_uses_local_limits_while_the_shared_ones_are_down(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="oneclickdz.server.limits")
    now, monotonic = Now(), Now()
    policy = LimitPolicy(per_minute=6)
    shared = Switch(MemoryLimits(policy, now))
    state = FailOpen(shared, MemoryLimits(policy, now), retry_after=2.0, monotonic=monotonic)
    assert [await state.fail(IP) for _ in range(2)] == [4, 3]
    shared.up = False
    assert await state.fail(IP) == 4  # counted locally, from zero
    assert state.degraded
    calls = shared.calls
    assert await state.fail(IP) == 3
    assert shared.calls == calls  # left alone for `retry_after`
    monotonic.t += 2
    assert await state.fail(IP) == 2
    assert shared.calls == calls + 1  # tried again: still down
    shared.up = True
    monotonic.t += 2
    assert await state.fail(IP) == 2  # the shared count resumes where it was
    assert not state.degraded
    messages = [r.getMessage() for r in caplog.records]
    assert sum(m.startswith("shared limits unavailable") for m in messages) == 1
    assert sum(m.startswith("shared limits available again") for m in messages) == 1


@pytest.mark.anyio
@pytest.mark.parametrize("kind", SHARED)
async def test_an_unreachable_server_is_limits_unavailable(kind: str) -> None:
    policy, dead = LimitPolicy(), free_port()
    state: RedisLimits | PostgresLimits
    if kind == "redis":
        state = RedisLimits(f"redis://:s3cret@127.0.0.1:{dead}/0", policy, Now())
        with pytest.raises(LimitsUnavailable) as refused:
            state.check()
    else:
        state = PostgresLimits(f"postgresql://postgres:s3cret@127.0.0.1:{dead}/x", policy, Now())
        with pytest.raises(LimitsUnavailable) as refused:
            state.setup()
    assert f"127.0.0.1:{dead}" in str(refused.value) or str(dead) in str(refused.value)
    assert "s3cret" not in str(refused.value) and "***" in str(refused.value)
    try:
        with pytest.raises(LimitsUnavailable):
            await state.admit(IP, 1)
        local = FailOpen(state, MemoryLimits(policy, Now()))
        assert [await local.fail(IP) for _ in range(2)] == [4, 3]
        assert local.degraded
    finally:
        await state.aclose()


# -- two service processes, one database, one Redis -------------------------------------------


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[Callable[..., tuple[Service, Service]]]:
    """`pair(*args, redis=True, postgresql=False)`: two service processes on one SQLite
    database, with these options; with `redis`, both keep their limits in Redis under a prefix
    of this test. With `postgresql` (and not `redis`), on one PostgreSQL database, which then
    keeps the limits too."""
    started: list[Service] = []
    prefixes: list[str] = []

    def make(*args: str, redis: bool = True, postgresql: bool = False) -> tuple[Service, Service]:
        if redis:
            prefixes.append(redis_server.fresh_prefix())
            args = (*args, "--redis", redis_server.URL, "--redis-prefix", prefixes[-1])
        n = len(started)
        (tmp_path / f"a{n}").mkdir()
        (tmp_path / f"b{n}").mkdir()
        shared: dict[str, Any] = {}
        if postgresql:
            shared = {"db": pg.fresh_url(), "env": {"ONECLICKDZ_VAULT_KEY": os.urandom(32).hex()}}
        first = Service(tmp_path / f"a{n}", extra_args=args, **shared)
        second = Service(tmp_path / f"b{n}", extra_args=args, **{"db": first.db_url, **shared})
        started.extend([first, second])
        first.start()
        second.start()
        return first, second

    yield make
    for svc in started:
        svc.stop()
    for prefix in prefixes:
        redis_server.forget(prefix)


ANOTHER_IP = "127.0.0.2"  # a second loopback address: another client as far as both know


BOTH_STATES = pytest.mark.parametrize(
    "shared", ["redis", "postgresql"], ids=["sqlite+redis", "postgresql"]
)


@BOTH_STATES
def test_bad_keys_spread_over_two_processes_block_the_ip_on_both(
    pair: Callable[..., tuple[Service, Service]], shared: str
) -> None:
    first, second = pair(redis=shared == "redis", postgresql=shared == "postgresql")
    good = first.create_key(sandbox=True)
    intruders = [client(first, BAD_KEY, ANOTHER_IP), client(second, BAD_KEY, ANOTHER_IP)]
    fine = [client(first, good, ANOTHER_IP), client(second, good, ANOTHER_IP)]
    elsewhere = [client(first, good), client(second, good)]
    try:
        left = [
            error(intruders[i % 2].get("/validate"), 401, "INVALID_ACCESS_TOKEN")["details"]
            for i in range(5)
        ]
        assert left == [{"attemptsLeft": n} for n in (4, 3, 2, 1, 0)]
        for c in fine + intruders:  # a valid key too, on either process
            error(c.get("/validate"), 403, "IP_BLOCKED")
        with client(second, None, ANOTHER_IP) as keyless:
            error(keyless.get("/validate"), 403, "IP_BLOCKED")
        for c in elsewhere:
            assert ok(c.get("/validate"))["apiKey"]["type"] == "SANDBOX"
    finally:
        for c in intruders + fine + elsewhere:
            c.close()


@BOTH_STATES
def test_a_rate_limit_counts_the_requests_of_both_processes(
    pair: Callable[..., tuple[Service, Service]], shared: str
) -> None:
    first, second = pair(
        "--rate-limit", "10", redis=shared == "redis", postgresql=shared == "postgresql"
    )
    key = first.create_key(sandbox=True)
    calm = first.create_key(sandbox=True)
    clients = [client(first, key), client(second, key)]
    try:
        for i in range(10):
            ok(clients[i % 2].get("/account/balance"))
        for c in clients:
            response = c.get("/account/balance")
            assert error(response, 429, "RATE_LIMIT_EXCEEDED")["details"]["retryAfter"] >= 1
            assert int(response.headers["retry-after"]) >= 1
        with client(second, calm) as other:
            ok(other.get("/account/balance"))  # another key: its own bucket
    finally:
        for c in clients:
            c.close()


def test_without_redis_each_sqlite_process_counts_alone(
    pair: Callable[..., tuple[Service, Service]],
) -> None:
    """The default (memory): the control of the two tests above, which would fail this way."""
    first, second = pair("--rate-limit", "10", redis=False)
    key = first.create_key(sandbox=True)
    with client(first, key) as one, client(second, key) as two:
        for i in range(10):
            ok((one, two)[i % 2].get("/account/balance"))
        ok(one.get("/account/balance"))  # 6 of 10 on this process
    with client(first, BAD_KEY, ANOTHER_IP) as one, client(second, BAD_KEY, ANOTHER_IP) as two:
        left = [
            error((one, two)[i % 2].get("/validate"), 401, "INVALID_ACCESS_TOKEN")["details"]
            for i in range(5)
        ]
        assert [x["attemptsLeft"] for x in left] == [4, 4, 3, 3, 2]


def events(svc: Service) -> list[dict[str, Any]]:
    return [json.loads(line) for line in svc.logs().splitlines() if line.startswith("{")]


def test_the_service_fails_open_while_redis_is_down(tmp_path: Path) -> None:
    own = redis_server.RedisProcess(tmp_path).start()
    (tmp_path / "svc").mkdir()
    svc = Service(tmp_path / "svc", extra_args=["--redis", own.url, "--rate-limit", "600"])
    try:
        svc.start()
        key = svc.create_key(sandbox=True)
        with client(svc, key) as c, client(svc, BAD_KEY, ANOTHER_IP) as bad:
            ok(c.get("/validate"))
            assert error(bad.get("/validate"), 401, "INVALID_ACCESS_TOKEN")["details"] == {
                "attemptsLeft": 4
            }
            own.stop()
            ok(c.get("/validate"))  # served: the limits fall back to this process's memory
            assert error(bad.get("/validate"), 401, "INVALID_ACCESS_TOKEN")["details"] == {
                "attemptsLeft": 4
            }
            down = [e for e in events(svc) if e["event"].startswith("shared limits unavailable")]
            assert len(down) == 1 and down[0]["level"] == "warning", down
            own.start()
            deadline = time.monotonic() + PATIENCE
            while not any(e["event"] == "shared limits available again" for e in events(svc)):
                assert time.monotonic() < deadline, svc.logs()
                ok(c.get("/validate"))
                time.sleep(0.1)
        assert "Traceback" not in svc.logs()
    finally:
        svc.stop()
        own.stop()


def test_an_unreachable_redis_at_start_is_one_line_and_exit_7(tmp_path: Path) -> None:
    db = tmp_path / "never.db"
    url = f"redis://:s3cret@127.0.0.1:{free_port()}/0"
    proc = cli("serve", "--db", f"sqlite:///{db}", "--port", "0", "--redis", url)
    assert proc.returncode == 7, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"error: cannot reach Redis at {url.replace('s3cret', '***')}: ")
    assert "s3cret" not in proc.stderr
    assert not db.exists()  # refused before the database was opened
    bad = cli("serve", "--db", f"sqlite:///{db}", "--port", "0", "--redis", "http://x")
    assert bad.returncode == 2, bad.stderr
    assert bad.stderr.startswith("error: --redis http://x: ")
    assert "Traceback" not in bad.stderr


def test_serve_takes_redis_from_the_environment(tmp_path: Path) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    proc = cli("serve", "--db", f"sqlite:///{tmp_path / 'x.db'}", "--port", "0",
               env={"ONECLICKDZ_REDIS": url})  # fmt: skip
    assert proc.returncode == 7, proc.stderr
    assert f"cannot reach Redis at {url}" in proc.stderr
