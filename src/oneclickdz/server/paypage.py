"""The payer's side of an OCPay link: `GET /pay/{ref}` shows it, `POST /pay/{ref}` pays or
cancels it. It stands in for OCPay's hosted page, so a merchant can test a checkout end to end.

Plain HTML: no script, no external asset, one form that works without JavaScript, everything
the merchant wrote escaped. No API key: anyone holding the link may pay it, as with OCPay.

- After a payment (or a cancellation) the page shows the link's `successMessage` (or a default)
  and, when the link has a `redirectUrl`, returns the payer there after REDIRECT_SECONDS (a
  `<meta http-equiv="refresh">`, with a link to go at once), adding `paymentRef` and `status`
  (CONFIRMED or FAILED) to its query, as a merchant's return page expects.
- Refusals are pages that say what happened: unknown (404), expired (410), already paid or
  cancelled (409), a form not rendered by this page (403).
- Forgery: the page carries no ambient authority (no cookie, no key), so a forged POST could
  do nothing the link's holder could not. Still, cheaply: each rendered form holds a token,
  HMAC(a key derived from the vault key, ref + a random nonce), so only a form this service
  rendered for this ref is accepted (by every process sharing the vault key); and a POST whose
  `Origin` is another site's is refused. The page may not be framed (clickjacking).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import os
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from oneclickdz.server import payments
from oneclickdz.server.logs import request_id
from oneclickdz.server.payment_api import PaymentApi
from oneclickdz.server.payments import PaymentRefused, Refusal
from oneclickdz.server.protocol import BodyTooLarge, Limits, read_body
from oneclickdz.server.store import FeeMode, PaymentLinkRecord
from oneclickdz.server.vault import Vault

PAY_PATH = "/pay/{ref}"
REDIRECT_SECONDS = 3  # time to read the success message before returning to the merchant
MAX_FORM_BYTES = 2_048  # the form holds a token, a method and an action: far less
_FORM_KEY_LABEL = "\x00oneclickdz pay page form key"  # never a card code: starts with NUL

_STYLE = """
body{margin:0;font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
color:#1b1f24;background:#f4f6f8}
main{max-width:34rem;margin:2rem auto;padding:1.5rem 2rem;background:#fff;
border:1px solid #d0d7de;border-radius:8px}
h1{font-size:1.5rem;margin:.25rem 0 1rem}
.brand{margin:0;color:#4d5761;font-size:.9rem}
.description{white-space:pre-wrap}
dl{display:grid;grid-template-columns:auto 1fr;gap:.25rem 1rem;margin:1rem 0}
dt{font-weight:600}dd{margin:0}
.total{font-size:1.2rem;font-weight:700}
fieldset{border:1px solid #d0d7de;border-radius:6px;margin:1rem 0;padding:.5rem 1rem}
legend{font-weight:600;padding:0 .25rem}
.choice{margin:.35rem 0}
.actions{display:flex;gap:1rem;flex-wrap:wrap;margin-top:1rem}
button{font:inherit;padding:.6rem 1.2rem;border-radius:6px;border:2px solid #0b5cad;
cursor:pointer;background:#fff;color:#0b5cad}
button.primary{background:#0b5cad;color:#fff}
a{color:#0b5cad}
:focus-visible{outline:3px solid #b35900;outline-offset:2px}
.note{color:#4d5761;font-size:.9rem}
"""
_STYLE_HASH = base64.b64encode(hashlib.sha256(_STYLE.encode()).digest()).decode()
_HEADERS = {
    "Content-Security-Policy": f"default-src 'none'; style-src 'sha256-{_STYLE_HASH}'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
_FEE_MODES = {
    FeeMode.NO_FEE: "Paid by the merchant",
    FeeMode.SPLIT_FEE: "Shared: you pay half",
    FeeMode.CUSTOMER_FEE: "Paid by you",
}
_METHOD_NAMES = {"CIB": "CIB card", "EDAHABIA": "EDAHABIA card (Algérie Poste)"}


def _e(text: str) -> str:
    return html.escape(text, quote=True)


def dzd(cents: int) -> str:
    """An amount as the payer reads it: `1,011.01 DZD`."""
    whole, part = divmod(cents, 100)
    return f"{whole:,}.{part:02d} DZD"


def until(ts: float) -> str:
    """An instant as the payer reads it: `2025-01-15 10:50 UTC`."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")


def with_outcome(url: str, ref: str, status: str) -> str:
    """`url` with `paymentRef` and `status` added to its query (its fragment kept)."""
    parts = urlsplit(url)
    extra = urlencode({"paymentRef": ref, "status": status})
    query = f"{parts.query}&{extra}" if parts.query else extra
    return urlunsplit(parts._replace(query=query))


class PayPage:
    """The pay page's routes, on the payments of one service."""

    def __init__(self, api: PaymentApi, vault: Vault, limits: Limits | None = None) -> None:
        self.api = api
        self.limits = limits or Limits()
        self._form_key = vault.fingerprint(_FORM_KEY_LABEL)

    def routes(self) -> list[Route]:
        return [
            Route(PAY_PATH, self.show, methods=["GET"], name="payPage"),
            Route(PAY_PATH, self.submit, methods=["POST"], name="payAction"),
        ]

    # -- handlers ------------------------------------------------------------------------------

    async def show(self, request: Request) -> Response:
        ref = request.path_params["ref"]
        try:
            link = await self.api.open_link(ref)
        except PaymentRefused as refused:
            return refusal_page(refused)
        return _page(200, f"Pay: {link.title}", self._form(link))

    async def submit(self, request: Request) -> Response:
        ref = request.path_params["ref"]
        form = await self._read_form(request)
        if form is None:
            return _message(413, "This request is too large", "Reload the payment page.")
        if not self._same_origin(request) or not self._token_ok(ref, form.get("token", "")):
            return _message(
                403, "This form is no longer valid",
                "It did not come from this payment page. Open the payment link again.",
            )  # fmt: skip
        action = form.get("action")
        try:
            if action == "pay":
                method = form.get("method") or payments.METHODS[0]
                if method not in payments.METHODS:
                    return _message(400, "Unknown payment method", "Choose CIB or EDAHABIA.")
                return done_page(await self.api.pay(ref, method))
            if action == "cancel":
                return done_page(await self.api.cancel(ref))
        except PaymentRefused as refused:
            return refusal_page(refused)
        return _message(400, "Unknown action", "Use the Pay or Cancel button of the page.")

    # -- the form and its token ---------------------------------------------------------------

    def _form(self, link: PaymentLinkRecord) -> str:
        due = payments.charges(link.amount_cents, link.fee_mode)
        description = (
            f'<p class="description">{_e(link.description)}</p>' if link.description else ""
        )
        choices = "".join(
            f'<div class="choice"><input type="radio" id="method-{m.lower()}" name="method" '
            f'value="{m}"{" checked" if i == 0 else ""}> '
            f'<label for="method-{m.lower()}">{_e(_METHOD_NAMES[m])}</label></div>'
            for i, m in enumerate(payments.METHODS)
        )
        sandbox = " &middot; sandbox: no real money moves" if link.env == "SANDBOX" else ""
        return f"""<p class="brand">OCPay &middot; local test service{sandbox}</p>
<h1>{_e(link.title)}</h1>
{description}
<h2>Summary</h2>
<dl>
<dt>Amount</dt><dd>{dzd(link.amount_cents)}</dd>
<dt>Fee (1%)</dt><dd>{dzd(due.fee_cents)}</dd>
<dt>Fee mode</dt><dd>{_e(_FEE_MODES[link.fee_mode])} ({link.fee_mode.value})</dd>
<dt>Total to pay</dt><dd class="total">{dzd(due.paid_cents)}</dd>
</dl>
<form method="post" action="/pay/{_e(link.ref)}">
<input type="hidden" name="token" value="{self._token(link.ref)}">
<fieldset><legend>Payment method</legend>
{choices}
</fieldset>
<div class="actions">
<button type="submit" name="action" value="pay" class="primary">Pay {dzd(due.paid_cents)}</button>
<button type="submit" name="action" value="cancel">Cancel payment</button>
</div>
</form>
<p class="note">Reference {_e(link.ref)}. This link can be paid once, until
{until(link.expires_at)}.</p>"""

    def _token(self, ref: str) -> str:
        nonce = os.urandom(12).hex()
        return f"{nonce}.{self._mac(ref, nonce)}"

    def _mac(self, ref: str, nonce: str) -> str:
        return hmac.new(self._form_key, f"{ref}\x00{nonce}".encode(), hashlib.sha256).hexdigest()

    def _token_ok(self, ref: str, token: str) -> bool:
        nonce, _, mac = token.partition(".")
        return bool(nonce) and hmac.compare_digest(mac.encode(), self._mac(ref, nonce).encode())

    @staticmethod
    def _same_origin(request: Request) -> bool:
        """No `Origin` (not a browser's cross-site POST), or this very origin."""
        origin = request.headers.get("origin")
        if origin is None:
            return True
        return origin == f"{request.url.scheme}://{request.headers.get('host', '')}"

    async def _read_form(self, request: Request) -> dict[str, str] | None:
        """The urlencoded form's fields (the first value of each), or None when too large."""
        try:
            body = await read_body(request, MAX_FORM_BYTES, self.limits.body_timeout)
        except BodyTooLarge:
            return None
        except TimeoutError:
            return {}  # nothing usable arrived: refused as a form without its token
        try:
            fields = parse_qs(body.decode("utf-8", "replace"), max_num_fields=20)
        except ValueError:
            return {}
        return {name: values[0] for name, values in fields.items()}


# -- pages ------------------------------------------------------------------------------------


def done_page(link: PaymentLinkRecord) -> Response:
    """After the payer's move: what happened, and the way back to the merchant."""
    if link.status is payments.CONFIRMED:
        assert link.paid_cents is not None
        heading = "Payment confirmed"
        message = link.success_message or "Thank you: your payment was received."
        details = f"""<dl>
<dt>Paid</dt><dd>{dzd(link.paid_cents)}</dd>
<dt>Method</dt><dd>{_e(_METHOD_NAMES.get(link.payment_method or "", "card"))}</dd>
<dt>Transaction</dt><dd>{_e(link.transaction_ref or "")}</dd>
</dl>"""
    else:
        heading = "Payment cancelled"
        message = "You cancelled this payment: no money was taken."
        details = ""
    target = None
    back = ""
    if link.redirect_url is not None:
        target = with_outcome(link.redirect_url, link.ref, link.status.value)
        back = (
            f"<p>Returning you to the merchant in {REDIRECT_SECONDS} seconds. "
            f'<a href="{_e(target)}">Return to the merchant now</a></p>'
        )
    body = f"""<h1>{heading}</h1>
<p role="status">{_e(message)}</p>
{details}
{back}
<p class="note">Reference {_e(link.ref)}.</p>"""
    return _page(200, heading, body, refresh_to=target)


def refusal_page(refused: PaymentRefused) -> Response:
    """A refusal, said plainly; a link already final offers the way back to the merchant."""
    ref = _e(refused.ref)
    if refused.refusal is Refusal.UNKNOWN:
        return _message(
            404, "Payment link not found",
            "No payment link has this address. Check the link you were given, or ask the "
            "merchant for a new one.",
        )  # fmt: skip
    if refused.refusal is Refusal.EXPIRED:
        return _message(
            410, "This payment link has expired",
            f"Payment link {ref} was not paid in time, and can no longer be paid. Nothing was "
            "taken. Ask the merchant for a new link.",
        )  # fmt: skip
    link = refused.link
    paid = refused.refusal is Refusal.PAID
    heading = "This payment link was already paid" if paid else "This payment was cancelled"
    text = (
        f"Payment link {ref} has been paid already: it can be paid only once. You were not "
        "charged again."
        if paid
        else f"Payment link {ref} was cancelled: it can no longer be paid. Ask the merchant for "
        "a new link."
    )
    back = ""
    if link is not None and link.redirect_url is not None:
        target = with_outcome(link.redirect_url, link.ref, link.status.value)
        back = f'<p><a href="{_e(target)}">Return to the merchant</a></p>'
    return _message(409, heading, text, back)


def _message(status: int, heading: str, text: str, extra: str = "") -> Response:
    """A page with one message (`text` is HTML: escape what it quotes)."""
    return _page(status, heading, f"<h1>{_e(heading)}</h1>\n<p>{text}</p>\n{extra}")


def _page(
    status: int,
    title: str,
    body: str,
    *,
    refresh_to: str | None = None,
) -> Response:
    refresh = (
        f'<meta http-equiv="refresh" content="{REDIRECT_SECONDS}; url={_e(refresh_to)}">\n'
        if refresh_to is not None
        else ""
    )
    document = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
{refresh}<title>{_e(title)} - OCPay</title>
<style>{_STYLE}</style>
</head>
<body>
<main>
{body}
</main>
</body>
</html>
"""
    headers: dict[str, Any] = {**_HEADERS, "x-request-id": request_id.get() or ""}
    return HTMLResponse(document, status_code=status, headers=headers)
