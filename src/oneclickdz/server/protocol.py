"""Limits on every HTTP connection, enforced where uvicorn's httptools protocol reads the bytes.

uvicorn bounds neither the size of a request head nor the time it takes to arrive, and arms its
keep-alive timer only after a first response, so a client could hold memory (a header that never
ends) or a connection (one that never sends) for as long as it liked. These limits, each an
option of `oneclickdz serve` (defaults in `config.py`), close every such door:

- `max_header_bytes` (16 KiB): the request line and headers together; beyond it the answer is
  431 REQUEST_HEADER_FIELDS_TOO_LARGE and the connection is closed. Bytes are counted as they
  are read, before they are parsed, so an endless header costs at most this much memory.
- `max_headers` (100): header fields in one request; beyond it, 431 as well.
- `max_body_bytes` (64 KiB): a request body; beyond it, 413 PAYLOAD_TOO_LARGE (the app's check).
- `header_timeout` (10 s): a request head must be complete this long after its first byte
  arrived, or the answer is 408 REQUEST_TIMEOUT and the connection is closed.
- `body_timeout` (10 s): a body the app reads must arrive whole within it (408 REQUEST_TIMEOUT,
  then close); the rest of a body the app answered without reading (a refusal) must arrive
  within it too, or the connection is closed.
- `keepalive_timeout` (5 s): a connection with no request in progress, including one that
  connected and never sent a byte, is closed after this long idle. Bytes that begin no request
  (stray blank lines) do not count as activity.

Every answer written here is the service's error envelope, with an `X-Request-Id`, and
`connection: close`. After such an answer the server stops sending, reads and drops what the
client still sends for at most `LINGER` seconds, then closes: closing a socket with unread
bytes would reset the connection and could destroy the answer before the client reads it.
A request that is not valid HTTP is answered 400 BAD_REQUEST in the envelope too.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, ClassVar

import httptools
import orjson
from starlette.requests import Request
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from oneclickdz.server import config as defaults
from oneclickdz.server.config import ServerConfig
from oneclickdz.server.errors import ServiceError
from oneclickdz.server.logs import new_request_id, request_id

log = logging.getLogger("oneclickdz.server.protocol")

LINGER = 2.0  # seconds a refused connection drains the client's bytes before it is closed


@dataclass(frozen=True)
class Limits:
    """The limits on every connection (see the module docstring); defaults from `config`."""

    max_header_bytes: int = defaults.MAX_HEADER_BYTES
    max_headers: int = defaults.MAX_HEADERS
    max_body_bytes: int = defaults.MAX_BODY_BYTES
    header_timeout: float = defaults.HEADER_TIMEOUT
    body_timeout: float = defaults.BODY_TIMEOUT
    keepalive_timeout: float = defaults.KEEPALIVE_TIMEOUT

    @classmethod
    def of(cls, config: ServerConfig) -> Limits:
        return cls(
            config.max_header_bytes, config.max_headers, config.max_body_bytes,
            config.header_timeout, config.body_timeout, config.keepalive_timeout,
        )  # fmt: skip


class BodyTooLarge(Exception):
    """A request body over its limit (refused before it is read whole when its length is
    declared)."""


async def read_body(request: Request, max_bytes: int, seconds: float) -> bytes:
    """A request's whole body within `max_bytes` (else `BodyTooLarge`) and `seconds` (else
    `TimeoutError`): the API's JSON and the pay page's form alike."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise BodyTooLarge
    body = bytearray()
    async with asyncio.timeout(seconds):
        async for chunk in request.stream():
            body += chunk
            if len(body) > max_bytes:
                raise BodyTooLarge
    return bytes(body)


def error_body(error: ServiceError, rid: str) -> bytes:
    """The error envelope's JSON: `{"success": false, "error": {...}, "requestId"}`."""
    payload: dict[str, Any] = {"code": error.code, "message": error.message}
    if error.details is not None:
        payload["details"] = error.details
    return orjson.dumps({"success": False, "error": payload, "requestId": rid})


def protocol_class(limits: Limits) -> type[LimitedHttpToolsProtocol]:
    """The protocol class to give uvicorn (`uvicorn.Config(http=...)`), bound to `limits`."""
    return type("LimitedHttpToolsProtocol", (LimitedHttpToolsProtocol,), {"limits": limits})


class _Refused(Exception):
    """Raised in a parser callback to stop parsing a request that was just refused."""


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, with the head's size, count and time bounded, and every
    connection's idle time bounded from its first moment."""

    limits: ClassVar[Limits] = Limits()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.timeout_keep_alive = self.limits.keepalive_timeout  # type: ignore[assignment]
        self._in_head = True  # no head complete since the last message ended
        self._head_bytes = 0
        self._header_count = 0
        self._head_timer: asyncio.TimerHandle | None = None
        self._drain_timer: asyncio.TimerHandle | None = None
        self._refused = False

    # -- the connection ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_keepalive()  # uvicorn waits for a first response; a silent client is idle too

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timers()
        self._unset_keepalive_if_required()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        # Unlike uvicorn, data alone does not end idleness: a request beginning does.
        view = memoryview(data)
        while view and not self._refused:
            # Pieces end where the head would pass its limit, so it is refused before it is
            # parsed further (a pipelined request's head is counted from the next read on).
            room = self.limits.max_header_bytes - (self._head_bytes if self._in_head else 0)
            piece, view = view[:room], view[room:]
            if self._in_head:
                self._head_bytes += len(piece)
            if not self._feed(piece):
                return
            if self._in_head and self._head_bytes >= self.limits.max_header_bytes:
                limit = self.limits.max_header_bytes
                message = f"the request line and headers exceed {limit} bytes"
                self._refuse(431, "REQUEST_HEADER_FIELDS_TOO_LARGE", message, {"limit": limit})

    def _feed(self, piece: memoryview) -> bool:
        """Parse `piece`; False once the connection is refused or handed over."""
        try:
            self.parser.feed_data(piece)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return False
        except httptools.HttpParserError:
            if not self._refused:
                self._refuse(400, "BAD_REQUEST", "the request is not valid HTTP/1.1")
            return False
        return not self._refused

    def send_400_response(self, msg: str) -> None:
        self._refuse(400, "BAD_REQUEST", "the request is not valid HTTP/1.1")

    # -- parser callbacks -------------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self._refused:
            raise _Refused
        self._unset_keepalive_if_required()
        self._in_head, self._header_count = True, 0
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.limits.header_timeout, self._head_late)
        super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        if self._refused:
            raise _Refused
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._refused:
            raise _Refused
        self._header_count += 1
        if self._header_count > self.limits.max_headers:
            limit = self.limits.max_headers
            message = f"more than {limit} header fields"
            self._refuse(431, "REQUEST_HEADER_FIELDS_TOO_LARGE", message, {"limit": limit})
            raise _Refused
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        if self._refused:
            raise _Refused
        self._in_head = False
        self._cancel(self._head_timer)
        self._head_timer = None
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if self._refused:
            raise _Refused
        super().on_body(body)

    def on_message_complete(self) -> None:
        if self._refused:
            raise _Refused
        self._in_head, self._head_bytes = True, 0
        self._cancel(self._drain_timer)
        self._drain_timer = None
        super().on_message_complete()
        if self.cycle.response_complete and not self.pipeline:
            self._arm_keepalive()  # answered before the body ended: idle from now

    def on_response_complete(self) -> None:
        pipelined = bool(self.pipeline)  # then `self.cycle` is the next request, not this one
        super().on_response_complete()
        if self.transport.is_closing() or pipelined or self._refused:
            return
        if self.cycle.more_body:
            # Answered without reading the whole body: it must still end in time.
            self._unset_keepalive_if_required()
            if self._drain_timer is None:
                self._drain_timer = self.loop.call_later(self.limits.body_timeout, self._close)
        elif self._head_timer is not None:
            self._unset_keepalive_if_required()  # the next head is on its way, on its own timer

    # -- refusals ---------------------------------------------------------------------------

    def _head_late(self) -> None:
        self._head_timer = None
        if self._refused or not self._in_head or self.transport.is_closing():
            return
        seconds = self.limits.header_timeout
        message = f"the request head did not arrive within {seconds:g} s"
        self._refuse(408, "REQUEST_TIMEOUT", message, {"timeout": seconds})

    def _refuse(
        self, status: int, code: str, message: str, details: dict[str, Any] | None = None
    ) -> None:
        """Answer `status` in the envelope, then drain and close the connection."""
        self._refused = True
        self._cancel_timers()
        self._unset_keepalive_if_required()
        rid = new_request_id()
        token = request_id.set(rid)
        try:
            client = self.client[0] if self.client else None
            log.info("request refused", extra={"status": status, "code": code, "ip": client})
        finally:
            request_id.reset(token)
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            # An answer is being written for the request before: finish it, then close.
            self.cycle.keep_alive = False
            self.flow.pause_reading()
            return
        body = error_body(ServiceError(status, code, message, details), rid)
        head = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            head += [name, b": ", value, b"\r\n"]
        head += [
            b"content-type: application/json\r\n",
            b"content-length: %d\r\n" % len(body),
            b"connection: close\r\n",
            b"x-request-id: %s\r\n\r\n" % rid.encode(),
        ]
        self.transport.write(b"".join(head) + body)
        if self.transport.can_write_eof():
            self.transport.write_eof()
            self.flow.resume_reading()
            self._drain_timer = self.loop.call_later(LINGER, self._close)
        else:
            self._close()

    # -- timers -----------------------------------------------------------------------------

    def _arm_keepalive(self) -> None:
        self._unset_keepalive_if_required()
        self.timeout_keep_alive_task = self.loop.call_later(
            self.timeout_keep_alive, self.timeout_keep_alive_handler
        )

    def _close(self) -> None:
        self._drain_timer = None
        if not self.transport.is_closing():
            self.transport.close()

    def _cancel_timers(self) -> None:
        for timer in (self._head_timer, self._drain_timer):
            self._cancel(timer)
        self._head_timer = self._drain_timer = None

    @staticmethod
    def _cancel(timer: asyncio.TimerHandle | None) -> None:
        if timer is not None:
            timer.cancel()
