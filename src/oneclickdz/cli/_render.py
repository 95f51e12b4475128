"""How the SDK's models look in a terminal and in JSON.

JSON keeps the models' field names (snake_case). Amounts are strings with two decimals
(`"980.00"`): exact, as the ledger keeps them, never a binary float. Times are ISO-8601 UTC with
milliseconds and `Z`, as the API writes them. Card codes and serials are masked (`"****WXYZ"`)
unless `--show-codes`; an API key is always masked.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel

from oneclickdz import Card, Order, OrderStatus, Outcome, Page, TokenInfo
from oneclickdz._redact import mask

CENT = Decimal("0.01")


def money(value: Decimal) -> str:
    """An amount for JSON: two decimals when that is exact, else every digit the API gave."""
    return f"{value:.2f}" if value == value.quantize(CENT) else str(value)


def money_text(value: Decimal | None) -> str:
    """An amount for people: `10,000.00`."""
    if value is None:
        return "-"
    return f"{value:,.2f}" if value == value.quantize(CENT) else f"{value:,}"


def iso(value: datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def jsonable(value: Any) -> Any:
    """Plain JSON values from a model dump: Decimal -> "0.00", datetime -> ISO, enum -> value."""
    if isinstance(value, BaseModel):
        return jsonable(value.model_dump())
    if isinstance(value, Decimal):
        return money(value)
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    return value


def _secret(value: Any, show: bool) -> Any:
    if value is None or show:
        return value
    return mask(str(value))


def card_json(card: Card, show_codes: bool) -> dict[str, Any]:
    data = {"value": _secret(card.value, show_codes), "serial": _secret(card.serial, show_codes)}
    for key, extra in (card.model_extra or {}).items():  # unknown card fields may be secret too
        data[key] = _secret(extra, show_codes)
    return data


def order_json(order: Order, show_codes: bool) -> dict[str, Any]:
    data: dict[str, Any] = jsonable(order.model_dump(exclude={"cards"}))
    for key in order.model_extra or {}:  # an unknown order field may one day carry codes
        data[key] = _secret(data.get(key), show_codes)
    data["cards"] = [card_json(card, show_codes) for card in order.cards]
    return data


def outcome_json(outcome: Outcome) -> dict[str, Any]:
    return {
        "status": outcome.status.value,
        "quantity": outcome.quantity,
        "delivered": outcome.delivered,
        "price_per_card": money(outcome.price_per_card),
        "amount_charged": money(outcome.amount_charged),
        "amount_refunded": money(outcome.amount_refunded),
        "summary": outcome.summary,
    }


def order_document(order: Order, outcome: Outcome | None, show_codes: bool) -> dict[str, Any]:
    """`order check`/`wait`: the order (cards masked or not) and, once final, its outcome."""
    return {
        "order": order_json(order, show_codes),
        "outcome": None if outcome is None else outcome_json(outcome),
        "codes_masked": not show_codes,
    }


def token_json(info: TokenInfo) -> dict[str, Any]:
    data: dict[str, Any] = jsonable(info.model_dump())
    data["api_key"]["key"] = mask(info.api_key.key)
    return data


# --------------------------------------------------------------------------- text


def table(
    headers: Sequence[str], rows: Iterable[Sequence[str]], right: Iterable[int] = ()
) -> list[str]:
    """Aligned columns without borders: readable, greppable, never wrapped."""
    body = [[str(cell) for cell in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in body:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    right_set = set(right)

    def fmt(row: Sequence[str]) -> str:
        cells = [
            cell.rjust(w) if i in right_set else cell.ljust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        ]
        return "  ".join(cells).rstrip()

    return [fmt(headers), *(fmt(row) for row in body)]


def status_text(status: OrderStatus | str) -> str:
    return status.value if isinstance(status, OrderStatus) else str(status)


def order_text(order: Order) -> list[str]:
    """An order that is not final (yet): what it is and since when."""
    what = f"{order.quantity} x {order.type or '?'}"
    if order.product:
        what += f" of product {order.product}"
    when = f", placed {iso(order.time)}" if order.time else ""
    return [f"order {order.id}: {status_text(order.status)}, {what}{when}"]


def outcome_text(outcome: Outcome, show_codes: bool, *, hint: bool = True) -> list[str]:
    """A final order as the guide reports it: the cards, what was charged, what came back."""
    lines = [
        f"order {outcome.order_id}: {outcome.status.value}, "
        f"{outcome.delivered} of {outcome.quantity} card(s) delivered"
    ]
    for n, card in enumerate(outcome.cards, start=1):
        value = card.value if show_codes else mask(card.value)
        line = f"  card {n}  {value}"
        if card.serial:
            line += f"  serial {card.serial if show_codes else mask(card.serial)}"
        lines.append(line)
    price = outcome.price_per_card
    charged, refunded = outcome.amount_charged, outcome.amount_refunded
    width = max(len(money_text(charged)), len(money_text(refunded)))
    lines.append(f"  charged   {money_text(charged):>{width}} DZD{_per_card(charged, price)}")
    lines.append(f"  refunded  {money_text(refunded):>{width}} DZD{_per_card(refunded, price)}")
    if outcome.cards and not show_codes and hint:
        lines.append("  (codes masked: --show-codes shows them)")
    return lines


def _per_card(amount: Decimal, price: Decimal) -> str:
    if not amount or not price:
        return ""
    return f" ({amount / price:.0f} x {money_text(price)})"


def page_footer(page: Page[Any], noun: str) -> str:
    p = page.pagination
    if p is None:
        return f"{len(page.items)} {noun}(s)"
    return f"page {p.page} of {max(p.total_pages, 1)}, {p.total_results} {noun}(s) in all"
