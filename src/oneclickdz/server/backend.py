"""The service layer: each API operation as one method, from validated input to response data.

Routes call these with the caller's key and the raw request parts; the methods validate, call
the domain (orders, ledger, catalog) through the store, and return the `data` of the envelope.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Mapping
from functools import partial
from typing import Any

from oneclickdz.server import orders, webhooks
from oneclickdz.server.auth import Authenticator, masked_key
from oneclickdz.server.chance import Chance
from oneclickdz.server.dispatcher import Dispatcher
from oneclickdz.server.errors import ServiceError, not_found, validation
from oneclickdz.server.formats import iso, money, now_iso, object_id
from oneclickdz.server.fulfilment import Fulfilment
from oneclickdz.server.paging import parse_page
from oneclickdz.server.payment_api import DEFAULT_TTL, PaymentApi
from oneclickdz.server.store import EndpointStatus, KeyRecord, OrderRecord, Store
from oneclickdz.server.topup_api import TopupApi
from oneclickdz.server.vault import Vault

log = logging.getLogger("oneclickdz.server.orders")

FINAL_ORDER_CACHE = 20_000  # orders; their cards stay sealed in memory as on disk
OPERATORS = {"mobilis": "up", "ooredoo": "up", "djezzy": "up", "mobilisFixedPlans": "up"}


class Backend:
    """Everything a route needs: the store, the vault, the key checks, the fulfilment queue and
    the webhook dispatcher."""

    def __init__(
        self,
        store: Store,
        vault: Vault,
        authenticator: Authenticator,
        fulfilment: Fulfilment,
        chance: Chance,
        fulfill_delay: tuple[float, float],
        dispatcher: Dispatcher,
        payment_link_ttl: float = DEFAULT_TTL,
    ) -> None:
        self.store = store
        self.vault = vault
        self.auth = authenticator
        self.fulfilment = fulfilment
        self.dispatcher = dispatcher
        self.chance = chance
        self.fulfill_delay = fulfill_delay
        self._final_orders: dict[str, tuple[OrderRecord, list[bytes]]] = {}
        self.topups = TopupApi(store, vault, fulfilment, chance)
        self.payments = PaymentApi(store, fulfilment.now, payment_link_ttl)

    # -- core --------------------------------------------------------------------------------

    def ping(self) -> dict[str, Any]:
        return {"api": "ok", "operators": dict(OPERATORS)}

    def validate(self, key: KeyRecord) -> dict[str, Any]:
        return {
            "username": key.account_name,
            "apiKey": {
                "key": masked_key(key.hint),
                "isEnabled": key.enabled,
                "type": key.env,
                "allowedips": list(key.allowed_ips),
                "scope": key.scope,
            },
        }

    # -- account -----------------------------------------------------------------------------

    async def balance(self, key: KeyRecord) -> dict[str, Any]:
        cents = await self.store.reader().ledger.balance(key.account_id, key.env)
        return {"balance": money(cents), "currency": "DZD"}

    async def transactions(self, key: KeyRecord, query: Mapping[str, str]) -> dict[str, Any]:
        page = parse_page(query, both_ends=True)
        records, total = await self.store.reader().ledger.transactions(
            key.account_id, key.env, page.window, page.size, page.offset
        )
        items = [
            {
                "_id": r.id,
                "type": r.type,
                "operation": r.operation,
                "amount": money(r.amount_cents),
                "oldBalance": money(r.old_balance_cents),
                "newBalance": money(r.new_balance_cents),
                "objid": r.objid,
                "note": r.note,
                "time": r.time,
            }
            for r in records
        ]
        return page.render(items, total)

    # -- catalog -----------------------------------------------------------------------------

    async def catalog(self) -> tuple[dict[str, Any], dict[str, int]]:
        """The catalog's data, and its totals (shown in `meta` and beside `success`)."""
        categories: dict[str, list[dict[str, Any]]] = {}
        for product in await self.store.reader().catalog.products():
            item: dict[str, Any] = {
                "id": product.id,
                "title": product.title,
                "enabled": product.enabled,
            }
            if product.region is not None:
                item["region"] = product.region
            categories.setdefault(product.category, []).append(item)
        data = {
            "categories": [
                {"name": name, "title": name, "products": products}
                for name, products in categories.items()
            ]
        }
        totals = {
            "totalCategories": len(categories),
            "totalProducts": sum(len(p) for p in categories.values()),
        }
        return data, totals

    async def check_product(self, key: KeyRecord, product_id: str) -> dict[str, Any]:
        reader = self.store.reader()
        product = await reader.catalog.product(product_id)
        if product is None:
            raise not_found(f"Product '{product_id}' not found")
        types = await reader.catalog.types(product_id)
        unsold: dict[str, int] = {}
        if product.enabled and orders.counts_inventory(key.env):
            unsold = await reader.inventory.unsold_counts(product_id)
        stock = orders.stock(key.env, product, types, unsold)
        return {
            "productId": product.id,
            "productTitle": product.title,
            "types": [
                {"id": t.id, "name": t.name, "price": money(t.price_cents), "quantity": stock[t.id]}
                for t in types
            ],
        }

    # -- orders ------------------------------------------------------------------------------

    async def place_order(self, key: KeyRecord, body: Any) -> dict[str, Any]:
        cmd = parse_place_order(body)
        now = time.time()
        low, high = self.fulfill_delay
        due_at = self.fulfilment.now() + self.chance.delays.uniform(low, high)
        order = await self.store.write(
            partial(orders.place, key=key, cmd=cmd, order_id=object_id(), now=iso(now),
                    due_at=due_at)
        )  # fmt: skip
        self.fulfilment.schedule(order.id, order.due_at)
        log.info(
            "order placed",
            extra={"orderId": order.id, "env": order.env, "product": order.product_id,
                   "type": order.type_id, "quantity": order.quantity},
        )  # fmt: skip
        data = {"orderId": order.id}
        if order.ref is not None:
            data["orderRef"] = order.ref
        return data

    async def check_order(self, key: KeyRecord, order_id: str) -> dict[str, Any]:
        found = self._final_orders.get(order_id)
        if found is None:
            found = await self.store.reader().orders.with_cards(order_id)
            if found is not None and found[0].status != orders.HANDLING:
                self._remember_final(order_id, found)
        if found is None or found[0].account_id != key.account_id or found[0].env != key.env:
            raise not_found(f"Order '{order_id}' not found")
        return self.order_view(*found)

    def _remember_final(self, order_id: str, found: tuple[OrderRecord, list[bytes]]) -> None:
        """Final orders never change: keep their (still sealed) rows for the next poll."""
        if len(self._final_orders) >= FINAL_ORDER_CACHE:
            self._final_orders.pop(next(iter(self._final_orders)))
        self._final_orders[order_id] = found

    async def list_orders(self, key: KeyRecord, query: Mapping[str, str]) -> dict[str, Any]:
        page = parse_page(query, both_ends=False)
        reader = self.store.reader()
        records, total = await reader.orders.page(
            key.account_id, key.env, page.window, page.size, page.offset
        )
        secrets = await reader.inventory.secrets_for_orders(
            [o.id for o in records if o.fulfilled_quantity]
        )
        return page.render([self.order_view(o, secrets.get(o.id, [])) for o in records], total)

    def order_view(self, order: OrderRecord, sealed_cards: list[bytes]) -> dict[str, Any]:
        """An order as checkOrder shows it: HANDLING without the outcome fields, final with."""
        view: dict[str, Any] = {
            "_id": order.id,
            "status": order.status,
            "quantity": order.quantity,
            "product": order.product_id,
            "type": order.type_id,
            "time": order.time,
        }
        if order.ref is not None:
            view["ref"] = order.ref
        if order.status != orders.HANDLING:
            fulfilled = order.fulfilled_quantity or 0
            context = orders.card_context(order.product_id, order.type_id)
            cards = []
            for sealed in sealed_cards:
                value, serial = self.vault.open_card(sealed, context)
                cards.append({"value": value, "serial": serial})
            view["fulfilled_quantity"] = fulfilled
            view["fulfilled_amount"] = money(fulfilled * order.price_cents)
            view["price_per_card"] = money(order.price_cents)
            view["cards"] = cards
        return view

    # -- webhooks (an extension of this service: not in OneClickDZ's API) --------------------

    async def list_webhooks(self, key: KeyRecord) -> list[dict[str, Any]]:
        """The key's endpoints not removed, oldest first (never their secrets)."""
        found = await self.store.reader().webhooks.endpoints(key.id)
        return [webhooks.endpoint_view(e) for e in found]

    async def add_webhook(self, key: KeyRecord, body: Any) -> dict[str, Any]:
        """A new endpoint for the key, with its secret: the only time it is shown."""
        url, events = parse_add_webhook(body)
        try:
            types = webhooks.check_events(events)
            # The address check may ask DNS: off the event loop.
            await asyncio.to_thread(webhooks.check_destination, url, self.dispatcher.allow_private)
            made = await self.store.write(
                partial(webhooks.add_endpoint, vault=self.vault, key_id=key.id, url=url,
                        events=types, now=now_iso())
            )  # fmt: skip
        except webhooks.WebhookError as exc:
            if exc.field is None:  # the only refusal without a field: too many endpoints
                raise ServiceError(
                    403, "WEBHOOK_LIMIT_REACHED", str(exc),
                    {"limit": webhooks.MAX_ENDPOINTS_PER_KEY},
                ) from None  # fmt: skip
            raise _webhook_refusal(exc, body) from None
        log.info("webhook endpoint added", extra={"endpointId": made.endpoint.id})
        return {**webhooks.endpoint_view(made.endpoint), "secret": made.secret}

    async def remove_webhook(self, key: KeyRecord, endpoint_id: str) -> dict[str, Any]:
        """Remove one of the key's endpoints; another key's is as unknown as a missing one."""
        number = parse_endpoint_id(endpoint_id)
        try:
            removed = await self.store.write(
                partial(webhooks.remove_endpoint, endpoint_id=number, key_id=key.id)
            )
        except webhooks.WebhookError:
            raise _unknown_endpoint(endpoint_id) from None
        log.info("webhook endpoint removed", extra={"endpointId": removed.id})
        return webhooks.endpoint_view(dataclasses.replace(removed, status=EndpointStatus.REMOVED))

    async def rotate_webhook_secret(
        self, key: KeyRecord, endpoint_id: str, body: Any
    ) -> dict[str, Any]:
        """A new secret for one of the key's endpoints, shown once; the old one signs too for
        `graceSeconds` (default `webhooks.DEFAULT_GRACE`)."""
        number = parse_endpoint_id(endpoint_id)
        grace = parse_grace(body)
        try:
            made = await self.store.write(
                partial(webhooks.rotate_secret, vault=self.vault, endpoint_id=number,
                        key_id=key.id, grace=grace, now=time.time())
            )  # fmt: skip
        except webhooks.WebhookError as exc:
            if exc.field is not None:  # parse_grace has bounded it already; kept for safety
                raise validation(GRACE_FIELD, grace, str(exc)) from None
            raise _unknown_endpoint(endpoint_id) from None
        log.info("webhook secret rotated", extra={"endpointId": made.endpoint.id})
        return {**webhooks.endpoint_view(made.endpoint), "secret": made.secret}


# -- request parsing -----------------------------------------------------------------------


def parse_place_order(body: Any) -> orders.PlaceOrder:
    """Validate a placeOrder body, naming the first field at fault as the docs' AJV errors do."""
    if not isinstance(body, dict):
        raise validation("body", None, "body must be object")
    for field in ("productId", "typeId", "quantity"):
        if field not in body:
            raise validation(field, None, f"body must have required property '{field}'")
    for field in ("productId", "typeId"):
        value = body[field]
        if not isinstance(value, str):
            raise validation(field, value, f"body/{field} must be string")
        if not value.strip() or len(value) > 200:
            raise validation(field, value, f"body/{field} must be a non-empty id")
    quantity = body["quantity"]
    if isinstance(quantity, bool) or not isinstance(quantity, int):
        raise validation("quantity", quantity, "body/quantity must be integer")
    if quantity < 1:
        raise validation("quantity", quantity, "body/quantity must be >= 1")
    if quantity > orders.MAX_QUANTITY:
        raise validation("quantity", quantity, f"body/quantity must be <= {orders.MAX_QUANTITY}")
    ref = body.get("ref")
    if ref is not None:
        if not isinstance(ref, str):
            raise validation("ref", ref, "body/ref must be string")
        if not ref or len(ref) > orders.MAX_REF_LENGTH:
            raise validation(
                "ref", ref, f"body/ref must be 1 to {orders.MAX_REF_LENGTH} characters"
            )
    return orders.PlaceOrder(body["productId"], body["typeId"], quantity, ref)


GRACE_FIELD = "graceSeconds"
MAX_ENDPOINT_ID_DIGITS = 18  # beyond, no endpoint has such an id (and it would overflow SQL)


def parse_add_webhook(body: Any) -> tuple[str, list[str] | None]:
    """The URL and event types of a new endpoint (types absent, null or empty: all of them);
    what they mean is checked by `webhooks`."""
    if not isinstance(body, dict):
        raise validation("body", None, "body must be object")
    if "url" not in body:
        raise validation("url", None, "body must have required property 'url'")
    url = body["url"]
    if not isinstance(url, str):
        raise validation("url", None, "body/url must be string")
    events = body.get("events")
    if events is None:
        return url, None
    if not isinstance(events, list):
        raise validation("events", events, "body/events must be array")
    for i, event in enumerate(events):
        if not isinstance(event, str):
            raise validation("events", events, f"body/events/{i} must be string")
    return url, events


def parse_endpoint_id(raw: str) -> int:
    """A webhook endpoint's id from the path; anything that cannot be one is simply unknown."""
    if not (raw.isascii() and raw.isdigit()) or len(raw) > MAX_ENDPOINT_ID_DIGITS or not int(raw):
        raise _unknown_endpoint(raw)
    return int(raw)


def parse_grace(body: Any) -> float:
    """The seconds the old secret keeps signing after a rotation (no body: the default)."""
    if body is None:
        return webhooks.DEFAULT_GRACE
    if not isinstance(body, dict):
        raise validation("body", None, "body must be object")
    grace = body.get(GRACE_FIELD)
    if grace is None:
        return webhooks.DEFAULT_GRACE
    if isinstance(grace, bool) or not isinstance(grace, (int, float)):
        raise validation(GRACE_FIELD, grace, f"body/{GRACE_FIELD} must be number")
    if grace < 0:
        raise validation(GRACE_FIELD, grace, f"body/{GRACE_FIELD} must be >= 0")
    if grace > webhooks.MAX_GRACE:
        limit = f"{webhooks.MAX_GRACE:g}"
        raise validation(GRACE_FIELD, grace, f"body/{GRACE_FIELD} must be <= {limit}")
    return float(grace)


def _webhook_refusal(exc: webhooks.WebhookError, body: Any) -> ServiceError:
    """A refused URL or event type as ERR_VALIDATION. A URL is never echoed back: it may carry
    a token of the receiver's (its credentials, when it has some, are why it was refused)."""
    field = exc.field or "body"
    message = str(exc)
    message = f"body/{message}" if message.startswith(field) else f"body/{field}: {message}"
    value = body.get(field) if field == "events" and isinstance(body, dict) else None
    return validation(field, value, message)


def _unknown_endpoint(raw: str) -> ServiceError:
    return not_found(f"Webhook endpoint '{raw}' not found")
