"""`catalog` and `product PRODUCT_ID`."""

from __future__ import annotations

from typing import Annotated

import typer

from ._app import GIFT_CARDS, app
from ._core import ApiKeyOption, BaseUrlOption, JsonOption, Output, settings
from ._render import jsonable, money_text, table


@app.command(rich_help_panel=GIFT_CARDS)
def catalog(
    ctx: typer.Context,
    api_key: ApiKeyOption = None,
    base_url: BaseUrlOption = None,
    json_output: JsonOption = False,
) -> None:
    """Every category and product (ids to use with `product`)."""
    s = settings(ctx, api_key, base_url, json_output)
    with s.client() as client:
        result = client.gift_cards.catalog()

    def text(out: Output) -> None:
        rows = [
            [
                category.name,
                product.id,
                product.title + ("" if product.enabled else " (disabled)"),
                product.region or "",
            ]
            for category in result.categories
            for product in category.products
        ]
        out.lines(table(["CATEGORY", "PRODUCT", "TITLE", "REGION"], rows))
        out.line(f"{len(rows)} product(s) in {len(result.categories)} categories")

    s.emit(jsonable(result), text)


@app.command(rich_help_panel=GIFT_CARDS)
def product(
    ctx: typer.Context,
    product_id: Annotated[str, typer.Argument(help="Product id, from `catalog`.")],
    api_key: ApiKeyOption = None,
    base_url: BaseUrlOption = None,
    json_output: JsonOption = False,
) -> None:
    """A product's types (TYPE_ID for `order place`) with your price and the live stock."""
    s = settings(ctx, api_key, base_url, json_output)
    with s.client() as client:
        result = client.gift_cards.check_product(product_id)

    def text(out: Output) -> None:
        out.line(f"{result.product_title or '?'} ({result.product_id})")
        rows = [
            [t.id, t.name, money_text(t.price), str(t.quantity) if t.in_stock else "out of stock"]
            for t in result.types
        ]
        out.lines(table(["TYPE", "NAME", "PRICE DZD", "STOCK"], rows, (2, 3)))

    s.emit(jsonable(result), text)
