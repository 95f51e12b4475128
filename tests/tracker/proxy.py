"""A rewriting proxy in front of the real service, for answers the service never gives.

The real API may answer DUPLICATED_REF without `details.orderId`, and its list may not show
refs; our service always gives both. `RewritingProxy` forwards every request to the real
service over HTTP and rewrites what a test asks for, on a free loopback port in a thread.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from oneclickdz.server.testing import free_port


class RewritingProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.port = free_port()
        self.strip_duplicate_order_id = False
        self.strip_list_refs = False
        self.requests: list[tuple[str, str]] = []
        app = Starlette(routes=[Route("/v3/{rest:path}", self._forward, methods=["GET", "POST"])])
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="error", lifespan="off"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v3"

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

    def start(self) -> RewritingProxy:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("proxy did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
