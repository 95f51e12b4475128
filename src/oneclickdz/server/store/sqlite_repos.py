"""The repositories as SQL on one SQLite connection, and the unit of work that holds them.

Ids: accounts, keys, cards and transaction rows take SQLite's rowid (`INTEGER PRIMARY KEY`,
the engine's identity column; rows are never deleted, so an id is never reused), orders carry
their own ids, and card serials come from the `sequences` table, incremented inside the write
transaction. Statuses and ledger types are the enums of `base`, never literals in a query.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import Any, cast

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

_HANDLING = OrderStatus.HANDLING.value  # inlined, so SQLite can use the partial index on it
# One statement for checkOrder, the hottest read: the order and its cards in delivery order.
_ORDER_WITH_CARDS = (
    "SELECT o.id, o.account_id, o.env, o.key_id, o.ref, o.product_id, o.type_id, o.quantity, "
    "o.price_cents, o.status, o.fulfilled_quantity, o.time, o.due_at, c.secret "
    "FROM orders o LEFT JOIN cards c ON c.order_id = o.id WHERE o.id = ? ORDER BY c.position"
)


_PRODUCT_AND_TYPE = (
    "SELECT p.id, p.title, p.category, p.enabled, p.region, t.product_id, t.id, t.name, "
    "t.price_cents, t.sandbox_stock FROM products p "
    "LEFT JOIN product_types t ON t.product_id = p.id AND t.id = ? WHERE p.id = ?"
)


def _window_sql(window: TimeRange) -> tuple[str, dict[str, str]]:
    clauses, params = "", {}
    if window.start is not None:
        clauses += " AND time >= :start"
        params["start"] = window.start
    if window.end is not None:
        clauses += " AND time <= :end"
        params["end"] = window.end
    return clauses, params


class SqliteKeys:
    __slots__ = ("_c",)

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._c = conn

    def account_id(self, name: str) -> int | None:
        row = self._c.execute("SELECT id FROM accounts WHERE name = ?", (name,)).fetchone()
        return None if row is None else int(row[0])

    def add_account(self, name: str, now: str) -> int:
        cur = self._c.execute("INSERT INTO accounts (name, created_at) VALUES (?, ?)", (name, now))
        account_id = cast(int, cur.lastrowid)
        self._c.executemany(
            "INSERT INTO balances (account_id, env, balance_cents) VALUES (?, ?, 0)",
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
        cur = self._c.execute(
            "INSERT INTO api_keys (key_hash, key_hint, account_id, env, scope, allowed_ips, "
            "created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (key_hash, hint, account_id, env, scope, json.dumps(list(allowed_ips)), now),
        )
        return cast(int, cur.lastrowid)

    def find(self, key_hash: bytes) -> tuple[bytes, KeyRecord] | None:
        row = self._c.execute(
            "SELECT k.key_hash, k.id, k.account_id, a.name, k.env, k.scope, k.enabled, "
            "k.allowed_ips, k.key_hint FROM api_keys k JOIN accounts a ON a.id = k.account_id "
            "WHERE k.key_hash = ?",
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
            allowed_ips=tuple(json.loads(row[7])),
            hint=row[8],
        )

    def set_enabled(self, key_hash: bytes, enabled: bool) -> bool:
        cur = self._c.execute(
            "UPDATE api_keys SET enabled = ? WHERE key_hash = ?", (int(enabled), key_hash)
        )
        return cur.rowcount == 1


class SqliteLedger:
    __slots__ = ("_c",)

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._c = conn

    def balance(self, account_id: int, env: Env) -> int:
        row = self._c.execute(
            "SELECT balance_cents FROM balances WHERE account_id = ? AND env = ?",
            (account_id, env),
        ).fetchone()
        return 0 if row is None else int(row[0])

    def move(
        self, account_id: int, env: Env, delta_cents: int, entry: LedgerEntry
    ) -> TransactionRecord | None:
        # The conditional update is the guard; the write lock, held since BEGIN IMMEDIATE,
        # makes the read after it this update's result. (No RETURNING: through the sqlite3
        # module it costs four times an update and a read.)
        cur = self._c.execute(
            "UPDATE balances SET balance_cents = balance_cents + ? "
            "WHERE account_id = ? AND env = ? AND balance_cents + ? >= 0",
            (delta_cents, account_id, env, delta_cents),
        )
        if cur.rowcount != 1:
            return None
        new = self.balance(account_id, env)
        record = TransactionRecord(
            id=entry.id,
            type=entry.type,
            operation=Operation.CREDIT if delta_cents >= 0 else Operation.DEBIT,
            amount_cents=abs(delta_cents),
            old_balance_cents=new - delta_cents,
            new_balance_cents=new,
            objid=entry.objid,
            note=entry.note,
            time=entry.time,
        )
        self._c.execute(
            "INSERT INTO transactions (id, account_id, env, type, operation, amount_cents, "
            "old_balance_cents, new_balance_cents, objid, note, time) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                record.id, account_id, env, record.type, record.operation,
                record.amount_cents, record.old_balance_cents, record.new_balance_cents,
                record.objid, record.note, record.time,
            ),
        )  # fmt: skip
        return record

    def transactions(
        self, account_id: int, env: Env, window: TimeRange, limit: int, offset: int
    ) -> tuple[list[TransactionRecord], int]:
        where, params = _window_sql(window)
        params_all: dict[str, Any] = {"a": account_id, "e": env, **params}
        total = self._c.execute(
            f"SELECT COUNT(*) FROM transactions WHERE account_id = :a AND env = :e{where}",
            params_all,
        ).fetchone()[0]
        rows = self._c.execute(
            f"SELECT {TX_COLUMNS} FROM transactions WHERE account_id = :a AND env = :e{where} "
            "ORDER BY time DESC, seq DESC LIMIT :limit OFFSET :offset",
            {**params_all, "limit": limit, "offset": offset},
        ).fetchall()
        return [transaction_row(row) for row in rows], int(total)


class SqliteCatalog:
    __slots__ = ("_c",)

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._c = conn

    def upsert_product(self, product: ProductRecord, position: int) -> None:
        self._c.execute(
            "INSERT INTO products (id, title, category, enabled, region, position) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET title = excluded.title, "
            "category = excluded.category, enabled = excluded.enabled, "
            "region = excluded.region, position = excluded.position",
            (product.id, product.title, product.category, int(product.enabled), product.region,
             position),
        )  # fmt: skip

    def upsert_type(self, ptype: TypeRecord, position: int) -> None:
        self._c.execute(
            "INSERT INTO product_types (product_id, id, name, price_cents, sandbox_stock, "
            "position) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (product_id, id) DO UPDATE SET "
            "name = excluded.name, price_cents = excluded.price_cents, "
            "sandbox_stock = excluded.sandbox_stock, position = excluded.position",
            (ptype.product_id, ptype.id, ptype.name, ptype.price_cents, ptype.sandbox_stock,
             position),
        )  # fmt: skip

    def product(self, product_id: str) -> ProductRecord | None:
        row = self._c.execute(
            "SELECT id, title, category, enabled, region FROM products WHERE id = ?",
            (product_id,),
        ).fetchone()
        return None if row is None else ProductRecord(row[0], row[1], row[2], bool(row[3]), row[4])

    def types(self, product_id: str) -> list[TypeRecord]:
        rows = self._c.execute(
            "SELECT product_id, id, name, price_cents, sandbox_stock FROM product_types "
            "WHERE product_id = ? ORDER BY position, id",
            (product_id,),
        ).fetchall()
        return [TypeRecord(*row) for row in rows]

    def type(self, product_id: str, type_id: str) -> TypeRecord | None:
        row = self._c.execute(
            "SELECT product_id, id, name, price_cents, sandbox_stock FROM product_types "
            "WHERE product_id = ? AND id = ?",
            (product_id, type_id),
        ).fetchone()
        return None if row is None else TypeRecord(*row)

    def product_and_type(
        self, product_id: str, type_id: str
    ) -> tuple[ProductRecord, TypeRecord | None] | None:
        row = self._c.execute(_PRODUCT_AND_TYPE, (type_id, product_id)).fetchone()
        if row is None:
            return None
        product = ProductRecord(row[0], row[1], row[2], bool(row[3]), row[4])
        return product, None if row[5] is None else TypeRecord(*row[5:])

    def products(self) -> list[ProductRecord]:
        rows = self._c.execute(
            "SELECT id, title, category, enabled, region FROM products ORDER BY position, id"
        ).fetchall()
        return [ProductRecord(r[0], r[1], r[2], bool(r[3]), r[4]) for r in rows]


class SqliteInventory:
    __slots__ = ("_c",)

    def __init__(self, conn: sqlite3.Connection) -> None:
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
        self._c.execute(
            "INSERT INTO cards (product_id, type_id, secret, fingerprint, order_id, position, "
            "added_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (product_id, type_id, secret, fingerprint, order_id, position, now),
        )

    def fingerprints_present(self, fingerprints: Sequence[bytes]) -> set[bytes]:
        found: set[bytes] = set()
        for start in range(0, len(fingerprints), 500):
            chunk = fingerprints[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._c.execute(
                f"SELECT fingerprint FROM cards WHERE fingerprint IN ({marks})", chunk
            ).fetchall()
            found.update(bytes(r[0]) for r in rows)
        return found

    def unsold_counts(self, product_id: str) -> dict[str, int]:
        rows = self._c.execute(
            "SELECT type_id, COUNT(*) FROM cards WHERE product_id = ? AND order_id IS NULL "
            "GROUP BY type_id",
            (product_id,),
        ).fetchall()
        return {row[0]: int(row[1]) for row in rows}

    def sell(self, product_id: str, type_id: str, order_id: str, count: int) -> int:
        ids = [
            row[0]
            for row in self._c.execute(
                "SELECT id FROM cards WHERE product_id = ? AND type_id = ? AND order_id IS NULL "
                "ORDER BY id LIMIT ?",
                (product_id, type_id, count),
            )
        ]
        sold = 0
        for card_id in ids:  # guarded: a card already sold is skipped, never sold again
            cur = self._c.execute(
                "UPDATE cards SET order_id = ?, position = ? WHERE id = ? AND order_id IS NULL",
                (order_id, sold, card_id),
            )
            sold += cur.rowcount
        return sold

    def next_serials(self, count: int) -> list[int]:
        if count < 1:
            raise ValueError("reserve at least one serial")
        self._c.execute(
            "UPDATE sequences SET value = value + ? WHERE name = 'card_serial'", (count,)
        )  # in the write transaction: no other writer moves it before the read below
        row = self._c.execute("SELECT value FROM sequences WHERE name = 'card_serial'").fetchone()
        last = int(row[0])
        return list(range(last - count + 1, last + 1))

    def secrets_for_orders(self, order_ids: Sequence[str]) -> dict[str, list[bytes]]:
        result: dict[str, list[bytes]] = {}
        if not order_ids:
            return result
        marks = ",".join("?" * len(order_ids))
        for order_id, secret in self._c.execute(
            f"SELECT order_id, secret FROM cards WHERE order_id IN ({marks}) "
            "ORDER BY order_id, position",
            list(order_ids),
        ):
            result.setdefault(order_id, []).append(bytes(secret))
        return result


class SqliteOrders:
    __slots__ = ("_c",)

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._c = conn

    def add(self, order: OrderRecord) -> None:
        try:
            self._insert(order)
        except sqlite3.IntegrityError as exc:
            raise Conflict(f"order {order.id}: its id or ref is already used") from exc

    def _insert(self, order: OrderRecord) -> None:
        self._c.execute(
            f"INSERT INTO orders ({ORDER_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                order.id, order.account_id, order.env, order.key_id, order.ref, order.product_id,
                order.type_id, order.quantity, order.price_cents, order.status,
                order.fulfilled_quantity, order.time, order.due_at,
            ),
        )  # fmt: skip

    def get(self, order_id: str) -> OrderRecord | None:
        row = self._c.execute(
            f"SELECT {ORDER_COLUMNS} FROM orders WHERE id = ?", (order_id,)
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
            "SELECT id FROM orders WHERE account_id = ? AND env = ? AND ref = ?",
            (account_id, env, ref),
        ).fetchone()
        return None if row is None else str(row[0])

    def finish(self, order_id: str, status: OrderStatus, fulfilled: int, now: str) -> bool:
        if status is OrderStatus.HANDLING:
            raise ValueError("an order is finished with a final status")
        cur = self._c.execute(
            "UPDATE orders SET status = ?, fulfilled_quantity = ?, final_at = ? "
            f"WHERE id = ? AND status = '{_HANDLING}'",
            (status, fulfilled, now, order_id),
        )
        return cur.rowcount == 1

    def lock(self, order_id: str) -> OrderRecord | None:
        return self.get(order_id)  # the write transaction holds SQLite's one write lock

    def claim_due(self, now: float, owner: str, until: float, limit: int) -> list[str]:
        claimed = self._c.execute(
            "UPDATE orders SET lease_owner = ?, lease_until = ? WHERE id IN ("
            f"SELECT id FROM orders WHERE status = '{_HANDLING}' AND due_at <= ? "
            "AND (lease_until IS NULL OR lease_until <= ?) ORDER BY due_at LIMIT ?) "
            "RETURNING due_at, id",
            (owner, until, now, now, limit),
        ).fetchall()
        return [str(r[1]) for r in sorted(claimed)]

    def next_due(self, now: float) -> float | None:
        row = self._c.execute(
            f"SELECT due_at FROM orders WHERE status = '{_HANDLING}' "
            "AND (lease_until IS NULL OR lease_until <= ?) ORDER BY due_at LIMIT 1",
            (now,),
        ).fetchone()
        return None if row is None else float(row[0])

    def page(
        self, account_id: int, env: Env, window: TimeRange, limit: int, offset: int
    ) -> tuple[list[OrderRecord], int]:
        where, params = _window_sql(window)
        params_all: dict[str, Any] = {"a": account_id, "e": env, **params}
        total = self._c.execute(
            f"SELECT COUNT(*) FROM orders WHERE account_id = :a AND env = :e{where}", params_all
        ).fetchone()[0]
        # rowid: SQLite's insertion sequence, so one millisecond's orders keep placement order.
        rows = self._c.execute(
            f"SELECT {ORDER_COLUMNS} FROM orders WHERE account_id = :a AND env = :e{where} "
            "ORDER BY time DESC, rowid DESC LIMIT :limit OFFSET :offset",
            {**params_all, "limit": limit, "offset": offset},
        ).fetchall()
        return [order_row(row) for row in rows], int(total)

    def counts(self) -> dict[tuple[str, str], int]:
        rows = self._c.execute("SELECT env, status, COUNT(*) FROM orders GROUP BY env, status")
        return {(str(env), str(status)): int(count) for env, status, count in rows}


class SqliteSettings:
    __slots__ = ("_c",)

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._c = conn

    def get(self, name: str) -> str | None:
        row = self._c.execute("SELECT value FROM settings WHERE name = ?", (name,)).fetchone()
        return None if row is None else str(row[0])

    def set(self, name: str, value: str) -> None:
        self._c.execute(
            "INSERT INTO settings (name, value) VALUES (?, ?) "
            "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            (name, value),
        )


class SqliteTx:
    """The unit of work: every repository on the one connection of a write transaction."""

    __slots__ = (
        "catalog", "inventory", "keys", "ledger", "orders", "payments", "settings", "topups",
        "webhooks",
    )  # fmt: skip

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.keys = SqliteKeys(conn)
        self.ledger = SqliteLedger(conn)
        self.catalog = SqliteCatalog(conn)
        self.inventory = SqliteInventory(conn)
        self.orders = SqliteOrders(conn)
        self.settings = SqliteSettings(conn)
        self.webhooks = SqlWebhooks(conn)
        self.topups = SqlTopups(conn)
        self.payments = SqlPayments(conn)
