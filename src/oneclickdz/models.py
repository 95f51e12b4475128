"""Typed models of the API's responses, tolerant of the variations the documentation shows.

Field names are snake_case; the wire's spellings (`_id`/`id`, `productId`, catalog `name`/`title`,
...) are accepted as aliases. Unknown fields are kept (`model_extra`), never an error. Amounts are
`Decimal`, read from the JSON text as written (never through a binary float). Card codes, serials
and API keys are masked in every repr; only attribute access gives the full value.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Generic, TypeVar

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from ._redact import mask

__all__ = [
    "APIModel",
    "Balance",
    "Card",
    "Catalog",
    "CatalogProduct",
    "Category",
    "Health",
    "KeyInfo",
    "Order",
    "OrderStatus",
    "Page",
    "Pagination",
    "PlaceOrderRequest",
    "PlacedOrder",
    "Product",
    "ProductType",
    "TokenInfo",
    "Transaction",
]

T = TypeVar("T")


def _names(*names: str) -> AliasChoices:
    """The wire's spellings of one field; the first present wins."""
    return AliasChoices(*names)


class APIModel(BaseModel):
    """Base of every model: immutable, extra fields kept, inputs never echoed in errors."""

    model_config = ConfigDict(
        extra="allow",
        frozen=True,
        populate_by_name=True,
        hide_input_in_errors=True,
    )


class OrderStatus(enum.StrEnum):
    """The documented states of a gift-card order; only HANDLING is not final."""

    HANDLING = "HANDLING"
    FULFILLED = "FULFILLED"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    REFUNDED = "REFUNDED"

    @property
    def is_final(self) -> bool:
        return self is not OrderStatus.HANDLING


# A documented status becomes an OrderStatus; any other string is kept as it is (tried in order).
Status = Annotated[OrderStatus | str, Field(union_mode="left_to_right")]


class Card(APIModel):
    """One delivered gift card. Its repr masks `value` and `serial` (and any extra field)."""

    value: str
    serial: str | None = None

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        yield "value", mask(self.value)
        yield "serial", mask(self.serial)
        for key, extra in (self.model_extra or {}).items():
            yield key, mask(str(extra)) if extra is not None else None


class Order(APIModel):
    """A gift-card order as checkOrder and list return it.

    While HANDLING only id, status, quantity, product, type and time are present; a final order
    adds fulfilled_quantity, fulfilled_amount, price_per_card and cards. A status this SDK does not
    know is kept as its string and treated as not final.
    """

    id: str = Field(validation_alias=_names("_id", "id", "orderId"))
    status: Status
    quantity: int
    product: str | None = None
    type: str | None = None
    time: datetime | None = None
    fulfilled_quantity: int | None = None
    fulfilled_amount: Decimal | None = None
    price_per_card: Decimal | None = None
    cards: tuple[Card, ...] = ()
    ref: str | None = Field(None, validation_alias=_names("ref", "orderRef"))

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        extra = self.model_extra or {}
        for name, value in super().__repr_args__():
            # An unknown field of an order may one day carry codes: show it masked.
            yield name, (mask(str(value)) if name in extra and value is not None else value)

    @property
    def is_final(self) -> bool:
        """True for FULFILLED, PARTIALLY_FILLED and REFUNDED; false for HANDLING and unknowns."""
        return isinstance(self.status, OrderStatus) and self.status.is_final

    @property
    def has_known_status(self) -> bool:
        return isinstance(self.status, OrderStatus)


class PlacedOrder(APIModel):
    """placeOrder's answer: the new order's id and the ref it was placed with (the caller's, or
    the `auto-…` one the SDK made up; set even when the service does not echo it).

    `recovered` is true when a retried placement met DUPLICATED_REF and this is the order that the
    earlier, unanswered attempt created. `request_id` is the API's id of the answer (for support).
    """

    order_id: str = Field(validation_alias=_names("orderId", "_id", "id"))
    order_ref: str | None = Field(None, validation_alias=_names("orderRef", "ref"))
    recovered: bool = False
    request_id: str | None = Field(None, validation_alias=_names("requestId", "request_id"))


@dataclass(frozen=True, slots=True)
class PlaceOrderRequest:
    """What placeOrder sends: kept on PlacementUnknownError so the caller can reconcile.

    `ref=None` asks the SDK for an automatic ref (`auto-<uuid4 hex>`), made up once per call;
    the request kept on an error holds the ref actually sent.
    """

    product_id: str
    type_id: str
    quantity: int
    ref: str | None = None

    @property
    def operation(self) -> str:
        return "placeOrder"

    @property
    def listing(self) -> str:
        return "list_orders()"

    def describe(self) -> str:
        return (
            f"an order (product {self.product_id}, type {self.type_id}, quantity {self.quantity})"
        )

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "productId": self.product_id,
            "typeId": self.type_id,
            "quantity": self.quantity,
        }
        if self.ref is not None:
            body["ref"] = self.ref
        return body


class ProductType(APIModel):
    """One denomination of a product: your price (DZD) and the stock (`quantity`)."""

    id: str = Field(validation_alias=_names("id", "_id"))
    name: str
    price: Decimal
    quantity: int

    @property
    def in_stock(self) -> bool:
        return self.quantity > 0


class Product(APIModel):
    """checkProduct's answer: a product and its types with live price and stock."""

    product_id: str = Field(validation_alias=_names("productId", "_id", "id"))
    product_title: str | None = Field(None, validation_alias=_names("productTitle", "title"))
    types: tuple[ProductType, ...] = ()

    def get_type(self, type_id: str) -> ProductType | None:
        """The type with this id, or None."""
        return next((t for t in self.types if t.id == type_id), None)


class CatalogProduct(APIModel):
    """A product as the catalog lists it."""

    id: str = Field(validation_alias=_names("id", "_id"))
    title: str = Field(validation_alias=_names("title", "name"))
    enabled: bool = True
    region: str | None = None


class Category(APIModel):
    """A catalog category; the docs call its label `name` in one place and `title` in another."""

    name: str = Field(validation_alias=_names("name", "title"))
    title: str | None = None
    products: tuple[CatalogProduct, ...] = ()


class Catalog(APIModel):
    """The gift-card catalog: categories of products, with the totals when the API gives them."""

    categories: tuple[Category, ...] = ()
    total_categories: int | None = Field(
        None, validation_alias=_names("totalCategories", "total_categories")
    )
    total_products: int | None = Field(
        None, validation_alias=_names("totalProducts", "total_products")
    )

    def products(self) -> Iterator[CatalogProduct]:
        """Every product of every category."""
        for category in self.categories:
            yield from category.products

    def get_product(self, product_id: str) -> CatalogProduct | None:
        """The product with this id, or None."""
        return next((p for p in self.products() if p.id == product_id), None)


class Balance(APIModel):
    """The account's balance."""

    balance: Decimal
    currency: str = "DZD"


class Transaction(APIModel):
    """One ledger entry: ORDER (debit), REFUND-ORDER (credit), DEPOSIT, ..."""

    id: str = Field(validation_alias=_names("_id", "id"))
    type: str
    operation: str | None = None
    amount: Decimal
    old_balance: Decimal | None = Field(None, validation_alias=_names("oldBalance", "old_balance"))
    new_balance: Decimal | None = Field(None, validation_alias=_names("newBalance", "new_balance"))
    objid: str | None = None
    note: str | None = None
    time: datetime | None = None


class Pagination(APIModel):
    page: int
    page_size: int = Field(validation_alias=_names("pageSize", "page_size"))
    total_pages: int = Field(validation_alias=_names("totalPages", "total_pages"))
    total_results: int = Field(validation_alias=_names("totalResults", "total_results"))


class Page(APIModel, Generic[T]):
    """One page of a paginated list."""

    items: tuple[T, ...] = ()
    pagination: Pagination | None = None


class KeyInfo(APIModel):
    """The API key's settings, as validate returns them; the key is masked in the repr."""

    key: str | None = None
    type: str | None = None
    scope: str | None = None
    is_enabled: bool | None = Field(None, validation_alias=_names("isEnabled", "is_enabled"))
    allowed_ips: tuple[str, ...] = Field(
        (), validation_alias=_names("allowedips", "allowedIps", "allowed_ips")
    )

    @property
    def is_sandbox(self) -> bool:
        return self.type == "SANDBOX"

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        for name, value in super().__repr_args__():
            yield name, mask(value) if name == "key" else value


class TokenInfo(APIModel):
    """validate's answer: who the key belongs to and what it may do."""

    username: str | None = None
    api_key: KeyInfo = Field(validation_alias=_names("apiKey", "api_key"))


class Health(APIModel):
    """ping's answer: `api` is "ok" when the API is up; mobile operators' states beside it."""

    api: str
    operators: dict[str, str] = Field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.api == "ok"
