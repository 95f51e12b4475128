"""The top-ups and payment-links repositories, one piece of SQL for both engines.

As in `webhook_repo`, the queries are plain SQL that SQLite and PostgreSQL both read; only the
parameter marker differs, and PostgreSQL's `FOR UPDATE` (with `SKIP LOCKED` when claiming) lets
writers in several processes pass each other (SQLite's one writer needs neither).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from oneclickdz.server.store.base import (
    Conflict,
    Env,
    FeeMode,
    PaymentLinkRecord,
    PaymentStatus,
    TimeRange,
    TopupKind,
    TopupRecord,
    TopupStatus,
)
from oneclickdz.server.store.webhook_repo import _Connection, _Cursor

_TOPUP_COLUMNS = (
    "id, kind, account_id, env, key_id, ref, plan_code, number, amount_cents, charge_cents, "
    "status, outcome, created_at, due_at, final_at, card_secret, num_trans, date_traitement"
)
_LINK_COLUMNS = (
    "ref, account_id, env, key_id, title, description, amount_cents, fee_mode, "
    "success_message, redirect_url, status, created_at, expires_at, transaction_ref, "
    "paid_cents, fee_cents, net_cents, payment_method, completed_at"
)


def _marks(columns: str) -> str:
    return ", ".join("?" for _ in columns.split(", "))


def _window(window: TimeRange, column: str) -> tuple[str, list[Any]]:
    where, params = "", []
    if window.start is not None:
        where += f" AND {column} >= ?"
        params.append(window.start)
    if window.end is not None:
        where += f" AND {column} <= ?"
        params.append(window.end)
    return where, params


def topup_row(row: Sequence[Any]) -> TopupRecord:
    env: Env = "SANDBOX" if row[3] == "SANDBOX" else "PRODUCTION"
    return TopupRecord(
        id=str(row[0]),
        kind=TopupKind(row[1]),
        account_id=int(row[2]),
        env=env,
        key_id=int(row[4]),
        ref=str(row[5]),
        plan_code=str(row[6]),
        number=str(row[7]),
        amount_cents=int(row[8]),
        charge_cents=int(row[9]),
        status=TopupStatus(row[10]),
        outcome=TopupStatus(row[11]),
        created_at=str(row[12]),
        due_at=None if row[13] is None else float(row[13]),
        final_at=row[14],
        card_secret=None if row[15] is None else bytes(row[15]),
        num_trans=row[16],
        date_traitement=row[17],
    )


def link_row(row: Sequence[Any]) -> PaymentLinkRecord:
    env: Env = "SANDBOX" if row[2] == "SANDBOX" else "PRODUCTION"
    return PaymentLinkRecord(
        ref=str(row[0]),
        account_id=int(row[1]),
        env=env,
        key_id=int(row[3]),
        title=str(row[4]),
        description=row[5],
        amount_cents=int(row[6]),
        fee_mode=FeeMode(row[7]),
        success_message=row[8],
        redirect_url=row[9],
        status=PaymentStatus(row[10]),
        created_at=str(row[11]),
        expires_at=float(row[12]),
        transaction_ref=row[13],
        paid_cents=None if row[14] is None else int(row[14]),
        fee_cents=None if row[15] is None else int(row[15]),
        net_cents=None if row[16] is None else int(row[16]),
        payment_method=row[17],
        completed_at=row[18],
    )


class _Sql:
    __slots__ = ("_c", "_postgres")

    def __init__(self, conn: _Connection, postgres: bool = False) -> None:
        self._c = conn
        self._postgres = postgres

    def _run(self, sql: str, params: Sequence[Any] = ()) -> _Cursor:
        if self._postgres:
            sql = sql.replace("%", "%%").replace("?", "%s")
        cursor: _Cursor = self._c.execute(sql, tuple(params))
        return cursor

    @property
    def _for_update(self) -> str:
        return " FOR UPDATE" if self._postgres else ""


class SqlTopups(_Sql):
    """`Topups` on one connection of either engine."""

    __slots__ = ()

    def add(self, topup: TopupRecord) -> None:
        t = topup
        row = self._run(
            f"INSERT INTO topups ({_TOPUP_COLUMNS}) VALUES ({_marks(_TOPUP_COLUMNS)}) "
            "ON CONFLICT DO NOTHING RETURNING id",
            (
                t.id, t.kind.value, t.account_id, t.env, t.key_id, t.ref, t.plan_code, t.number,
                t.amount_cents, t.charge_cents, t.status.value, t.outcome.value, t.created_at,
                t.due_at, t.final_at, t.card_secret, t.num_trans, t.date_traitement,
            ),
        ).fetchone()  # fmt: skip
        if row is None:
            raise Conflict(f"top-up {t.id}: its id or ref is already used")

    def get(self, topup_id: str) -> TopupRecord | None:
        row = self._run(f"SELECT {_TOPUP_COLUMNS} FROM topups WHERE id = ?", (topup_id,)).fetchone()
        return None if row is None else topup_row(row)

    def by_ref(self, account_id: int, env: Env, kind: TopupKind, ref: str) -> TopupRecord | None:
        row = self._run(
            f"SELECT {_TOPUP_COLUMNS} FROM topups "
            "WHERE account_id = ? AND env = ? AND kind = ? AND ref = ?",
            (account_id, env, kind.value, ref),
        ).fetchone()
        return None if row is None else topup_row(row)

    def lock(self, topup_id: str) -> TopupRecord | None:
        row = self._run(
            f"SELECT {_TOPUP_COLUMNS} FROM topups WHERE id = ?{self._for_update}", (topup_id,)
        ).fetchone()
        return None if row is None else topup_row(row)

    def update(self, topup: TopupRecord) -> None:
        t = topup
        self._run(
            "UPDATE topups SET status = ?, outcome = ?, due_at = ?, final_at = ?, "
            "card_secret = ?, num_trans = ?, date_traitement = ?, lease_owner = NULL, "
            "lease_until = NULL WHERE id = ?",
            (
                t.status.value, t.outcome.value, t.due_at, t.final_at, t.card_secret,
                t.num_trans, t.date_traitement, t.id,
            ),
        )  # fmt: skip

    def claim_due(self, now: float, owner: str, until: float, limit: int) -> list[str]:
        skip_locked = " FOR UPDATE SKIP LOCKED" if self._postgres else ""
        rows = self._run(
            "UPDATE topups SET lease_owner = ?, lease_until = ? WHERE seq IN (SELECT seq "
            "FROM topups WHERE due_at IS NOT NULL AND due_at <= ? "
            f"AND (lease_until IS NULL OR lease_until <= ?) ORDER BY due_at LIMIT ?{skip_locked}) "
            "RETURNING id, due_at",
            (owner, until, now, now, limit),
        ).fetchall()
        return [str(r[0]) for r in sorted(rows, key=lambda r: float(r[1]))]

    def next_due(self, now: float) -> float | None:
        row = self._run(
            "SELECT due_at FROM topups WHERE due_at IS NOT NULL "
            "AND (lease_until IS NULL OR lease_until <= ?) ORDER BY due_at LIMIT 1",
            (now,),
        ).fetchone()
        return None if row is None else float(row[0])

    def page(
        self, account_id: int, env: Env, kind: TopupKind, window: TimeRange, limit: int,
        offset: int,
    ) -> tuple[list[TopupRecord], int]:  # fmt: skip
        where, params = _window(window, "created_at")
        base = f"FROM topups WHERE account_id = ? AND env = ? AND kind = ?{where}"
        args = [account_id, env, kind.value, *params]
        total = int(self._run(f"SELECT COUNT(*) {base}", args).fetchone()[0])
        rows = self._run(
            f"SELECT {_TOPUP_COLUMNS} {base} ORDER BY created_at DESC, seq DESC LIMIT ? OFFSET ?",
            (*args, limit, offset),
        ).fetchall()
        return [topup_row(r) for r in rows], total

    def counts(self) -> dict[tuple[str, str, str], int]:
        rows = self._run(
            "SELECT kind, env, status, COUNT(*) FROM topups GROUP BY kind, env, status"
        ).fetchall()
        return {(str(k), str(e), str(s)): int(n) for k, e, s, n in rows}


class SqlPayments(_Sql):
    """`PaymentLinks` on one connection of either engine."""

    __slots__ = ()

    def add(self, link: PaymentLinkRecord) -> None:
        x = link
        row = self._run(
            f"INSERT INTO payment_links ({_LINK_COLUMNS}) VALUES ({_marks(_LINK_COLUMNS)}) "
            "ON CONFLICT DO NOTHING RETURNING ref",
            (
                x.ref, x.account_id, x.env, x.key_id, x.title, x.description, x.amount_cents,
                x.fee_mode.value, x.success_message, x.redirect_url, x.status.value,
                x.created_at, x.expires_at, x.transaction_ref, x.paid_cents, x.fee_cents,
                x.net_cents, x.payment_method, x.completed_at,
            ),
        ).fetchone()  # fmt: skip
        if row is None:
            raise Conflict(f"payment link {x.ref}: its ref is already used")

    def get(self, ref: str) -> PaymentLinkRecord | None:
        row = self._run(
            f"SELECT {_LINK_COLUMNS} FROM payment_links WHERE ref = ?", (ref,)
        ).fetchone()
        return None if row is None else link_row(row)

    def lock(self, ref: str) -> PaymentLinkRecord | None:
        row = self._run(
            f"SELECT {_LINK_COLUMNS} FROM payment_links WHERE ref = ?{self._for_update}", (ref,)
        ).fetchone()
        return None if row is None else link_row(row)

    def update(self, link: PaymentLinkRecord) -> None:
        x = link
        self._run(
            "UPDATE payment_links SET status = ?, transaction_ref = ?, paid_cents = ?, "
            "fee_cents = ?, net_cents = ?, payment_method = ?, completed_at = ? WHERE ref = ?",
            (
                x.status.value, x.transaction_ref, x.paid_cents, x.fee_cents, x.net_cents,
                x.payment_method, x.completed_at, x.ref,
            ),
        )  # fmt: skip

    def page(
        self, account_id: int, env: Env, window: TimeRange, limit: int, offset: int
    ) -> tuple[list[PaymentLinkRecord], int]:
        where, params = _window(window, "created_at")
        base = f"FROM payment_links WHERE account_id = ? AND env = ?{where}"
        args = [account_id, env, *params]
        total = int(self._run(f"SELECT COUNT(*) {base}", args).fetchone()[0])
        rows = self._run(
            f"SELECT {_LINK_COLUMNS} {base} ORDER BY created_at DESC, seq DESC LIMIT ? OFFSET ?",
            (*args, limit, offset),
        ).fetchall()
        return [link_row(r) for r in rows], total
