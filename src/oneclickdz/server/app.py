"""The HTTP face of the service: Starlette routes under /v3, in the documented envelopes.

Handlers are thin: authenticate, hand the request parts to the `Backend`, wrap the result.
Every response — success, refusal, unknown path, wrong method, bad JSON, oversize body, body
too slow, internal error or injected fault — carries a `requestId` and an `X-Request-Id` header.
There are no redirects (`/v3/ping/` is a 404). Bodies are read within `protocol.Limits`
(`max_body_bytes`, `body_timeout`); the limits on request heads and idle connections are
enforced below the app, in `protocol`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from oneclickdz.server.backend import Backend
from oneclickdz.server.errors import ServiceError, validation
from oneclickdz.server.faults import FaultInjector, FaultRules
from oneclickdz.server.formats import now_iso
from oneclickdz.server.logs import new_request_id, request_id
from oneclickdz.server.metrics import ServiceMetrics
from oneclickdz.server.openapi import with_reference
from oneclickdz.server.paypage import PayPage
from oneclickdz.server.protocol import BodyTooLarge, Limits, error_body, read_body
from oneclickdz.server.store import KeyRecord, StoreBusy, TopupKind

log = logging.getLogger("oneclickdz.server.app")

_JSON = "application/json"


# -- envelopes --------------------------------------------------------------------------------


def success(data: Any, meta: dict[str, Any] | None = None, **top: Any) -> Response:
    """The success envelope; `meta` adds to the timestamp, `top` sits beside `success`."""
    rid = request_id.get() or ""
    body: dict[str, Any] = {
        "success": True,
        "data": data,
        "meta": {"timestamp": now_iso(), **(meta or {})},
        "requestId": rid,
        **top,
    }
    return Response(orjson.dumps(body), media_type=_JSON, headers={"x-request-id": rid})


def failure(error: ServiceError) -> Response:
    rid = request_id.get() or ""
    return Response(
        error_body(error, rid), status_code=error.status, media_type=_JSON,
        headers={**error.headers, "x-request-id": rid},
    )  # fmt: skip


class RequestIdMiddleware:
    """Outermost layer: the request id (the envelopes and their `X-Request-Id` header read it
    from the context), and the one report of an internal error."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        token = request_id.set(new_request_id())
        scope["oneclickdz.raw_send"] = send
        try:
            await self.app(scope, receive, send)
        except Exception:
            # Starlette has answered 500 in the envelope, then re-raised so it gets reported:
            # report it here, once, with the request id, rather than let the server print it.
            log.exception("internal error", extra={"path": scope.get("path")})
        finally:
            request_id.reset(token)


def _internal() -> ServiceError:
    return ServiceError(500, "INTERNAL_ERROR", "Internal server error")


# -- handlers ---------------------------------------------------------------------------------


class Handlers:
    """The route handlers, bound to one `Backend`, reading bodies within `limits`."""

    def __init__(self, backend: Backend, limits: Limits | None = None) -> None:
        self.backend = backend
        self.limits = limits or Limits()

    async def key(self, request: Request, write: bool = False) -> KeyRecord:
        client = request.client
        return await self.backend.auth.authenticate(
            request.headers.get("x-access-token"), client.host if client else "", write
        )

    async def ping(self, request: Request) -> Response:
        return success(self.backend.ping())

    async def validate(self, request: Request) -> Response:
        return success(self.backend.validate(await self.key(request)))

    async def balance(self, request: Request) -> Response:
        return success(await self.backend.balance(await self.key(request)))

    async def transactions(self, request: Request) -> Response:
        key = await self.key(request)
        return success(await self.backend.transactions(key, request.query_params))

    async def catalog(self, request: Request) -> Response:
        await self.key(request)
        data, totals = await self.backend.catalog()
        # The guide shows the totals in `meta`, the API reference beside `success`: give both.
        return success(data, totals, **totals)

    async def check_product(self, request: Request) -> Response:
        key = await self.key(request)
        return success(await self.backend.check_product(key, request.path_params["product_id"]))

    async def place_order(self, request: Request) -> Response:
        key = await self.key(request, write=True)
        body = await read_json(request, self.limits)
        return success(await self.backend.place_order(key, body))

    async def check_order(self, request: Request) -> Response:
        key = await self.key(request)
        return success(await self.backend.check_order(key, request.path_params["order_id"]))

    async def list_orders(self, request: Request) -> Response:
        key = await self.key(request)
        return success(await self.backend.list_orders(key, request.query_params))

    # Webhook endpoints: an extension of this service, not in OneClickDZ's API.

    async def list_webhooks(self, request: Request) -> Response:
        return success(await self.backend.list_webhooks(await self.key(request)))

    async def add_webhook(self, request: Request) -> Response:
        key = await self.key(request, write=True)
        body = await read_json(request, self.limits)
        return success(await self.backend.add_webhook(key, body))

    async def remove_webhook(self, request: Request) -> Response:
        key = await self.key(request, write=True)
        endpoint_id = request.path_params["id"]
        return success(await self.backend.remove_webhook(key, endpoint_id))

    async def rotate_secret(self, request: Request) -> Response:
        key = await self.key(request, write=True)
        body = await read_json(request, self.limits, allow_empty=True)
        endpoint_id = request.path_params["id"]
        return success(await self.backend.rotate_webhook_secret(key, endpoint_id, body))

    # Mobile top-ups and internet recharges.

    async def mobile_plans(self, request: Request) -> Response:
        await self.key(request)
        return success(self.backend.topups.mobile_plans())

    async def internet_products(self, request: Request) -> Response:
        await self.key(request)
        return success(self.backend.topups.internet_products(request.query_params))

    async def internet_check_number(self, request: Request) -> Response:
        await self.key(request)
        return success(self.backend.topups.check_number(request.query_params))

    def _topup_routes(self, kind: TopupKind) -> list[tuple[str, Handler, list[str], str]]:
        """send, check-id, check-ref and list of one kind of top-up."""
        prefix = "mobile" if kind is TopupKind.MOBILE else "internet"
        topups = self.backend.topups

        async def send(request: Request) -> Response:
            key = await self.key(request, write=True)
            return success(await topups.send(key, kind, await read_json(request, self.limits)))

        async def check_id(request: Request) -> Response:
            key = await self.key(request)
            return success(await topups.check(key, kind, topup_id=request.path_params["id"]))

        async def check_ref(request: Request) -> Response:
            key = await self.key(request)
            return success(await topups.check(key, kind, ref=request.path_params["ref"]))

        async def list_topups(request: Request) -> Response:
            key = await self.key(request)
            return success(await topups.list(key, kind, request.query_params))

        get, post = ["GET"], ["POST"]
        return [
            (f"/v3/{prefix}/check-id/{{id}}", check_id, get, f"{prefix}CheckId"),
            (f"/v3/{prefix}/send", send, post, f"{prefix}Send"),
            (f"/v3/{prefix}/check-ref/{{ref}}", check_ref, get, f"{prefix}CheckRef"),
            (f"/v3/{prefix}/list", list_topups, get, f"{prefix}List"),
        ]

    async def not_implemented(self, request: Request) -> Response:
        """A documented route this stand-in does not serve: 501, unlike an unknown path."""
        raise ServiceError(
            501, "NOT_IMPLEMENTED",
            f"{request.method} {request.url.path} is documented by OneClickDZ but not served by "
            "this stand-in (API v2 is deprecated: use /v3)",
        )  # fmt: skip

    # OCPay payment links (the payer's page is `paypage`, outside /v3).

    async def create_link(self, request: Request) -> Response:
        key = await self.key(request, write=True)
        body = await read_json(request, self.limits)
        base_url = str(request.base_url)  # as the client reached us: its Host, our scheme
        return success(await self.backend.payments.create_link(key, body, base_url))

    async def check_payment(self, request: Request) -> Response:
        key = await self.key(request)
        return success(await self.backend.payments.check_payment(key, request.path_params["ref"]))

    def routes(self) -> list[Route]:
        """The routes, the busiest first (Starlette tries them in order)."""
        get, post, delete = ["GET"], ["POST"], ["DELETE"]
        mobile = self._topup_routes(TopupKind.MOBILE)
        table: list[tuple[str, Handler, list[str], str]] = [
            ("/v3/gift-cards/checkOrder/{order_id}", self.check_order, get, "checkOrder"),
            ("/v3/gift-cards/placeOrder", self.place_order, post, "placeOrder"),
            ("/v3/gift-cards/checkProduct/{product_id}", self.check_product, get, "checkProduct"),
            ("/v3/gift-cards/list", self.list_orders, get, "list"),
            ("/v3/gift-cards/catalog", self.catalog, get, "catalog"),
            ("/v3/account/balance", self.balance, get, "balance"),
            ("/v3/account/transactions", self.transactions, get, "transactions"),
            ("/v3/validate", self.validate, get, "validate"),
            ("/v3/ping", self.ping, get, "ping"),
            ("/v3/webhooks", self.list_webhooks, get, "listWebhooks"),
            ("/v3/webhooks", self.add_webhook, post, "createWebhook"),
            ("/v3/webhooks/{id}", self.remove_webhook, delete, "deleteWebhook"),
            ("/v3/webhooks/{id}/rotate-secret", self.rotate_secret, post, "rotateWebhookSecret"),
            # the hyphenated spellings some pages of the docs use
            ("/v3/gift-cards/check-order/{order_id}", self.check_order, get, "checkOrder"),
            ("/v3/gift-cards/place-order", self.place_order, post, "placeOrder"),
            ("/v3/gift-cards/check-product/{product_id}", self.check_product, get, "checkProduct"),
            *mobile,
            ("/v3/mobile/plans", self.mobile_plans, get, "mobilePlans"),
            ("/v3/mobile/check/{id}", mobile[0][1], get, "mobileCheckId"),  # the changelog's
            *self._topup_routes(TopupKind.INTERNET),
            ("/v3/internet/products", self.internet_products, get, "internetProducts"),
            ("/v3/internet/check-number", self.internet_check_number, get, "internetCheckNumber"),
            ("/v3/ocpay/createLink", self.create_link, post, "createLink"),
            ("/v3/ocpay/checkPayment/{ref}", self.check_payment, get, "checkPayment"),
            ("/v2/{path:path}", self.not_implemented, ANY_METHOD, "notImplemented"),
        ]
        return [Route(path, fn, methods=m, name=name) for path, fn, m, name in table]


Handler = Callable[[Request], Awaitable[Response]]
ANY_METHOD = ["GET", "POST", "PUT", "PATCH", "DELETE"]


async def read_json(request: Request, limits: Limits, allow_empty: bool = False) -> Any:
    """The request body as JSON: refused (413) when over `max_body_bytes`, before it is read
    whole when its length is declared; 408 unless it arrives whole within `body_timeout`.
    An empty body is None where `allow_empty` (the body is optional), else invalid JSON."""
    try:
        body = await read_body(request, limits.max_body_bytes, limits.body_timeout)
    except BodyTooLarge:
        raise _too_large(limits.max_body_bytes) from None
    except TimeoutError:
        raise ServiceError(
            408, "REQUEST_TIMEOUT",
            f"the request body did not arrive within {limits.body_timeout:g} s",
            {"timeout": limits.body_timeout},
            headers={"Connection": "close"},  # the rest of the body is not worth waiting for
        ) from None  # fmt: skip
    if allow_empty and not body.strip():
        return None
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        raise validation("body", None, "body must be valid JSON") from None


def _too_large(limit: int) -> ServiceError:
    return ServiceError(
        413, "PAYLOAD_TOO_LARGE", f"request body exceeds {limit} bytes", {"limit": limit}
    )


# -- errors -----------------------------------------------------------------------------------


async def _service_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ServiceError)
    return failure(exc)


async def _store_busy(request: Request, exc: Exception) -> Response:
    return failure(
        ServiceError(
            503,
            "SERVICE_UNAVAILABLE",
            "The service is busy; retry shortly",
            None,
            headers={"Retry-After": "1"},
        )
    )


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        error = ServiceError(
            404, "NOT_FOUND", f"Route {request.method} {request.url.path} not found"
        )
    elif exc.status_code == 405:
        error = ServiceError(
            405, "METHOD_NOT_ALLOWED", f"Method {request.method} not allowed on {request.url.path}"
        )
        error.headers = {**(exc.headers or {}), **_allow(request)}
    else:
        error = ServiceError(exc.status_code, "ERR_HTTP", str(exc.detail))
    return failure(error)


def _allow(request: Request) -> dict[str, str]:
    """`Allow` with the methods of every route of the path: Starlette names only those of the
    first route it found, and a path may have one route per method (/v3/webhooks)."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        if not isinstance(route, Route) or not route.methods:
            continue
        if route.matches(request.scope)[0] is not Match.NONE:
            methods |= route.methods
    return {"Allow": ", ".join(sorted(methods))} if methods else {}


async def _client_disconnected(request: Request, exc: Exception) -> Response:
    """The client left before sending its whole body: nothing was done, nobody to answer."""
    log.info("client disconnected", extra={"path": request.url.path})
    return Response(status_code=499)  # never sent: the server drops it


async def _unhandled(request: Request, exc: Exception) -> Response:
    return failure(_internal())


# -- the application --------------------------------------------------------------------------


def create_app(
    backend: Backend,
    faults: FaultRules | None = None,
    lifespan: Callable[[Starlette], Any] | None = None,
    metrics: ServiceMetrics | None = None,
    limits: Limits | None = None,
) -> ASGIApp:
    """The service as an ASGI app: routes, envelopes, request ids, faults when asked, and
    `/metrics` with every request counted when `metrics` is given."""
    body_limit = (limits or Limits()).max_body_bytes
    api = with_reference(Handlers(backend, limits).routes(), max_body_bytes=body_limit)
    pay_page = PayPage(backend.payments, backend.vault, limits).routes()  # no key, not /v3
    app = Starlette(
        routes=[*api, *pay_page],
        exception_handlers={
            ServiceError: _service_error,
            StoreBusy: _store_busy,
            HTTPException: _http_error,
            ClientDisconnect: _client_disconnected,
            Exception: _unhandled,
        },
        lifespan=lifespan,
    )
    app.router.redirect_slashes = False  # `/v3/ping/` is unknown (404), not a bare 307
    if metrics is not None:
        app.router.routes.append(metrics.route())  # last: the API's routes are tried first
    routes = app.router.routes

    def route_name(scope: Scope) -> str | None:
        for route in routes:
            match, _ = route.matches(scope)
            if match is Match.FULL and isinstance(route, Route):
                return route.name
        return None

    # Always in place, so `faults.set()` works while the service runs; idle without rules.
    rules = faults if faults is not None else FaultRules()
    inner: ASGIApp = FaultInjector(app, rules, backend.chance.faults, route_name, failure)
    if metrics is not None:  # inside the request id, which needs the server's own `send`
        inner = metrics.middleware(inner, app.router.routes, unfaulted=app)
    return RequestIdMiddleware(inner)
