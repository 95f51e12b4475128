"""Where the per-key rate limits and the IP lockout keep their state: this process's memory,
Redis, or PostgreSQL, behind one async protocol (`LimitState`), so that several service
processes over one database hold the same limits.

Choice (`open_limits`): `--redis URL` -> Redis; else a `postgresql://` database -> PostgreSQL;
else memory (each process counts alone: right for one process on SQLite).

Each decision is one atomic step on the shared state: a Lua script in Redis, one
`INSERT … ON CONFLICT … DO UPDATE … RETURNING` statement in PostgreSQL. The hot path of an
authenticated request ("is the IP blocked?" and the token take) is one round trip (`admit`),
and decisions asked while one is under way share the next (`Batcher`: a Redis pipeline,
PostgreSQL's pipeline mode). bench/bench_limits.py measures the cost: Redis keeps most of the
memory state's requests/s, PostgreSQL about half (see its results). Time is passed in by the
process (wall clock plus the test clock's offset), so a test can move one process's time
forward as it does for the memory state.

If the shared state becomes unreachable mid-run, the limits *fail open to this process*
(`FailOpen`): each process enforces them on its own memory, as before the state was shared, and
retries the shared state a couple of seconds later. An outage of Redis (or of the limits'
PostgreSQL connections) thus never takes the API down, at the price of limits counted per
process while it lasts; a warning is logged when it starts and a line when it ends. At start-up
an unreachable Redis is refused instead (`LimitsUnavailable`): that is a configuration error.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from oneclickdz._redact import one_line, safe_url
from oneclickdz.server.store import is_postgres_url

if TYPE_CHECKING:
    from psycopg_pool import AsyncConnectionPool
    from redis.asyncio import Redis

    from oneclickdz.server.config import ServerConfig

Clock = Callable[[], float]
T = TypeVar("T")
log = logging.getLogger("oneclickdz.server.limits")

DEFAULT_PREFIX = "oneclickdz"
RETRY_SHARED_AFTER = 2.0  # seconds a process keeps to its own limits after the shared state failed
SHARED_TIMEOUT = 1.0  # seconds one call to the shared state may take before it counts as down


class LimitsUnavailable(OSError):
    """The shared limit state cannot be reached (its message names where, never a password)."""


@dataclass(frozen=True)
class LimitPolicy:
    """The numbers: `per_minute` requests a minute per key (bursts as large; 0: no limit), and
    `attempts` bad keys from one IP within `window` s block it for `duration` s."""

    per_minute: int = 600
    attempts: int = 5
    window: float = 900.0
    duration: float = 900.0

    @classmethod
    def of(cls, config: ServerConfig) -> LimitPolicy:
        return cls(
            config.rate_limit,
            config.lockout_attempts,
            config.lockout_window,
            config.lockout_duration,
        )


class LimitState(Protocol):
    """The limits' state. `None` from `fail` or `admit` means the IP is blocked (then nothing
    was counted or taken)."""

    name: str  # "memory", "redis" or "postgresql", for the logs

    async def blocked(self, ip: str) -> bool:
        """Whether `ip` is blocked now."""
        ...

    async def fail(self, ip: str) -> int | None:
        """Count a bad key from `ip`: attempts left before it is blocked (0: blocked now)."""
        ...

    async def admit(self, ip: str, key_id: int) -> int | None:
        """Unless `ip` is blocked, take a token of the key's bucket: 0, or seconds to wait."""
        ...

    async def aclose(self) -> None:
        """Release connections (the service's lifespan calls it once, at shutdown)."""
        ...


# -- memory -----------------------------------------------------------------------------------


@dataclass
class Lockout:
    """`attempts` bad keys from one IP within `window` s get it refused for `duration` s."""

    attempts: int = 5
    window: float = 900.0
    duration: float = 900.0
    clock: Clock = time.monotonic
    _failures: dict[str, deque[float]] = field(default_factory=dict)
    _blocked_until: dict[str, float] = field(default_factory=dict)

    def blocked(self, ip: str) -> bool:
        until = self._blocked_until.get(ip)
        if until is None:
            return False
        if self.clock() < until:
            return True
        del self._blocked_until[ip]
        self._failures.pop(ip, None)
        return False

    def fail(self, ip: str) -> int:
        """Record a failed attempt; returns how many are left before the IP is blocked."""
        now = self.clock()
        failures = self._failures.setdefault(ip, deque())
        failures.append(now)
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        left = max(0, self.attempts - len(failures))
        if left == 0:
            self._blocked_until[ip] = now + self.duration
        if len(self._failures) > 10_000:
            self._prune(now)
        return left

    def _prune(self, now: float) -> None:
        for ip in [ip for ip, f in self._failures.items() if not f or f[-1] <= now - self.window]:
            del self._failures[ip]


@dataclass
class RateLimiter:
    """A token bucket per key: `per_minute` requests a minute, bursts up to `per_minute`."""

    per_minute: int = 600
    clock: Clock = time.monotonic
    _buckets: dict[int, tuple[float, float]] = field(default_factory=dict)

    def take(self, key_id: int) -> int:
        """Take one token; returns 0, or the seconds to wait before the next one."""
        if self.per_minute <= 0:
            return 0
        now = self.clock()
        rate = self.per_minute / 60.0
        tokens, last = self._buckets.get(key_id, (float(self.per_minute), now))
        tokens = min(float(self.per_minute), tokens + (now - last) * rate)
        if tokens < 1.0:
            self._buckets[key_id] = (tokens, now)
            return max(1, math.ceil((1.0 - tokens) / rate))
        self._buckets[key_id] = (tokens - 1.0, now)
        return 0


class MemoryLimits:
    """The state in this process's memory: each process counts on its own."""

    name = "memory"

    def __init__(self, policy: LimitPolicy, clock: Clock = time.monotonic) -> None:
        self.lockout = Lockout(policy.attempts, policy.window, policy.duration, clock=clock)
        self.limiter = RateLimiter(policy.per_minute, clock=clock)

    async def blocked(self, ip: str) -> bool:
        return self.lockout.blocked(ip)

    async def fail(self, ip: str) -> int | None:
        return None if self.lockout.blocked(ip) else self.lockout.fail(ip)

    async def admit(self, ip: str, key_id: int) -> int | None:
        return None if self.lockout.blocked(ip) else self.limiter.take(key_id)

    async def aclose(self) -> None:
        return None


# -- one round trip for many decisions ---------------------------------------------------------

Q = TypeVar("Q")


class Batcher(Generic[Q, T]):
    """Requests made while a round trip is under way wait and go together in the next one.

    At low load a request goes alone, at once; under load the cost of a round trip (a socket
    write and read, a connection checkout) is shared by every request that came meanwhile."""

    def __init__(self, send: Callable[[list[Q]], Awaitable[list[T]]]) -> None:
        self._send = send
        self._queue: list[tuple[Q, asyncio.Future[T]]] = []
        self._draining: asyncio.Task[None] | None = None

    async def __call__(self, request: Q) -> T:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.append((request, future))
        if self._draining is None:
            self._draining = loop.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue, []
                try:
                    results = await self._send([request for request, _ in batch])
                except Exception as exc:
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for (_, future), result in zip(batch, results, strict=True):
                    if not future.done():  # its request may have been cancelled meanwhile
                        future.set_result(result)
        finally:
            self._draining = None
            for _, future in self._queue:  # only if the drain itself was cancelled
                future.cancel()
            self._queue = []

    async def aclose(self) -> None:
        """Cancel what is waiting (at shutdown no request is left to answer)."""
        if self._draining is not None:
            self._draining.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._draining


# -- Redis ------------------------------------------------------------------------------------

# KEYS: block:<ip>, bucket:<key id>. ARGV: now, per_minute. -1: blocked; 0: taken; n: wait n s.
_ADMIT = """
local now = tonumber(ARGV[1])
local blocked_until = tonumber(redis.call('GET', KEYS[1]))
if blocked_until and now < blocked_until then return -1 end
local cap = tonumber(ARGV[2])
if cap <= 0 then return 0 end
local rate = cap / 60.0
local state = redis.call('HMGET', KEYS[2], 't', 'at')
local tokens, last = tonumber(state[1]), tonumber(state[2])
if not tokens or not last then tokens, last = cap, now end
tokens = math.min(cap, tokens + math.max(0, now - last) * rate)
local wait = 0
if tokens < 1 then
  wait = math.max(1, math.ceil((1 - tokens) / rate))
else
  tokens = tokens - 1
end
redis.call('HSET', KEYS[2], 't', string.format('%.17g', tokens), 'at', ARGV[1])
redis.call('PEXPIRE', KEYS[2], 61000)  -- a bucket refills in 60 s: then none is as good
return wait
"""

# KEYS: block:<ip>, fails:<ip>. ARGV: now, attempts, window, duration.
# -1: already blocked (not counted); else the attempts left (0: blocked from now on).
_FAIL = """
local now = tonumber(ARGV[1])
local blocked_until = tonumber(redis.call('GET', KEYS[1]))
if blocked_until and now < blocked_until then return -1 end
local attempts, window, duration = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
redis.call('RPUSH', KEYS[2], ARGV[1])
redis.call('LTRIM', KEYS[2], -attempts, -1)
local count = 0
for _, at in ipairs(redis.call('LRANGE', KEYS[2], 0, -1)) do
  if tonumber(at) > now - window then count = count + 1 end
end
local left = math.max(0, attempts - count)
if left == 0 then
  redis.call('DEL', KEYS[2])
  local ms = math.ceil(duration * 1000)
  if ms > 0 then
    redis.call('SET', KEYS[1], string.format('%.17g', now + duration), 'PX', ms)
  end
else
  local ms = math.ceil(window * 1000)
  if ms > 0 then redis.call('PEXPIRE', KEYS[2], ms) else redis.call('DEL', KEYS[2]) end
end
return left
"""


class RedisLimits:
    """The state in Redis, under `prefix` (one per service sharing a Redis): an IP's block and
    recent failures, a key's bucket; every key expires by itself once it no longer matters.

    Decisions asked while a round trip is under way go together in the next one (a pipeline
    of scripts, each still atomic). Keys of one decision go to one script, so this needs a
    single Redis (not a Cluster)."""

    name = "redis"

    def __init__(
        self,
        url: str,
        policy: LimitPolicy,
        now: Clock = time.time,
        prefix: str = DEFAULT_PREFIX,
        timeout: float = SHARED_TIMEOUT,
    ) -> None:
        self.url = url
        self.policy = policy
        self.prefix = prefix
        self._now = now
        self._timeout = timeout
        self._client: Redis | None = None
        self._shas: dict[str, str] = {}
        self._batch: Batcher[tuple[str, list[str], list[Any]], Any] = Batcher(self._send)

    def check(self, timeout: float = 3.0) -> None:
        """Ping the server now (blocking): `LimitsUnavailable` if it does not answer."""
        import redis

        try:
            client = redis.Redis.from_url(
                self.url, socket_connect_timeout=timeout, socket_timeout=timeout
            )
        except ValueError as exc:
            raise ValueError(f"--redis {safe_url(self.url)}: {exc}") from None
        try:
            client.ping()
        except (redis.RedisError, OSError) as exc:
            raise LimitsUnavailable(
                f"cannot reach Redis at {safe_url(self.url)}: {one_line(exc)}"
            ) from None
        finally:
            client.close()

    def key(self, kind: str, name: object) -> str:
        return f"{self.prefix}:{kind}:{name}"

    async def _send(self, batch: list[tuple[str, list[str], list[Any]]]) -> list[Any]:
        """One round trip for `batch` ("get" or a script name, keys, args): the replies."""
        import redis
        from redis.exceptions import NoScriptError

        try:
            client = self._redis()
            for attempt in range(2):
                if not self._shas:  # first use, or the server forgot them (restarted)
                    for name, source in (("admit", _ADMIT), ("fail", _FAIL)):
                        self._shas[name] = await client.script_load(source)
                replies: list[Any]
                if len(batch) == 1:  # alone: a pipeline would cost more than it saves
                    replies = [await self._one(client, *batch[0])]
                else:
                    pipe = client.pipeline(transaction=False)
                    for op, keys, args in batch:
                        if op == "get":
                            pipe.get(keys[0])
                        else:
                            pipe.evalsha(self._shas[op], len(keys), *keys, *args)
                    replies = await pipe.execute(raise_on_error=False)
                if attempt == 0 and any(isinstance(r, NoScriptError) for r in replies):
                    self._shas.clear()
                    continue
                break
        except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
            raise LimitsUnavailable(f"Redis: {one_line(exc)}") from exc
        for reply in replies:
            if isinstance(reply, Exception):  # a script's error: a bug, not an outage
                raise reply
        return replies

    async def _one(self, client: Redis, op: str, keys: list[str], args: list[Any]) -> Any:
        from redis.exceptions import NoScriptError

        try:
            if op == "get":
                return await client.get(keys[0])
            return await client.evalsha(self._shas[op], len(keys), *keys, *args)
        except NoScriptError as exc:
            return exc

    def _redis(self) -> Redis:
        if self._client is None:
            from redis.asyncio import Redis
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff

            self._client = Redis.from_url(
                self.url,
                socket_timeout=self._timeout,
                socket_connect_timeout=self._timeout,
                # No retry: a batch resent after its reply was lost would count twice.
                retry=Retry(NoBackoff(), 0),
            )
        return self._client

    async def blocked(self, ip: str) -> bool:
        raw = await self._batch(("get", [self.key("block", ip)], []))
        return raw is not None and self._now() < float(raw)

    async def fail(self, ip: str) -> int | None:
        p = self.policy
        keys = [self.key("block", ip), self.key("fails", ip)]
        args = [repr(self._now()), p.attempts, repr(p.window), repr(p.duration)]
        left = int(await self._batch(("fail", keys, args)))
        return None if left < 0 else left

    async def admit(self, ip: str, key_id: int) -> int | None:
        keys = [self.key("block", ip), self.key("bucket", key_id)]
        args = [repr(self._now()), self.policy.per_minute]
        wait = int(await self._batch(("admit", keys, args)))
        return None if wait < 0 else wait

    async def aclose(self) -> None:
        await self._batch.aclose()
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()


# -- PostgreSQL -------------------------------------------------------------------------------

# UNLOGGED: no WAL, so cheap writes; after a crash of the server they are emptied, which only
# forgives the limits. Names that no store table uses.
SCHEMA = (
    """CREATE UNLOGGED TABLE IF NOT EXISTS limit_buckets (
        key_id bigint PRIMARY KEY,
        tokens double precision NOT NULL,
        at double precision NOT NULL,
        granted boolean NOT NULL
    )""",
    """CREATE UNLOGGED TABLE IF NOT EXISTS limit_lockouts (
        ip text PRIMARY KEY,
        failures double precision[] NOT NULL,
        blocked_until double precision
    )""",
)
_SCHEMA_LOCK = 0x6F6E65636C6B6C6D  # pg_advisory_xact_lock: two processes starting together

_REFILLED = "least(%(cap)s, b.tokens + greatest(0, %(now)s - b.at) * %(rate)s)"
_ADMIT_SQL = f"""
WITH blocked AS (
    SELECT 1 FROM limit_lockouts WHERE ip = %(ip)s AND blocked_until > %(now)s
), taken AS (
    INSERT INTO limit_buckets AS b (key_id, tokens, at, granted)
    SELECT %(key)s, %(cap)s - 1, %(now)s, true
    WHERE %(cap)s > 0 AND NOT EXISTS (SELECT 1 FROM blocked)
    ON CONFLICT (key_id) DO UPDATE SET
        granted = {_REFILLED} >= 1,
        tokens = {_REFILLED} - CASE WHEN {_REFILLED} >= 1 THEN 1 ELSE 0 END,
        at = %(now)s
    RETURNING granted, tokens
)
SELECT EXISTS (SELECT 1 FROM blocked), (SELECT granted FROM taken), (SELECT tokens FROM taken)
"""
_RECENT = "(SELECT f FROM unnest(l.failures || %(now)s) AS f WHERE f > %(now)s - %(window)s)"
_REACHED = f"(SELECT count(*) FROM {_RECENT} AS r) >= %(attempts)s"
_FAIL_SQL = f"""
INSERT INTO limit_lockouts AS l (ip, failures, blocked_until)
VALUES (%(ip)s, %(first)s, %(first_until)s)
ON CONFLICT (ip) DO UPDATE SET
    failures = CASE WHEN {_REACHED} THEN '{{}}'::double precision[] ELSE ARRAY{_RECENT} END,
    blocked_until = CASE WHEN {_REACHED} THEN %(now)s + %(duration)s END
WHERE l.blocked_until IS NULL OR l.blocked_until <= %(now)s
RETURNING cardinality(l.failures), l.blocked_until
"""
_BLOCKED_SQL = "SELECT blocked_until > %(now)s FROM limit_lockouts WHERE ip = %(ip)s"
_PRUNE_SQL = (
    """DELETE FROM limit_lockouts WHERE (blocked_until IS NULL OR blocked_until <= %(now)s)
    AND NOT EXISTS (SELECT 1 FROM unnest(failures) AS f WHERE f > %(now)s - %(window)s)""",
    "DELETE FROM limit_buckets WHERE at < %(now)s - 61",  # a full bucket: as good as none
)
PRUNE_EVERY = 300.0  # seconds between two clean-ups of rows that no longer matter


class PostgresLimits:
    """The state in two UNLOGGED tables of a PostgreSQL database, through a small pool of its
    own. Each decision is one statement; concurrent ones on the same row queue on its lock.
    Statements asked while a round trip is under way go together in the next one (pipeline
    mode)."""

    name = "postgresql"

    def __init__(
        self,
        url: str,
        policy: LimitPolicy,
        now: Clock = time.time,
        max_connections: int = 2,  # one batch at a time, and a spare
        timeout: float = SHARED_TIMEOUT,
    ) -> None:
        self.url = url
        self.policy = policy
        self._now = now
        self._max = max_connections
        self._timeout = timeout
        self._pool: AsyncConnectionPool | None = None
        self._opening = asyncio.Lock()
        self._batch: Batcher[tuple[str, dict[str, Any]], tuple[Any, ...] | None]
        self._batch = Batcher(self._send)
        self._pruned_at = -math.inf

    def setup(self, timeout: float = 5.0) -> None:
        """Create the tables if absent (blocking); `LimitsUnavailable` if no server answers."""
        import psycopg

        try:
            with psycopg.connect(self.url, connect_timeout=max(1, round(timeout))) as conn:
                conn.execute("SELECT pg_advisory_xact_lock(%s)", [_SCHEMA_LOCK])
                for statement in SCHEMA:
                    conn.execute(statement)
        except psycopg.OperationalError as exc:
            raise LimitsUnavailable(
                f"cannot reach PostgreSQL at {safe_url(self.url)}: {one_line(exc)}"
            ) from None

    async def _connections(self) -> AsyncConnectionPool:
        if self._pool is None:
            async with self._opening:
                if self._pool is None:
                    from psycopg_pool import AsyncConnectionPool

                    pool = AsyncConnectionPool(
                        self.url,
                        min_size=1,
                        max_size=self._max,
                        open=False,
                        kwargs={"autocommit": True},
                        timeout=self._timeout,
                        name="oneclickdz-limits",
                    )
                    await pool.open(wait=False)
                    self._pool = pool
        return self._pool

    async def _one(self, sql: str, params: dict[str, Any]) -> tuple[Any, ...] | None:
        """Run one statement (batched with those asked meanwhile); its first row, if any."""
        return await self._batch((sql, params))

    async def _send(self, batch: list[tuple[str, dict[str, Any]]]) -> list[tuple[Any, ...] | None]:
        """One round trip for `batch`: its statements in pipeline mode, in order."""
        import psycopg

        try:
            pool = await self._connections()
            async with pool.connection() as conn:
                if len(batch) == 1:  # alone: a pipeline would cost more than it saves
                    cursors = [await conn.execute(*batch[0])]
                else:
                    async with conn.pipeline():
                        cursors = [await conn.execute(sql, params) for sql, params in batch]
                return [await c.fetchone() if c.description else None for c in cursors]
        except psycopg.OperationalError as exc:
            raise LimitsUnavailable(f"PostgreSQL: {one_line(exc)}") from exc

    async def blocked(self, ip: str) -> bool:
        row = await self._one(_BLOCKED_SQL, {"ip": ip, "now": self._now()})
        return bool(row and row[0])

    async def fail(self, ip: str) -> int | None:
        p, now = self.policy, self._now()
        # A first failure (no row yet) is decided here; later ones by the statement.
        counted = 1 if p.window > 0 else 0
        first_blocks = counted >= p.attempts
        params = {
            "ip": ip,
            "now": now,
            "window": float(p.window),
            "attempts": p.attempts,
            "duration": float(p.duration),
            "first": [] if first_blocks or not counted else [now],
            "first_until": now + p.duration if first_blocks else None,
        }
        row = await self._one(_FAIL_SQL, params)
        if now - self._pruned_at >= PRUNE_EVERY:
            self._pruned_at = now
            await self._prune(now)
        if row is None:  # the update's condition held it back: blocked already
            return None
        failures, blocked_until = row
        return 0 if blocked_until is not None else max(0, p.attempts - int(failures))

    async def admit(self, ip: str, key_id: int) -> int | None:
        cap = self.policy.per_minute
        rate = cap / 60.0
        params = {"ip": ip, "key": key_id, "now": self._now(), "cap": float(cap), "rate": rate}
        row = await self._one(_ADMIT_SQL, params)
        assert row is not None
        blocked, granted, tokens = row
        if blocked:
            return None
        if granted is None or granted:  # no limit, or a token taken
            return 0
        return max(1, math.ceil((1.0 - float(tokens)) / rate))

    async def _prune(self, now: float) -> None:
        params = {"now": now, "window": float(self.policy.window)}
        for sql in _PRUNE_SQL:
            await self._one(sql, params)

    async def aclose(self) -> None:
        await self._batch.aclose()
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()


# -- failing open -----------------------------------------------------------------------------


class FailOpen:
    """A shared state that gives way to this process's own memory while it is unreachable.

    After a failure the shared state is left alone for `retry_after` s (so an outage costs one
    timeout, not one per request), then tried again. Limits counted locally meanwhile are not
    carried over: the shared state resumes where it was."""

    def __init__(
        self,
        shared: LimitState,
        local: LimitState,
        retry_after: float = RETRY_SHARED_AFTER,
        monotonic: Clock = time.monotonic,
    ) -> None:
        self.shared = shared
        self.local = local
        self.name = shared.name
        self._retry_after = retry_after
        self._monotonic = monotonic
        self._down_until: float | None = None

    async def _either(self, decide: Callable[[LimitState], Awaitable[T]]) -> T:
        down = self._down_until
        if down is None or self._monotonic() >= down:
            try:
                result = await decide(self.shared)
            except LimitsUnavailable as exc:
                if down is None:
                    log.warning(
                        "shared limits unavailable: each process keeps its own until they return",
                        extra={"limits": self.name, "error": str(exc)},
                    )
                self._down_until = self._monotonic() + self._retry_after
            else:
                if down is not None:
                    self._down_until = None
                    log.info("shared limits available again", extra={"limits": self.name})
                return result
        return await decide(self.local)

    @property
    def degraded(self) -> bool:
        """Whether the last call found the shared state unreachable."""
        return self._down_until is not None

    async def blocked(self, ip: str) -> bool:
        return await self._either(lambda state: state.blocked(ip))

    async def fail(self, ip: str) -> int | None:
        return await self._either(lambda state: state.fail(ip))

    async def admit(self, ip: str, key_id: int) -> int | None:
        return await self._either(lambda state: state.admit(ip, key_id))

    async def aclose(self) -> None:
        await self.shared.aclose()
        await self.local.aclose()


# -- choice -----------------------------------------------------------------------------------


class OffsetClock(Protocol):
    """A clock tests can move (`auth.MovableClock`): its offset applies to the wall clock too."""

    offset: float

    def __call__(self) -> float: ...


def shared_time(clock: OffsetClock) -> Clock:
    """Wall-clock seconds plus the offset tests gave `clock`: the time every process shares."""
    return lambda: time.time() + clock.offset


def open_limits(config: ServerConfig, clock: OffsetClock) -> LimitState:
    """The service's limit state: Redis with `config.redis_url`, else PostgreSQL when the
    database is, else memory. A shared one is checked now (blocking, before the service
    starts: `LimitsUnavailable` if it cannot be reached) and connects lazily on the loop."""
    policy = LimitPolicy.of(config)
    local = MemoryLimits(policy, clock)
    if config.redis_url:
        redis_state = RedisLimits(config.redis_url, policy, shared_time(clock), config.redis_prefix)
        redis_state.check()
        return FailOpen(redis_state, local)
    if is_postgres_url(config.db_url):
        pg_state = PostgresLimits(config.db_url, policy, shared_time(clock))
        pg_state.setup()
        return FailOpen(pg_state, local)
    return local


def check_limits(config: ServerConfig) -> None:
    """What `open_limits` checks, alone: for a process that forks the service's workers, so an
    unreachable Redis is refused once, before any worker starts."""
    from oneclickdz.server.auth import MovableClock

    open_limits(config, MovableClock())  # connects lazily: nothing is left open
