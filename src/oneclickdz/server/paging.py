"""Paging and time windows of the list endpoints: `page`, `pageSize`, `from`, `to`."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from oneclickdz.server.errors import validation
from oneclickdz.server.formats import parse_iso
from oneclickdz.server.store import TimeRange

MAX_PAGE = 1_000_000  # beyond, an offset means nothing (and would overflow the database's integers)
MAX_PAGE_SIZE = 100


@dataclass(frozen=True)
class Page:
    number: int
    size: int
    window: TimeRange

    @property
    def offset(self) -> int:
        return (self.number - 1) * self.size

    def render(self, items: list[Any], total: int) -> dict[str, Any]:
        return {
            "items": items,
            "pagination": {
                "page": self.number,
                "pageSize": self.size,
                "totalPages": math.ceil(total / self.size),
                "totalResults": total,
            },
        }


def parse_page(query: Mapping[str, str], *, both_ends: bool) -> Page:
    number = _int_param(query, "page", 1, 1, MAX_PAGE)
    size = _int_param(query, "pageSize", 20, 1, MAX_PAGE_SIZE)
    start, end = query.get("from"), query.get("to")
    if both_ends and (start is None) != (end is None):
        missing = "to" if end is None else "from"
        raise validation(missing, None, "querystring must have both 'from' and 'to'")
    window = TimeRange(_time_param("from", start), _time_param("to", end))
    if window.start and window.end and window.start > window.end:
        raise validation("from", start, "querystring/from must not be after 'to'")
    return Page(number, size, window)


_INTEGER = re.compile(r"[+-]?[0-9]+")


def _int_param(query: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = query.get(name)
    if raw is None:
        return default
    if not _INTEGER.fullmatch(raw):  # ASCII digits only: not "1_000", " 5" or "٣"
        raise validation(name, raw, f"querystring/{name} must be integer")
    value = int(raw) if len(raw) <= 20 else (high + 1 if raw[0] != "-" else low - 1)
    if value < low:
        raise validation(name, raw, f"querystring/{name} must be >= {low}")
    if value > high:
        raise validation(name, raw, f"querystring/{name} must be <= {high}")
    return value


def _time_param(name: str, raw: str | None) -> str | None:
    if raw is None:
        return None
    try:
        return parse_iso(raw)
    except ValueError:
        raise validation(name, raw, f"querystring/{name} must be an ISO-8601 date-time") from None
