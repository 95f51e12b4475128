"""The repositories as SQL on one PostgreSQL connection (psycopg 3), and their unit of work.

Writers here run concurrently, in this process and others, so every decision that SQLite's
single write lock made for free is taken by the database itself: the balance moves in one
conditional `UPDATE … RETURNING` (and `CHECK (balance_cents >= 0)` backs it), an order is
inserted with `ON CONFLICT DO NOTHING` against the unique indexes (a racing ref is a
`Conflict`, never a second order), cards are sold through `FOR UPDATE SKIP LOCKED`, fulfilment
locks the order's row, and claims skip rows another claimant holds. Statements are prepared
by psycopg after a few uses on each connection. Every statement whose outcome decides anything
returns rows (`RETURNING`), so it reads the same in pipeline mode, where a bare row count is
not known until the pipeline syncs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg

from oneclickdz.server.store.base import (
    Conflict,
    Env,
    KeyRecord,
    LedgerEntry,
    Operation,
    OrderRecord,
    OrderStatus,
    ProductRecord,
    Scope,
    TimeRange,
    TransactionRecord,
    TypeRecord,
)
from oneclickdz.server.store.rows import (
    ENVS,
    ORDER_COLUMNS,
    TX_COLUMNS,
    order_row,
    transaction_row,
)
from oneclickdz.server.store.topup_repo import SqlPayments, SqlTopups
from oneclickdz.server.store.webhook_repo import SqlWebhooks

Connection = psycopg.Connection[tuple[Any, ...]]

_HANDLING = OrderStatus.HANDLING.value  # inlined, so the planner uses the partial index on it
_ORDER_WITH_CARDS = (
    "SELECT o.id, o.account_id, o.env, o.key_id, o.ref, o.product_id, o.type_id, o.quantity, "
    "o.price_cents, o.status, o.fulfilled_quantity, o.time, o.due_at, c.secret "
    "FROM orders o LEFT JOIN cards c ON c.order_id = o.id WHERE o.id = %s ORDER BY c.position"
)
_INSERT_ORDER = (
    f"INSERT INTO orders ({ORDER_COLUMNS}) VALUES "
    "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING id"
)


_MOVE = (
    "WITH moved AS (UPDATE balances SET balance_cents = balance_cents + %(delta)s "
    "WHERE account_id = %(account)s AND env = %(env)s AND balance_cents + %(delta)s >= 0 "
    "RETURNING balance_cents) "
    "INSERT INTO transactions (id, account_id, env, type, operation, amount_cents, "
    "old_balance_cents, new_balance_cents, objid, note, time) "
    "SELECT %(id)s, %(account)s, %(env)s, %(type)s, %(operation)s, %(amount)s, "
    "balance_cents - %(delta)s, balance_cents, %(objid)s, %(note)s, %(time)s FROM moved "
    "RETURNING new_balance_cents"
)
_FINISH = (
    "UPDATE orders SET status = %s, fulfilled_quantity = %s, final_at = %s, "
    f"lease_owner = NULL, lease_until = NULL WHERE id = %s AND status = '{_HANDLING}' "
    "RETURNING id"
)
_PRODUCT_AND_TYPE = (
    "SELECT p.id, p.title, p.category, p.enabled, p.region, t.product_id, t.id, t.name, "
    "t.price_cents, t.sandbox_stock FROM products p "
    "LEFT JOIN product_types t ON t.product_id = p.id AND t.id = %s WHERE p.id = %s"
)


def _order_params(order: OrderRecord) -> tuple[Any, ...]:
    return (
        order.id, order.account_id, order.env, order.key_id, order.ref, order.product_id,
        order.type_id, order.quantity, order.price_cents, order.status,
        order.fulfilled_quantity, order.time, order.due_at,
    )  # fmt: skip


def _window_sql(window: TimeRange) -> tuple[str, dict[str, str]]:
    clauses, params = "", {}
    if window.start is not None:
        clauses += " AND time >= %(start)s"
        params["start"] = window.start
    if window.end is not None:
        clauses += " AND time <= %(end)s"
        params["end"] = window.end
    return clauses, params


class PgKeys:
    __slots__ = ("_c",)

    def __init__(self, conn: Connection) -> None:
        self._c = conn

    def account_id(self, name: str) -> int | None:
        row = self._c.execute("SELECT id FROM accounts WHERE name = %s", (name,)).fetchone()
        return None if row is None else int(row[0])

    def add_account(self, name: str, now: str) -> int:
        row = self._c.execute(
            "INSERT INTO accounts (name, created_at) VALUES (%s, %s) RETURNING id", (name, now)
        ).fetchone()
        assert row is not None
        account_id = int(row[0])
        with self._c.cursor() as cur:
            cur.executemany(
                "INSERT INTO balances (account_id, env, balance_cents) VALUES (%s, %s, 0)",
                [(account_id, env) for env in ENVS],
            )
        return account_id

    def add(
        self,
        key_hash: bytes,
        hint: str,
        account_id: int,
        env: Env,
        scope: Scope,
        allowed_ips: Sequence[str],
        now: str,
    ) -> int:
        row = self._c.execute(
            "INSERT INTO api_keys (key_hash, key_hint, account_id, env, scope, allowed_ips, "
            "created_at) VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id",
            (key_hash, hint, account_id, env, scope, list(allowed_ips), now),
        ).fetchone()
        assert row is not None
        return int(row[0])

    def find(self, key_hash: bytes) -> tuple[bytes, KeyRecord] | None:
        row = self._c.execute(
            "SELECT k.key_hash, k.id, k.account_id, a.name, k.env, k.scope, k.enabled, "
            "k.allowed_ips, k.key_hint FROM api_keys k JOIN accounts a ON a.id = k.account_id "
            "WHERE k.key_hash = %s",
            (key_hash,),
        ).fetchone()
        if row is None:
            return None
        return bytes(row[0]), KeyRecord(
            id=row[1],
            account_id=row[2],
            account_name=row[3],
            env=row[4],
            scope=row[5],
            enabled=bool(row[6]),
            allowed_ips=tuple(row[7]),
            hint=row[8],
        )

    def set_enabled(self, key_hash: bytes, enabled: bool) -> bool:
        row = self._c.execute(
            "UPDATE api_keys SET enabled = %s WHERE key_hash = %s RETURNING id", (enabled, key_hash)
        ).fetchone()
        return row is not None


class PgLedger:
    __slots__ = ("_c",)

    def __init__(self, conn: Connection) -> None:
        self._c = conn

    def balance(self, account_id: int, env: Env) -> int:
        row = self._c.execute(
            "SELECT balance_cents FROM balances WHERE account_id = %s AND env = %s",
            (account_id, env),
        ).fetchone()
        return 0 if row is None else int(row[0])

    def move(
        self, account_id: int, env: Env, delta_cents: int, entry: LedgerEntry
    ) -> TransactionRecord | None:
        # One statement decides, moves and records: the row lock it takes orders concurrent
        # movers, each sees the balance the previous one committed, and no balance moves
        # without its transaction row (nor a row without its move).
        operation = Operation.CREDIT if delta_cents >= 0 else Operation.DEBIT
        row = self._c.execute(
            _MOVE,
            {
                "delta": delta_cents, "account": account_id, "env": env, "id": entry.id,
                "type": entry.type, "operation": operation, "amount": abs(delta_cents),
                "objid": entry.objid, "note": entry.note, "time": entry.time,
            },
        ).fetchone()  # fmt: skip
        if row is None:
            return None
        new = int(row[0])
        return TransactionRecord(
            id=entry.id,
            type=entry.type,
            operation=operation,
            amount_cents=abs(delta_cents),
            old_balance_cents=new - delta_cents,
            new_balance_cents=new,
            objid=entry.objid,
            note=entry.note,
            time=entry.time,
        )

    def transactions(
        self, account_id: int, env: Env, window: TimeRange, limit: int, offset: int
    ) -> tuple[list[TransactionRecord], int]:
        where, params = _window_sql(window)
        params_all: dict[str, Any] = {"a": account_id, "e": env, **params}
        total = self._c.execute(
            f"SELECT COUNT(*) FROM transactions WHERE account_id = %(a)s AND env = %(e)s{where}",
            params_all,
        ).fetchone()
        rows = self._c.execute(
            f"SELECT {TX_COLUMNS} FROM transactions WHERE account_id = %(a)s AND env = %(e)s"
            f"{where} ORDER BY time DESC, seq DESC LIMIT %(limit)s OFFSET %(offset)s",
            {**params_all, "limit": limit, "offset": offset},
        ).fetchall()
        return [transaction_row(row) for row in rows], int(total[0]) if total else 0


class PgCatalog:
    __slots__ = ("_c",)

    def __init__(self, conn: Connection) -> None:
        self._c = conn

    def upsert_product(self, product: ProductRecord, position: int) -> None:
        self._c.execute(
            "INSERT INTO products (id, title, category, enabled, region, position) "
            "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO UPDATE SET "
            "title = excluded.title, category = excluded.category, enabled = excluded.enabled, "
            "region = excluded.region, position = excluded.position",
            (product.id, product.title, product.category, product.enabled, product.region,
             position),
        )  # fmt: skip

    def upsert_type(self, ptype: TypeRecord, position: int) -> None:
        self._c.execute(
            "INSERT INTO product_types (product_id, id, name, price_cents, sandbox_stock, "
            "position) VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (product_id, id) DO UPDATE "
            "SET name = excluded.name, price_cents = excluded.price_cents, "
            "sandbox_stock = excluded.sandbox_stock, position = excluded.position",
            (ptype.product_id, ptype.id, ptype.name, ptype.price_cents, ptype.sandbox_stock,
             position),
        )  # fmt: skip

    def product(self, product_id: str) -> ProductRecord | None:
        row = self._c.execute(
            "SELECT id, title, category, enabled, region FROM products WHERE id = %s",
            (product_id,),
        ).fetchone()
        return None if row is None else ProductRecord(row[0], row[1], row[2], row[3], row[4])

    def types(self, product_id: str) -> list[TypeRecord]:
        rows = self._c.execute(
            "SELECT product_id, id, name, price_cents, sandbox_stock FROM product_types "
            "WHERE product_id = %s ORDER BY position, id",
            (product_id,),
        ).fetchall()
        return [TypeRecord(*row) for row in rows]

    def type(self, product_id: str, type_id: str) -> TypeRecord | None:
        row = self._c.execute(
            "SELECT product_id, id, name, price_cents, sandbox_stock FROM product_types "
            "WHERE product_id = %s AND id = %s",
            (product_id, type_id),
        ).fetchone()
        return None if row is None else TypeRecord(*row)

    def product_and_type(
        self, product_id: str, type_id: str
    ) -> tuple[ProductRecord, TypeRecord | None] | None:
        row = self._c.execute(_PRODUCT_AND_TYPE, (type_id, product_id)).fetchone()
        if row is None:
            return None
        product = ProductRecord(row[0], row[1], row[2], row[3], row[4])
        return product, None if row[5] is None else TypeRecord(*row[5:])

    def products(self) -> list[ProductRecord]:
        rows = self._c.execute(
            "SELECT id, title, category, enabled, region FROM products ORDER BY position, id"
        ).fetchall()
        return [ProductRecord(r[0], r[1], r[2], r[3], r[4]) for r in rows]


class PgInventory:
    __slots__ = ("_c",)

    def __init__(self, conn: Connection) -> None:
        self._c = conn

    def add(
        self,
        product_id: str,
        type_id: str,
        secret: bytes,
        fingerprint: bytes,
        now: str,
        order_id: str | None = None,
        position: int | None = None,
    ) -> None:
        # No result awaited (the fingerprint's unique index still refuses a duplicate, at the
        # next statement that waits for one, or at the commit).
        self._c.execute(
            "INSERT INTO cards (product_id, type_id, secret, fingerprint, order_id, position, "
            "added_at) VALUES (%s, %s, %s, %s, %s, %s, %s)",
            (product_id, type_id, secret, fingerprint, order_id, position, now),
        )

    def fingerprints_present(self, fingerprints: Sequence[bytes]) -> set[bytes]:
        if not fingerprints:
            return set()
        rows = self._c.execute(
            "SELECT fingerprint FROM cards WHERE fingerprint = ANY(%s)", (list(fingerprints),)
        ).fetchall()
        return {bytes(r[0]) for r in rows}

    def unsold_counts(self, product_id: str) -> dict[str, int]:
        rows = self._c.execute(
            "SELECT type_id, COUNT(*) FROM cards WHERE product_id = %s AND order_id IS NULL "
            "GROUP BY type_id",
            (product_id,),
        ).fetchall()
        return {row[0]: int(row[1]) for row in rows}

    def sell(self, product_id: str, type_id: str, order_id: str, count: int) -> int:
        # Cards another transaction is selling right now are skipped, not waited for: each
        # card goes to the one transaction that locked it, and is then no longer unsold.
        cur = self._c.execute(
            "WITH picked AS (SELECT id, row_number() OVER (ORDER BY id) - 1 AS pos FROM ("
            "SELECT id FROM cards WHERE product_id = %s AND type_id = %s AND order_id IS NULL "
            "ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED) unsold) "
            "UPDATE cards SET order_id = %s, position = picked.pos FROM picked "
            "WHERE cards.id = picked.id AND cards.order_id IS NULL RETURNING cards.id",
            (product_id, type_id, count, order_id),
        )
        return len(cur.fetchall())

    def next_serials(self, count: int) -> list[int]:
        if count < 1:
            raise ValueError("reserve at least one serial")
        rows = self._c.execute(
            "SELECT nextval('card_serials') FROM generate_series(1, %s)", (count,)
        ).fetchall()
        return sorted(int(r[0]) for r in rows)

    def secrets_for_orders(self, order_ids: Sequence[str]) -> dict[str, list[bytes]]:
        result: dict[str, list[bytes]] = {}
        if not order_ids:
            return result
        for order_id, secret in self._c.execute(
            "SELECT order_id, secret FROM cards WHERE order_id = ANY(%s) "
            "ORDER BY order_id, position",
            (list(order_ids),),
        ):
            result.setdefault(order_id, []).append(bytes(secret))
        return result


class PgOrders:
    __slots__ = ("_c",)

    def __init__(self, conn: Connection) -> None:
        self._c = conn

    def add(self, order: OrderRecord) -> None:
        cur = self._c.execute(_INSERT_ORDER, _order_params(order))
        if cur.fetchone() is None:  # a unique index refused it (after waiting for a racing insert)
            raise Conflict(f"order {order.id}: its id or ref is already used")

    def get(self, order_id: str) -> OrderRecord | None:
        row = self._c.execute(
            f"SELECT {ORDER_COLUMNS} FROM orders WHERE id = %s", (order_id,)
        ).fetchone()
        return None if row is None else order_row(row)

    def with_cards(self, order_id: str) -> tuple[OrderRecord, list[bytes]] | None:
        rows = self._c.execute(_ORDER_WITH_CARDS, (order_id,)).fetchall()
        if not rows:
            return None
        secrets = [bytes(row[-1]) for row in rows if row[-1] is not None]
        return order_row(rows[0]), secrets

    def id_by_ref(self, account_id: int, env: Env, ref: str) -> str | None:
        row = self._c.execute(
            "SELECT id FROM orders WHERE account_id = %s AND env = %s AND ref = %s",
            (account_id, env, ref),
        ).fetchone()
        return None if row is None else str(row[0])

    def lock(self, order_id: str) -> OrderRecord | None:
        row = self._c.execute(
            f"SELECT {ORDER_COLUMNS} FROM orders WHERE id = %s FOR UPDATE", (order_id,)
        ).fetchone()
        return None if row is None else order_row(row)

    def finish(self, order_id: str, status: OrderStatus, fulfilled: int, now: str) -> bool:
        if status is OrderStatus.HANDLING:
            raise ValueError("an order is finished with a final status")
        row = self._c.execute(_FINISH, (status, fulfilled, now, order_id)).fetchone()
        return row is not None

    def claim_due(self, now: float, owner: str, until: float, limit: int) -> list[str]:
        rows = self._c.execute(
            "UPDATE orders SET lease_owner = %(owner)s, lease_until = %(until)s WHERE id IN ("
            f"SELECT id FROM orders WHERE status = '{_HANDLING}' AND due_at <= %(now)s "
            "AND (lease_until IS NULL OR lease_until <= %(now)s) ORDER BY due_at "
            "LIMIT %(limit)s FOR UPDATE SKIP LOCKED) RETURNING due_at, id",
            {"owner": owner, "until": until, "now": now, "limit": limit},
        ).fetchall()
        return [str(r[1]) for r in sorted(rows)]

    def next_due(self, now: float) -> float | None:
        row = self._c.execute(
            f"SELECT due_at FROM orders WHERE status = '{_HANDLING}' "
            "AND (lease_until IS NULL OR lease_until <= %s) ORDER BY due_at LIMIT 1",
            (now,),
        ).fetchone()
        return None if row is None else float(row[0])

    def page(
        self, account_id: int, env: Env, window: TimeRange, limit: int, offset: int
    ) -> tuple[list[OrderRecord], int]:
        where, params = _window_sql(window)
        params_all: dict[str, Any] = {"a": account_id, "e": env, **params}
        total = self._c.execute(
            f"SELECT COUNT(*) FROM orders WHERE account_id = %(a)s AND env = %(e)s{where}",
            params_all,
        ).fetchone()
        # seq: the insertion sequence, so one millisecond's orders keep placement order.
        rows = self._c.execute(
            f"SELECT {ORDER_COLUMNS} FROM orders WHERE account_id = %(a)s AND env = %(e)s"
            f"{where} ORDER BY time DESC, seq DESC LIMIT %(limit)s OFFSET %(offset)s",
            {**params_all, "limit": limit, "offset": offset},
        ).fetchall()
        return [order_row(row) for row in rows], int(total[0]) if total else 0

    def counts(self) -> dict[tuple[str, str], int]:
        rows = self._c.execute("SELECT env, status, COUNT(*) FROM orders GROUP BY env, status")
        return {(str(env), str(status)): int(count) for env, status, count in rows}


class PgSettings:
    __slots__ = ("_c",)

    def __init__(self, conn: Connection) -> None:
        self._c = conn

    def get(self, name: str) -> str | None:
        row = self._c.execute("SELECT value FROM settings WHERE name = %s", (name,)).fetchone()
        return None if row is None else str(row[0])

    def set(self, name: str, value: str) -> None:
        self._c.execute(
            "INSERT INTO settings (name, value) VALUES (%s, %s) "
            "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            (name, value),
        )


class PgTx:
    """The unit of work: every repository on the one connection of a transaction."""

    __slots__ = (
        "catalog", "inventory", "keys", "ledger", "orders", "payments", "settings", "topups",
        "webhooks",
    )  # fmt: skip

    def __init__(self, conn: Connection) -> None:
        self.keys = PgKeys(conn)
        self.ledger = PgLedger(conn)
        self.catalog = PgCatalog(conn)
        self.inventory = PgInventory(conn)
        self.orders = PgOrders(conn)
        self.settings = PgSettings(conn)
        self.webhooks = SqlWebhooks(conn, postgres=True)
        self.topups = SqlTopups(conn, postgres=True)
        self.payments = SqlPayments(conn, postgres=True)


# -- a batch's unit of work: the same contract, in fewer round trips --------------------------


class DeferredConflict(Exception):
    """An order deferred by a batch was refused by a unique index at the batch's end: the
    batch is rolled back and its writes run again one by one, where the refusal is exact."""


class BatchedLedger(PgLedger):
    """Moves within one transaction of many writes: the first move of an account's balance
    locks its row (`FOR UPDATE`) and reads it; later moves decide on that figure in memory,
    which no other transaction can change while the lock is held, and only queue their
    transaction rows. `flush` writes the balances back before the commit, where
    `CHECK (balance_cents >= 0)` still stands guard."""

    __slots__ = ("_balances", "_dirty")

    def __init__(self, conn: Connection) -> None:
        super().__init__(conn)
        self._balances: dict[tuple[int, str], int | None] = {}
        self._dirty: set[tuple[int, str]] = set()

    def balance(self, account_id: int, env: Env) -> int:
        held = self._balances.get((account_id, env))
        return super().balance(account_id, env) if held is None else held

    def move(
        self, account_id: int, env: Env, delta_cents: int, entry: LedgerEntry
    ) -> TransactionRecord | None:
        account = (account_id, env)
        if account not in self._balances:
            row = self._c.execute(
                "SELECT balance_cents FROM balances WHERE account_id = %s AND env = %s FOR UPDATE",
                account,
            ).fetchone()
            self._balances[account] = None if row is None else int(row[0])
        old = self._balances[account]
        if old is None or old + delta_cents < 0:
            return None
        new = old + delta_cents
        record = TransactionRecord(
            id=entry.id,
            type=entry.type,
            operation=Operation.CREDIT if delta_cents >= 0 else Operation.DEBIT,
            amount_cents=abs(delta_cents),
            old_balance_cents=old,
            new_balance_cents=new,
            objid=entry.objid,
            note=entry.note,
            time=entry.time,
        )
        self._c.execute(  # no result awaited: it goes out with the next statement that has one
            "INSERT INTO transactions (id, account_id, env, type, operation, amount_cents, "
            "old_balance_cents, new_balance_cents, objid, note, time) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (
                record.id, account_id, env, record.type, record.operation, record.amount_cents,
                old, new, record.objid, record.note, record.time,
            ),
        )  # fmt: skip
        self._balances[account] = new
        self._dirty.add(account)
        return record

    def flush(self) -> None:
        for account_id, env in self._dirty:
            self._c.execute(
                "UPDATE balances SET balance_cents = %s WHERE account_id = %s AND env = %s",
                (self._balances[account_id, env], account_id, env),
            )
        self._dirty.clear()


class MemoCatalog(PgCatalog):
    """Catalog reads remembered for one transaction (a batch of placements reads the same
    product and type once); a write to the catalog in it forgets them."""

    __slots__ = ("_memo",)

    def __init__(self, conn: Connection) -> None:
        super().__init__(conn)
        self._memo: dict[tuple[str, str], tuple[ProductRecord, TypeRecord | None] | None] = {}

    def product_and_type(
        self, product_id: str, type_id: str
    ) -> tuple[ProductRecord, TypeRecord | None] | None:
        key = (product_id, type_id)
        if key not in self._memo:
            self._memo[key] = super().product_and_type(product_id, type_id)
        return self._memo[key]

    def upsert_product(self, product: ProductRecord, position: int) -> None:
        self._memo.clear()
        super().upsert_product(product, position)

    def upsert_type(self, ptype: TypeRecord, position: int) -> None:
        self._memo.clear()
        super().upsert_type(ptype, position)


class DeferredOrders(PgOrders):
    """New orders inserted, and orders finished, without waiting for the answer; `verify`
    collects the answers before the commit and raises `DeferredConflict` if one was refused."""

    __slots__ = ("_pending",)

    def __init__(self, conn: Connection) -> None:
        super().__init__(conn)
        self._pending: list[psycopg.Cursor[tuple[Any, ...]]] = []

    def add(self, order: OrderRecord) -> None:
        self._pending.append(self._c.execute(_INSERT_ORDER, _order_params(order)))

    def finish(self, order_id: str, status: OrderStatus, fulfilled: int, now: str) -> bool:
        """Reported done at once: its caller holds the order's row lock and saw it HANDLING
        (`lock`), so it cannot fail; `verify` still checks that it did not."""
        if status is OrderStatus.HANDLING:
            raise ValueError("an order is finished with a final status")
        self._pending.append(self._c.execute(_FINISH, (status, fulfilled, now, order_id)))
        return True

    def verify(self) -> None:
        pending, self._pending = self._pending, []
        if any(cur.fetchone() is None for cur in pending):
            raise DeferredConflict("a write of the batch was refused by the database")


class BatchedPgTx:
    """The unit of work of a batch: `PgTx`'s repositories, with the ledger, the catalog and
    new orders in fewer round trips; `settle` must run before the commit."""

    __slots__ = (
        "catalog", "inventory", "keys", "ledger", "orders", "payments", "settings", "topups",
        "webhooks",
    )  # fmt: skip

    def __init__(self, conn: Connection) -> None:
        self.keys = PgKeys(conn)
        self.ledger = BatchedLedger(conn)
        self.catalog = MemoCatalog(conn)
        self.inventory = PgInventory(conn)
        self.orders = DeferredOrders(conn)
        self.settings = PgSettings(conn)
        self.webhooks = SqlWebhooks(conn, postgres=True)
        self.topups = SqlTopups(conn, postgres=True)
        self.payments = SqlPayments(conn, postgres=True)

    def settle(self) -> None:
        self.ledger.flush()
        self.orders.verify()
