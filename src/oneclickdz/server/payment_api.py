"""OCPay at the HTTP edge: createLink and checkPayment's parsing and views, and the payer's
moves for the pay page (`paypage`).

The domain is `payments`; this module validates what the merchant sends (AJV-style
ERR_VALIDATION, naming the first field at fault) and renders records in the wire format.
A link expires `ttl` seconds after its creation on the fulfilment clock (`Fulfilment.now`),
the clock tests move forward.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from functools import partial
from typing import Any
from urllib.parse import urlsplit

from oneclickdz.server import payments
from oneclickdz.server.errors import ServiceError, not_found, validation
from oneclickdz.server.formats import money, now_iso
from oneclickdz.server.payments import PaymentRefused, Refusal
from oneclickdz.server.store import Conflict, FeeMode, KeyRecord, PaymentLinkRecord, Store

log = logging.getLogger("oneclickdz.server.payments")

DEFAULT_TTL = 1200.0  # seconds: "links expire 20 minutes after creation"
MAX_TITLE = 200
MAX_DESCRIPTION = 1_000
MIN_AMOUNT = 500  # DZD
MAX_AMOUNT = 500_000
MAX_SUCCESS_MESSAGE = 500
MAX_REDIRECT_URL = 2_048
FEE_MODES = tuple(m.value for m in FeeMode)
REF_ATTEMPTS = 5  # fresh refs drawn before giving up (a collision is a 1-in-10^15 event)

MESSAGES = {
    payments.PENDING: "Payment not yet initiated",
    payments.CONFIRMED: "Payment confirmed successfully",
    payments.FAILED: "Payment failed",
}
# Control characters refused in the merchant's text (they would reach the payer's page; NUL
# cannot even be stored by PostgreSQL). A title is one line; the longer texts may break lines.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_CONTROL_BUT_LINES = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# RFC 3986's characters: nothing that could end an HTML attribute or a refresh's URL.
_URL_CHARS = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+")


class PaymentApi:
    """createLink, checkPayment, and the pay page's reads and moves, on one store."""

    def __init__(self, store: Store, clock: Callable[[], float], ttl: float = DEFAULT_TTL) -> None:
        self.store = store
        self.clock = clock
        self.ttl = ttl

    async def create_link(self, key: KeyRecord, body: Any, base_url: str) -> dict[str, Any]:
        """A new link of the key's account and environment; `base_url` (the service's root as
        the client reached it) makes its `paymentUrl`."""
        cmd = parse_create_link(body)
        for attempt in range(REF_ATTEMPTS):
            try:
                link = await self.store.write(
                    partial(payments.create_link, key=key, cmd=cmd, ref=payments.new_ref(),
                            now=now_iso(), expires_at=self.clock() + self.ttl)
                )  # fmt: skip
                break
            except Conflict:
                if attempt == REF_ATTEMPTS - 1:
                    raise
        log.info(
            "payment link created",
            extra={"paymentRef": link.ref, "env": link.env, "feeMode": link.fee_mode.value},
        )
        return create_view(link, base_url)

    async def check_payment(self, key: KeyRecord, ref: str) -> dict[str, Any]:
        """The link's status (its transaction once CONFIRMED). Any link of the key's account,
        sandbox or production: the docs' check "covers both". 404 unknown, 410 expired."""
        link = await self._find(ref)
        if link is None or link.account_id != key.account_id:
            raise not_found(f"Payment link '{ref}' not found")
        if payments.expired(link, self.clock()):
            raise ServiceError(
                410, "PAYMENT_LINK_EXPIRED", f"Payment link '{ref}' has expired",
                {"paymentRef": ref},
            )  # fmt: skip
        return check_view(link)

    # -- the payer's side (the pay page) -------------------------------------------------------

    async def open_link(self, ref: str) -> PaymentLinkRecord:
        """The link the payer may act on now, or `PaymentRefused`."""
        link = await self._find(ref)
        if link is None:
            raise PaymentRefused(Refusal.UNKNOWN, ref)
        refusal = payments.refusal_of(link, self.clock())
        if refusal is not None:
            raise PaymentRefused(refusal, ref, link)
        return link

    async def pay(self, ref: str, method: str) -> PaymentLinkRecord:
        self._known(ref)
        link = await self.store.write(
            partial(payments.pay, ref=ref, method=method, now=now_iso(), at=self.clock())
        )
        log.info(
            "payment confirmed",
            extra={"paymentRef": ref, "env": link.env, "method": method},
        )
        return link

    async def cancel(self, ref: str) -> PaymentLinkRecord:
        self._known(ref)
        link = await self.store.write(
            partial(payments.cancel, ref=ref, now=now_iso(), at=self.clock())
        )
        log.info("payment cancelled", extra={"paymentRef": ref, "env": link.env})
        return link

    async def _find(self, ref: str) -> PaymentLinkRecord | None:
        if not payments.REF_PATTERN.fullmatch(ref):
            return None  # cannot be one: no need to ask the database
        return await self.store.reader().payments.get(ref)

    @staticmethod
    def _known(ref: str) -> None:
        if not payments.REF_PATTERN.fullmatch(ref):
            raise PaymentRefused(Refusal.UNKNOWN, ref)


# -- views ------------------------------------------------------------------------------------


def payment_url(base_url: str, ref: str) -> str:
    return f"{base_url.rstrip('/')}/pay/{ref}"


def create_view(link: PaymentLinkRecord, base_url: str) -> dict[str, Any]:
    """createLink's `data`: the SDK's keys and the docs' example's (`ref`, `time`) alike."""
    url = payment_url(base_url, link.ref)
    product: dict[str, Any] = {"title": link.title, "amount": money(link.amount_cents)}
    if link.description is not None:
        product["description"] = link.description
    view: dict[str, Any] = {
        "paymentRef": link.ref,
        "ref": link.ref,
        "paymentUrl": url,
        "productInfo": product,
        "feeMode": link.fee_mode.value,
        "isSandbox": link.env == "SANDBOX",
        "createdAt": link.created_at,
        "time": link.created_at,
    }
    if link.success_message is not None:
        view["successMessage"] = link.success_message
    if link.redirect_url is not None:
        view["redirectUrl"] = link.redirect_url
    return {"paymentLink": view, "paymentUrl": url, "paymentRef": link.ref}


def check_view(link: PaymentLinkRecord) -> dict[str, Any]:
    """checkPayment's `data`; `transactionDetails` only once CONFIRMED."""
    view: dict[str, Any] = {
        "status": link.status.value,
        "message": MESSAGES[link.status],
        "paymentRef": link.ref,
    }
    if link.status is payments.CONFIRMED:
        assert link.paid_cents is not None
        assert link.fee_cents is not None
        assert link.net_cents is not None
        view["transactionDetails"] = {
            "transactionRef": link.transaction_ref,
            "amount": money(link.paid_cents),
            "fee": money(link.fee_cents),
            "netAmount": money(link.net_cents),
            "paymentMethod": link.payment_method,
            "completedAt": link.completed_at,
            "currency": "DZD",
            "isSandbox": link.env == "SANDBOX",
            "createdDate": link.completed_at,
        }
    return view


# -- request parsing --------------------------------------------------------------------------


def parse_create_link(body: Any) -> payments.CreateLink:
    """Validate a createLink body, naming the first field at fault as the docs' AJV errors do
    (a nested field is named `productInfo.title`)."""
    if not isinstance(body, dict):
        raise validation("body", None, "body must be object")
    if "productInfo" not in body:
        raise validation("productInfo", None, "body must have required property 'productInfo'")
    product = body["productInfo"]
    if not isinstance(product, dict):
        raise validation("productInfo", None, "body/productInfo must be object")
    for name in ("title", "amount"):
        if name not in product:
            raise validation(
                f"productInfo.{name}", None,
                f"body/productInfo must have required property '{name}'",
            )  # fmt: skip
    title = product["title"]
    if not isinstance(title, str):
        raise validation("productInfo.title", None, "body/productInfo/title must be string")
    if not title:
        raise validation(
            "productInfo.title", title,
            "body/productInfo/title must NOT have fewer than 1 characters",
        )  # fmt: skip
    _text(title, "productInfo.title", MAX_TITLE, one_line=True)
    if not title.strip():
        raise validation("productInfo.title", title, "body/productInfo/title must not be blank")
    amount = _amount(product["amount"])
    description = _text(product.get("description"), "productInfo.description", MAX_DESCRIPTION)
    fee_mode = body.get("feeMode")
    if fee_mode is None:
        fee_mode = FeeMode.NO_FEE.value
    if not isinstance(fee_mode, str) or fee_mode not in FEE_MODES:
        allowed = ", ".join(FEE_MODES)
        raise validation(
            "feeMode", fee_mode if isinstance(fee_mode, str) else None,
            f"body/feeMode must be equal to one of the allowed values: {allowed}",
        )  # fmt: skip
    message = _text(body.get("successMessage"), "successMessage", MAX_SUCCESS_MESSAGE)
    return payments.CreateLink(
        title=title,
        amount_cents=amount * 100,
        description=description,
        fee_mode=FeeMode(fee_mode),
        success_message=message,
        redirect_url=_redirect_url(body.get("redirectUrl")),
    )


def _path(field: str) -> str:
    return "body/" + field.replace(".", "/")


def _text(value: Any, field: str, longest: int, one_line: bool = False) -> str | None:
    """An optional text field within `longest` characters (absent, null or empty: None)."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise validation(field, None, f"{_path(field)} must be string")
    if len(value) > longest:
        raise validation(
            field, None, f"{_path(field)} must NOT have more than {longest} characters"
        )
    if (_CONTROL if one_line else _CONTROL_BUT_LINES).search(value):
        raise validation(field, None, f"{_path(field)} must not contain control characters")
    return value


def _amount(value: Any) -> int:
    """Whole DZD within MIN_AMOUNT..MAX_AMOUNT (`1000.0` is whole, as for JSON Schema)."""
    field = "productInfo.amount"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise validation(field, value, "body/productInfo/amount must be integer")
    if value < MIN_AMOUNT:
        raise validation(field, value, f"body/productInfo/amount must be >= {MIN_AMOUNT}")
    if value > MAX_AMOUNT:
        raise validation(field, value, f"body/productInfo/amount must be <= {MAX_AMOUNT}")
    return value


def _redirect_url(value: Any) -> str | None:
    """An http(s) URL with a host, in RFC 3986's characters, or None (absent or null)."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise validation("redirectUrl", None, "body/redirectUrl must be string")
    if len(value) > MAX_REDIRECT_URL:
        raise validation(
            "redirectUrl", None,
            f"body/redirectUrl must NOT have more than {MAX_REDIRECT_URL} characters",
        )  # fmt: skip
    try:
        parts = urlsplit(value)
        valid = (
            parts.scheme.lower() in ("http", "https")
            and bool(parts.hostname)
            and (parts.port is None or parts.port > 0)
        )
    except ValueError:  # a port that is not a number, a malformed IPv6 address
        valid = False
    if not valid or not _URL_CHARS.fullmatch(value):
        raise validation("redirectUrl", value, "body/redirectUrl must be an http or https URL")
    return value
