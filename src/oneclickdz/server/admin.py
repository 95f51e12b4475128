"""Operator actions on a service database: keys, deposits, card imports, catalogs, webhooks.

They run against the same database as a live service (SQLite's write lock serialises them
with it) and print nothing secret except the one thing asked for: a new key or webhook secret, once.
"""

from __future__ import annotations

import csv
import ipaddress
import json
import time
import unicodedata
from collections.abc import Sequence
from decimal import Decimal
from functools import partial
from pathlib import Path

from oneclickdz.server import ledger, topups, webhooks
from oneclickdz.server.auth import hash_key, key_hint, new_key
from oneclickdz.server.catalog import load_catalog
from oneclickdz.server.formats import now_iso, to_cents, to_decimal
from oneclickdz.server.orders import card_context
from oneclickdz.server.store import (
    AttemptRecord,
    EndpointRecord,
    EndpointStatus,
    EntryType,
    Env,
    Scope,
    Store,
    TopupRecord,
    Tx,
)
from oneclickdz.server.vault import Vault

DEFAULT_ACCOUNT = "default"
# A balance stays within 1,000,000,000,000 DZD: far inside SQLite's 64-bit INTEGER cents, and
# small enough (15 digits) that the API's JSON numbers show every such amount exactly.
MAX_BALANCE_CENTS = 100_000_000_000_000
# Longest code and serial an import takes (the API documents none; real ones are far shorter).
MAX_CODE_CHARS = 256
MAX_SERIAL_CHARS = 128
# Control, format (bidi overrides, zero-width), line/paragraph separators and lone surrogates:
# never part of a code, and would corrupt whatever shows or prints one.
_UNPRINTABLE = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


class AdminError(ValueError):
    """An admin command that cannot be carried out; nothing was changed."""


def _account(tx: Tx, name: str, now: str) -> int:
    account_id = tx.keys.account_id(name)
    return account_id if account_id is not None else tx.keys.add_account(name, now)


def _positive_cents(amount: str | Decimal, allow_zero: bool = False) -> int:
    try:
        cents = to_cents(amount)
    except ValueError as exc:
        raise AdminError(str(exc)) from None
    if cents < 0 or (cents == 0 and not allow_zero):
        raise AdminError(f"the amount must be positive: {amount}")
    return cents


def _credit(tx: Tx, account_id: int, env: Env, cents: int, now: str) -> int:
    """Deposit `cents` (within MAX_BALANCE_CENTS); returns the new balance in cents."""
    if tx.ledger.balance(account_id, env) + cents > MAX_BALANCE_CENTS:
        raise AdminError(
            f"a balance is at most {MAX_BALANCE_CENTS // 100} DZD: this deposit would exceed it"
        )
    record = ledger.move(tx, account_id, env, cents, EntryType.DEPOSIT, "deposit", now)
    return record.new_balance_cents


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
        tx.keys.add(hash_key(key), key_hint(key), account_id, env, scope, list(allow_ips), now)
        if cents:
            _credit(tx, account_id, env, cents, now)

    store.write_sync(run)
    return key


def deposit(store: Store, account: str, env: Env, amount: str | Decimal) -> Decimal:
    """Credit an account's balance in one environment; returns the new balance.

    One deposit is at most `formats.MAX_AMOUNT_CENTS`, and a balance at most MAX_BALANCE_CENTS.
    """
    cents = _positive_cents(amount)

    def run(tx: Tx) -> int:
        now = now_iso()
        account_id = tx.keys.account_id(account)
        if account_id is None:
            raise AdminError(f"no account named {account!r}")
        return _credit(tx, account_id, env, cents, now)

    return to_decimal(store.write_sync(run))


def set_key_enabled(store: Store, key: str, enabled: bool) -> None:
    if not store.write_sync(lambda tx: tx.keys.set_enabled(hash_key(key), enabled)):
        raise AdminError("no such key")


def import_cards(store: Store, vault: Vault, path: Path) -> int:
    """Add the codes of a CSV file (productId,typeId,value,serial) to the inventory, sealed.

    All or nothing: an unknown product or type, an empty, overlong or unprintable code or serial,
    or a code already in the file or the inventory refuses the whole file, naming the line but
    never the code. A byte-order mark (as spreadsheets write) is skipped.
    """
    rows = _read_card_rows(path)

    def run(tx: Tx) -> int:
        now = now_iso()
        prints = [vault.fingerprint(value) for _, _, _, value, _ in rows]
        present = tx.inventory.fingerprints_present(prints)
        seen: set[bytes] = set()
        for (line, product_id, type_id, _, _), fp in zip(rows, prints, strict=True):
            if tx.catalog.type(product_id, type_id) is None:
                raise AdminError(
                    f"{path}:{line}: no type {_quoted(type_id)} in product {_quoted(product_id)}"
                )
            if fp in present or fp in seen:
                raise AdminError(f"{path}:{line}: this code is already in the inventory")
            seen.add(fp)
        for (_, product_id, type_id, value, serial), fp in zip(rows, prints, strict=True):
            sealed = vault.seal_card(value, serial, card_context(product_id, type_id))
            tx.inventory.add(product_id, type_id, sealed, fp, now)
        return len(rows)

    return store.write_sync(run)


def _read_card_rows(path: Path) -> list[tuple[int, str, str, str, str]]:
    rows: list[tuple[int, str, str, str, str]] = []
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        while True:
            line = reader.line_num + 1  # where this record starts (a quoted cell may span lines)
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:  # e.g. a cell over the csv module's 128 KiB limit
                raise AdminError(f"{path}:{line}: not a CSV record this can read ({exc})") from None
            except UnicodeDecodeError:
                raise AdminError(f"{path}: not UTF-8 text (save it as CSV UTF-8)") from None
            if card := _card_row(path, line, row):
                rows.append(card)
    if not rows:
        raise AdminError(f"{path}: no cards in the file")
    return rows


def _card_row(path: Path, line: int, row: list[str]) -> tuple[int, str, str, str, str] | None:
    """One CSV record as (line, productId, typeId, value, serial); None for blanks and header."""
    if not row or all(not cell.strip() for cell in row):
        return None
    cells = [cell.strip() for cell in row]
    if line == 1 and [c.lower() for c in cells] == ["productid", "typeid", "value", "serial"]:
        return None
    if len(cells) != 4:
        raise AdminError(f"{path}:{line}: expected 4 columns: productId,typeId,value,serial")
    product_id, type_id, value, serial = cells
    if not (product_id and type_id and value):
        raise AdminError(f"{path}:{line}: productId, typeId and value are required")
    for what, text, limit in (
        ("code", value, MAX_CODE_CHARS),
        ("serial", serial, MAX_SERIAL_CHARS),
    ):
        if len(text) > limit:
            raise AdminError(f"{path}:{line}: the {what} is longer than {limit} characters")
        if any(unicodedata.category(ch) in _UNPRINTABLE for ch in text):
            raise AdminError(f"{path}:{line}: the {what} holds a control character")
    return line, product_id, type_id, value, serial


def _quoted(text: str) -> str:
    """An id as a message quotes it: repr, cut short."""
    return repr(text) if len(text) <= 64 else repr(text[:64]) + "..."


def load_catalog_file(store: Store, path: Path) -> int:
    """Insert or update the products and types of a catalog JSON file; returns the product count."""
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except UnicodeDecodeError:
        raise AdminError(f"{path}: not UTF-8 text") from None
    except ValueError as exc:  # malformed, or an integer of more than 4,300 digits
        raise AdminError(f"{path}: not valid JSON ({exc})") from None
    except RecursionError:
        raise AdminError(f"{path}: not valid JSON (nested too deeply)") from None
    return store.write_sync(lambda tx: load_catalog(tx, data))


# -- webhooks -----------------------------------------------------------------------------------


def _key_id(tx: Tx, key: str) -> int:
    found = tx.keys.find(hash_key(key))
    if found is None:
        raise AdminError("no such key")
    return found[1].id


def add_webhook(
    store: Store,
    vault: Vault,
    key: str,
    url: str,
    events: Sequence[str] | None = None,
    allow_private: bool = False,
) -> webhooks.NewEndpoint:
    """A webhook endpoint for the orders placed with `key`; its secret is in the answer, once.

    A private or loopback destination is refused unless `allow_private` (the service, too,
    sends there only when run with `--webhook-allow-private`)."""
    types = webhooks.check_events(events)
    webhooks.check_destination(url, allow_private)
    return store.write_sync(
        lambda tx: webhooks.add_endpoint(tx, vault, _key_id(tx, key), url, types, now_iso())
    )


def list_webhooks(store: Store, key: str | None = None) -> list[EndpointRecord]:
    """The endpoints not removed: of one key, or all."""
    return store.write_sync(
        lambda tx: tx.webhooks.endpoints(None if key is None else _key_id(tx, key))
    )


def remove_webhook(store: Store, endpoint_id: int) -> EndpointRecord:
    return store.write_sync(lambda tx: webhooks.remove_endpoint(tx, endpoint_id, None))


def set_webhook_enabled(store: Store, endpoint_id: int, enabled: bool) -> EndpointRecord:
    """Enable an endpoint again (after a 410, say) or disable it; deliveries cancelled by a
    disable are not revived (`webhook-replay` sends an event again)."""
    status = EndpointStatus.ENABLED if enabled else EndpointStatus.DISABLED

    def run(tx: Tx) -> EndpointRecord:
        endpoint = webhooks.owned_endpoint(tx, endpoint_id, None)
        tx.webhooks.set_status(endpoint.id, status, None if enabled else "disabled by an operator")
        changed = tx.webhooks.endpoint(endpoint.id)
        assert changed is not None
        return changed

    return store.write_sync(run)


def rotate_webhook_secret(
    store: Store, vault: Vault, endpoint_id: int, grace: float = webhooks.DEFAULT_GRACE
) -> webhooks.NewEndpoint:
    """A new secret for the endpoint, shown once; the old one signs too for `grace` seconds."""
    return store.write_sync(
        lambda tx: webhooks.rotate_secret(tx, vault, endpoint_id, None, grace, time.time())
    )


def webhook_log(store: Store, event_id: str | None = None, limit: int = 50) -> list[AttemptRecord]:
    """The latest delivery attempts, newest first (of one event, or all)."""
    if limit < 1:
        raise AdminError("the limit must be at least 1")
    return store.write_sync(lambda tx: tx.webhooks.attempts(event_id, limit))


def replay_webhook(store: Store, event_id: str) -> int:
    """Send an event again to every enabled endpoint it was for; how many deliveries."""

    def run(tx: Tx) -> int:
        if tx.webhooks.event(event_id) is None:
            raise AdminError(f"no webhook event {_quoted(event_id)}")
        return tx.webhooks.replay(event_id, time.time())

    return store.write_sync(run)


def resolve_topup(store: Store, topup_id: str, fulfilled: bool) -> TopupRecord:
    """Settle a mobile top-up left in UNKNOWN_ERROR: FULFILLED keeps the charge, REFUNDED gives
    it back (REFUND-FLEXY)."""
    try:
        return store.write_sync(
            partial(topups.resolve, topup_id=topup_id, fulfilled=fulfilled, now=now_iso())
        )
    except topups.NotResolvable as exc:
        raise AdminError(str(exc)) from None
