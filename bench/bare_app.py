"""The baseline: a bare endpoint on the service's own web stack, returning a constant JSON body.

Same server (uvicorn, uvloop, httptools), same settings, same framework (Starlette), no work.
"""

from __future__ import annotations

import argparse

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

BODY = orjson.dumps(
    {"success": True, "data": {"api": "ok"}, "meta": {"timestamp": "2025-10-29T00:00:00.000Z"}}
)


async def bare(request: Request) -> Response:
    return Response(BODY, media_type="application/json")


app = Starlette(routes=[Route("/v3/bare", bare)])

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    port = parser.parse_args().port
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
        server_header=False,
        proxy_headers=False,
    )
