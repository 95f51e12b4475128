"""Operator actions on a service database: keys, deposits, card imports, catalogs.

They run against the same database as a live service (SQLite's write lock serialises them
with it) and print nothing secret except the one thing asked for: a new key, once.
"""

from __future__ import annotations

import csv
import ipaddress
import json
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path

from oneclickdz.server import ledger
from oneclickdz.server.auth import hash_key, key_hint, new_key
from oneclickdz.server.catalog import load_catalog
from oneclickdz.server.formats import now_iso, to_cents, to_decimal
from oneclickdz.server.orders import card_context
from oneclickdz.server.store import Env, Scope, Store, Tx
from oneclickdz.server.vault import Vault

DEFAULT_ACCOUNT = "default"


class AdminError(ValueError):
    """An admin command that cannot be carried out; nothing was changed."""


def _account(tx: Tx, name: str, now: str) -> int:
    account_id = tx.account_id(name)
    return account_id if account_id is not None else tx.insert_account(name, now)


def _positive_cents(amount: str | Decimal, allow_zero: bool = False) -> int:
    try:
        cents = to_cents(amount)
    except ValueError as exc:
        raise AdminError(str(exc)) from None
    if cents < 0 or (cents == 0 and not allow_zero):
        raise AdminError(f"the amount must be positive: {amount}")
    return cents


def create_key(
    store: Store,
    env: Env,
    account: str = DEFAULT_ACCOUNT,
    balance: str | Decimal | None = None,
    read_only: bool = False,
    allow_ips: Sequence[str] = (),
) -> str:
    """Create a key (and its account if new); `balance` is deposited to that environment."""
    for ip in allow_ips:
        try:
            ipaddress.ip_network(ip, strict=False)
        except ValueError:
            raise AdminError(f"not an IP address or network: {ip!r}") from None
    cents = _positive_cents(balance, allow_zero=True) if balance is not None else 0
    key = new_key()
    scope: Scope = "READ-ONLY" if read_only else "READ-WRITE"

    def run(tx: Tx) -> None:
        now = now_iso()
        account_id = _account(tx, account, now)
        tx.insert_key(hash_key(key), key_hint(key), account_id, env, scope, list(allow_ips), now)
        if cents:
            ledger.move(tx, account_id, env, cents, "DEPOSIT", "deposit", now)

    store.write_sync(run)
    return key


def deposit(store: Store, account: str, env: Env, amount: str | Decimal) -> Decimal:
    """Credit an account's balance in one environment; returns the new balance."""
    cents = _positive_cents(amount)

    def run(tx: Tx) -> int:
        now = now_iso()
        account_id = tx.account_id(account)
        if account_id is None:
            raise AdminError(f"no account named {account!r}")
        return ledger.move(tx, account_id, env, cents, "DEPOSIT", "deposit", now).new_balance_cents

    return to_decimal(store.write_sync(run))


def set_key_enabled(store: Store, key: str, enabled: bool) -> None:
    if not store.write_sync(lambda tx: tx.set_key_enabled(hash_key(key), enabled)):
        raise AdminError("no such key")


def import_cards(store: Store, vault: Vault, path: Path) -> int:
    """Add the codes of a CSV file (productId,typeId,value,serial) to the inventory, sealed.

    All or nothing: an unknown product or type, an empty code, or a code already in the file or
    the inventory refuses the whole file, naming the line but never the code.
    """
    rows = _read_card_rows(path)

    def run(tx: Tx) -> int:
        now = now_iso()
        prints = [vault.fingerprint(value) for _, _, _, value, _ in rows]
        present = tx.fingerprints_present(prints)
        seen: set[bytes] = set()
        for (line, product_id, type_id, _, _), fp in zip(rows, prints, strict=True):
            if tx.product_type(product_id, type_id) is None:
                raise AdminError(f"{path}:{line}: no type {type_id!r} in product {product_id!r}")
            if fp in present or fp in seen:
                raise AdminError(f"{path}:{line}: this code is already in the inventory")
            seen.add(fp)
        for (_, product_id, type_id, value, serial), fp in zip(rows, prints, strict=True):
            sealed = vault.seal_card(value, serial, card_context(product_id, type_id))
            tx.insert_card(product_id, type_id, sealed, fp, now)
        return len(rows)

    return store.write_sync(run)


def _read_card_rows(path: Path) -> list[tuple[int, str, str, str, str]]:
    rows: list[tuple[int, str, str, str, str]] = []
    with path.open(newline="", encoding="utf-8") as f:
        for line, row in enumerate(csv.reader(f), start=1):
            if not row or all(not cell.strip() for cell in row):
                continue
            cells = [cell.strip() for cell in row]
            if line == 1 and [c.lower() for c in cells] == [
                "productid",
                "typeid",
                "value",
                "serial",
            ]:
                continue
            if len(cells) != 4:
                raise AdminError(
                    f"{path}:{line}: expected 4 columns: productId,typeId,value,serial"
                )
            product_id, type_id, value, serial = cells
            if not (product_id and type_id and value):
                raise AdminError(f"{path}:{line}: productId, typeId and value are required")
            rows.append((line, product_id, type_id, value, serial))
    if not rows:
        raise AdminError(f"{path}: no cards in the file")
    return rows


def load_catalog_file(store: Store, path: Path) -> int:
    """Insert or update the products and types of a catalog JSON file; returns the product count."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise AdminError(f"{path}: not valid JSON ({exc})") from None
    return store.write_sync(lambda tx: load_catalog(tx, data))
