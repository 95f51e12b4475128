# ruff: noqa: ASYNC109 - `timeout` is the HTTP timeout of one request, not a cancel scope
"""`client.mobile`, `client.internet` and `client.ocpay`, sync and async.

The calls are `_topup_endpoints`'; a wait is the client's own `_poll` loop (the one gift cards
use) over the kind's check, ending on the kind's final states; `process` is send, wait and a
checked `TopupOutcome`. A send with a `ref` is retried safely and recovered by its ref; a send
without one (the service makes one up) is never repeated once it may have arrived.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Generic, TypeVar

from . import _topup_endpoints as api
from ._base import Call, timed
from ._endpoints import DateLike
from .errors import OneClickDZError
from .models import Page
from .payment_models import FeeMode, Payment, PaymentLink
from .polling import PollPolicy, PollRun
from .topup_models import (
    InternetProducts,
    InternetTopup,
    InternetTopupRequest,
    MobilePlans,
    MobileTopup,
    MobileTopupRequest,
    NumberCheck,
    TopupSent,
)
from .topup_outcome import DebitWatch, TopupOutcome

if TYPE_CHECKING:
    from .client import AsyncClient, Client

__all__ = ["AsyncInternet", "AsyncMobile", "AsyncOCPay", "Internet", "Mobile", "OCPay"]

logger = logging.getLogger("oneclickdz")

S = TypeVar("S", MobileTopup, InternetTopup)
P = TypeVar("P")
OnCheck = Callable[[PollRun, P | OneClickDZError], object]


def _log_sent(kind: str, sent: TopupSent) -> None:
    logger.info(
        "topup sent kind=%s topup_id=%s ref=%s recovered=%s request_id=%s",
        kind,
        sent.topup_id,
        sent.topup_ref,
        sent.recovered,
        sent.request_id,
    )


# =========================================================================== sync


class _Topups(Generic[S]):
    """What mobile and internet top-ups share: check, check by ref, list, wait, process."""

    def __init__(self, client: Client, endpoints: api.TopupEndpoints[S], kind: str) -> None:
        self._client = client
        self._api: api.TopupEndpoints[S] = endpoints
        self._kind = kind

    def check(self, topup_id: str, *, timeout: float | None = None) -> S:
        """The top-up's current state."""
        return self._client._request(timed(self._api.check(topup_id), timeout))

    def check_ref(self, ref: str, *, timeout: float | None = None) -> S:
        """The top-up sent with this ref (yours, or the one the service made up)."""
        return self._client._request(timed(self._api.check_ref(ref), timeout))

    def list(
        self,
        page: int = 1,
        *,
        page_size: int = 20,
        from_: DateLike | None = None,
        to: DateLike | None = None,
        timeout: float | None = None,
    ) -> Page[S]:
        """One page of the history (`from_` and `to` go together)."""
        call = self._api.page(page, page_size, from_, to)
        return self._client._request(timed(call, timeout))

    def wait(
        self,
        topup_id: str,
        *,
        policy: PollPolicy | None = None,
        on_update: Callable[[S], object] | None = None,
        on_check: OnCheck[S] | None = None,
    ) -> S:
        """Check the top-up until it is final (the kind's final states) and return it.

        The client's poll policy by default (every 5 s, 60 checks: the documented schedule).
        Transient failures use up a check; any other error ends the wait; PollTimeoutError
        (holding the last state seen) when the policy is used up.
        """
        run = PollRun(topup_id, policy or self._client.poll_policy, noun=f"{self._kind} top-up")
        return self._client._poll(self._api.check(topup_id), run, on_update, on_check)

    def _sent(self, call: Call[TopupSent], timeout: float | None) -> TopupSent:
        sent = self._client._request(timed(call, timeout))
        _log_sent(self._kind, sent)
        return sent

    def _process(
        self, sent: TopupSent, policy: PollPolicy | None, on_update: Callable[[S], object] | None
    ) -> TopupOutcome:
        watch = DebitWatch()
        final = self.wait(sent.topup_id, policy=policy, on_update=watch.before(on_update))
        return TopupOutcome.from_topup(final, watch.debited)


class Mobile(_Topups[MobileTopup]):
    """`client.mobile`: plans, sending, checking, listing and waiting for mobile top-ups."""

    def __init__(self, client: Client) -> None:
        super().__init__(client, api.MOBILE, "mobile")

    def plans(self, *, timeout: float | None = None) -> MobilePlans:
        """The dynamic and fixed plans (stable: cache them)."""
        return self._client._request(timed(api.mobile_plans(), timeout))

    def send(
        self,
        plan_code: str,
        msisdn: str,
        amount: int | None = None,
        ref: str | None = None,
        *,
        timeout: float | None = None,
    ) -> TopupSent:
        """Top up `msisdn` (`0[567]` and 8 digits) with a plan; `amount` (DZD) for a dynamic
        plan. The balance is charged now.

        With a `ref` (unique, e.g. an invoice number) the send is retried safely, and a retry
        that meets DUPLICATED_REF returns the top-up made by the lost attempt (`recovered`).
        Without one the service makes one up, so a send that may have arrived is not repeated:
        PlacementUnknownError, look for it in `list()`. InvalidInputError before any request
        for a number that breaks the documented pattern.
        """
        call = api.mobile_send(MobileTopupRequest(plan_code, msisdn, amount, ref))
        return self._sent(call, timeout)

    def process(
        self,
        plan_code: str,
        msisdn: str,
        amount: int | None = None,
        ref: str | None = None,
        *,
        policy: PollPolicy | None = None,
        on_update: Callable[[MobileTopup], object] | None = None,
    ) -> TopupOutcome:
        """Send a top-up, wait until it is final, and return its checked TopupOutcome
        (`needs_resolution` for UNKNOWN_ERROR: not a refund)."""
        sent = self.send(plan_code, msisdn, amount, ref)
        return self._process(sent, policy, on_update)


class Internet(_Topups[InternetTopup]):
    """`client.internet`: products, number checks, sending, checking and waiting for ADSL and 4G
    recharges."""

    def __init__(self, client: Client) -> None:
        super().__init__(client, api.INTERNET, "internet")

    def products(self, type: str, *, timeout: float | None = None) -> InternetProducts:
        """The denominations of `type` ("ADSL" or "4G") with your cost and their stock."""
        return self._client._request(timed(api.internet_products(type), timeout))

    def check_number(self, type: str, number: str, *, timeout: float | None = None) -> NumberCheck:
        """Whether `number` is a valid line for `type`; InvalidNumberError (ERR_PHONE) if not."""
        return self._client._request(timed(api.internet_check_number(type, number), timeout))

    def send(
        self,
        type: str,
        number: str,
        value: int,
        ref: str | None = None,
        *,
        timeout: float | None = None,
    ) -> TopupSent:
        """Recharge `number` (ADSL `0` and 8 digits, 4G `213` and 9 digits) with the product of
        face `value`. The balance is charged now. Retries and refs as `Mobile.send`."""
        call = api.internet_send(InternetTopupRequest(type, number, value, ref))
        return self._sent(call, timeout)

    def process(
        self,
        type: str,
        number: str,
        value: int,
        ref: str | None = None,
        *,
        policy: PollPolicy | None = None,
        on_update: Callable[[InternetTopup], object] | None = None,
    ) -> TopupOutcome:
        """Send a recharge, wait until it is final, and return its checked TopupOutcome
        (`card_code` once FULFILLED; `queued` for QUEUED: follow it later)."""
        sent = self.send(type, number, value, ref)
        return self._process(sent, policy, on_update)


class OCPay:
    """`client.ocpay`: payment links and their payments."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def create_link(
        self,
        title: str,
        amount: int,
        description: str | None = None,
        fee_mode: FeeMode | str = FeeMode.NO_FEE,
        success_message: str | None = None,
        redirect_url: str | None = None,
        *,
        timeout: float | None = None,
    ) -> PaymentLink:
        """A link the payer opens to pay `amount` DZD (a whole number, 500-500,000) for `title`.

        It expires 20 minutes after creation if not paid, and is single-use.
        """
        body = api.link_body(title, amount, description, fee_mode, success_message, redirect_url)
        return self._client._request(timed(api.create_link(body), timeout))

    def check_payment(self, ref: str, *, timeout: float | None = None) -> Payment:
        """The link's payment: PENDING, CONFIRMED (with its transaction) or FAILED.
        PaymentLinkExpiredError (410) once an unpaid link has expired."""
        return self._client._request(timed(api.check_payment(ref), timeout))

    def wait(
        self,
        ref: str,
        *,
        policy: PollPolicy | None = None,
        on_update: Callable[[Payment], object] | None = None,
        on_check: OnCheck[Payment] | None = None,
    ) -> Payment:
        """Check the payment until CONFIRMED or FAILED; an expired link ends the wait with
        PaymentLinkExpiredError. By default for the link's whole life (`docs_payments`)."""
        run = PollRun(ref, policy or PollPolicy.docs_payments(), noun="payment")
        return self._client._poll(api.check_payment(ref), run, on_update, on_check)


# =========================================================================== async


class _AsyncTopups(Generic[S]):
    """See `_Topups`."""

    def __init__(self, client: AsyncClient, endpoints: api.TopupEndpoints[S], kind: str) -> None:
        self._client = client
        self._api: api.TopupEndpoints[S] = endpoints
        self._kind = kind

    async def check(self, topup_id: str, *, timeout: float | None = None) -> S:
        """See `_Topups.check`."""
        return await self._client._request(timed(self._api.check(topup_id), timeout))

    async def check_ref(self, ref: str, *, timeout: float | None = None) -> S:
        """See `_Topups.check_ref`."""
        return await self._client._request(timed(self._api.check_ref(ref), timeout))

    async def list(
        self,
        page: int = 1,
        *,
        page_size: int = 20,
        from_: DateLike | None = None,
        to: DateLike | None = None,
        timeout: float | None = None,
    ) -> Page[S]:
        """See `_Topups.list`."""
        call = self._api.page(page, page_size, from_, to)
        return await self._client._request(timed(call, timeout))

    async def wait(
        self,
        topup_id: str,
        *,
        policy: PollPolicy | None = None,
        on_update: Callable[[S], Awaitable[object] | object] | None = None,
        on_check: OnCheck[S] | None = None,
    ) -> S:
        """See `_Topups.wait`; `on_update` may be a plain function or a coroutine function."""
        run = PollRun(topup_id, policy or self._client.poll_policy, noun=f"{self._kind} top-up")
        return await self._client._poll(self._api.check(topup_id), run, on_update, on_check)

    async def _sent(self, call: Call[TopupSent], timeout: float | None) -> TopupSent:
        sent = await self._client._request(timed(call, timeout))
        _log_sent(self._kind, sent)
        return sent

    async def _process(
        self,
        sent: TopupSent,
        policy: PollPolicy | None,
        on_update: Callable[[S], Awaitable[object] | object] | None,
    ) -> TopupOutcome:
        watch = DebitWatch()
        final = await self.wait(sent.topup_id, policy=policy, on_update=watch.before(on_update))
        return TopupOutcome.from_topup(final, watch.debited)


class AsyncMobile(_AsyncTopups[MobileTopup]):
    """`client.mobile` of AsyncClient; see `Mobile`."""

    def __init__(self, client: AsyncClient) -> None:
        super().__init__(client, api.MOBILE, "mobile")

    async def plans(self, *, timeout: float | None = None) -> MobilePlans:
        """See `Mobile.plans`."""
        return await self._client._request(timed(api.mobile_plans(), timeout))

    async def send(
        self,
        plan_code: str,
        msisdn: str,
        amount: int | None = None,
        ref: str | None = None,
        *,
        timeout: float | None = None,
    ) -> TopupSent:
        """See `Mobile.send`."""
        call = api.mobile_send(MobileTopupRequest(plan_code, msisdn, amount, ref))
        return await self._sent(call, timeout)

    async def process(
        self,
        plan_code: str,
        msisdn: str,
        amount: int | None = None,
        ref: str | None = None,
        *,
        policy: PollPolicy | None = None,
        on_update: Callable[[MobileTopup], Awaitable[object] | object] | None = None,
    ) -> TopupOutcome:
        """See `Mobile.process`."""
        sent = await self.send(plan_code, msisdn, amount, ref)
        return await self._process(sent, policy, on_update)


class AsyncInternet(_AsyncTopups[InternetTopup]):
    """`client.internet` of AsyncClient; see `Internet`."""

    def __init__(self, client: AsyncClient) -> None:
        super().__init__(client, api.INTERNET, "internet")

    async def products(self, type: str, *, timeout: float | None = None) -> InternetProducts:
        """See `Internet.products`."""
        return await self._client._request(timed(api.internet_products(type), timeout))

    async def check_number(
        self, type: str, number: str, *, timeout: float | None = None
    ) -> NumberCheck:
        """See `Internet.check_number`."""
        call = api.internet_check_number(type, number)
        return await self._client._request(timed(call, timeout))

    async def send(
        self,
        type: str,
        number: str,
        value: int,
        ref: str | None = None,
        *,
        timeout: float | None = None,
    ) -> TopupSent:
        """See `Internet.send`."""
        call = api.internet_send(InternetTopupRequest(type, number, value, ref))
        return await self._sent(call, timeout)

    async def process(
        self,
        type: str,
        number: str,
        value: int,
        ref: str | None = None,
        *,
        policy: PollPolicy | None = None,
        on_update: Callable[[InternetTopup], Awaitable[object] | object] | None = None,
    ) -> TopupOutcome:
        """See `Internet.process`."""
        sent = await self.send(type, number, value, ref)
        return await self._process(sent, policy, on_update)


class AsyncOCPay:
    """`client.ocpay` of AsyncClient; see `OCPay`."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def create_link(
        self,
        title: str,
        amount: int,
        description: str | None = None,
        fee_mode: FeeMode | str = FeeMode.NO_FEE,
        success_message: str | None = None,
        redirect_url: str | None = None,
        *,
        timeout: float | None = None,
    ) -> PaymentLink:
        """See `OCPay.create_link`."""
        body = api.link_body(title, amount, description, fee_mode, success_message, redirect_url)
        return await self._client._request(timed(api.create_link(body), timeout))

    async def check_payment(self, ref: str, *, timeout: float | None = None) -> Payment:
        """See `OCPay.check_payment`."""
        return await self._client._request(timed(api.check_payment(ref), timeout))

    async def wait(
        self,
        ref: str,
        *,
        policy: PollPolicy | None = None,
        on_update: Callable[[Payment], Awaitable[object] | object] | None = None,
        on_check: OnCheck[Payment] | None = None,
    ) -> Payment:
        """See `OCPay.wait`."""
        run = PollRun(ref, policy or PollPolicy.docs_payments(), noun="payment")
        return await self._client._poll(api.check_payment(ref), run, on_update, on_check)
