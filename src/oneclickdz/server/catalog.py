"""The product catalog: the documented examples as the default, and loading one from JSON.

Catalog files have the shape of the API's own catalog, with each product's types inline:
`{"categories": [{"name": …, "products": [{"id", "title", "enabled", "region"?,
"types": [{"id", "name", "price", "quantity"}]}]}]}`. `quantity` is the sandbox stock;
production stock is the number of unsold imported codes. A price is a JSON number (or a plain
decimal string) in DZD with at most 2 decimals, up to `formats.MAX_AMOUNT_CENTS`.
"""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

from oneclickdz.server.formats import to_cents
from oneclickdz.server.store import ProductRecord, Tx, TypeRecord

PSN = "507f1f77bcf86cd799439011"

DEFAULT_CATALOG: dict[str, Any] = {
    "categories": [
        {
            "name": "Gaming Cards",
            "products": [
                {
                    "id": PSN,
                    "title": "PlayStation Network",
                    "enabled": True,
                    "region": "dz",
                    "types": [
                        {"id": "type_001", "name": "PSN 500 DA", "price": 490, "quantity": 150},
                        {"id": "type_002", "name": "PSN 1000 DA", "price": 980, "quantity": 87},
                        {"id": "type_003", "name": "PSN 2000 DA", "price": 1960, "quantity": 0},
                    ],
                },
                {
                    "id": "507f1f77bcf86cd799439013",
                    "title": "PUBG Mobile UC",
                    "enabled": True,
                    "types": [
                        {"id": "pubg_60", "name": "PUBG 60 UC", "price": 170, "quantity": 500},
                        {"id": "pubg_325", "name": "PUBG 325 UC", "price": 850, "quantity": 300},
                        {"id": "pubg_660", "name": "PUBG 660 UC", "price": 1690, "quantity": 120},
                    ],
                },
            ],
        },
        {
            "name": "Game Stores",
            "products": [
                {
                    "id": "507f1f77bcf86cd799439012",
                    "title": "Google Play Gift Card",
                    "enabled": True,
                    "types": [
                        {
                            "id": "gplay_5",
                            "name": "Google Play 5 USD",
                            "price": 1350,
                            "quantity": 200,
                        },
                        {
                            "id": "gplay_10",
                            "name": "Google Play 10 USD",
                            "price": 2650,
                            "quantity": 100,
                        },
                    ],
                },
            ],
        },
        {
            "name": "Streaming Services",
            "products": [
                {
                    "id": "507f1f77bcf86cd799439014",
                    "title": "Netflix Gift Card",
                    "enabled": True,
                    "types": [
                        {
                            "id": "netflix_15",
                            "name": "Netflix 15 USD",
                            "price": 3990,
                            "quantity": 60,
                        },
                    ],
                },
            ],
        },
    ]
}


MAX_STOCK = 1_000_000_000  # the most sandbox stock a type may have


class CatalogError(ValueError):
    """A catalog file that does not have the documented shape."""


def parse_catalog(data: Any) -> list[tuple[ProductRecord, list[TypeRecord]]]:
    """Validate a catalog document and return its products with their types, in order."""
    if not isinstance(data, dict) or not isinstance(data.get("categories"), list):
        raise CatalogError('a catalog is an object with a "categories" list')
    result: list[tuple[ProductRecord, list[TypeRecord]]] = []
    seen: set[str] = set()
    for c, category in enumerate(data["categories"]):
        name = _text(category, "name", f"categories[{c}]", alt="title")
        for p, item in enumerate(_list(category, "products", f"categories[{c}]")):
            where = f"categories[{c}].products[{p}]"
            product = ProductRecord(
                id=_text(item, "id", where),
                title=_text(item, "title", where, alt="name"),
                category=name,
                enabled=bool(item.get("enabled", True)),
                region=_region(item, where),
            )
            if product.id in seen:
                raise CatalogError(f"{where}: product id {product.id!r} appears twice")
            seen.add(product.id)
            types = []
            type_ids: set[str] = set()
            for t, entry in enumerate(_list(item, "types", where)):
                twhere = f"{where}.types[{t}]"
                type_id = _text(entry, "id", twhere)
                if type_id in type_ids or type_id.startswith("TEST_"):
                    raise CatalogError(f"{twhere}: type id {type_id!r} is repeated or reserved")
                type_ids.add(type_id)
                types.append(
                    TypeRecord(
                        product_id=product.id,
                        id=type_id,
                        name=_text(entry, "name", twhere),
                        price_cents=_price(entry.get("price"), twhere),
                        sandbox_stock=_stock(entry.get("quantity", entry.get("stock", 0)), twhere),
                    )
                )
            result.append((product, types))
    return result


def load_catalog(tx: Tx, data: Any) -> int:
    """Insert or update every product and type of `data`; returns the number of products."""
    entries = parse_catalog(data)
    for position, (product, types) in enumerate(entries):
        tx.catalog.upsert_product(product, position)
        for type_position, ptype in enumerate(types):
            tx.catalog.upsert_type(ptype, type_position)
    return len(entries)


def _text(obj: Any, key: str, where: str, alt: str | None = None) -> str:
    value = obj.get(key, obj.get(alt) if alt else None) if isinstance(obj, dict) else None
    if not isinstance(value, str) or not value.strip():
        raise CatalogError(f'{where}: "{key}" must be a non-empty string')
    return value


def _list(obj: Any, key: str, where: str) -> list[Any]:
    value = obj.get(key) if isinstance(obj, dict) else None
    if not isinstance(value, list):
        raise CatalogError(f'{where}: "{key}" must be a list')
    return value


def _region(obj: dict[str, Any], where: str) -> str | None:
    value = obj.get("region")
    if value is not None and not isinstance(value, str):
        raise CatalogError(f'{where}: "region" must be a string')
    return value


def _price(value: Any, where: str) -> int:
    """Exact cents of a price: ints as they are, floats by their shortest text (12.3 is 1230)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise CatalogError(f'{where}: "price" must be a number')
    try:
        if isinstance(value, float):
            if not math.isfinite(value):  # JSON's NaN and Infinity, or 1e400
                raise ValueError(f"not an amount: {value!r}")
            value = Decimal(repr(value))
        cents = to_cents(value)
    except (ValueError, ArithmeticError) as exc:
        raise CatalogError(f'{where}: "price": {exc}') from None
    if cents < 0:
        raise CatalogError(f'{where}: "price" must not be negative')
    return cents


def _stock(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_STOCK:
        raise CatalogError(f'{where}: "quantity" must be a whole number from 0 to {MAX_STOCK}')
    return value
