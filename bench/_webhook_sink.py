"""A webhook receiver for the benchmarks, in a process of its own: answers 204 at once and
records each webhook's id and arrival time; `GET /stats` reads them, `POST /reset` clears them.

    python -m bench._webhook_sink PORT
"""

from __future__ import annotations

import sys
import time
from typing import Any

import orjson
import uvicorn

arrivals: list[tuple[str, float]] = []


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    while True:  # drain the body
        message = await receive()
        if not message.get("more_body"):
            break
    body = b""
    if scope["method"] == "GET":
        body = orjson.dumps(arrivals)
    elif scope["path"] == "/reset":
        arrivals.clear()
    else:
        headers = dict(scope["headers"])
        arrivals.append((headers.get(b"webhook-id", b"").decode(), time.time()))
    status = 200 if body else 204
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-length", str(len(body)).encode())]})  # fmt: skip
    await send({"type": "http.response.body", "body": body})


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning",
                http="httptools", loop="uvloop", access_log=False)  # fmt: skip
