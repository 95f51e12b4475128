"""The payer's side of a payment link, as a browser does it: open the link's page and submit its
form (Pay or Cancel). The demo uses it to pay the link it created; it needs no API key.

It reads the page's one form: its action, its hidden fields (the form's token), the payment
method checked by default; and answers with the page shown after the submission.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import urljoin

import httpx


@dataclass(slots=True)
class PayForm:
    """The pay page's form: where it posts, its hidden fields, the method checked by default."""

    action: str | None = None
    hidden: dict[str, str] = field(default_factory=dict)
    method: str | None = None


@dataclass(frozen=True, slots=True)
class PayPageAnswer:
    """The page after the payer's move: its HTTP status and its heading (e.g. "Payment
    confirmed")."""

    status_code: int
    heading: str

    @property
    def ok(self) -> bool:
        return self.status_code == 200


class _FormReader(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.form = PayForm()
        self.heading = ""
        self._in_h1 = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {name: value or "" for name, value in attrs}
        if tag == "form" and self.form.action is None:
            self.form.action = a.get("action", "")
        elif tag == "input" and a.get("type") == "hidden" and a.get("name"):
            self.form.hidden[a["name"]] = a.get("value", "")
        elif tag == "input" and a.get("type") == "radio" and "checked" in a:
            if a.get("name") == "method":
                self.form.method = a.get("value")
        elif tag == "h1":
            self._in_h1 = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "h1":
            self._in_h1 = False

    def handle_data(self, data: str) -> None:
        if self._in_h1:
            self.heading += data


def read_page(html: str) -> tuple[PayForm, str]:
    """The page's form and its heading."""
    reader = _FormReader()
    reader.feed(html)
    reader.close()
    return reader.form, " ".join(reader.heading.split())


def _fields(form: PayForm, action: str, method: str | None) -> dict[str, str]:
    fields = dict(form.hidden)
    chosen = method or form.method
    if chosen:
        fields["method"] = chosen
    fields["action"] = action
    return fields


def _post_for(
    url: str, page: httpx.Response, action: str, method: str | None
) -> tuple[str, dict[str, str]] | PayPageAnswer:
    """Where the page's form posts and what, or the page itself when it has no form to submit."""
    form, heading = read_page(page.text)
    if page.status_code != 200 or form.action is None:
        return PayPageAnswer(page.status_code, heading)
    return urljoin(url, form.action), _fields(form, action, method)


def _answer(done: httpx.Response) -> PayPageAnswer:
    return PayPageAnswer(done.status_code, read_page(done.text)[1])


async def submit_async(
    url: str, *, action: str = "pay", method: str | None = None, http_timeout: float = 10.0
) -> PayPageAnswer:
    """Open the payment page at `url` and press its Pay (or Cancel) button."""
    async with httpx.AsyncClient(timeout=http_timeout) as http:
        post = _post_for(url, await http.get(url), action, method)
        if isinstance(post, PayPageAnswer):
            return post
        return _answer(await http.post(post[0], data=post[1]))


def submit(
    url: str, *, action: str = "pay", method: str | None = None, http_timeout: float = 10.0
) -> PayPageAnswer:
    """`submit_async` for a caller without an event loop."""
    with httpx.Client(timeout=http_timeout) as http:
        post = _post_for(url, http.get(url), action, method)
        if isinstance(post, PayPageAnswer):
            return post
        return _answer(http.post(post[0], data=post[1]))
