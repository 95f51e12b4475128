"""A rewriting proxy in front of the real service, for answers the service never gives.

The real API may answer DUPLICATED_REF without `details.orderId`, and its list may not show
refs; our service always gives both. `RewritingProxy` forwards every request to the real
service over HTTP and rewrites what a test asks for, on a free loopback port in a thread.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.sdk_fixtures import ThreadedApp


class RewritingProxy(ThreadedApp):
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.strip_duplicate_order_id = False
        self.strip_list_refs = False
        self.requests: list[tuple[str, str]] = []
        super().__init__(
            Starlette(routes=[Route("/v3/{rest:path}", self._forward, methods=["GET", "POST"])])
        )

    async def _forward(self, request: Request) -> Response:
        path = request.path_params["rest"]
        self.requests.append((request.method, path))
        try:
            async with httpx.AsyncClient(timeout=30) as client:  # closed in the server's loop
                upstream = await client.request(
                    request.method,
                    f"{self.upstream}/{path}",
                    params=request.query_params,
                    content=await request.body(),
                    headers={
                        k: v
                        for k, v in request.headers.items()
                        if k.lower() in ("x-access-token", "content-type")
                    },
                )
        except httpx.TransportError:  # the service dropped the connection: a gateway's 502
            error = {"code": "BAD_GATEWAY", "message": "upstream connection lost"}
            body = json.dumps({"success": False, "error": error}).encode()
            return Response(body, 502, media_type="application/json")
        body = upstream.content
        document: Any = None
        with contextlib.suppress(ValueError):
            document = json.loads(body)
        if isinstance(document, dict):
            failure = document.get("error")
            if (
                self.strip_duplicate_order_id
                and isinstance(failure, dict)
                and failure.get("code") == "DUPLICATED_REF"
            ):
                failure.pop("details", None)
            if self.strip_list_refs and path.startswith("gift-cards/list"):
                for item in document.get("data", {}).get("items", []):
                    item.pop("ref", None)
            body = json.dumps(document).encode()
        headers = {k: v for k, v in upstream.headers.items() if k.lower() in ("retry-after",)}
        return Response(body, upstream.status_code, headers, media_type="application/json")
