"""Fault injection for testing clients: off unless `--faults` names rules (or a test sets them).

A rule is `route:rate:fault[:xN]`: on requests to `route` (a route name such as `checkOrder`,
or `*`), with probability `rate`, answer with `fault` instead — `429[=S]` (with `Retry-After: S`),
`500`, `503` (with `Retry-After: 1`, like the service's own 503s), `delay=S` (answer normally
after S seconds), `reset` (drop the connection before handling), `reset-after` (handle — e.g.
place the order — then drop the connection), `empty` (handle, then answer 200 with an empty
body) or `malformed` (handle, then answer 200 with truncated JSON).
`xN` stops the rule after N hits.
One more route is not a request: `fulfil:RATE:delay=S` holds the orders a fulfilment round
has just claimed for S seconds before finishing them (a slow supplier; the round's leases stay
held), so tests can kill a process while it holds leases. `*` never matches it.
Another is `webhook:RATE:FAULT`, on webhook deliveries: `drop` (the webhook is lost for good:
not sent, not retried, recorded as delivered — a receiver must cope through its safety polls),
`delay=S` (sent S seconds late) or `duplicate` (sent twice). `*` never matches it either.
Every draw comes from the service's seeded generator, so a seed replays the same faults.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from oneclickdz.server.errors import ServiceError, rate_limited
from oneclickdz.server.logs import request_id

log = logging.getLogger("oneclickdz.server.faults")

ROUTE_NAMES = frozenset(
    {"ping", "validate", "balance", "transactions", "catalog", "checkProduct", "placeOrder",
     "checkOrder", "list",
     "listWebhooks", "createWebhook", "deleteWebhook", "rotateWebhookSecret",
     "mobilePlans", "mobileSend", "mobileCheckId", "mobileCheckRef", "mobileList",
     "internetProducts", "internetCheckNumber", "internetSend", "internetCheckId",
     "internetCheckRef", "internetList", "createLink", "checkPayment"}
)  # fmt: skip
FULFIL = "fulfil"  # not a route: fulfilment rounds (only `delay=S` applies)
WEBHOOK = "webhook"  # not a route: webhook deliveries (`drop`, `delay=S`, `duplicate`)
_STATUS = {
    500: ("INTERNAL_ERROR", "Internal server error (injected fault)"),
    503: ("SERVICE_UNAVAILABLE", "Service temporarily unavailable (injected fault)"),
}


@dataclass
class FaultRule:
    route: str
    rate: float
    kind: str  # "status", "delay", "reset", "reset-after", "empty", "malformed"
    status: int = 0
    seconds: float = 0.0
    limit: int | None = None
    hits: int = 0

    def __str__(self) -> str:
        return f"{self.route}:{self.rate}:{self.kind}"


def parse_faults(text: str) -> list[FaultRule]:
    """Parse `--faults`; a rule that does not parse is an error naming it, never ignored."""
    rules = []
    for raw in filter(None, (part.strip() for part in text.split(","))):
        parts = raw.split(":")
        if len(parts) not in (3, 4):
            raise ValueError(f"fault rule {raw!r}: expected route:rate:fault[:xN]")
        route, rate_text, fault = parts[0], parts[1], parts[2]
        if route not in ("*", FULFIL, WEBHOOK) and route not in ROUTE_NAMES:
            raise ValueError(
                f"fault rule {raw!r}: unknown route {route!r} "
                f"(one of {', '.join(sorted(ROUTE_NAMES))}, *, {FULFIL} or {WEBHOOK})"
            )
        try:
            rate = float(rate_text)
        except ValueError:
            rate = -1.0
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"fault rule {raw!r}: rate must be a number from 0 to 1")
        rule = (
            _parse_webhook_fault(raw, rate, fault)
            if route == WEBHOOK
            else _parse_fault(raw, route, rate, fault)
        )
        if len(parts) == 4:
            count = parts[3]
            if not (count.startswith("x") and count[1:].isdigit() and int(count[1:]) > 0):
                raise ValueError(f"fault rule {raw!r}: the limit must look like x3")
            rule.limit = int(count[1:])
        if route == FULFIL and rule.kind != "delay":
            raise ValueError(f"fault rule {raw!r}: {FULFIL} takes only delay=S")
        rules.append(rule)
    return rules


def _parse_fault(raw: str, route: str, rate: float, fault: str) -> FaultRule:
    name, _, arg = fault.partition("=")
    try:
        if name == "429":
            return FaultRule(route, rate, "status", 429, float(arg or 1))
        if name in ("500", "503") and not arg:
            return FaultRule(route, rate, "status", int(name))
        if name == "delay":
            return FaultRule(route, rate, "delay", seconds=float(arg))
        if name in ("reset", "reset-after", "empty", "malformed") and not arg:
            return FaultRule(route, rate, name)
    except ValueError:
        pass
    raise ValueError(
        f"fault rule {raw!r}: fault must be 429[=S], 500, 503, delay=S, reset, reset-after, "
        "empty or malformed"
    )


def _parse_webhook_fault(raw: str, rate: float, fault: str) -> FaultRule:
    name, _, arg = fault.partition("=")
    if name in ("drop", "duplicate") and not arg:
        return FaultRule(WEBHOOK, rate, name)
    if name == "delay":
        try:
            seconds = float(arg)
        except ValueError:
            seconds = -1.0
        if seconds >= 0:
            return FaultRule(WEBHOOK, rate, "delay", seconds=seconds)
    raise ValueError(f"fault rule {raw!r}: {WEBHOOK} takes drop, delay=S or duplicate")


class FaultRules:
    """The fault rules in force; `set` replaces them while the service runs (tests do)."""

    def __init__(self, text: str = "") -> None:
        self.rules: list[FaultRule] = parse_faults(text)

    def set(self, text: str) -> None:
        """Parse `text` (`--faults` syntax; "" clears) and put it in force for the next request.

        A rule that does not parse raises and leaves the rules in force as they were.
        """
        self.rules = parse_faults(text)  # one assignment: a request sees the old or new list

    def fulfil_delay(self, rng: random.Random) -> float:
        """Seconds the fulfilment round starting now holds its claimed orders (0: none)."""
        rule = self._draw(FULFIL, rng)
        return 0.0 if rule is None else rule.seconds

    def webhook_fault(self, rng: random.Random) -> FaultRule | None:
        """The fault to apply to the webhook delivery about to go out (None: none)."""
        return self._draw(WEBHOOK, rng)

    def _draw(self, route: str, rng: random.Random) -> FaultRule | None:
        """The first rule of `route` (never `*`) still in force that the draw picks."""
        for rule in self.rules:
            if rule.route != route or (rule.limit is not None and rule.hits >= rule.limit):
                continue
            if rng.random() < rule.rate:
                rule.hits += 1
                log.info("fault injected", extra={"fault": str(rule)})
                return rule
        return None


class FaultInjector:
    """ASGI middleware applying the rules, outside the app so faults look like the network."""

    def __init__(
        self,
        app: ASGIApp,
        rules: FaultRules,
        rng: random.Random,
        route_name: Callable[[Scope], str | None],
        error_response: Callable[[ServiceError], ASGIApp],
    ) -> None:
        self.app = app
        self.rules = rules
        self.rng = rng
        self.route_name = route_name
        self.error_response = error_response

    def pick(self, rules: list[FaultRule], route: str | None) -> FaultRule | None:
        for rule in rules:
            if rule.route not in ("*", route):
                continue
            if rule.limit is not None and rule.hits >= rule.limit:
                continue
            if self.rng.random() < rule.rate:
                rule.hits += 1
                return rule
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        rules = self.rules.rules
        if not rules or scope["type"] != "http":  # no rules: one attribute read, nothing more
            await self.app(scope, receive, send)
            return
        rule = self.pick(rules, self.route_name(scope))
        if rule is None:
            await self.app(scope, receive, send)
            return
        log.info("fault injected", extra={"fault": str(rule), "path": scope["path"]})
        if rule.kind == "delay":
            await asyncio.sleep(rule.seconds)
            await self.app(scope, receive, send)
        elif rule.kind == "status":
            retry = {"Retry-After": "1"} if rule.status == 503 else None
            error = (
                rate_limited(max(1, round(rule.seconds)), "Too many requests (injected fault)")
                if rule.status == 429
                else ServiceError(rule.status, *_STATUS[rule.status], {"injected": True}, retry)
            )
            await self.error_response(error)(scope, receive, send)
        elif rule.kind == "reset":
            await drop_connection(scope, send)
        else:  # the request is handled (an order is placed); its answer never arrives whole

            async def swallow(message: Message) -> None:
                return None

            await self.app(scope, receive, swallow)
            if rule.kind == "reset-after":
                await drop_connection(scope, send)
                return
            body = b"" if rule.kind == "empty" else b'{"success": true, "data": {"orderId": "6'
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                        (b"x-request-id", (request_id.get() or "").encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})


async def drop_connection(scope: Scope, send: Send) -> None:
    """Close the client's connection without a response, as a network failure would.

    uvicorn's `send` belongs to the connection's request cycle, which holds the transport;
    aborting it resets the TCP connection. Elsewhere, start a response and fail it, which makes
    the server close the connection mid-response.
    """
    raw_send: Any = scope.get("oneclickdz.raw_send", send)
    transport = getattr(getattr(raw_send, "__self__", None), "transport", None)
    if isinstance(transport, asyncio.BaseTransport):
        transport.abort()  # type: ignore[attr-defined]
        for _ in range(3):  # let the server see the connection is gone
            await asyncio.sleep(0)
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    raise ConnectionAbortedError("connection dropped (injected fault)")
