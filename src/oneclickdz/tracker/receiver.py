"""The tracker's webhook receiver: signed order webhooks in, `Tracker.hint` out.

    from oneclickdz.tracker import Tracker, TrackerConfig
    from oneclickdz.tracker.receiver import serve_webhooks

    config = TrackerConfig(webhooks=True)                # polls every 60 s instead of 5 s
    async with Tracker(client, store, handler=deliver, config=config) as tracker:
        async with serve_webhooks(tracker, "0.0.0.0", 8080, ["whsec_…"]):
            await tracker.run()

`serve_webhooks` runs a small ASGI app (`webhook_app`, Starlette) under uvicorn in the running
event loop, beside the tracker; it stops when the block ends. An app of your own can mount
`webhook_app(tracker, secrets)` instead (at any path: it answers a POST on every path).

Each POST is verified (`oneclickdz.webhooks.verify`: Standard Webhooks signature under one of the
secrets, a timestamp within 5 minutes, an order event body). A refused one gets 400 and changes
nothing. A verified one gets 204 at once, before any API call: it is only a hint, and the tracker
confirms it with one `checkOrder` of the open order it names (duplicates, unknown and final orders
cost nothing). The check's answer, never the webhook, finalises an order.

With several runners on one PostgreSQL store, the webhooks reach the runner behind the URL: it
checks at once the orders it holds (and those it claims later); the others' orders come by their
safety polls. The secrets appear in no log, error or answer. Needs Starlette and uvicorn (the
`server` extra).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import errno
import logging
import socket
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass

import uvicorn
from standardwebhooks.webhooks import Webhook
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from oneclickdz.webhooks import WebhookVerificationError, verify

from .stats import WEBHOOKS_RECEIVED, WEBHOOKS_REFUSED, WEBHOOKS_VERIFIED
from .tracker import Tracker

__all__ = [
    "MAX_BODY",
    "WebhookListenError",
    "WebhookServer",
    "check_secrets",
    "parse_listen",
    "serve_webhooks",
    "webhook_app",
]

log = logging.getLogger("oneclickdz.tracker.webhooks")

MAX_BODY = 64 * 1024  # bytes: an order event is well under 1 KiB
SECRET_PREFIX = "whsec_"  # noqa: S105 - the specification's prefix, not a secret
SHUTDOWN_GRACE = 2.0  # seconds open connections get to finish when the receiver stops


class WebhookListenError(Exception):
    """The receiver cannot listen where it was asked to (address in use, not local...)."""


def check_secrets(secrets: Sequence[str]) -> list[str]:
    """The secrets, each checked to be a Standard Webhooks secret (`whsec_` + base64); a
    ValueError names a bad one by its position, never by its value."""
    if isinstance(secrets, str):
        secrets = [secrets]
    checked = [s.strip() for s in secrets if s.strip()]
    if not checked:
        raise ValueError("give at least one webhook secret (whsec_…)")
    for n, secret in enumerate(checked, 1):
        try:
            if not secret.startswith(SECRET_PREFIX):
                raise ValueError
            if not base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True):
                raise ValueError
            Webhook(secret)
        except (ValueError, binascii.Error):
            raise ValueError(
                f"webhook secret #{n} is not a Standard Webhooks secret (whsec_ + base64)"
            ) from None
    return checked


def webhook_app(tracker: Tracker, secrets: Sequence[str]) -> Starlette:
    """An ASGI app that verifies each POSTed webhook and hands its order to `tracker.hint`.

    400: refused (bad or missing signature, old timestamp, not an order event); 413: a body over
    MAX_BODY; 204: verified (whatever the tracker makes of it). Other methods: 405.
    """
    keys = check_secrets(secrets)

    async def receive(request: Request) -> Response:
        tracker.count(WEBHOOKS_RECEIVED)
        body = await _read_body(request)
        if body is None:
            tracker.count(WEBHOOKS_REFUSED)
            log.warning("webhook refused from %s: body over %d bytes", _peer(request), MAX_BODY)
            return PlainTextResponse("webhook refused: body too large\n", status_code=413)
        try:
            event = verify(body, request.headers, keys)
        except WebhookVerificationError as exc:
            tracker.count(WEBHOOKS_REFUSED)
            log.warning("%s (from %s)", exc, _peer(request))
            return PlainTextResponse(f"{exc}\n", status_code=400)
        tracker.count(WEBHOOKS_VERIFIED)
        hinted = tracker.hint(event.data.order_id, event_id=event.id)
        log.info("webhook %s id=%s order_id=%s status=%s: %s", event.type, event.id,
                 event.data.order_id, event.data.status,
                 "checking now" if hinted else "nothing to do")  # fmt: skip
        return Response(status_code=204)

    return Starlette(routes=[Route("/{path:path}", receive, methods=["POST"])])


async def _read_body(request: Request) -> bytes | None:
    """The body, or None past MAX_BODY (read no further)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _peer(request: Request) -> str:
    return request.client.host if request.client is not None else "?"


def parse_listen(text: str) -> tuple[str, int]:
    """HOST:PORT ([::1]:PORT for IPv6; PORT 0: any free port) -> (host, port); else ValueError."""
    host, sep, port = text.strip().rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"listen address {text!r}: expected HOST:PORT, e.g. 127.0.0.1:8080")
    return host, int(port)


@dataclass(frozen=True, slots=True)
class WebhookServer:
    """Where a running receiver listens."""

    host: str
    port: int

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"


def _listen(host: str, port: int) -> socket.socket:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise WebhookListenError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        reason = "the address is already in use" if exc.errno == errno.EADDRINUSE else exc.strerror
        raise WebhookListenError(f"cannot listen on {host}:{port}: {reason or exc}") from None
    return sock


@contextlib.asynccontextmanager
async def serve_webhooks(
    tracker: Tracker, host: str, port: int, secrets: Sequence[str]
) -> AsyncIterator[WebhookServer]:
    """Receive webhooks on HOST:PORT (0: any free port) in this event loop, until the block ends.

    Listening when the block begins (WebhookListenError if it cannot); on exit, it stops taking
    requests and gives open ones SHUTDOWN_GRACE seconds. Signals are left to the caller (uvicorn
    installs no handler). Pair it with `TrackerConfig(webhooks=True)`, so that polling slows to the
    safety schedule.
    """
    app = webhook_app(tracker, secrets)
    sock = _listen(host, port)
    config = uvicorn.Config(
        app,
        lifespan="off",
        ws="none",
        access_log=False,
        log_config=None,
        log_level="warning",
        server_header=False,
        proxy_headers=False,
        timeout_graceful_shutdown=int(SHUTDOWN_GRACE),
    )
    server = _Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]), name="oneclickdz-webhooks")
    try:
        while not server.started:
            if task.done():
                task.result()  # its error, if it failed to start
                raise WebhookListenError(f"the webhook receiver on {host}:{port} did not start")
            await asyncio.sleep(0.01)
        bound = sock.getsockname()
        where = WebhookServer(host, int(bound[1]))
        log.info("webhook receiver listening on %s", where.url)
        yield where
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await task
        sock.close()


class _Server(uvicorn.Server):
    """uvicorn's server without its signal handlers: the tracker's owner keeps its own."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield
