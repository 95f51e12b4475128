"""An aiohttp transport for `AsyncClient`: much faster than httpx with hundreds of requests in
flight (see bench/bench_sdk.py). Needs the `fast` extra: `pip install "oneclickdz[fast]"`.

    async with AsyncClient(transport=AiohttpTransport()) as client: ...
"""

from __future__ import annotations

from ._transport import Request, Response
from .errors import APIConnectionError, APITimeoutError

try:
    import aiohttp
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError('AiohttpTransport needs aiohttp: pip install "oneclickdz[fast]"') from exc

__all__ = ["AiohttpTransport"]


class AiohttpTransport:
    """Sends AsyncClient's requests with an aiohttp session (yours, or one it opens lazily).

    `max_connections` bounds the open connections (requests beyond wait for one); the session is
    created on first use, inside the running event loop, and closed by `aclose()`.
    """

    def __init__(
        self, session: aiohttp.ClientSession | None = None, *, max_connections: int = 100
    ) -> None:
        self._session = session
        self._max_connections = max_connections
        self._timeouts: dict[float | None, aiohttp.ClientTimeout] = {}

    def _open(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(limit=self._max_connections)
        # The API sets no cookies, and a client of it should keep none: no jar to consult.
        self._session = aiohttp.ClientSession(
            connector=connector, auto_decompress=True, cookie_jar=aiohttp.DummyCookieJar()
        )
        return self._session

    def _timeout(self, seconds: float | None) -> aiohttp.ClientTimeout:
        timeout = self._timeouts.get(seconds)
        if timeout is None:
            timeout = self._timeouts[seconds] = aiohttp.ClientTimeout(total=seconds)
        return timeout

    async def send(self, request: Request) -> Response:
        session = self._session if self._session is not None else self._open()
        try:
            async with session.request(
                request.method,
                request.url,
                headers=request.headers,
                data=request.content,
                timeout=self._timeout(request.timeout),
            ) as answer:
                content = await answer.read()
                return Response(answer.status, answer.headers, content)
        except aiohttp.ConnectionTimeoutError as exc:
            raise APITimeoutError(_describe(request, exc), request_sent=False) from exc
        except aiohttp.ClientConnectorError as exc:
            raise APIConnectionError(_describe(request, exc), request_sent=False) from exc
        except TimeoutError as exc:
            raise APITimeoutError(_describe(request, exc), request_sent=True) from exc
        except aiohttp.ClientError as exc:
            raise APIConnectionError(_describe(request, exc), request_sent=True) from exc

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _describe(request: Request, exc: BaseException) -> str:
    return f"{type(exc).__name__} on {request.method} {request.url}: {exc}"
