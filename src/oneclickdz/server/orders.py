"""Orders: placement (validate, check stock, debit, create — one transaction) and fulfilment
(deliver cards, record the final state and the refund — one transaction).

Plain functions of a `Tx` (the unit of work): the routes and the fulfilment workers call them
through `Store.write`, so each runs atomically, serialised against every other write.
"""

from __future__ import annotations

import base64
import hashlib
import time
from dataclasses import dataclass, replace

from oneclickdz.server import ledger, webhooks
from oneclickdz.server.errors import ServiceError, not_found, validation
from oneclickdz.server.store import (
    Conflict,
    EntryType,
    Env,
    KeyRecord,
    OrderRecord,
    OrderStatus,
    ProductRecord,
    Tx,
    TypeRecord,
)
from oneclickdz.server.vault import Vault

HANDLING = OrderStatus.HANDLING
FULFILLED = OrderStatus.FULFILLED
PARTIALLY_FILLED = OrderStatus.PARTIALLY_FILLED
REFUNDED = OrderStatus.REFUNDED

TEST_REFUND = "TEST_REFUND"
TEST_PARTIAL = "TEST_PARTIAL"
TEST_TYPES = frozenset({TEST_REFUND, TEST_PARTIAL})

MAX_QUANTITY = 100
MAX_REF_LENGTH = 100


@dataclass(frozen=True, slots=True)
class PlaceOrder:
    """A validated placeOrder request."""

    product_id: str
    type_id: str
    quantity: int
    ref: str | None = None


def card_context(product_id: str, type_id: str) -> str:
    """What a sealed card is bound to: it opens only as a card of this product and type."""
    return f"{product_id}/{type_id}"


def place(
    tx: Tx, key: KeyRecord, cmd: PlaceOrder, *, order_id: str, now: str, due_at: float
) -> OrderRecord:
    """Create the order and debit `quantity × price`, or refuse without changing anything."""
    ref = cmd.ref
    if ref is not None and (existing := tx.orders.id_by_ref(key.account_id, key.env, ref)):
        raise _duplicated_ref(existing)
    found = tx.catalog.product_and_type(cmd.product_id, cmd.type_id)
    if found is None:
        raise not_found(f"Product '{cmd.product_id}' not found")
    product, ptype = found
    available: int | None
    if cmd.type_id in TEST_TYPES:
        types = tx.catalog.types(product.id)
        if key.env != "SANDBOX" or not types:
            raise not_found(f"Type '{cmd.type_id}' not found for product '{product.id}'")
        if cmd.type_id == TEST_PARTIAL and cmd.quantity < 2:
            raise validation(
                "quantity", cmd.quantity, "body/quantity must be >= 2 for TEST_PARTIAL"
            )
        price = types[0].price_cents
        available = None if product.enabled else 0  # the test types have no stock to run out
    else:
        if ptype is None:
            raise not_found(f"Type '{cmd.type_id}' not found for product '{product.id}'")
        price = ptype.price_cents
        unsold = tx.inventory.unsold_counts(product.id) if counts_inventory(key.env) else {}
        available = stock(key.env, product, [ptype], unsold)[ptype.id]
    if available is not None and cmd.quantity > available:
        raise ServiceError(
            403,
            "OUT_OF_STOCK",
            "Product out of stock",
            {"requested": cmd.quantity, "available": available},
        )
    ledger.move(
        tx, key.account_id, key.env, -cmd.quantity * price, EntryType.ORDER,
        f"gift card order {order_id}", now, objid=order_id,
    )  # fmt: skip
    order = OrderRecord(
        id=order_id,
        account_id=key.account_id,
        env=key.env,
        key_id=key.id,
        ref=cmd.ref,
        product_id=product.id,
        type_id=cmd.type_id,
        quantity=cmd.quantity,
        price_cents=price,
        status=HANDLING,
        fulfilled_quantity=None,
        time=now,
        due_at=due_at,
    )
    try:
        tx.orders.add(order)
    except Conflict:
        # Another placement with this ref committed after the check above (another process, on
        # an engine where writers run concurrently): the database's unique index decided.
        existing = tx.orders.id_by_ref(key.account_id, key.env, ref) if ref is not None else None
        if existing is None:
            raise
        raise _duplicated_ref(existing) from None
    return order


def _duplicated_ref(order_id: str) -> ServiceError:
    return ServiceError(
        403, "DUPLICATED_REF", "This reference ID is already in use", {"orderId": order_id}
    )


def counts_inventory(env: Env) -> bool:
    """Whether stock in `env` is the unsold imported codes (production) or the catalog's."""
    return env == "PRODUCTION"


def stock(
    env: Env, product: ProductRecord, types: list[TypeRecord], unsold: dict[str, int]
) -> dict[str, int]:
    """How many cards of each type can be ordered now: none of a disabled product; in the
    sandbox, the catalog's stock; in production, the unsold imported codes (`unsold`, by type,
    read by the caller when `counts_inventory(env)`)."""
    if not product.enabled:
        return {t.id: 0 for t in types}
    if not counts_inventory(env):
        return {t.id: t.sandbox_stock for t in types}
    return {t.id: unsold.get(t.id, 0) for t in types}


def final_status(quantity: int, delivered: int) -> OrderStatus:
    if delivered == quantity:
        return FULFILLED
    return PARTIALLY_FILLED if delivered > 0 else REFUNDED


def sandbox_quantity(type_id: str, quantity: int) -> int:
    """How many cards a sandbox order delivers: the documented test types decide."""
    if type_id == TEST_REFUND:
        return 0
    if type_id == TEST_PARTIAL:
        return quantity // 2
    return quantity


def sandbox_card(code_seed: int, index: int, serial_number: int) -> tuple[str, str]:
    """A fake card: `SANDBOX-XXXX-XXXX-XXXX` and a numeric serial, unique per card.

    The code is drawn from the service's seeded generator (via `code_seed`) and the serial
    number, which the store's sequence makes unique, so codes replay with the seed yet never
    repeat.
    """
    digest = hashlib.blake2b(f"{code_seed}:{index}:{serial_number}".encode(), digest_size=10)
    chars = base64.b32encode(digest.digest()).decode()
    return f"SANDBOX-{chars[0:4]}-{chars[4:8]}-{chars[8:12]}", f"{serial_number:010d}"


def fulfil(
    tx: Tx,
    vault: Vault,
    order_id: str,
    *,
    code_seed: int,
    now: str,
    at: float | None = None,
    hold: tuple[str, float] | None = None,
) -> OrderRecord | None:
    """Turn a HANDLING order final: deliver what can be delivered, refund the rest, and put
    its webhook event in the outbox (`at`: when, in seconds since the epoch; default now),
    its deliveries leased to `hold` = (owner, until) when given.

    Returns the final order, or None when it was not HANDLING (already finished elsewhere),
    which makes running it twice harmless.
    """
    order = tx.orders.lock(order_id)  # a fulfilment elsewhere waits, then sees it final
    if order is None or order.status != HANDLING:
        return None
    context = card_context(order.product_id, order.type_id)
    if order.env == "SANDBOX":
        delivered = sandbox_quantity(order.type_id, order.quantity)
        serials = tx.inventory.next_serials(delivered) if delivered else []
        for index in range(delivered):
            value, serial = sandbox_card(code_seed, index, serials[index])
            tx.inventory.add(
                order.product_id, order.type_id, vault.seal_card(value, serial, context),
                vault.fingerprint(value), now, order_id=order.id, position=index,
            )  # fmt: skip
    else:
        delivered = tx.inventory.sell(order.product_id, order.type_id, order.id, order.quantity)
    status = final_status(order.quantity, delivered)
    if not tx.orders.finish(order.id, status, delivered, now):
        raise RuntimeError(f"order {order.id} changed state during fulfilment")
    refund = (order.quantity - delivered) * order.price_cents
    if refund:
        ledger.move(
            tx, order.account_id, order.env, refund, EntryType.REFUND_ORDER,
            "refund from cancelled gift card order", now, objid=order.id,
        )  # fmt: skip
    final = replace(order, status=status, fulfilled_quantity=delivered)
    # The same transaction: an order is never final without its event, nor the reverse.
    event = webhooks.order_event(final, time.time() if at is None else at)
    tx.webhooks.enqueue(event, *(hold or (None, None)))
    return final
