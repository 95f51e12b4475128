"""Fixtures and helpers for the SDK's tests.

A test module imports the `*_fixture` functions it uses (pytest finds them by their `name`).

Most SDK tests talk to the real service (tests/conftest.py). `StubAPI` is for answers the real
service never gives (an inconsistent final order, an unknown status, the docs' other spellings):
a real Starlette app on uvicorn in a thread, on a free loopback port, answering scripted orders.
"""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, Self

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from oneclickdz import AiohttpTransport, AsyncClient, Client, PollPolicy
from oneclickdz.server.testing import Service, free_port

PSN = "507f1f77bcf86cd799439011"
FAST = PollPolicy(interval=0.1, max_attempts=100)
"""Polls every 0.1 s: the test service fulfils within 0.2-0.5 s."""

TRANSPORTS = ["httpx", "aiohttp"]


@pytest.fixture(name="anyio_backend")
def anyio_backend_fixture() -> str:
    return "asyncio"


@pytest.fixture(name="client")
def client_fixture(service: Service, sandbox_key: str) -> Iterator[Client]:
    """A sync client of the shared service, with a sandbox key on a fresh account."""
    with Client(sandbox_key, base_url=service.base_url) as c:
        yield c


@pytest.fixture(name="async_client", params=TRANSPORTS)
async def async_client_fixture(
    request: pytest.FixtureRequest, service: Service, sandbox_key: str
) -> AsyncIterator[AsyncClient]:
    """An async client of the shared service, once over httpx and once over aiohttp."""
    transport = AiohttpTransport() if request.param == "aiohttp" else None
    async with AsyncClient(sandbox_key, base_url=service.base_url, transport=transport) as c:
        yield c


def faulty(
    service_factory: Callable[..., Service], rules: str, *, rate_limit: int | None = None
) -> Service:
    """A dedicated service that injects `rules` (see `oneclickdz serve --faults`)."""
    args = ["--faults", rules]
    if rate_limit is not None:
        args += ["--rate-limit", str(rate_limit)]
    return service_factory(extra_args=args)


def envelope(data: Any) -> dict[str, Any]:
    return {"success": True, "data": data, "meta": {"timestamp": "2025-10-29T01:00:00.000Z"}}


class ThreadedApp:
    """A Starlette app on uvicorn in a thread, on a free loopback port: `start()`, `stop()`."""

    def __init__(self, app: Starlette) -> None:
        self.port = free_port()
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="error", lifespan="off"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v3"

    def start(self) -> Self:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{type(self).__name__} did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)


class StubAPI(ThreadedApp):
    """Answers placeOrder with `next_order_id` and checkOrder with scripted states, in order.

    `script(order_id, state1, state2, ...)`: each checkOrder returns the next state; the last one
    repeats. Every request is recorded in `calls` as (method, path).
    """

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self._states: dict[str, list[dict[str, Any]]] = {}
        self.next_order_id = "stub-order-1"
        self.raw: dict[str, Any] = {}
        app = Starlette(
            routes=[
                Route("/v3/gift-cards/placeOrder", self._place, methods=["POST"]),
                Route("/v3/gift-cards/checkOrder/{order_id}", self._check),
                Route("/v3/{rest:path}", self._catalog_like),
            ]
        )
        super().__init__(app)

    def reset(self) -> None:
        self.calls.clear()
        self._states.clear()
        self.next_order_id = "stub-order-1"
        self.raw.clear()

    def script(self, order_id: str, *states: dict[str, Any]) -> None:
        self._states[order_id] = list(states)

    async def _place(self, request: Request) -> JSONResponse:
        self.calls.append(("POST", request.url.path))
        return JSONResponse(envelope({"orderId": self.next_order_id}))

    async def _check(self, request: Request) -> JSONResponse:
        self.calls.append(("GET", request.url.path))
        states = self._states.get(request.path_params["order_id"])
        if not states:
            error = {"code": "NOT_FOUND", "message": "Order not found"}
            return JSONResponse({"success": False, "error": error}, status_code=404)
        state = states.pop(0) if len(states) > 1 else states[0]
        return JSONResponse(envelope(state))

    async def _catalog_like(self, request: Request) -> JSONResponse:
        """Any other path answers the raw body registered in `raw[path]` (docs' variants)."""
        self.calls.append((request.method, request.url.path))
        body = self.raw.get(request.path_params["rest"])
        if body is None:
            return JSONResponse({"success": False, "error": {"code": "NOT_FOUND"}}, 404)
        return JSONResponse(body)


@pytest.fixture(name="stub_server", scope="session")
def stub_server_fixture() -> Iterator[StubAPI]:
    stub = StubAPI().start()
    yield stub
    stub.stop()


@pytest.fixture(name="stub_api")
def stub_api_fixture(stub_server: StubAPI) -> StubAPI:
    """The stub API, emptied for this test."""
    stub_server.reset()
    return stub_server


def handling(order_id: str, quantity: int = 2) -> dict[str, Any]:
    """A HANDLING order as the docs show it."""
    return {
        "_id": order_id,
        "status": "HANDLING",
        "quantity": quantity,
        "product": PSN,
        "type": "type_001",
        "time": "2025-10-29T01:00:00.000Z",
    }


def final(
    order_id: str,
    status: str,
    *,
    quantity: int,
    fulfilled: int,
    price: float = 490,
    cards: int | None = None,
    amount: float | None = None,
) -> dict[str, Any]:
    """A final order; `cards` and `amount` default to the consistent values."""
    n_cards = fulfilled if cards is None else cards
    return {
        **handling(order_id, quantity),
        "status": status,
        "fulfilled_quantity": fulfilled,
        "fulfilled_amount": fulfilled * price if amount is None else amount,
        "price_per_card": price,
        "cards": [
            {"value": f"CODE-{order_id}-{i:04d}-SECRET", "serial": f"99887766{i:04d}"}
            for i in range(n_cards)
        ],
    }
