"""The PostgreSQL `TrackerStore`: several `track run` processes share one database.

Each open order is leased to one process at a time (`lease_owner`, `lease_until`, by the
database's clock): a runner claims free or expired rows with `FOR UPDATE SKIP LOCKED`, renews
its leases while it works them, and releases them when it stops. A killed runner's orders are
claimed by another once their lease expires. Every write of a runner is guarded by its lease:
a row another process took over is not written, and the delivery marker commits only while
the lease is held — the merchant's `tx_handler` effects commit with it, so exactly once.

Durability as with SQLite: intents and re-queued deliveries commit with the server's
`synchronous_commit` (fsynced); progress and delivery markers with `synchronous_commit = off`,
which survives the death of this process at once and loses at most the last fraction of a
second if the database server itself crashes — recovered by asking the API again or by
delivering again with the same delivery key.

The schema is versioned (`tracker_schema_version`); opening the store applies the migrations it
lacks, under an advisory lock (version 2: `kind`, `params`, `details` and the states of top-ups).

Tables are prefixed `tracker_`, so the store may share a database with other schemas. The key
that seals the cards is not kept beside a database: `$ONECLICKDZ_TRACKER_KEY`, or a key file
named by `$ONECLICKDZ_TRACKER_KEY_FILE` (see `sealing`).
"""

from __future__ import annotations

import asyncio
import inspect
import os
import socket
import uuid
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import psycopg
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from .model import Kind, State, TrackedOrder
from .store import LeaseLostError, TrackerStore, TxEffect

__all__ = ["LEASE_ENV", "PostgresTrackerStore", "TxConnection"]

# What a `tx_handler` receives on PostgreSQL: the store's connection, inside the transaction
# that marks the delivery (`await tx.execute(...)`; so the handler must be a coroutine).
TxConnection = psycopg.AsyncConnection[tuple[Any, ...]]

LEASE_ENV = "ONECLICKDZ_TRACKER_LEASE"  # seconds an order stays leased without renewal
DEFAULT_LEASE = 30.0
CLAIM_BATCH = 1000  # rows claimed at most per claim (one claim a second while running)
_MIGRATION_LOCK = 0x6F6364_7472  # pg_advisory_xact_lock key: one migrating process at a time

_COLUMNS = (
    "id", "ref", "product_id", "type_id", "quantity", "meta", "state", "created_at", "order_id",
    "order_time", "status", "fulfilled_quantity", "price_per_card", "amount_charged",
    "amount_refunded", "sealed_cards", "sent_at", "placed_at", "final_at", "delivered_at",
    "attempts", "started_at", "next_at", "deadline", "stuck", "delivery_attempts", "last_error",
    "adopted", "kind", "params", "details",
)  # fmt: skip
# What changes after the insert (not the id, ref, meta, creation time, adoption flag or kind).
_MUTABLE = (
    "product_id", "type_id", "quantity", "state", "order_id", "order_time", "status",
    "fulfilled_quantity", "price_per_card", "amount_charged", "amount_refunded", "sealed_cards",
    "sent_at", "placed_at", "final_at", "delivered_at", "attempts", "started_at", "next_at",
    "deadline", "stuck", "delivery_attempts", "last_error", "params", "details",
)  # fmt: skip
_JSON = ("meta", "params", "details")
_LIST = ", ".join(_COLUMNS)
_SELECT = f"SELECT {_LIST} FROM tracker_orders"
_INSERT = f"INSERT INTO tracker_orders ({_LIST}) VALUES ({', '.join(f'%({c})s' for c in _COLUMNS)})"
_SETTLED = [s.value for s in State if s.settled]
_OPEN = "state NOT IN ('delivered', 'delivery_failed', 'needs_operator', 'rejected')"
assert sorted(_SETTLED) == sorted(_OPEN.split("'")[1::2])
_SLOW = "state NOT IN ('needs_resolution', 'queued')"  # followed at their own slow pace
assert sorted(s.value for s in State if s.slow) == sorted(_SLOW.split("'")[1::2])
_TO_PLACE = [s.value for s in State if s.to_place]
# A runner writes a row only while it holds its lease; a delivered row is never written back.
_SAVE = (
    f"UPDATE tracker_orders SET {', '.join(f'{c} = %({c})s' for c in _MUTABLE)}, "
    f"lease_owner = CASE WHEN %(settled)s THEN NULL ELSE lease_owner END, "
    f"lease_until = CASE WHEN %(settled)s THEN NULL ELSE lease_until END "
    f"WHERE id = %(id)s AND lease_owner = %(owner)s AND state <> 'delivered' RETURNING id"
)
_MARK = (
    "UPDATE tracker_orders SET state = %(state)s, delivered_at = %(delivered_at)s, "
    "last_error = %(last_error)s, delivery_attempts = %(delivery_attempts)s, "
    "lease_owner = NULL, lease_until = NULL "
    "WHERE id = %(id)s AND lease_owner = %(owner)s RETURNING id"
)
# A row changed outside the run (a payment link just created): whoever holds the lease, only
# while the row is still unplaced; the holder reloads it when it comes due.
_PUBLISH = (
    f"UPDATE tracker_orders SET {', '.join(f'{c} = %({c})s' for c in _MUTABLE)} "
    f"WHERE id = %(id)s AND state = ANY(%(to_place)s) RETURNING id"
)
# The states each schema version allows (a migration's text never changes once released).
_STATES_V1 = (
    "intent", "sent", "uncertain", "placed", "final", "delivered", "delivery_failed",
    "needs_operator", "rejected",
)  # fmt: skip
_STATES_V2 = (*_STATES_V1, "needs_resolution", "queued")
assert sorted(_STATES_V2) == sorted(s.value for s in State)
_KINDS_V2 = ("gift_card", "mobile", "internet", "payment")
assert sorted(_KINDS_V2) == sorted(k.value for k in Kind)


def _in(values: Sequence[str]) -> str:
    return ", ".join(f"'{v}'" for v in values)


_MIGRATIONS: list[tuple[int, list[str]]] = [
    (
        1,
        [
            f"""CREATE TABLE tracker_orders (
                seq bigint GENERATED ALWAYS AS IDENTITY,
                id text PRIMARY KEY,
                ref text UNIQUE,
                product_id text,
                type_id text,
                quantity integer,
                meta jsonb NOT NULL,
                state text NOT NULL CHECK (state IN ({_in(_STATES_V1)})),
                created_at double precision NOT NULL,
                order_id text UNIQUE,
                order_time double precision,
                status text,
                fulfilled_quantity integer,
                price_per_card numeric,
                amount_charged numeric,
                amount_refunded numeric,
                sealed_cards bytea,
                sent_at double precision,
                placed_at double precision,
                final_at double precision,
                delivered_at double precision,
                attempts integer NOT NULL,
                started_at double precision,
                next_at double precision NOT NULL,
                deadline double precision,
                stuck boolean NOT NULL,
                delivery_attempts integer NOT NULL,
                last_error text,
                adopted boolean NOT NULL,
                lease_owner text,
                lease_until timestamptz
            )""",
            f"CREATE INDEX tracker_orders_open ON tracker_orders (seq) WHERE {_OPEN}",
            "CREATE INDEX tracker_orders_by_state ON tracker_orders (state, seq)",
            "CREATE INDEX tracker_orders_by_owner ON tracker_orders (lease_owner) "
            "WHERE lease_owner IS NOT NULL",
            "CREATE TABLE tracker_counters (name text PRIMARY KEY, value bigint NOT NULL)",
            "CREATE TABLE tracker_settings (name text PRIMARY KEY, value bytea NOT NULL)",
        ],
    ),
    (
        2,
        [
            f"""ALTER TABLE tracker_orders
                ADD COLUMN kind text NOT NULL DEFAULT 'gift_card'
                    CHECK (kind IN ({_in(_KINDS_V2)})),
                ADD COLUMN params jsonb NOT NULL DEFAULT '{{}}',
                ADD COLUMN details jsonb NOT NULL DEFAULT '{{}}'""",
            "ALTER TABLE tracker_orders DROP CONSTRAINT tracker_orders_state_check",
            f"ALTER TABLE tracker_orders ADD CONSTRAINT tracker_orders_state_check "
            f"CHECK (state IN ({_in(_STATES_V2)}))",
        ],
    ),
]
SCHEMA_VERSION = _MIGRATIONS[-1][0]


def _params(o: TrackedOrder) -> dict[str, Any]:
    """The row's columns as query parameters (meta, params and details as jsonb)."""
    params = {c: getattr(o, c) for c in _COLUMNS}
    for name in _JSON:
        params[name] = Jsonb(params[name])
    params["state"] = o.state.value
    params["kind"] = o.kind.value
    return params


def _order(row: Sequence[Any]) -> TrackedOrder:
    values = dict(zip(_COLUMNS, row, strict=True))
    values["state"] = State(values["state"])
    values["kind"] = Kind(values["kind"])
    return TrackedOrder(**values)


def _lease_seconds() -> float:
    raw = os.environ.get(LEASE_ENV)
    if raw is None:
        return DEFAULT_LEASE
    try:
        seconds = float(raw)
    except ValueError:
        raise ValueError(f"{LEASE_ENV} must be a number of seconds, not {raw!r}") from None
    if not 1.0 <= seconds <= 3600.0:
        raise ValueError(f"{LEASE_ENV} must be within 1..3600 seconds")
    return seconds


class PostgresTrackerStore(TrackerStore):
    """`postgresql://user@host/db`: a store several runners share, each order leased to one."""

    shared = True

    def __init__(self, url: str, *, lease_seconds: float | None = None) -> None:
        if not url.startswith(("postgresql://", "postgres://")):
            raise ValueError(f"not a PostgreSQL URL: {url!r}")
        self.url = url
        self.lease_seconds = lease_seconds if lease_seconds is not None else _lease_seconds()
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._pool: AsyncConnectionPool[TxConnection] | None = None
        self._write = asyncio.Lock()  # this process's writes in order, like SQLite's

    @property
    def key_file(self) -> Path | None:
        return None  # no file beside a database: $ONECLICKDZ_TRACKER_KEY(_FILE)

    @property
    def _p(self) -> AsyncConnectionPool[TxConnection]:
        if self._pool is None:
            raise RuntimeError("the tracker store is not open")
        return self._pool

    async def open(self) -> None:
        if self._pool is not None:
            return
        # One direct connection first: an unreachable server fails fast, with its reason.
        async with await psycopg.AsyncConnection.connect(self.url, connect_timeout=10) as conn:
            await self._migrate(conn)
        pool: AsyncConnectionPool[TxConnection] = AsyncConnectionPool(
            self.url, min_size=1, max_size=4, open=False, timeout=30.0, name="oneclickdz-tracker"
        )
        await pool.open(wait=True, timeout=30.0)
        self._pool = pool

    @staticmethod
    async def _migrate(conn: TxConnection) -> None:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS tracker_schema_version (version integer PRIMARY KEY, "
                "applied_at timestamptz NOT NULL DEFAULT now())"
            )
            cur = await conn.execute("SELECT COALESCE(MAX(version), 0) FROM tracker_schema_version")
            row = await cur.fetchone()
            current = int(row[0]) if row else 0
            if current > SCHEMA_VERSION:
                raise ValueError(
                    f"the tracker store's schema is version {current}, newer than this "
                    f"oneclickdz knows ({SCHEMA_VERSION}): upgrade oneclickdz"
                )
            for version, statements in _MIGRATIONS:
                if version > current:
                    for statement in statements:
                        await conn.execute(statement)
                    await conn.execute(
                        "INSERT INTO tracker_schema_version (version) VALUES (%s)", (version,)
                    )

    async def close(self) -> None:
        if self._pool is None:
            return
        try:
            await self.release_runner()
        finally:
            await self._pool.close()
            self._pool = None

    async def acquire_runner(self) -> None:
        """Nothing to take: several runners share this store, each order leased to one."""

    async def release_runner(self) -> None:
        """Give back every lease this runner holds: another runner may take them at once."""
        if self._pool is None:
            return
        async with self._write, self._p.connection() as conn:
            await conn.execute(
                "UPDATE tracker_orders SET lease_owner = NULL, lease_until = NULL "
                "WHERE lease_owner = %s",
                (self.owner,),
            )

    async def setting(self, name: str, default: bytes) -> bytes:
        async with self._p.connection() as conn:
            await conn.execute(
                "INSERT INTO tracker_settings (name, value) VALUES (%s, %s) "
                "ON CONFLICT (name) DO NOTHING",
                (name, default),
            )
            cur = await conn.execute("SELECT value FROM tracker_settings WHERE name = %s", (name,))
            row = await cur.fetchone()
        assert row is not None
        return bytes(row[0])

    async def insert(self, orders: Sequence[TrackedOrder]) -> None:
        async with self._write:
            try:
                async with self._p.connection() as conn, conn.transaction():
                    async with conn.cursor() as cur:
                        await cur.executemany(_INSERT, [_params(o) for o in orders])
                    await self._bump(conn)
            except psycopg.errors.UniqueViolation as exc:
                raise await self._duplicate(orders, exc) from None

    async def _duplicate(self, orders: Sequence[TrackedOrder], exc: Exception) -> Exception:
        async with self._p.connection() as conn:
            for o in orders:
                for column, value in (("order_id", o.order_id), ("ref", o.ref), ("id", o.id)):
                    if value is None:
                        continue
                    cur = await conn.execute(
                        f"SELECT 1 FROM tracker_orders WHERE {column} = %s",
                        (value,),
                    )
                    if await cur.fetchone():
                        from .store import DuplicateOrderError

                        return DuplicateOrderError(value)
        return exc

    @staticmethod
    async def _bump(conn: TxConnection) -> None:
        await conn.execute(
            "INSERT INTO tracker_counters (name, value) VALUES ('_revision', 1) "
            "ON CONFLICT (name) DO UPDATE SET value = tracker_counters.value + 1"
        )

    async def save(
        self, orders: Sequence[TrackedOrder], counters: Mapping[str, int] | None = None
    ) -> set[str]:
        if not orders and not counters:
            return set()
        async with self._write, self._p.connection() as conn, conn.transaction():
            await conn.execute("SET LOCAL synchronous_commit = off")
            written = await self._each(conn, _SAVE, [self._save_params(o) for o in orders])
            if counters:
                async with conn.cursor() as cur:
                    await cur.executemany(
                        "INSERT INTO tracker_counters (name, value) VALUES (%s, %s) "
                        "ON CONFLICT (name) DO UPDATE "
                        "SET value = tracker_counters.value + excluded.value",
                        list(counters.items()),
                    )
        return {o.id for o in orders} - written

    def _save_params(self, o: TrackedOrder) -> dict[str, Any]:
        params = {c: getattr(o, c) for c in (*_MUTABLE, "id")}
        params.update(state=o.state.value, settled=o.state.settled, owner=self.owner)
        params.update(params=Jsonb(o.params), details=Jsonb(o.details))
        return params

    async def publish(self, order: TrackedOrder) -> bool:
        params = self._save_params(order)
        params["to_place"] = _TO_PLACE
        async with self._write, self._p.connection() as conn, conn.transaction():
            written = await self._each(conn, _PUBLISH, [params])
            if written:
                await self._bump(conn)
        return bool(written)

    def _mark_params(self, o: TrackedOrder) -> dict[str, Any]:
        return {
            "state": o.state.value,
            "delivered_at": o.delivered_at,
            "last_error": o.last_error,
            "delivery_attempts": o.delivery_attempts,
            "id": o.id,
            "owner": self.owner,
        }

    @staticmethod
    async def _each(conn: TxConnection, sql: str, params: list[dict[str, Any]]) -> set[str]:
        """Run `sql` (ending RETURNING id) once per parameter set; the ids it returned."""
        if not params:
            return set()
        found: set[str] = set()
        async with conn.cursor() as cur:
            await cur.executemany(sql, params, returning=True)
            while True:
                found.update(row[0] for row in await cur.fetchall())
                if not cur.nextset():
                    break
        return found

    async def deliver(self, order: TrackedOrder, effect: TxEffect | None = None) -> None:
        async with self._write, self._p.connection() as conn, conn.transaction():
            await conn.execute("SET LOCAL synchronous_commit = off")
            # Lock the row first: a runner claiming it skips it; a lost lease runs no effect.
            cur = await conn.execute(
                "SELECT 1 FROM tracker_orders WHERE id = %s AND lease_owner = %s FOR UPDATE",
                (order.id, self.owner),
            )
            if await cur.fetchone() is None:
                raise LeaseLostError([order.id])
            if effect is not None:
                result = effect(conn)
                if inspect.isawaitable(result):
                    await result
            if not await self._each(conn, _MARK, [self._mark_params(order)]):
                raise LeaseLostError([order.id])

    async def deliver_many(self, orders: Sequence[TrackedOrder]) -> set[str]:
        async with self._write, self._p.connection() as conn, conn.transaction():
            await conn.execute("SET LOCAL synchronous_commit = off")
            written = await self._each(conn, _MARK, [self._mark_params(o) for o in orders])
        return {o.id for o in orders} - written

    async def claim(self, held: Collection[str]) -> list[TrackedOrder]:
        """Lease the open rows no live runner holds (this one's excluded), oldest first."""
        columns = ", ".join(f"o.{c}" for c in _COLUMNS)
        async with self._write, self._p.connection() as conn:
            cur = await conn.execute(
                f"""WITH free AS (
                        SELECT id FROM tracker_orders
                        WHERE {_OPEN}
                          AND (lease_until IS NULL OR lease_until < now())
                          AND lease_owner IS DISTINCT FROM %(owner)s
                        ORDER BY seq LIMIT %(limit)s
                        FOR UPDATE SKIP LOCKED)
                    UPDATE tracker_orders o
                    SET lease_owner = %(owner)s,
                        lease_until = now() + make_interval(secs => %(lease)s)
                    FROM free WHERE o.id = free.id
                    RETURNING o.seq, {columns}""",
                {"owner": self.owner, "limit": CLAIM_BATCH, "lease": self.lease_seconds},
            )
            rows = sorted(await cur.fetchall())
        return [_order(row[1:]) for row in rows if row[1] not in held]

    async def renew(self, held: Collection[str]) -> set[str]:
        """Extend this runner's leases on `held`; the ids it no longer holds."""
        if not held:
            return set()
        async with self._write, self._p.connection() as conn:
            cur = await conn.execute(
                "UPDATE tracker_orders SET lease_until = now() + make_interval(secs => %s) "
                "WHERE lease_owner = %s AND id = ANY(%s) RETURNING id",
                (self.lease_seconds, self.owner, list(held)),
            )
            kept = {row[0] for row in await cur.fetchall()}
        return set(held) - kept

    async def pending_elsewhere(self, delivers: bool) -> int:
        """Open rows this runner does not hold that are still to be worked (not stuck)."""
        skip = "" if delivers else " AND state <> 'final'"
        async with self._p.connection() as conn:
            cur = await conn.execute(
                f"SELECT COUNT(*) FROM tracker_orders WHERE {_OPEN}{skip} AND {_SLOW} "
                "AND NOT (state = 'placed' AND stuck) AND lease_owner IS DISTINCT FROM %s",
                (self.owner,),
            )
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def get(self, ident: str) -> TrackedOrder | None:
        async with self._p.connection() as conn:
            cur = await conn.execute(
                f"{_SELECT} WHERE id = %s OR order_id = %s OR ref = %s LIMIT 1",
                (ident, ident, ident),
            )
            row = await cur.fetchone()
        return None if row is None else _order(row)

    async def select(
        self,
        states: Collection[State] | None = None,
        *,
        stuck: bool | None = None,
        kind: Kind | None = None,
    ) -> list[TrackedOrder]:
        where: list[str] = []
        params: list[Any] = []
        if states is not None:
            where.append("state = ANY(%s)")
            params.append([s.value for s in states])
        if stuck is not None:
            where.append("stuck = %s")
            params.append(stuck)
        if kind is not None:
            where.append("kind = %s")
            params.append(kind.value)
        sql = _SELECT + (f" WHERE {' AND '.join(where)}" if where else "") + " ORDER BY seq"
        async with self._p.connection() as conn:
            cur = await conn.execute(sql, params)
            return [_order(row) for row in await cur.fetchall()]

    async def unsettled_ids(self) -> set[str]:
        async with self._p.connection() as conn:
            cur = await conn.execute(f"SELECT id FROM tracker_orders WHERE {_OPEN}")
            return {row[0] for row in await cur.fetchall()}

    async def load(self, ids: Collection[str]) -> list[TrackedOrder]:
        async with self._p.connection() as conn:
            cur = await conn.execute(f"{_SELECT} WHERE id = ANY(%s) ORDER BY seq", (list(ids),))
            return [_order(row) for row in await cur.fetchall()]

    async def revision(self) -> int:
        async with self._p.connection() as conn:
            cur = await conn.execute("SELECT value FROM tracker_counters WHERE name = '_revision'")
            row = await cur.fetchone()
        return 0 if row is None else int(row[0])

    async def requeue(
        self, ident: str, from_states: Collection[State]
    ) -> tuple[TrackedOrder | None, bool]:
        async with self._write, self._p.connection() as conn, conn.transaction():
            cur = await conn.execute(
                f"{_SELECT} WHERE id = %s OR order_id = %s OR ref = %s LIMIT 1 FOR UPDATE",
                (ident, ident, ident),
            )
            row = await cur.fetchone()
            if row is None:
                return None, False
            order = _order(row)
            if order.state not in from_states:
                return order, False
            order.requeue_for_delivery()
            await conn.execute(
                "UPDATE tracker_orders SET state = %s, delivery_attempts = 0, next_at = 0, "
                "last_error = NULL, lease_owner = NULL, lease_until = NULL WHERE id = %s",
                (order.state.value, order.id),
            )
            await self._bump(conn)
        return order, True

    async def counters(self) -> dict[str, int]:
        async with self._p.connection() as conn:
            cur = await conn.execute(
                "SELECT name, value FROM tracker_counters WHERE name NOT LIKE '\\_%'"
            )
            return {name: int(value) for name, value in await cur.fetchall()}

    async def state_counts(self) -> dict[str, int]:
        async with self._p.connection() as conn:
            cur = await conn.execute("SELECT state, COUNT(*) FROM tracker_orders GROUP BY state")
            counts = {state: int(n) for state, n in await cur.fetchall()}
            cur = await conn.execute("SELECT COUNT(*) FROM tracker_orders WHERE stuck")
            row = await cur.fetchone()
        counts["stuck"] = int(row[0]) if row else 0
        return counts

    async def latencies(self) -> tuple[list[float], list[float]]:
        async with self._p.connection() as conn:
            cur = await conn.execute(
                "SELECT COALESCE(order_time, placed_at), final_at, delivered_at "
                "FROM tracker_orders WHERE state = 'delivered' AND final_at IS NOT NULL"
            )
            rows = await cur.fetchall()
        to_final = [final - placed for placed, final, _ in rows if placed is not None]
        to_delivered = [done - final for _, final, done in rows if done is not None]
        return to_final, to_delivered
