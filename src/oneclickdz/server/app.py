"""The HTTP face of the service: Starlette routes under /v3, in the documented envelopes.

Handlers are thin: authenticate, hand the request parts to the `Backend`, wrap the result.
Every response — success, refusal, unknown path, wrong method, bad JSON, oversize body,
internal error or injected fault — carries a `requestId` and an `X-Request-Id` header.
"""

from __future__ import annotations

import itertools
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from oneclickdz.server.backend import Backend
from oneclickdz.server.errors import ServiceError, validation
from oneclickdz.server.faults import FaultInjector, FaultRule
from oneclickdz.server.formats import now_iso
from oneclickdz.server.logs import request_id
from oneclickdz.server.store import KeyRecord, StoreBusy

log = logging.getLogger("oneclickdz.server.app")

MAX_BODY_BYTES = 64 * 1024
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
    payload: dict[str, Any] = {"code": error.code, "message": error.message}
    if error.details is not None:
        payload["details"] = error.details
    rid = request_id.get() or ""
    body = {"success": False, "error": payload, "requestId": rid}
    return Response(
        orjson.dumps(body), status_code=error.status, media_type=_JSON,
        headers={**error.headers, "x-request-id": rid},
    )  # fmt: skip


_REQUEST_PREFIX = secrets.token_hex(3)
_request_numbers = itertools.count(1)


def _new_request_id() -> str:
    """`req_<unix seconds>_<process tag><sequence>`: unique, and cheap (no system call)."""
    return f"req_{int(time.time())}_{_REQUEST_PREFIX}{next(_request_numbers):x}"


class RequestIdMiddleware:
    """Outermost layer: the request id (the envelopes and their `X-Request-Id` header read it
    from the context), and the one report of an internal error."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        token = request_id.set(_new_request_id())
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
    """The route handlers, bound to one `Backend`."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    def key(self, request: Request, write: bool = False) -> KeyRecord:
        client = request.client
        return self.backend.auth.authenticate(
            request.headers.get("x-access-token"), client.host if client else "", write
        )

    async def ping(self, request: Request) -> Response:
        return success(self.backend.ping())

    async def validate(self, request: Request) -> Response:
        return success(self.backend.validate(self.key(request)))

    async def balance(self, request: Request) -> Response:
        return success(self.backend.balance(self.key(request)))

    async def transactions(self, request: Request) -> Response:
        return success(self.backend.transactions(self.key(request), request.query_params))

    async def catalog(self, request: Request) -> Response:
        self.key(request)
        data, totals = self.backend.catalog()
        # The guide shows the totals in `meta`, the API reference beside `success`: give both.
        return success(data, totals, **totals)

    async def check_product(self, request: Request) -> Response:
        key = self.key(request)
        return success(self.backend.check_product(key, request.path_params["product_id"]))

    async def place_order(self, request: Request) -> Response:
        key = self.key(request, write=True)
        body = await read_json(request)
        return success(await self.backend.place_order(key, body))

    async def check_order(self, request: Request) -> Response:
        key = self.key(request)
        return success(self.backend.check_order(key, request.path_params["order_id"]))

    async def list_orders(self, request: Request) -> Response:
        return success(self.backend.list_orders(self.key(request), request.query_params))

    def routes(self) -> list[Route]:
        """The routes, the busiest first (Starlette tries them in order)."""
        get, post = ["GET"], ["POST"]
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
            # the hyphenated spellings some pages of the docs use
            ("/v3/gift-cards/check-order/{order_id}", self.check_order, get, "checkOrder"),
            ("/v3/gift-cards/place-order", self.place_order, post, "placeOrder"),
            ("/v3/gift-cards/check-product/{product_id}", self.check_product, get, "checkProduct"),
        ]
        return [Route(path, fn, methods=m, name=name) for path, fn, m, name in table]


Handler = Callable[[Request], Awaitable[Response]]


async def read_json(request: Request) -> Any:
    """The request body as JSON, refusing oversize bodies before reading them whole."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise _too_large()
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise _too_large()
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        raise validation("body", None, "body must be valid JSON") from None


def _too_large() -> ServiceError:
    return ServiceError(
        413, "PAYLOAD_TOO_LARGE", f"request body exceeds {MAX_BODY_BYTES} bytes",
        {"limit": MAX_BODY_BYTES},
    )  # fmt: skip


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
        error.headers = dict(exc.headers or {})
    else:
        error = ServiceError(exc.status_code, "ERR_HTTP", str(exc.detail))
    return failure(error)


async def _unhandled(request: Request, exc: Exception) -> Response:
    return failure(_internal())


# -- the application --------------------------------------------------------------------------


def create_app(
    backend: Backend,
    faults: list[FaultRule] | None = None,
    lifespan: Callable[[Starlette], Any] | None = None,
) -> ASGIApp:
    """The service as an ASGI app: routes, envelopes, request ids, and faults when asked."""
    app = Starlette(
        routes=Handlers(backend).routes(),
        exception_handlers={
            ServiceError: _service_error,
            StoreBusy: _store_busy,
            HTTPException: _http_error,
            Exception: _unhandled,
        },
        lifespan=lifespan,
    )
    inner: ASGIApp = app
    if faults:
        routes = app.router.routes

        def route_name(scope: Scope) -> str | None:
            for route in routes:
                match, _ = route.matches(scope)
                if match is Match.FULL and isinstance(route, Route):
                    return route.name
            return None

        inner = FaultInjector(app, faults, backend.chance.faults, route_name, failure)
    return RequestIdMiddleware(inner)
