"""Rows to records, for every engine: the column lists and the mapping of a row to a record.

Column text becomes an enum member by dict lookup, a tenth of calling the enum (this is on
checkOrder's path). Members are bound to queries as they are: a StrEnum is a str to drivers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from oneclickdz.server.store.base import (
    EntryType,
    Env,
    Operation,
    OrderRecord,
    OrderStatus,
    TransactionRecord,
)

ORDER_COLUMNS = (
    "id, account_id, env, key_id, ref, product_id, type_id, quantity, price_cents, status, "
    "fulfilled_quantity, time, due_at"
)
TX_COLUMNS = (
    "id, type, operation, amount_cents, old_balance_cents, new_balance_cents, objid, note, time"
)
ENVS: tuple[Env, ...] = ("SANDBOX", "PRODUCTION")
STATUS = {s.value: s for s in OrderStatus}
ENTRY_TYPE = {t.value: t for t in EntryType}
OPERATION = {o.value: o for o in Operation}


def order_row(row: Sequence[Any]) -> OrderRecord:
    return OrderRecord(
        row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], row[8],
        STATUS[row[9]], row[10], row[11], row[12],
    )  # fmt: skip


def transaction_row(row: Sequence[Any]) -> TransactionRecord:
    return TransactionRecord(
        row[0], ENTRY_TYPE[row[1]], OPERATION[row[2]], row[3], row[4], row[5], row[6],
        row[7], row[8],
    )  # fmt: skip
