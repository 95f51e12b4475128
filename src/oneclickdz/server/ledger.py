"""The balance ledger: every movement of money is one balance update plus one transaction row.

Both happen in the caller's transaction, through the store's conditional update, so a balance
and its history never disagree and a debit that would take a balance below zero is refused
by the database itself, before anything is written.
"""

from __future__ import annotations

from oneclickdz.server.errors import ServiceError
from oneclickdz.server.formats import money, object_id
from oneclickdz.server.store import EntryType, Env, LedgerEntry, TransactionRecord, Tx


def move(
    tx: Tx,
    account_id: int,
    env: Env,
    delta_cents: int,
    kind: EntryType,
    note: str,
    now: str,
    objid: str | None = None,
) -> TransactionRecord:
    """Add `delta_cents` (negative: a debit) to a balance and record it; never below zero."""
    entry = LedgerEntry(id=object_id(), type=kind, note=note, time=now, objid=objid)
    record = tx.ledger.move(account_id, env, delta_cents, entry)
    if record is None:
        raise ServiceError(
            403,
            "INSUFFICIENT_BALANCE",
            "Your balance is insufficient for this operation",
            {
                "required": money(-delta_cents),
                "available": money(tx.ledger.balance(account_id, env)),
            },
        )
    return record
