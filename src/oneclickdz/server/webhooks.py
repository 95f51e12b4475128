"""Signed order webhooks, the service's side: endpoints, secrets and the events of the outbox.

An endpoint belongs to one API key and receives the events of the orders placed with that key.
Its `whsec_…` secret (Standard Webhooks) is shown once, when made, and is kept sealed by the
vault; rotating it keeps the old secret signing beside the new one for a grace period, so a
receiver can switch without losing a webhook. The events carry no card codes: a receiver
fetches those with `checkOrder`.

`order_event` builds an order's event; `orders.fulfil` writes it to the outbox in the
transaction that makes the order final, and the dispatcher (`dispatcher`) delivers it.
"""

from __future__ import annotations

import base64
import ipaddress
import os
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import orjson

from oneclickdz.server.formats import iso, money
from oneclickdz.server.store import (
    EndpointRecord,
    EndpointStatus,
    EventRecord,
    OrderRecord,
    OrderStatus,
    Tx,
)
from oneclickdz.server.vault import Vault

EVENT_TYPES = ("order.fulfilled", "order.partially_filled", "order.refunded")
_TYPE_OF = {
    OrderStatus.FULFILLED: "order.fulfilled",
    OrderStatus.PARTIALLY_FILLED: "order.partially_filled",
    OrderStatus.REFUNDED: "order.refunded",
}
SECRET_PREFIX = "whsec_"  # noqa: S105 (the prefix, not a secret)
SECRET_BYTES = 24
DEFAULT_GRACE = 24 * 3600.0  # seconds the old secret keeps signing after a rotation
MAX_GRACE = 7 * 24 * 3600.0
MAX_URL_CHARS = 2048
MAX_ENDPOINTS_PER_KEY = 16
_SECRET_CONTEXT = b"oneclickdz webhook secret"


class WebhookError(ValueError):
    """A webhook request that cannot be carried out (bad URL, unknown endpoint...); nothing
    changed. `field` names the input at fault, when there is one."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True, slots=True)
class NewEndpoint:
    """An endpoint just made (or a secret just rotated): the only time its secret is shown."""

    endpoint: EndpointRecord
    secret: str


# -- events -------------------------------------------------------------------------------------


def event_id(order_id: str) -> str:
    """An order's event id: stable (an order turns final once), so it is the receivers'
    deduplication key across retries, duplicates and replays."""
    return f"evt_{order_id}"


def order_event(order: OrderRecord, at: float) -> EventRecord:
    """The event of an order that turned final at `at` (seconds since the epoch)."""
    if order.status is OrderStatus.HANDLING or order.fulfilled_quantity is None:
        raise ValueError("only a final order has an event")
    event_type = _TYPE_OF[order.status]
    delivered = order.fulfilled_quantity
    data: dict[str, object] = {"orderId": order.id}
    if order.ref is not None:
        data["orderRef"] = order.ref
    data.update(
        status=order.status.value,
        quantity=order.quantity,
        fulfilled_quantity=delivered,
        price_per_card=money(order.price_cents),
        amount_charged=money(delivered * order.price_cents),
        amount_refunded=money((order.quantity - delivered) * order.price_cents),
        time=order.time,
    )
    body = {"type": event_type, "timestamp": iso(at), "data": data}
    return EventRecord(
        id=event_id(order.id),
        key_id=order.key_id,
        order_id=order.id,
        type=event_type,
        payload=orjson.dumps(body),
        created_at=at,
    )


# -- secrets ------------------------------------------------------------------------------------


def new_secret() -> str:
    """A Standard Webhooks secret: `whsec_` and 24 random bytes in base64."""
    return SECRET_PREFIX + base64.b64encode(os.urandom(SECRET_BYTES)).decode()


def seal_secret(vault: Vault, secret: str) -> bytes:
    return vault.seal(secret.encode(), _SECRET_CONTEXT)


def open_secret(vault: Vault, sealed: bytes) -> str:
    return vault.open(sealed, _SECRET_CONTEXT).decode()


def signing_secrets(vault: Vault, endpoint: EndpointRecord, now: float) -> list[str]:
    """The secrets that sign a delivery now: the current one, and the previous one while its
    grace period runs."""
    secrets = [open_secret(vault, endpoint.secret)]
    if endpoint.previous_secret is not None and (endpoint.previous_until or 0.0) > now:
        secrets.append(open_secret(vault, endpoint.previous_secret))
    return secrets


# -- addresses ----------------------------------------------------------------------------------


def check_url(url: str) -> str:
    """The URL if it can be an endpoint: http(s), with a host, no credentials, not too long."""
    if not isinstance(url, str) or not url:
        raise WebhookError("url is required", "url")
    if len(url) > MAX_URL_CHARS:
        raise WebhookError(f"url is longer than {MAX_URL_CHARS} characters", "url")
    if any(ch.isspace() or ord(ch) < 0x20 for ch in url):
        raise WebhookError("url holds whitespace or a control character", "url")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise WebhookError("url is not a valid URL", "url") from None
    if parts.scheme not in ("http", "https"):
        raise WebhookError("url must start with http:// or https://", "url")
    if not parts.hostname:
        raise WebhookError("url has no host", "url")
    if parts.username is not None or parts.password is not None:
        raise WebhookError("url must not carry credentials", "url")
    if port == 0:
        raise WebhookError("url has port 0", "url")
    return url


def is_public(address: str) -> bool:
    """Whether an IP address is one a webhook may go to without `--webhook-allow-private`."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def literal_address(url: str) -> str | None:
    """The URL's host if it is an IP address (normalised), else None."""
    try:
        return str(ipaddress.ip_address(urlsplit(url).hostname or ""))
    except ValueError:
        return None


def addresses(url: str) -> list[str]:
    """The IP addresses the URL's host names: a literal address, or what DNS says now."""
    literal = literal_address(url)
    if literal is not None:
        return [literal]
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(parts.hostname or "", port, type=socket.SOCK_STREAM)
    except OSError:
        return []
    return sorted({str(info[4][0]) for info in infos})


def refusal(found: Iterable[str], allow_private: bool) -> str | None:
    """Why a webhook may not go to these addresses (None: it may)."""
    found = list(found)
    if not found:
        return "its host does not resolve"
    if allow_private:
        return None
    private = [a for a in found if not is_public(a)]
    if private:
        return (
            "its host resolves to a private or loopback address; "
            "the service must run with --webhook-allow-private to send there"
        )
    return None


def check_destination(url: str, allow_private: bool) -> None:
    """Refuse, at registration, a URL that the dispatcher would refuse to send to."""
    check_url(url)
    reason = refusal(addresses(url), allow_private)
    if reason is not None:
        raise WebhookError(f"url refused: {reason}", "url")


def check_events(events: Sequence[str] | None) -> tuple[str, ...]:
    """The event types to subscribe to (None or empty: all of them), each known, in order."""
    if not events:
        return EVENT_TYPES
    unknown = [e for e in events if e not in EVENT_TYPES]
    if unknown:
        raise WebhookError(
            f"unknown event type {unknown[0]!r}: one of {', '.join(EVENT_TYPES)}", "events"
        )
    return tuple(e for e in EVENT_TYPES if e in events)


# -- endpoints (functions of a unit of work: admin commands and the API call them) -------------


def add_endpoint(
    tx: Tx, vault: Vault, key_id: int, url: str, events: tuple[str, ...], now: str
) -> NewEndpoint:
    """A new endpoint for the key (URL and events already checked); its secret, once."""
    if len(tx.webhooks.endpoints(key_id)) >= MAX_ENDPOINTS_PER_KEY:
        raise WebhookError(f"a key has at most {MAX_ENDPOINTS_PER_KEY} webhook endpoints")
    secret = new_secret()
    endpoint_id = tx.webhooks.add_endpoint(key_id, url, events, seal_secret(vault, secret), now)
    endpoint = tx.webhooks.endpoint(endpoint_id)
    assert endpoint is not None
    return NewEndpoint(endpoint, secret)


def owned_endpoint(tx: Tx, endpoint_id: int, key_id: int | None) -> EndpointRecord:
    """The endpoint (of this key, when given), not removed; else `WebhookError`."""
    endpoint = tx.webhooks.endpoint(endpoint_id)
    if (
        endpoint is None
        or endpoint.status is EndpointStatus.REMOVED
        or (key_id is not None and endpoint.key_id != key_id)
    ):
        raise WebhookError(f"no webhook endpoint {endpoint_id}")
    return endpoint


def rotate_secret(
    tx: Tx, vault: Vault, endpoint_id: int, key_id: int | None, grace: float, now: float
) -> NewEndpoint:
    """A new secret for the endpoint; the current one keeps signing for `grace` seconds."""
    if not 0 <= grace <= MAX_GRACE:
        raise WebhookError(f"the grace period is 0 to {MAX_GRACE:g} seconds", "grace")
    endpoint = owned_endpoint(tx, endpoint_id, key_id)
    secret = new_secret()
    tx.webhooks.rotate(endpoint.id, seal_secret(vault, secret), endpoint.secret, now + grace)
    rotated = tx.webhooks.endpoint(endpoint.id)
    assert rotated is not None
    return NewEndpoint(rotated, secret)


def remove_endpoint(tx: Tx, endpoint_id: int, key_id: int | None) -> EndpointRecord:
    """Remove the endpoint: nothing more is sent to it, its pending deliveries are cancelled."""
    endpoint = owned_endpoint(tx, endpoint_id, key_id)
    tx.webhooks.set_status(endpoint.id, EndpointStatus.REMOVED, "removed")
    return endpoint


def endpoint_view(endpoint: EndpointRecord) -> dict[str, object]:
    """An endpoint as the API and `admin list-webhooks --json` show it (never its secret)."""
    view: dict[str, object] = {
        "id": endpoint.id,
        "url": endpoint.url,
        "events": list(endpoint.events),
        "status": endpoint.status.value,
        "createdAt": endpoint.created_at,
    }
    if endpoint.disabled_reason is not None and endpoint.status is EndpointStatus.DISABLED:
        view["disabledReason"] = endpoint.disabled_reason
    if endpoint.previous_until is not None:
        view["previousSecretUntil"] = iso(endpoint.previous_until)
    return view
