"""The service's OpenAPI 3.1 document and its browsable reference (Swagger UI, served offline).

The document is built from the app's own route table: each route's name selects an operation
spec below, and a route under /v3 without one makes building fail. The bounds come from the
constants the request parsers use, so the document cannot drift from the code silently.

What this service adds to OneClickDZ's API (the `/v3/webhooks` endpoints, and the webhooks it
sends, in the top-level `webhooks` section) is tagged `webhooks` and marked
`x-oneclickdz-extension: true`: a client of the real API must not count on it.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import orjson
import swagger_ui
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from oneclickdz.server import orders, webhooks
from oneclickdz.server.backend import GRACE_FIELD
from oneclickdz.server.catalog import PSN
from oneclickdz.server.logs import request_id
from oneclickdz.server.paging import MAX_PAGE, MAX_PAGE_SIZE
from oneclickdz.server.store import EntryType

Json = dict[str, Any]

API_PREFIX = "/v3/"
OPENAPI_PATH = "/v3/openapi.json"
DOCS_PATH = "/v3/docs"
ASSETS_PATH = "/v3/docs/assets"
ASSETS_DIR = Path(swagger_ui.__file__).parent / "static"
DEFAULT_PAGE_SIZE = 20  # what `paging.parse_page` uses when pageSize is absent (a test pins it)
MAX_ID_LENGTH = 200  # productId and typeId, as `backend.parse_place_order` bounds them

SECURITY_SCHEME = "AccessToken"
EXTENSION = "x-oneclickdz-extension"  # on what this service adds to OneClickDZ's API
_JSON = "application/json"


# -- schemas ----------------------------------------------------------------------------------

_TIMESTAMP: Json = {
    "type": "string",
    "format": "date-time",
    "examples": ["2025-10-29T01:00:00.000Z"],
}
_OBJECT_ID: Json = {"type": "string", "pattern": "^[0-9a-f]{24}$"}
_MONEY: Json = {"type": "number", "minimum": 0, "description": "An amount in DZD."}
_COUNT: Json = {"type": "integer", "minimum": 0}


def _object(required: Mapping[str, Json], optional: Mapping[str, Json] | None = None) -> Json:
    """A closed JSON object: these properties and no others."""
    return {
        "type": "object",
        "required": list(required),
        "properties": {**required, **(optional or {})},
        "additionalProperties": False,
    }


def _page_of(item: Json) -> Json:
    return _object(
        {
            "items": {"type": "array", "items": item},
            "pagination": _object(
                {
                    "page": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE},
                    "pageSize": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE},
                    "totalPages": _COUNT,
                    "totalResults": _COUNT,
                }
            ),
        }
    )


_OUTCOME = ("fulfilled_quantity", "fulfilled_amount", "price_per_card", "cards")
_ORDER: Json = {
    **_object(
        {
            "_id": _OBJECT_ID,
            "status": {"enum": [orders.HANDLING, orders.FULFILLED, orders.PARTIALLY_FILLED,
                                orders.REFUNDED]},
            "quantity": {"type": "integer", "minimum": 1, "maximum": orders.MAX_QUANTITY},
            "product": {"type": "string"},
            "type": {"type": "string"},
            "time": _TIMESTAMP,
        },
        {
            "ref": {"type": "string"},
            "fulfilled_quantity": _COUNT,
            "fulfilled_amount": _MONEY,
            "price_per_card": _MONEY,
            "cards": {
                "type": "array",
                "items": _object({"value": {"type": "string"}, "serial": {"type": "string"}}),
            },
        },
    ),
    # HANDLING orders have no outcome yet; final ones always carry all of it.
    "if": {"properties": {"status": {"const": orders.HANDLING}}},
    "then": {"properties": dict.fromkeys(_OUTCOME, False)},
    "else": {"required": list(_OUTCOME)},
}  # fmt: skip

_TRANSACTION: Json = _object(
    {
        "_id": _OBJECT_ID,
        "type": {"enum": [t.value for t in EntryType]},
        "operation": {"enum": ["CREDIT", "DEBIT"]},
        "amount": _MONEY,
        "oldBalance": _MONEY,
        "newBalance": _MONEY,
        "objid": {"type": ["string", "null"], "description": "The order it concerns, if any."},
        "note": {"type": "string"},
        "time": _TIMESTAMP,
    }
)

_TOTALS: Json = {"totalCategories": _COUNT, "totalProducts": _COUNT}

_PLACE_ORDER_BODY: Json = _object(
    {
        "productId": {"type": "string", "minLength": 1, "maxLength": MAX_ID_LENGTH,
                      "pattern": r"\S", "examples": [PSN]},
        "typeId": {"type": "string", "minLength": 1, "maxLength": MAX_ID_LENGTH,
                   "pattern": r"\S", "examples": ["type_001"],
                   "description": "A type of the product; in the sandbox also TEST_REFUND "
                                  "(nothing delivered) or TEST_PARTIAL (half delivered, "
                                  "quantity >= 2)."},
        "quantity": {"type": "integer", "minimum": 1, "maximum": orders.MAX_QUANTITY},
    },
    {
        "ref": {"type": "string", "minLength": 1, "maxLength": orders.MAX_REF_LENGTH,
                "description": "Your own reference, unique per account and environment (any "
                               "of its keys): a second order with it is refused with "
                               "DUPLICATED_REF."},
    },
)  # fmt: skip
del _PLACE_ORDER_BODY["additionalProperties"]  # unknown fields are ignored, not refused
_PLACE_ORDER_BODY["examples"] = [
    {"productId": PSN, "typeId": "type_001", "quantity": 1,
     "ref": "shop-order-1001"},
]  # fmt: skip

# -- webhooks (an extension: not in OneClickDZ's API) ------------------------------------------

_EVENT_TYPES: Json = {"enum": list(webhooks.EVENT_TYPES)}
_SECRET_CHARS = len(base64.b64encode(bytes(webhooks.SECRET_BYTES)))
_SECRET: Json = {
    "type": "string",
    "pattern": f"^{webhooks.SECRET_PREFIX}[A-Za-z0-9+/=]{{{_SECRET_CHARS}}}$",
    "description": "The endpoint's signing secret (Standard Webhooks: `whsec_` and "
    f"{webhooks.SECRET_BYTES} random bytes in base64). Shown in this answer only: keep it.",
}
_ENDPOINT_PROPERTIES: Json = {
    "id": {"type": "integer", "minimum": 1},
    "url": {"type": "string", "minLength": 1, "maxLength": webhooks.MAX_URL_CHARS},
    "events": {"type": "array", "items": _EVENT_TYPES, "minItems": 1,
               "description": "The event types sent to it."},
    "status": {"enum": ["ENABLED", "DISABLED", "REMOVED"],
               "description": "ENABLED: sent to. DISABLED: nothing is sent (it answered 410 "
                              "Gone, or an operator disabled it). REMOVED: deleted."},
    "createdAt": _TIMESTAMP,
}  # fmt: skip
_ENDPOINT_OPTIONAL: Json = {
    "disabledReason": {"type": "string"},
    "previousSecretUntil": {**_TIMESTAMP, "description": "After a rotation: the previous "
                            "secret signs too (beside the new one) until then."},
}  # fmt: skip
_ENDPOINT: Json = _object(_ENDPOINT_PROPERTIES, _ENDPOINT_OPTIONAL)
_NEW_ENDPOINT: Json = _object({**_ENDPOINT_PROPERTIES, "secret": _SECRET}, _ENDPOINT_OPTIONAL)

_ADD_WEBHOOK_BODY: Json = {
    "type": "object",
    "required": ["url"],
    "properties": {
        "url": {"type": "string", "format": "uri", "minLength": 1,
                "maxLength": webhooks.MAX_URL_CHARS,
                "description": "Where to POST the events: http or https, with a host, without "
                               "credentials. An address that is (or whose host resolves to) a "
                               "private or loopback one is refused unless the service runs "
                               "with `--webhook-allow-private`. Never echoed in an error."},
        "events": {"type": ["array", "null"], "items": {"type": "string", **_EVENT_TYPES},
                   "description": "The event types to send; absent, null or empty: all."},
    },
    "examples": [{"url": "https://shop.example/hooks/oneclickdz",
                  "events": ["order.fulfilled", "order.refunded"]}],
}  # fmt: skip
_ROTATE_BODY: Json = {
    "type": "object",
    "properties": {
        GRACE_FIELD: {"type": "number", "minimum": 0, "maximum": webhooks.MAX_GRACE,
                      "default": webhooks.DEFAULT_GRACE,
                      "description": "Seconds the current secret keeps signing beside the new "
                                     "one, so a receiver can switch without losing a webhook."},
    },
    "examples": [{GRACE_FIELD: 3600}],
}  # fmt: skip


# -- parameters -------------------------------------------------------------------------------


def _query(name: str, schema: Json, description: str) -> Json:
    return {"name": name, "in": "query", "required": False, "schema": schema,
            "description": description}  # fmt: skip


_PAGING: tuple[Json, ...] = (
    _query("page", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": 1},
           "The page, from 1."),
    _query("pageSize", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE,
                        "default": DEFAULT_PAGE_SIZE}, "Items per page."),
)  # fmt: skip


def _window(both: bool) -> tuple[Json, ...]:
    rule = "Give both `from` and `to`, or neither." if both else "Either end may be open."
    return (
        _query("from", {"type": "string", "format": "date-time"},
               f"The earliest time, inclusive (ISO-8601; no zone means UTC). {rule}"),
        _query("to", {"type": "string", "format": "date-time"},
               f"The latest time, inclusive (ISO-8601; no zone means UTC); not before "
               f"`from`. {rule}"),
    )  # fmt: skip


_ID_PARAM: Json = {"type": "string", "minLength": 1}
_ENDPOINT_ID: Json = {"type": "integer", "minimum": 1, "description": "The endpoint's `id`."}


# -- operations -------------------------------------------------------------------------------

Access = Literal["public", "read", "write"]
TAGS = {
    "core": "Health and the calling key.",
    "account": "Balance and its movements.",
    "gift-cards": "Catalog, orders and their cards.",
    "mobile": "Mobile top-ups (flexy): plans, send, status.",
    "internet": "Internet recharges (ADSL and 4G cards): products, send, status.",
    "ocpay": "OCPay payment links: create one, its payer pays on a page of this service, "
    "check its status.",
    "webhooks": "Signed order webhooks (Standard Webhooks), per key: push instead of poll. An "
    "extension of this service (`x-oneclickdz-extension`): not in OneClickDZ's real API, whose "
    "webhooks are announced but not offered yet.",
    "reference": "This document.",
}


@dataclass(frozen=True)
class OperationSpec:
    """What the document says about the routes of one name (a route and its aliases)."""

    summary: str
    tag: str
    access: Access
    data: Json | None = None  # the envelope's `data`; None for the reference's own routes
    media: tuple[str, Json] | None = None  # (media type, schema) of a non-enveloped answer
    description: str = ""
    path_params: Mapping[str, Json] = field(default_factory=dict)
    query: tuple[Json, ...] = ()
    body: Json | None = None
    errors: Mapping[int, tuple[str, ...]] = field(default_factory=dict)
    totals: bool = False  # the catalog's totals, in `meta` and beside `success`
    links: Mapping[str, tuple[str, Mapping[str, str]]] = field(default_factory=dict)
    body_required: bool = True  # False: the body may be left out (its fields have defaults)
    extension: bool = False  # this service's own, not OneClickDZ's (marked `EXTENSION`)


_NEW_SECRET_LINKS: Mapping[str, tuple[str, Mapping[str, str]]] = {
    "rotateWebhookSecret": ("rotateWebhookSecret", {"id": "$response.body#/data/id"}),
    "deleteWebhook": ("deleteWebhook", {"id": "$response.body#/data/id"}),
}

SPECS: dict[str, OperationSpec] = {
    "ping": OperationSpec(
        "Health check", "core", "public",
        data=_object({"api": {"const": "ok"},
                      "operators": {"type": "object",
                                    "additionalProperties": {"type": "string"}}}),
    ),
    "validate": OperationSpec(
        "The calling key and its account", "core", "read",
        data=_object({
            "username": {"type": "string"},
            "apiKey": _object({
                "key": {"type": "string", "description": "Masked: only the last 4 characters."},
                "isEnabled": {"type": "boolean"},
                "type": {"enum": ["SANDBOX", "PRODUCTION"]},
                "allowedips": {"type": "array", "items": {"type": "string"}},
                "scope": {"enum": ["READ-WRITE", "READ-ONLY"]},
            }),
        }),
    ),
    "balance": OperationSpec(
        "The balance of the key's account", "account", "read",
        data=_object({"balance": _MONEY, "currency": {"const": "DZD"}}),
    ),
    "transactions": OperationSpec(
        "Balance movements, newest first", "account", "read",
        data=_page_of(_TRANSACTION), query=(*_PAGING, *_window(both=True)),
        errors={400: ("ERR_VALIDATION",)},
    ),
    "catalog": OperationSpec(
        "Products by category", "gift-cards", "read",
        data=_object({"categories": {"type": "array", "items": _object({
            "name": {"type": "string"},
            "title": {"type": "string"},
            "products": {"type": "array", "items": _object(
                {"id": {"type": "string"}, "title": {"type": "string"},
                 "enabled": {"type": "boolean"}},
                {"region": {"type": "string"}},
            )},
        })}}),
        totals=True,
        description="The totals are given both in `meta` and beside `success`.",
    ),
    "checkProduct": OperationSpec(
        "A product's types, prices and stock", "gift-cards", "read",
        data=_object({
            "productId": {"type": "string"},
            "productTitle": {"type": "string"},
            "types": {"type": "array", "items": _object({
                "id": {"type": "string"}, "name": {"type": "string"}, "price": _MONEY,
                "quantity": {**_COUNT, "description": "How many can be ordered now."},
            })},
        }),
        path_params={"product_id": _ID_PARAM},
        errors={404: ("NOT_FOUND",)},
    ),
    "placeOrder": OperationSpec(
        "Order gift cards (debits the balance at once)", "gift-cards", "write",
        data=_object({"orderId": _OBJECT_ID}, {"orderRef": {"type": "string"}}),
        body=_PLACE_ORDER_BODY,
        errors={
            400: ("ERR_VALIDATION",),
            403: ("DUPLICATED_REF", "OUT_OF_STOCK", "INSUFFICIENT_BALANCE"),
            404: ("NOT_FOUND",),
        },
        links={
            "checkOrder": ("checkOrder", {"order_id": "$response.body#/data/orderId"}),
        },
        description="The order starts HANDLING; poll checkOrder with its `orderId` until it "
        "is FULFILLED, PARTIALLY_FILLED or REFUNDED (what was not delivered is refunded).",
    ),
    "checkOrder": OperationSpec(
        "An order's status, and its cards once final", "gift-cards", "read",
        data=_ORDER, path_params={"order_id": _ID_PARAM}, errors={404: ("NOT_FOUND",)},
    ),
    "list": OperationSpec(
        "The key's orders, newest first", "gift-cards", "read",
        data=_page_of(_ORDER), query=(*_PAGING, *_window(both=False)),
        errors={400: ("ERR_VALIDATION",)},
    ),
    "listWebhooks": OperationSpec(
        "The key's webhook endpoints (never their secrets)", "webhooks", "read",
        data={"type": "array", "items": _ENDPOINT}, extension=True,
        description="Oldest first; removed endpoints are not listed. An extension of this "
        "service, not in OneClickDZ's API.",
    ),
    "createWebhook": OperationSpec(
        "Add a webhook endpoint for the key's orders; its secret, once", "webhooks", "write",
        data=_NEW_ENDPOINT, body=_ADD_WEBHOOK_BODY, extension=True,
        errors={400: ("ERR_VALIDATION",), 403: ("WEBHOOK_LIMIT_REACHED",)},
        links=_NEW_SECRET_LINKS,
        description="The endpoint receives a signed POST (see the document's `webhooks`) "
        "for each order placed with this key that turns final. The answer holds its `secret`, "
        "shown this once. A key has at most "
        f"{webhooks.MAX_ENDPOINTS_PER_KEY} endpoints (WEBHOOK_LIMIT_REACHED). An extension of "
        "this service, not in OneClickDZ's API.",
    ),
    "deleteWebhook": OperationSpec(
        "Remove a webhook endpoint of the key", "webhooks", "write",
        data=_ENDPOINT, path_params={"id": _ENDPOINT_ID}, extension=True,
        errors={404: ("NOT_FOUND",)},
        description="Nothing more is sent to it; its pending deliveries are cancelled. Another "
        "key's endpoint is as unknown as a missing one. An extension of this service, not in "
        "OneClickDZ's API.",
    ),
    "rotateWebhookSecret": OperationSpec(
        "A new secret for a webhook endpoint of the key; shown once", "webhooks", "write",
        data=_NEW_ENDPOINT, path_params={"id": _ENDPOINT_ID}, body=_ROTATE_BODY,
        body_required=False, extension=True,
        errors={400: ("ERR_VALIDATION",), 404: ("NOT_FOUND",)},
        description="Deliveries are signed with both the new and the current secret for "
        f"`{GRACE_FIELD}` (default {webhooks.DEFAULT_GRACE:g} s), then with the new one only. "
        "An extension of this service, not in OneClickDZ's API.",
    ),
    "openapi": OperationSpec(
        "This document", "reference", "public",
        media=(_JSON, {"type": "object", "required": ["openapi", "paths"]}),
    ),
    "docs": OperationSpec(
        "This document, browsable (Swagger UI, served offline)", "reference", "public",
        media=("text/html", {"type": "string"}),
    ),
}  # fmt: skip


# -- errors -----------------------------------------------------------------------------------

_ERRORS: dict[int, str] = {
    400: "The request is invalid: not HTTP (BAD_REQUEST), or a field is wrong (ERR_VALIDATION, "
    "`details.field` names the first at fault).",
    401: "The access token is missing or unknown (`details.attemptsLeft` before a block).",
    403: "Refused: see the code.",
    404: "Not found.",
    405: "Another method is expected on this path (see `Allow`).",
    408: "The request did not arrive in time (a limit on every connection).",
    410: "Gone: the payment link expired before it was paid.",
    413: "The body is larger than {limit} bytes (a limit on every connection).",
    429: "Too many requests: retry after `Retry-After` seconds.",
    431: "The request's headers are too large or too many (a limit on every connection).",
    500: "An internal error (reported in the service's log under the request id).",
    503: "The service is busy or unavailable: retry after `Retry-After` seconds.",
}
# What any request can be answered, whatever its operation: the limits on every connection,
# a wrong method, the rate limit and the faults (which can be injected on any route).
_EVERY_OPERATION: dict[int, tuple[str, ...]] = {
    400: ("BAD_REQUEST",),
    405: ("METHOD_NOT_ALLOWED",),
    408: ("REQUEST_TIMEOUT",),
    429: ("RATE_LIMIT_EXCEEDED",),
    431: ("REQUEST_HEADER_FIELDS_TOO_LARGE",),
    500: ("INTERNAL_ERROR",),
    503: ("SERVICE_UNAVAILABLE",),
}
_WITH_A_BODY: dict[int, tuple[str, ...]] = {413: ("PAYLOAD_TOO_LARGE",)}
_WITH_A_KEY: dict[int, tuple[str, ...]] = {
    401: ("MISSING_ACCESS_TOKEN", "INVALID_ACCESS_TOKEN"),
    403: ("IP_BLOCKED", "KEY_DISABLED", "IP_NOT_ALLOWED"),
}
_WRITE: dict[int, tuple[str, ...]] = {403: ("INSUFFICIENT_SCOPE",)}
_RETRY_AFTER = (429, 503)


def error_codes(spec: OperationSpec) -> dict[int, tuple[str, ...]]:
    """Every error status an operation can answer with, and the codes under each."""
    groups = [_EVERY_OPERATION]
    if spec.body is not None:
        groups.append(_WITH_A_BODY)
    if spec.access != "public":
        groups.append(_WITH_A_KEY)
    if spec.access == "write":
        groups.append(_WRITE)
    groups.append(dict(spec.errors))
    merged: dict[int, tuple[str, ...]] = {}
    for group in groups:
        for status, codes in group.items():
            merged[status] = tuple(dict.fromkeys((*merged.get(status, ()), *codes)))
    return dict(sorted(merged.items()))


def _components(max_body_bytes: int) -> Json:
    envelope_error = _object(
        {"code": {"type": "string"}, "message": {"type": "string", "minLength": 1}},
        {"details": {"type": "object"}},
    )
    return {
        "securitySchemes": {
            SECURITY_SCHEME: {"type": "apiKey", "in": "header", "name": "X-Access-Token",
                              "description": "An API key; sandbox and production keys differ."},
        },
        "headers": {
            "X-Request-Id": {"required": True, "schema": {"type": "string", "pattern": "^req_"},
                             "description": "The `requestId` of the answer, for support."},
            "Retry-After": {"required": True, "schema": {"type": "string", "pattern": "^[0-9]+$"},
                            "description": "Seconds to wait before retrying."},
            "Allow": {"schema": {"type": "string"}, "description": "The methods of this path."},
        },
        "schemas": {
            "Error": _object(
                {"success": {"const": False}, "error": envelope_error,
                 "requestId": {"type": "string", "pattern": "^req_"}},
            ),
            "Meta": {"type": "object", "required": ["timestamp"],
                     "properties": {"timestamp": _TIMESTAMP}},
            "PayloadTooLargeDetails": {"type": "object",
                                       "properties": {"limit": {"const": max_body_bytes}}},
            "OrderEvent": _ORDER_EVENT,
        },
    }  # fmt: skip


def _header_refs(*names: str) -> Json:
    return {name: {"$ref": f"#/components/headers/{name}"} for name in names}


def _error_response(status: int, codes: tuple[str, ...], max_body_bytes: int) -> Json:
    error: Json = {"properties": {"code": {"enum": list(codes)}}}
    if status == 413:
        error["properties"]["details"] = {"$ref": "#/components/schemas/PayloadTooLargeDetails"}
    schema = {"allOf": [{"$ref": "#/components/schemas/Error"},
                        {"properties": {"error": error}}]}  # fmt: skip
    headers = ["X-Request-Id"]
    if status in _RETRY_AFTER:
        headers.append("Retry-After")
    if status == 405:
        headers.append("Allow")
    return {
        "description": f"{_ERRORS[status].format(limit=max_body_bytes)} Codes: {', '.join(codes)}.",
        "headers": _header_refs(*headers),
        "content": {_JSON: {"schema": schema}},
    }


def _success_response(spec: OperationSpec) -> Json:
    if spec.data is None:
        assert spec.media is not None, spec.summary
        media, schema = spec.media
        return {"description": spec.summary, "headers": _header_refs("X-Request-Id"),
                "content": {media: {"schema": schema}}}  # fmt: skip
    meta: Json = {"$ref": "#/components/schemas/Meta"}
    top: Json = {}
    if spec.totals:
        meta = {"allOf": [meta, {"type": "object", "required": list(_TOTALS),
                                 "properties": _TOTALS}]}  # fmt: skip
        top = _TOTALS
    envelope = _object(
        {"success": {"const": True}, "data": spec.data, "meta": meta,
         "requestId": {"type": "string", "pattern": "^req_"}, **top},
    )  # fmt: skip
    return {"description": spec.summary, "headers": _header_refs("X-Request-Id"),
            "content": {_JSON: {"schema": envelope}}}  # fmt: skip


# -- the document -----------------------------------------------------------------------------

_PARAM = re.compile(r"{([^}:]+)(?::[^}]+)?}")


def _more_specs() -> Mapping[str, OperationSpec]:
    """The specs kept in modules of their own (they build on this one's schemas)."""
    from oneclickdz.server.openapi_ocpay import OCPAY_SPECS
    from oneclickdz.server.openapi_topups import TOPUP_SPECS

    return {**TOPUP_SPECS, **OCPAY_SPECS}


class MissingSpec(LookupError):
    """A route the document cannot describe: building fails rather than document less."""


@dataclass(frozen=True)
class _Documented:
    method: str
    path: str
    name: str
    operation_id: str
    spec: OperationSpec
    alias_of: str | None


def _documented(routes: Iterable[BaseRoute]) -> list[_Documented]:
    found: list[_Documented] = []
    canonical: dict[str, str] = {}
    ids: set[str] = set()
    for route in routes:
        if not isinstance(route, Route) or not route.path.startswith(API_PREFIX):
            continue  # mounts (the reference's assets) and routes outside the API (metrics)
        spec = SPECS.get(route.name) or _more_specs().get(route.name)
        if spec is None:
            raise MissingSpec(f"route {route.path} ({route.name!r}) has no OpenAPI spec")
        if spec.tag not in TAGS:
            raise MissingSpec(f"route {route.path}: tag {spec.tag!r} is not one of {list(TAGS)}")
        path = _PARAM.sub(r"{\1}", route.path)
        for method in sorted((route.methods or set()) - {"HEAD"}):
            alias_of = canonical.get(route.name)
            operation_id = route.name if alias_of is None else f"{route.name}Alias"
            n = 2
            while operation_id in ids:
                operation_id, n = f"{route.name}Alias{n}", n + 1
            ids.add(operation_id)
            canonical.setdefault(route.name, f"{method} {path}")
            found.append(_Documented(method, path, route.name, operation_id, spec, alias_of))
    return found


def _operation(doc: _Documented, every: list[_Documented], max_body_bytes: int) -> Json:
    spec = doc.spec
    params: list[Json] = []
    for name in _PARAM.findall(doc.path):
        if name not in spec.path_params:
            raise MissingSpec(f"route {doc.path}: path parameter {name!r} has no schema")
        params.append({"name": name, "in": "path", "required": True,
                       "schema": spec.path_params[name]})  # fmt: skip
    params.extend(spec.query)
    description = spec.description
    if doc.alias_of is not None:
        description = f"The hyphenated spelling of `{doc.alias_of}`. {description}".strip()
    responses: Json = {"200": _success_response(spec)}
    if spec.links:
        responses["200"]["links"] = _links(spec, every)
    for status, codes in error_codes(spec).items():
        responses[str(status)] = _error_response(status, codes, max_body_bytes)
    operation: Json = {
        "operationId": doc.operation_id,
        "summary": spec.summary,
        "tags": [spec.tag],
        "parameters": params,
        "responses": responses,
    }
    if description:
        operation["description"] = description
    if spec.access == "public":
        operation["security"] = []
    if spec.body is not None:
        operation["requestBody"] = {
            "required": spec.body_required,
            "description": f"JSON, at most {max_body_bytes} bytes."
            + ("" if spec.body_required else " Optional: an empty body takes the defaults."),
            "content": {_JSON: {"schema": spec.body}},
        }
    if spec.extension:
        operation[EXTENSION] = True
    return operation


def _links(spec: OperationSpec, every: list[_Documented]) -> Json:
    links: Json = {}
    for label, (target, parameters) in spec.links.items():
        targets = [d for d in every if d.name == target]
        if not targets:
            raise MissingSpec(f"link {label!r}: no route named {target!r}")
        for d in targets:
            missing = set(parameters) - set(_PARAM.findall(d.path))
            if missing:
                raise MissingSpec(f"link {label!r}: {d.path} has no parameter {missing}")
            name = label if d.alias_of is None else f"{label}Hyphenated"
            links[name] = {"operationId": d.operation_id, "parameters": dict(parameters)}
    return links


_FINAL_STATUS = {
    "order.fulfilled": orders.FULFILLED,
    "order.partially_filled": orders.PARTIALLY_FILLED,
    "order.refunded": orders.REFUNDED,
}
_ORDER_EVENT: Json = _object(
    {
        "type": _EVENT_TYPES,
        "timestamp": {**_TIMESTAMP, "description": "When the order turned final."},
        "data": _object(
            {
                "orderId": _OBJECT_ID,
                "status": {"enum": list(_FINAL_STATUS.values())},
                "quantity": {"type": "integer", "minimum": 1, "maximum": orders.MAX_QUANTITY},
                "fulfilled_quantity": _COUNT,
                "price_per_card": _MONEY,
                "amount_charged": _MONEY,
                "amount_refunded": _MONEY,
                "time": {**_TIMESTAMP, "description": "When the order was placed."},
            },
            {"orderRef": {"type": "string"}},
        ),
    }
)
_WEBHOOK_HEADERS: tuple[tuple[str, Json, str], ...] = (
    ("webhook-id", {"type": "string", "pattern": "^evt_"},
     "The event id: the same on every delivery of the event (retries, duplicates, replays), "
     "so it is the key to deduplicate on."),
    ("webhook-timestamp", {"type": "string", "pattern": "^[0-9]+$"},
     "Seconds since the epoch when this delivery was signed; refuse one more than 5 minutes "
     "away from your clock."),
    ("webhook-signature", {"type": "string", "pattern": "^v1,"},
     "Space-separated `v1,<base64 HMAC-SHA256 of id.timestamp.body>`, one per secret that "
     "signs (two during a rotation's grace period); accept the delivery if one matches."),
)  # fmt: skip


def _webhooks() -> Json:
    """The webhooks the service sends (OpenAPI 3.1's top-level `webhooks`), one per type."""
    found: Json = {}
    for event_type, status in _FINAL_STATUS.items():
        name = "".join(part.title() for part in re.split(r"[._]", event_type))
        this: Json = {"type": {"const": event_type},
                      "data": {"properties": {"status": {"const": status}}}}  # fmt: skip
        body = {"allOf": [{"$ref": "#/components/schemas/OrderEvent"}, {"properties": this}]}
        found[event_type] = {"post": {
            "operationId": f"{name[0].lower()}{name[1:]}Webhook",
            "summary": f"An order turned {status}",
            "description": "Sent, signed (Standard Webhooks), to every enabled endpoint of the "
            "order's key that takes this type. Verify it with the `standardwebhooks` library "
            "or `oneclickdz.webhooks.verify`. It carries no card codes: fetch them with "
            "checkOrder. Delivery is at least once; redirects are not followed.",
            "tags": ["webhooks"],
            "security": [],
            "parameters": [{"name": header, "in": "header", "required": True, "schema": schema,
                            "description": text} for header, schema, text in _WEBHOOK_HEADERS],
            "requestBody": {"required": True, "content": {_JSON: {"schema": body}}},
            "responses": {
                "2XX": {"description": "Received: it is not sent again."},
                "410": {"description": "Gone: the endpoint is disabled; nothing more is sent."},
                "default": {"description": "Anything else, or no answer within the timeout "
                            "(10 s by default): sent again later, with exponential backoff and "
                            "jitter, for about 24 h."},
            },
            EXTENSION: True,
        }}  # fmt: skip
    return found


def build_document(routes: Iterable[BaseRoute], *, max_body_bytes: int) -> Json:
    """The OpenAPI 3.1 document of these routes; `MissingSpec` for a route it cannot describe."""
    documented = _documented(routes)
    paths: Json = {}
    for doc in documented:
        paths.setdefault(doc.path, {})[doc.method.lower()] = _operation(
            doc, documented, max_body_bytes
        )
    tags = {d.spec.tag for d in documented}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "OneClickDZ API v3 (local service)",
            "version": "3",
            "description": "Gift cards, balance and account of the OneClickDZ v3 API, as this "
            "service implements them. Every answer is an envelope: `{success, data, meta, "
            "requestId}` or `{success: false, error: {code, message, details?}, requestId}`, "
            "with an `X-Request-Id` header. What this service adds (signed order webhooks: "
            f"the `webhooks` tag) is marked `{EXTENSION}: true`: it is not in OneClickDZ's API.",
        },
        "servers": [{"url": "/"}],
        "security": [{SECURITY_SCHEME: []}],
        "tags": [{"name": n, "description": t} for n, t in TAGS.items() if n in tags],
        "paths": paths,
        **({"webhooks": _webhooks()} if "webhooks" in tags else {}),
        "components": _components(max_body_bytes),
    }


# -- serving it -------------------------------------------------------------------------------

_DOCS_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>OneClickDZ API v3 reference</title>
<link rel="stylesheet" href="docs/assets/swagger-ui.css">
<link rel="icon" type="image/png" href="docs/assets/favicon-32x32.png" sizes="32x32">
</head>
<body>
<div id="swagger-ui"></div>
<script src="docs/assets/swagger-ui-bundle.js"></script>
<script src="docs/assets/swagger-ui-standalone-preset.js"></script>
<script>
window.onload = function () {
  window.ui = SwaggerUIBundle({
    url: "openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
    layout: "BaseLayout"
  });
};
</script>
</body>
</html>
"""


def with_reference(routes: Sequence[BaseRoute], *, max_body_bytes: int) -> list[BaseRoute]:
    """`routes` plus the reference: the document, the docs page and the page's assets.

    The document is built here, once, from all the routes: a route without a spec fails now.
    """
    body = b""

    async def openapi_json(request: Request) -> Response:
        return Response(body, media_type=_JSON, headers={"x-request-id": request_id.get() or ""})

    async def docs_page(request: Request) -> Response:
        return HTMLResponse(_DOCS_PAGE, headers={"x-request-id": request_id.get() or ""})

    documented = [
        *routes,
        Route(OPENAPI_PATH, openapi_json, methods=["GET"], name="openapi"),
        Route(DOCS_PATH, docs_page, methods=["GET"], name="docs"),
    ]
    body = orjson.dumps(build_document(documented, max_body_bytes=max_body_bytes))
    assets = Mount(ASSETS_PATH, app=StaticFiles(directory=ASSETS_DIR), name="docs-assets")
    return [*documented, assets]
