"""The balance ledger: every movement of money is one balance update plus one transaction row.

Both happen in the caller's transaction, so a balance and its history never disagree, and a
debit that would take a balance below zero is refused before anything is written.
"""

from __future__ import annotations

from typing import Literal

from oneclickdz.server.errors import ServiceError
from oneclickdz.server.formats import money, object_id
from oneclickdz.server.store import Env, TransactionRecord, Tx

TxType = Literal["ORDER", "REFUND-ORDER", "DEPOSIT", "WITHDRAW"]


def move(
    tx: Tx,
    account_id: int,
    env: Env,
    delta_cents: int,
    kind: TxType,
    note: str,
    now: str,
    objid: str | None = None,
) -> TransactionRecord:
    """Add `delta_cents` (negative: a debit) to a balance and record it; never below zero."""
    old = tx.balance(account_id, env)
    new = old + delta_cents
    if new < 0:
        raise ServiceError(
            403,
            "INSUFFICIENT_BALANCE",
            "Your balance is insufficient for this operation",
            {"required": money(-delta_cents), "available": money(old)},
        )
    tx.set_balance(account_id, env, old, new)
    record = TransactionRecord(
        id=object_id(),
        type=kind,
        operation="CREDIT" if delta_cents >= 0 else "DEBIT",
        amount_cents=abs(delta_cents),
        old_balance_cents=old,
        new_balance_cents=new,
        objid=objid,
        note=note,
        time=now,
    )
    tx.insert_transaction(account_id, env, record)
    return record
