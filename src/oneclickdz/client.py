# ruff: noqa: ASYNC109 - `timeout` is the HTTP timeout of one request, not a cancel scope
"""`Client` and `AsyncClient`, with their resource groups `gift_cards` and `account` (and, from
`topups`, `mobile`, `internet` and `ocpay`).

Both drive the same `Call`s (`_endpoints`), the same retry state (`_base.CallState`) and the same
wait bookkeeping (`polling.PollRun`); the only difference is how they send and how they sleep.
Every wait, of an order, a top-up or a payment, is the client's one `_poll` loop.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import replace
from types import TracebackType
from typing import Any, Self, TypeVar

import anyio

from . import _endpoints as api
from ._base import DEFAULT_MAX_RETRIES, DEFAULT_TIMEOUT, BaseClient, Call, Recovered
from ._base import timed as _timed
from ._endpoints import DateLike
from ._transport import AsyncHTTPXTransport, AsyncTransport, HTTPXTransport, Transport
from .errors import OneClickDZError
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
from .outcome import Outcome
from .polling import Pollable, PollPolicy, PollRun
from .topups import AsyncInternet, AsyncMobile, AsyncOCPay, Internet, Mobile, OCPay

__all__ = ["AsyncClient", "Client"]

logger = logging.getLogger("oneclickdz")

T = TypeVar("T")
S = TypeVar("S", bound=Pollable)

OnUpdate = Callable[[Order], object]
AsyncOnUpdate = Callable[[Order], Awaitable[object] | object]
# Every check of a wait: the run so far (attempts, elapsed) and what the check gave, the order or
# the transient error that used the check up (a progress display needs both).
OnCheck = Callable[[PollRun, Order | OneClickDZError], object]


class _NotGiven:
    def __repr__(self) -> str:
        return "NOT_GIVEN"


NOT_GIVEN: Any = _NotGiven()


def _placement(product_id: str, type_id: str, quantity: int, ref: str | None) -> PlaceOrderRequest:
    return PlaceOrderRequest(product_id=product_id, type_id=type_id, quantity=quantity, ref=ref)


def _log_placed(placed: PlacedOrder, request: PlaceOrderRequest) -> None:
    logger.info(
        "order placed order_id=%s ref=%s product_id=%s type_id=%s quantity=%d recovered=%s "
        "request_id=%s",
        placed.order_id,
        placed.order_ref,  # the ref sent: the caller's or the automatic one
        request.product_id,
        request.type_id,
        request.quantity,
        placed.recovered,
        placed.request_id,
    )


# =========================================================================== sync


class Client(BaseClient):
    """Synchronous client of the OneClickDZ v3 API.

    `api_key` and `base_url` default to $ONECLICKDZ_API_KEY and $ONECLICKDZ_BASE_URL (then
    https://api.oneclickdz.com/v3). `timeout` is per request, in seconds (None: none);
    `max_retries` bounds the automatic retries of transient failures. `poll_policy` is how
    `wait` and `process_order` poll when not told otherwise (default: the guide's 5 s loop). Use
    it as a context manager or call `close()`.
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        transport: Transport | None = None,
        poll_policy: PollPolicy | None = None,
    ) -> None:
        super().__init__(api_key, base_url, timeout, max_retries)
        self.poll_policy = poll_policy if poll_policy is not None else PollPolicy()
        self._transport: Transport = transport if transport is not None else HTTPXTransport()
        self._owns_transport = True
        self.gift_cards = GiftCards(self)
        self.account = Account(self)
        self.mobile = Mobile(self)
        self.internet = Internet(self)
        self.ocpay = OCPay(self)

    def with_options(
        self, *, timeout: float | None = NOT_GIVEN, max_retries: int | None = None
    ) -> Client:
        """A client with other defaults that shares this one's connections (close this one)."""
        options = self._options()
        if timeout is not NOT_GIVEN:
            options["timeout"] = timeout
        if max_retries is not None:
            options["max_retries"] = max_retries
        twin = Client(**options, transport=self._transport, poll_policy=self.poll_policy)
        twin._owns_transport = False
        return twin

    def ping(self, *, timeout: float | None = None) -> Health:
        """Whether the API is up (no key needed)."""
        return self._request(_timed(api.ping(), timeout))

    def validate(self, *, timeout: float | None = None) -> TokenInfo:
        """The key's owner, type (SANDBOX/PRODUCTION), scope and IP rules."""
        return self._request(_timed(api.validate(), timeout))

    def _request(self, call: Call[T]) -> T:
        state = self._start(call)
        while True:
            try:
                return state.finish(self._transport.send(state.request()))
            except OneClickDZError as exc:
                step = state.after_failure(exc)
                if isinstance(step, Recovered):
                    return step.value
                time.sleep(step)

    def _poll(
        self,
        call: Call[S],
        run: PollRun,
        on_update: Callable[[S], object] | None = None,
        on_check: Callable[[PollRun, S | OneClickDZError], object] | None = None,
    ) -> S:
        """Repeat `call` (a check) until what it reads is final; `run` keeps the count.

        Transient failures use up a check and the wait goes on; any other error ends it at once.
        """
        call = replace(call, max_retries=0)  # the policy does the retrying
        while True:
            try:
                state = self._request(call)
            except OneClickDZError as exc:
                run.record_error(exc)
                if on_check is not None:
                    on_check(run, exc)
            else:
                final = run.record(state)
                if on_check is not None:
                    on_check(run, state)
                if on_update is not None:
                    on_update(state)
                if final:
                    return state
            time.sleep(run.next_delay())

    def close(self) -> None:
        """Close the connections (unless this client shares another's, see `with_options`)."""
        if self._owns_transport:
            self._transport.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class GiftCards:
    """`client.gift_cards`: catalog, products, placing, checking, waiting for and listing orders."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def catalog(self, *, timeout: float | None = None) -> Catalog:
        """Every category and product (cache it: it changes rarely)."""
        return self._client._request(_timed(api.catalog(), timeout))

    def check_product(self, product_id: str, *, timeout: float | None = None) -> Product:
        """A product's types with your price and the live stock."""
        return self._client._request(_timed(api.check_product(product_id), timeout))

    def place_order(
        self,
        product_id: str,
        type_id: str,
        quantity: int,
        ref: str | None = None,
        *,
        timeout: float | None = None,
    ) -> PlacedOrder:
        """Buy `quantity` cards; the balance is charged now. Returns the new order's id and ref.

        Every placement carries a ref, so every placement is retried safely: give your own
        (unique per purchase, e.g. an invoice number, at most 100 characters), or one is made up
        for this call (`auto-` and 32 hex digits; there is no opt-out), the same for all its
        retries. If an attempt whose answer was lost had created the order, the retry meets
        DUPLICATED_REF and returns that order (`recovered` is true). `order_ref` is the ref used:
        keep it to reconcile. When the retries run out after the request may have arrived,
        PlacementUnknownError is raised; its `request.ref` is the ref used: place again with it
        (DuplicateRefError.order_id names the order if one exists), never without it.
        """
        request = _placement(product_id, type_id, quantity, ref)
        placed = self._client._request(_timed(api.place_order(request), timeout))
        _log_placed(placed, request)
        return placed

    def check_order(self, order_id: str, *, timeout: float | None = None) -> Order:
        """The order's current state (with its cards once final)."""
        return self._client._request(_timed(api.check_order(order_id), timeout))

    def list_orders_page(
        self,
        page: int = 1,
        *,
        page_size: int = 20,
        from_: DateLike | None = None,
        to: DateLike | None = None,
        timeout: float | None = None,
    ) -> Page[Order]:
        """One page of the order history."""
        call = api.orders_page(page, page_size, from_, to)
        return self._client._request(_timed(call, timeout))

    def list_orders(
        self,
        *,
        page_size: int = 100,
        from_: DateLike | None = None,
        to: DateLike | None = None,
        timeout: float | None = None,
    ) -> Iterator[Order]:
        """Every order of the history (optionally between `from_` and `to`), page after page."""
        return _iterate(
            lambda n: self.list_orders_page(
                n, page_size=page_size, from_=from_, to=to, timeout=timeout
            )
        )

    def wait(
        self,
        order_id: str,
        *,
        policy: PollPolicy | None = None,
        on_update: OnUpdate | None = None,
        on_check: OnCheck | None = None,
    ) -> Order:
        """Check the order until it is final and return it; `on_update` sees every state read,
        `on_check` every check with the run's progress (failed checks included).

        Transient failures use up a check and the wait goes on; any other error ends it at once.
        Raises PollTimeoutError (holding the last order seen) when the policy is used up.
        """
        run = PollRun(order_id, policy or self._client.poll_policy)
        return self._client._poll(api.check_order(order_id), run, on_update, on_check)

    def process_order(
        self,
        product_id: str,
        type_id: str,
        quantity: int,
        ref: str | None = None,
        *,
        policy: PollPolicy | None = None,
        on_update: OnUpdate | None = None,
    ) -> Outcome:
        """Place an order, wait until it is final, and return its checked Outcome.

        The placement is `place_order`'s: without a `ref`, one is made up (and retried safely).
        """
        placed = self.place_order(product_id, type_id, quantity, ref)
        order = self.wait(placed.order_id, policy=policy, on_update=on_update)
        return Outcome.from_order(order)


class Account:
    """`client.account`: balance and ledger."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def balance(self, *, timeout: float | None = None) -> Balance:
        """The account's balance, in DZD."""
        return self._client._request(_timed(api.balance(), timeout))

    def transactions_page(
        self,
        page: int = 1,
        *,
        page_size: int = 20,
        from_: DateLike | None = None,
        to: DateLike | None = None,
        timeout: float | None = None,
    ) -> Page[Transaction]:
        """One page of the ledger (`from_` and `to` go together)."""
        call = api.transactions_page(page, page_size, from_, to)
        return self._client._request(_timed(call, timeout))

    def transactions(
        self,
        *,
        page_size: int = 100,
        from_: DateLike | None = None,
        to: DateLike | None = None,
        timeout: float | None = None,
    ) -> Iterator[Transaction]:
        """Every ledger entry (optionally between `from_` and `to`), page after page."""
        return _iterate(
            lambda n: self.transactions_page(
                n, page_size=page_size, from_=from_, to=to, timeout=timeout
            )
        )


def _iterate(fetch: Callable[[int], Page[Any]]) -> Iterator[Any]:
    walk = api.PageWalk()
    while walk.next is not None:
        yield from walk.take(fetch(walk.next))


# =========================================================================== async


class AsyncClient(BaseClient):
    """Asynchronous client of the OneClickDZ v3 API; the same API as `Client`, awaited.

    Default transport: httpx. For hundreds of requests in flight pass
    `transport=AiohttpTransport()` (extra `fast`).
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        transport: AsyncTransport | None = None,
        poll_policy: PollPolicy | None = None,
    ) -> None:
        super().__init__(api_key, base_url, timeout, max_retries)
        self.poll_policy = poll_policy if poll_policy is not None else PollPolicy()
        self._transport: AsyncTransport = (
            transport if transport is not None else AsyncHTTPXTransport()
        )
        self._owns_transport = True
        self.gift_cards = AsyncGiftCards(self)
        self.account = AsyncAccount(self)
        self.mobile = AsyncMobile(self)
        self.internet = AsyncInternet(self)
        self.ocpay = AsyncOCPay(self)

    def with_options(
        self, *, timeout: float | None = NOT_GIVEN, max_retries: int | None = None
    ) -> AsyncClient:
        """A client with other defaults that shares this one's connections (close this one)."""
        options = self._options()
        if timeout is not NOT_GIVEN:
            options["timeout"] = timeout
        if max_retries is not None:
            options["max_retries"] = max_retries
        twin = AsyncClient(**options, transport=self._transport, poll_policy=self.poll_policy)
        twin._owns_transport = False
        return twin

    async def ping(self, *, timeout: float | None = None) -> Health:
        """Whether the API is up (no key needed)."""
        return await self._request(_timed(api.ping(), timeout))

    async def validate(self, *, timeout: float | None = None) -> TokenInfo:
        """The key's owner, type (SANDBOX/PRODUCTION), scope and IP rules."""
        return await self._request(_timed(api.validate(), timeout))

    async def _request(self, call: Call[T]) -> T:
        state = self._start(call)
        while True:
            try:
                return state.finish(await self._transport.send(state.request()))
            except OneClickDZError as exc:
                step = state.after_failure(exc)
                if isinstance(step, Recovered):
                    return step.value
                await anyio.sleep(step)

    async def _poll(
        self,
        call: Call[S],
        run: PollRun,
        on_update: Callable[[S], Awaitable[object] | object] | None = None,
        on_check: Callable[[PollRun, S | OneClickDZError], object] | None = None,
    ) -> S:
        """See `Client._poll`; `on_update` may be a plain function or a coroutine function."""
        call = replace(call, max_retries=0)
        while True:
            try:
                state = await self._request(call)
            except OneClickDZError as exc:
                run.record_error(exc)
                if on_check is not None:
                    on_check(run, exc)
            else:
                final = run.record(state)
                if on_check is not None:
                    on_check(run, state)
                if on_update is not None:
                    result = on_update(state)
                    if inspect.isawaitable(result):
                        await result
                if final:
                    return state
            await anyio.sleep(run.next_delay())

    async def close(self) -> None:
        """Close the connections (unless this client shares another's, see `with_options`)."""
        if self._owns_transport:
            await self._transport.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


class AsyncGiftCards:
    """`client.gift_cards` of AsyncClient; see `GiftCards`."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def catalog(self, *, timeout: float | None = None) -> Catalog:
        """See `GiftCards.catalog`."""
        return await self._client._request(_timed(api.catalog(), timeout))

    async def check_product(self, product_id: str, *, timeout: float | None = None) -> Product:
        """See `GiftCards.check_product`."""
        return await self._client._request(_timed(api.check_product(product_id), timeout))

    async def place_order(
        self,
        product_id: str,
        type_id: str,
        quantity: int,
        ref: str | None = None,
        *,
        timeout: float | None = None,
    ) -> PlacedOrder:
        """See `GiftCards.place_order`: a ref is made up when none is given, then retried."""
        request = _placement(product_id, type_id, quantity, ref)
        placed = await self._client._request(_timed(api.place_order(request), timeout))
        _log_placed(placed, request)
        return placed

    async def check_order(self, order_id: str, *, timeout: float | None = None) -> Order:
        """See `GiftCards.check_order`."""
        return await self._client._request(_timed(api.check_order(order_id), timeout))

    async def list_orders_page(
        self,
        page: int = 1,
        *,
        page_size: int = 20,
        from_: DateLike | None = None,
        to: DateLike | None = None,
        timeout: float | None = None,
    ) -> Page[Order]:
        """See `GiftCards.list_orders_page`."""
        call = api.orders_page(page, page_size, from_, to)
        return await self._client._request(_timed(call, timeout))

    def list_orders(
        self,
        *,
        page_size: int = 100,
        from_: DateLike | None = None,
        to: DateLike | None = None,
        timeout: float | None = None,
    ) -> AsyncIterator[Order]:
        """`async for order in client.gift_cards.list_orders(): ...`"""
        return _aiterate(
            lambda n: self.list_orders_page(
                n, page_size=page_size, from_=from_, to=to, timeout=timeout
            )
        )

    async def wait(
        self,
        order_id: str,
        *,
        policy: PollPolicy | None = None,
        on_update: AsyncOnUpdate | None = None,
        on_check: OnCheck | None = None,
    ) -> Order:
        """See `GiftCards.wait`; `on_update` may be a plain function or a coroutine function."""
        run = PollRun(order_id, policy or self._client.poll_policy)
        return await self._client._poll(api.check_order(order_id), run, on_update, on_check)

    async def process_order(
        self,
        product_id: str,
        type_id: str,
        quantity: int,
        ref: str | None = None,
        *,
        policy: PollPolicy | None = None,
        on_update: AsyncOnUpdate | None = None,
    ) -> Outcome:
        """Place an order, wait until it is final, and return its checked Outcome.

        The placement is `place_order`'s: without a `ref`, one is made up (and retried safely).
        """
        placed = await self.place_order(product_id, type_id, quantity, ref)
        order = await self.wait(placed.order_id, policy=policy, on_update=on_update)
        return Outcome.from_order(order)


class AsyncAccount:
    """`client.account` of AsyncClient; see `Account`."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def balance(self, *, timeout: float | None = None) -> Balance:
        """See `Account.balance`."""
        return await self._client._request(_timed(api.balance(), timeout))

    async def transactions_page(
        self,
        page: int = 1,
        *,
        page_size: int = 20,
        from_: DateLike | None = None,
        to: DateLike | None = None,
        timeout: float | None = None,
    ) -> Page[Transaction]:
        """See `Account.transactions_page`."""
        call = api.transactions_page(page, page_size, from_, to)
        return await self._client._request(_timed(call, timeout))

    def transactions(
        self,
        *,
        page_size: int = 100,
        from_: DateLike | None = None,
        to: DateLike | None = None,
        timeout: float | None = None,
    ) -> AsyncIterator[Transaction]:
        """`async for entry in client.account.transactions(): ...`"""
        return _aiterate(
            lambda n: self.transactions_page(
                n, page_size=page_size, from_=from_, to=to, timeout=timeout
            )
        )


async def _aiterate(fetch: Callable[[int], Awaitable[Page[Any]]]) -> AsyncIterator[Any]:
    walk = api.PageWalk()
    while walk.next is not None:
        for item in walk.take(await fetch(walk.next)):
            yield item
