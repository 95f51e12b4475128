"""The API's endpoints as `Call`s: path, method, parameters and decoder of each, in one place.

The sync and async resource classes only hand these to their client.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from ._base import Call, Envelope, decoder
from ._transport import Response
from .errors import DuplicateRefError
from .models import (
    Balance,
    Catalog,
    Health,
    Order,
    Page,
    PlacedOrder,
    PlaceOrderRequest,
    Product,
    TokenInfo,
    Transaction,
)

MAX_PAGE_SIZE = 100
AUTO_REF_PREFIX = "auto-"
"""The prefix of the refs the SDK makes up for a placement given none."""

DateLike = datetime | str


def _segment(name: str, value: str) -> str:
    """A path segment from caller input, escaped; empty ids are a bug in the caller."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} must be a non-empty string")
    return quote(value, safe="")


def _iso(value: DateLike) -> str:
    """ISO-8601 UTC with milliseconds and Z, as the API writes times; naive datetimes refused."""
    if isinstance(value, str):
        return value
    if value.tzinfo is None:
        raise ValueError("datetimes must be timezone-aware (the API's times are UTC)")
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _page_params(
    page: int, page_size: int, from_: DateLike | None, to: DateLike | None
) -> dict[str, str]:
    if page < 1:
        raise ValueError("page must be >= 1")
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise ValueError(f"page_size must be within 1..{MAX_PAGE_SIZE}")
    params = {"page": str(page), "pageSize": str(page_size)}
    if from_ is not None:
        params["from"] = _iso(from_)
    if to is not None:
        params["to"] = _iso(to)
    return params


def _with_totals(envelope: Envelope[Catalog], response: Response) -> Catalog:
    """The catalog's totals sit in `meta` (guide) or beside `success` (reference): fold them in."""
    catalog = envelope.data
    extra = envelope.model_extra or {}
    meta = envelope.meta or {}
    update: dict[str, Any] = {}
    for field, wire in (
        ("total_categories", "totalCategories"),
        ("total_products", "totalProducts"),
    ):
        if getattr(catalog, field) is None:
            value = meta.get(wire, extra.get(wire))
            if isinstance(value, int):
                update[field] = value
    return catalog.model_copy(update=update) if update else catalog


def _with_pagination(envelope: Envelope[Page[Any]], response: Response) -> Page[Any]:
    """Pagination sits in `data` in every example, but the prose allows `meta`: accept both."""
    page = envelope.data
    meta_pagination = (envelope.meta or {}).get("pagination")
    if page.pagination is None and isinstance(meta_pagination, dict):
        return page.model_validate({"items": page.items, "pagination": meta_pagination})
    return page


def _with_request_id(envelope: Envelope[PlacedOrder], response: Response) -> PlacedOrder:
    """A placement's request id is worth keeping: it is what support asks for."""
    request_id = envelope.requestId or response.headers.get("x-request-id")
    return envelope.data.model_copy(update={"request_id": request_id})


def _with_ref(ref: str) -> Callable[[Response], PlacedOrder]:
    """placeOrder's decoder for a placement sent with `ref`: the answer carries the ref sent,
    also when the service does not echo `orderRef` (the caller reconciles by it)."""

    def decode(response: Response) -> PlacedOrder:
        placed = _decode_placed(response)
        if placed.order_ref is None:
            return placed.model_copy(update={"order_ref": ref})
        return placed

    return decode


_decode_orders_page = decoder(Page[Order], _with_pagination)
_decode_transactions_page = decoder(Page[Transaction], _with_pagination)
_decode_order = decoder(Order)
_decode_placed = decoder(PlacedOrder, _with_request_id)
_decode_product = decoder(Product)
_decode_catalog = decoder(Catalog, _with_totals)
_decode_balance = decoder(Balance)
_decode_token = decoder(TokenInfo)
_decode_health = decoder(Health)


def ping() -> Call[Health]:
    return Call("GET", "/ping", _decode_health)


def validate() -> Call[TokenInfo]:
    return Call("GET", "/validate", _decode_token)


def balance() -> Call[Balance]:
    return Call("GET", "/account/balance", _decode_balance)


def transactions_page(
    page: int, page_size: int, from_: DateLike | None, to: DateLike | None
) -> Call[Page[Transaction]]:
    params = _page_params(page, page_size, from_, to)
    return Call("GET", "/account/transactions", _decode_transactions_page, params=params)


def catalog() -> Call[Catalog]:
    return Call("GET", "/gift-cards/catalog", _decode_catalog)


def check_product(product_id: str) -> Call[Product]:
    path = f"/gift-cards/checkProduct/{_segment('product_id', product_id)}"
    return Call("GET", path, _decode_product)


def auto_ref() -> str:
    """A new ref for a placement given none: `auto-` and the 32 hex digits of a uuid4.

    37 characters (the API allows 100), unique per call, so that every placement can be retried
    and an order created by an attempt whose answer was lost is recovered by its ref.
    """
    return AUTO_REF_PREFIX + uuid.uuid4().hex


def _recover_order(ref: str) -> Callable[[DuplicateRefError], PlacedOrder | None]:
    """The order a retried placeOrder meets DUPLICATED_REF for: the one its lost attempt made."""

    def recover(exc: DuplicateRefError) -> PlacedOrder | None:
        if not exc.order_id:
            return None
        return PlacedOrder(
            order_id=exc.order_id, order_ref=ref, recovered=True, request_id=exc.request_id
        )

    return recover


def place_order(request: PlaceOrderRequest) -> Call[PlacedOrder]:
    """placeOrder; a request without a ref gets one from `auto_ref()` here, once per call, so
    every retry of the call sends the same ref (the Call, with its ref, lives for all attempts).
    """
    _segment("product_id", request.product_id)
    _segment("type_id", request.type_id)
    if isinstance(request.quantity, bool) or not isinstance(request.quantity, int):
        raise TypeError("quantity must be an int")
    ref = request.ref
    if ref is None:
        ref = auto_ref()
        request = replace(request, ref=ref)
    elif not isinstance(ref, str) or not ref:
        raise ValueError("ref must be a non-empty string (or None for an automatic one)")
    return Call(
        "POST",
        "/gift-cards/placeOrder",
        _with_ref(ref),
        body=request.body(),
        placement=request,
        recover=_recover_order(ref),
    )


def check_order(order_id: str) -> Call[Order]:
    path = f"/gift-cards/checkOrder/{_segment('order_id', order_id)}"
    return Call("GET", path, _decode_order)


def orders_page(
    page: int, page_size: int, from_: DateLike | None, to: DateLike | None
) -> Call[Page[Order]]:
    params = _page_params(page, page_size, from_, to)
    return Call("GET", "/gift-cards/list", _decode_orders_page, params=params)


class PageWalk:
    """A walk through a paginated list from page 1: which page comes next, which items are new.

    An item pushed onto a later page by new entries while walking is not yielded twice.
    """

    def __init__(self) -> None:
        self.next: int | None = 1
        self._seen: set[str] = set()

    def take(self, page: Page[Any]) -> list[Any]:
        fresh = [item for item in page.items if item.id not in self._seen]
        self._seen.update(item.id for item in fresh)
        info = page.pagination
        if info is None or not page.items or info.page >= info.total_pages:
            self.next = None
        else:
            self.next = info.page + 1
        return fresh
