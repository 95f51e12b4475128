"""Mobile, internet and OCPay endpoints as `Call`s, and the input rules the documentation states.

The rules checked here, before any request, are the documented ones only: the MSSIDN pattern,
the ADSL and 4G number patterns (on send), and a payment link's bounds. Anything that needs the
service's data (a plan's min/max, a product's value, stock) is left to the service.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar
from urllib.parse import urlsplit

from ._base import Call, Envelope, decoder
from ._endpoints import DateLike, _page_params, _segment
from ._transport import Response
from .errors import DuplicateRefError, InvalidInputError
from .models import APIModel, Page
from .payment_models import FeeMode, Payment, PaymentLink
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

S = TypeVar("S", bound=APIModel)

MSSIDN = re.compile(r"0[567][0-9]{8}")
NUMBERS = {"ADSL": re.compile(r"0[0-9]{8}"), "4G": re.compile(r"213[0-9]{9}")}
LINK_AMOUNT = (500, 500_000)
TITLE_LENGTH = (1, 200)
DESCRIPTION_MAX = 1_000
SUCCESS_MESSAGE_MAX = 500


# --------------------------------------------------------------------------- input rules


def _whole(field: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInputError(field, value, "must be a whole number (an int)")
    return value


def _ref(ref: str | None) -> None:
    if ref is not None and (not isinstance(ref, str) or not ref):
        raise InvalidInputError("ref", ref, "must be a non-empty string (or None)")


def _service_type(type_: str) -> str:
    if type_ not in NUMBERS:
        raise InvalidInputError("type", type_, "must be ADSL or 4G")
    return type_


def _max_length(field: str, value: str | None, most: int) -> None:
    if value is not None and (not isinstance(value, str) or len(value) > most):
        raise InvalidInputError(field, value, f"must be a string of at most {most} characters")


def check_mobile_request(request: MobileTopupRequest) -> None:
    """The documented rules of mobile/send: a plan code, MSSIDN `0[567]` and 8 digits (a
    string), an integer amount (required for dynamic plans: the service knows which)."""
    _segment("plan_code", request.plan_code)
    if not isinstance(request.msisdn, str) or not MSSIDN.fullmatch(request.msisdn):
        raise InvalidInputError("MSSIDN", request.msisdn, "must match ^0[567][0-9]{8}$")
    if request.amount is not None:
        _whole("amount", request.amount)
    _ref(request.ref)


def check_internet_request(request: InternetTopupRequest) -> None:
    """The documented rules of internet/send: ADSL `0` and 8 digits, 4G `213` and 9 digits."""
    pattern = NUMBERS[_service_type(request.type)]
    if not isinstance(request.number, str) or not pattern.fullmatch(request.number):
        raise InvalidInputError(
            "number", request.number, f"must match ^{pattern.pattern}$ for {request.type}"
        )
    _whole("value", request.value)
    _ref(request.ref)


def link_body(
    title: str,
    amount: int,
    description: str | None,
    fee_mode: FeeMode | str,
    success_message: str | None,
    redirect_url: str | None,
) -> dict[str, Any]:
    """createLink's body, after the documented rules: title 1-200 characters, a whole amount of
    500-500,000 DZD, description <= 1,000, successMessage <= 500, an http(s) redirectUrl."""
    low, high = TITLE_LENGTH
    if not isinstance(title, str) or not low <= len(title) <= high:
        raise InvalidInputError("title", title, f"must be {low}-{high} characters")
    if not LINK_AMOUNT[0] <= _whole("amount", amount) <= LINK_AMOUNT[1]:
        raise InvalidInputError("amount", amount, "must be within 500..500000 DZD")
    _max_length("description", description, DESCRIPTION_MAX)
    _max_length("successMessage", success_message, SUCCESS_MESSAGE_MAX)
    if fee_mode not in set(FeeMode):
        raise InvalidInputError("feeMode", fee_mode, "must be NO_FEE, SPLIT_FEE or CUSTOMER_FEE")
    product: dict[str, Any] = {"title": title, "amount": amount}
    if description is not None:
        product["description"] = description
    body: dict[str, Any] = {"productInfo": product, "feeMode": str(fee_mode)}
    if success_message is not None:
        body["successMessage"] = success_message
    if redirect_url is not None:
        parts = urlsplit(redirect_url) if isinstance(redirect_url, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
            raise InvalidInputError("redirectUrl", redirect_url, "must be an http(s) URL")
        body["redirectUrl"] = redirect_url
    return body


# --------------------------------------------------------------------------- decoding


def _sent(ref: str | None) -> Callable[[Response], TopupSent]:
    """A send's decoder: keeps the request id, and the ref sent when the answer has none."""

    def finish(envelope: Envelope[TopupSent], response: Response) -> TopupSent:
        update: dict[str, Any] = {
            "request_id": envelope.requestId or response.headers.get("x-request-id")
        }
        if envelope.data.topup_ref is None and ref is not None:
            update["topup_ref"] = ref
        return envelope.data.model_copy(update=update)

    return decoder(TopupSent, finish)


def _recover_topup(ref: str) -> Callable[[DuplicateRefError], TopupSent | None]:
    """The top-up a retried send meets DUPLICATED_REF for: the one its lost attempt created."""

    def recover(exc: DuplicateRefError) -> TopupSent | None:
        if not exc.topup_id:
            return None
        return TopupSent(
            topup_id=exc.topup_id, topup_ref=ref, recovered=True, request_id=exc.request_id
        )

    return recover


def _page_of(model: type[S], *keys: str) -> Callable[[Response], Page[S]]:
    """A list's decoder: the items under `items` or another documented key (internet's
    `topups`), the pagination in `data` or in `meta`."""
    page_type: type[Page[S]] = Page[model]  # type: ignore[valid-type]

    def finish(envelope: Envelope[Page[S]], response: Response) -> Page[S]:
        page = envelope.data
        extra = page.model_extra or {}
        items = next((extra[key] for key in keys if isinstance(extra.get(key), list)), None)
        pagination: Any = page.pagination
        if pagination is None:
            pagination = (envelope.meta or {}).get("pagination")
        if items is None and pagination is page.pagination:
            return page
        return page_type.model_validate(
            {"items": page.items if items is None else items, "pagination": pagination}
        )

    return decoder(page_type, finish)


# --------------------------------------------------------------------------- top-ups


@dataclass(frozen=True, slots=True)
class TopupEndpoints(Generic[S]):
    """The reads every top-up kind has, under its prefix: check-id, check-ref, list."""

    prefix: str
    decode: Callable[[Response], S]
    decode_page: Callable[[Response], Page[S]]

    def check(self, topup_id: str) -> Call[S]:
        return Call("GET", f"{self.prefix}/check-id/{_segment('topup_id', topup_id)}", self.decode)

    def check_ref(self, ref: str) -> Call[S]:
        return Call("GET", f"{self.prefix}/check-ref/{_segment('ref', ref)}", self.decode)

    def page(
        self, page: int, page_size: int, from_: DateLike | None, to: DateLike | None
    ) -> Call[Page[S]]:
        if (from_ is None) != (to is None):
            raise InvalidInputError("from_/to", from_ or to, "must be given together")
        params = _page_params(page, page_size, from_, to)
        return Call("GET", f"{self.prefix}/list", self.decode_page, params=params)


MOBILE = TopupEndpoints("/mobile", decoder(MobileTopup), _page_of(MobileTopup, "items"))
INTERNET = TopupEndpoints(
    "/internet", decoder(InternetTopup), _page_of(InternetTopup, "topups", "items")
)

_decode_plans = decoder(MobilePlans)
_decode_products = decoder(InternetProducts)
_decode_number = decoder(NumberCheck)
_decode_link = decoder(PaymentLink)
_decode_payment = decoder(Payment)


def mobile_plans() -> Call[MobilePlans]:
    return Call("GET", "/mobile/plans", _decode_plans)


def _send(path: str, request: MobileTopupRequest | InternetTopupRequest) -> Call[TopupSent]:
    """A send: a placement, retried (and recovered by its ref) only when it has a ref."""
    ref = request.ref
    return Call(
        "POST",
        path,
        _sent(ref),
        body=request.body(),
        placement=request,
        recover=None if ref is None else _recover_topup(ref),
    )


def mobile_send(request: MobileTopupRequest) -> Call[TopupSent]:
    check_mobile_request(request)
    return _send("/mobile/send", request)


def internet_products(type_: str) -> Call[InternetProducts]:
    params = {"type": _service_type(type_)}
    return Call("GET", "/internet/products", _decode_products, params=params)


def internet_check_number(type_: str, number: str) -> Call[NumberCheck]:
    """The service judges the number (ERR_PHONE with its reason): only the type is checked."""
    _segment("number", number)
    params = {"type": _service_type(type_), "number": number}
    return Call("GET", "/internet/check-number", _decode_number, params=params)


def internet_send(request: InternetTopupRequest) -> Call[TopupSent]:
    check_internet_request(request)
    return _send("/internet/send", request)


# --------------------------------------------------------------------------- OCPay


def create_link(body: dict[str, Any]) -> Call[PaymentLink]:
    """createLink moves no money: a retry that makes a second link leaves one unpaid, to expire."""
    return Call("POST", "/ocpay/createLink", _decode_link, body=body)


def check_payment(ref: str) -> Call[Payment]:
    return Call("GET", f"/ocpay/checkPayment/{_segment('ref', ref)}", _decode_payment)
