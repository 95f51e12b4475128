"""How requests travel: the transport interface the clients use, and the httpx-based defaults.

A transport sends one prepared request and returns the raw answer; it knows nothing of the API.
Its only other duty is to turn its library's failures into `APIConnectionError` /
`APITimeoutError`, saying whether the request may have left (`request_sent`), which is what
decides whether a placeOrder without a ref may be retried.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import httpx

from .errors import APIConnectionError, APITimeoutError

__all__ = [
    "AsyncHTTPXTransport",
    "AsyncTransport",
    "HTTPXTransport",
    "Request",
    "Response",
    "Transport",
]


@dataclass(slots=True)
class Request:
    """A prepared request. Its repr leaves out the headers, which hold the API key."""

    method: str
    url: str
    headers: dict[str, str] = field(repr=False)
    content: bytes | None = field(default=None, repr=False)
    timeout: float | None = None


@dataclass(slots=True)
class Response:
    """A raw answer; `headers` must look names up case-insensitively."""

    status_code: int
    headers: Mapping[str, str] = field(repr=False)
    content: bytes = field(repr=False)


@runtime_checkable
class Transport(Protocol):
    """What `Client` needs to send requests."""

    def send(self, request: Request) -> Response: ...

    def close(self) -> None: ...


@runtime_checkable
class AsyncTransport(Protocol):
    """What `AsyncClient` needs to send requests."""

    async def send(self, request: Request) -> Response: ...

    async def aclose(self) -> None: ...


def _httpx_request(request: Request) -> httpx.Request:
    return httpx.Request(
        request.method,
        request.url,
        headers=request.headers,
        content=request.content,
        extensions={"timeout": httpx.Timeout(request.timeout).as_dict()},
    )


def _connection_error(request: Request, exc: httpx.TransportError) -> APIConnectionError:
    """Map an httpx failure; only a connection that never opened proves nothing was sent."""
    text = f"{type(exc).__name__} on {request.method} {request.url}: {exc}"
    never_sent = isinstance(
        exc,
        httpx.ConnectError
        | httpx.ConnectTimeout
        | httpx.PoolTimeout
        | httpx.UnsupportedProtocol
        | httpx.LocalProtocolError,
    )
    if isinstance(exc, httpx.TimeoutException):
        return APITimeoutError(text, request_sent=not never_sent)
    return APIConnectionError(text, request_sent=not never_sent)


class HTTPXTransport:
    """The default transport of `Client`: an `httpx.Client` (yours, or one made from `**kwargs`)."""

    def __init__(self, client: httpx.Client | None = None, **kwargs: Any) -> None:
        self._client = client if client is not None else httpx.Client(**kwargs)

    def send(self, request: Request) -> Response:
        try:
            answer = self._client.send(_httpx_request(request))
        except httpx.TransportError as exc:
            raise _connection_error(request, exc) from exc
        return Response(answer.status_code, answer.headers, answer.content)

    def close(self) -> None:
        self._client.close()


class AsyncHTTPXTransport:
    """The default transport of `AsyncClient`: an `httpx.AsyncClient`.

    Under hundreds of concurrent requests httpx's pool gets slow; `AiohttpTransport` (extra
    `fast`) is the faster choice there.
    """

    def __init__(self, client: httpx.AsyncClient | None = None, **kwargs: Any) -> None:
        if client is None:
            kwargs.setdefault(
                "limits", httpx.Limits(max_connections=100, max_keepalive_connections=100)
            )
            client = httpx.AsyncClient(**kwargs)
        self._client = client

    async def send(self, request: Request) -> Response:
        try:
            answer = await self._client.send(_httpx_request(request))
        except httpx.TransportError as exc:
            raise _connection_error(request, exc) from exc
        return Response(answer.status_code, answer.headers, answer.content)

    async def aclose(self) -> None:
        await self._client.aclose()
