"""A webhook receiver for tests: a real HTTP server on 127.0.0.1 that records what it gets.

`respond` decides each answer (status and headers, from the request and how many came before),
`hold` keeps a request waiting that many seconds before answering, and `peak` tells how many
requests were ever open at once (the dispatcher's concurrency limit, seen from outside).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]
    body: bytes
    at: float  # time.time() when it arrived
    path: str


Answer = tuple[int, dict[str, str]]


class Receiver:
    def __init__(self) -> None:
        self.received: list[Received] = []
        self.respond: Callable[[Received, int], Answer] = lambda request, index: (204, {})
        self.hold = 0.0
        self.open = 0
        self.peak = 0
        self._lock = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                request = Received(
                    {k.lower(): v for k, v in self.headers.items()},
                    self.rfile.read(length),
                    time.time(),
                    self.path,
                )
                with receiver._lock:
                    index = len(receiver.received)
                    receiver.received.append(request)
                    receiver.open += 1
                    receiver.peak = max(receiver.peak, receiver.open)
                    receiver._lock.notify_all()
                try:
                    if receiver.hold:
                        time.sleep(receiver.hold)
                    status, headers = receiver.respond(request, index)
                    self.send_response(status)
                    for name, value in {**headers, "content-length": "0"}.items():
                        self.send_header(name, value)
                    self.end_headers()
                except OSError:  # the sender gave up (its timeout)
                    pass
                finally:
                    with receiver._lock:
                        receiver.open -= 1

            def log_message(self, format: str, *args: object) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/hooks"

    def start(self) -> Receiver:
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def wait_for(self, count: int, within: float = 20.0) -> list[Received]:
        """Block until `count` requests arrived (fail after `within` seconds); all so far."""
        deadline = time.monotonic() + within
        with self._lock:
            while len(self.received) < count:
                left = deadline - time.monotonic()
                assert left > 0, f"{len(self.received)} webhooks of {count} within {within}s"
                self._lock.wait(left)
            return list(self.received)

    def ids(self) -> list[str]:
        with self._lock:
            return [r.headers["webhook-id"] for r in self.received]


@contextmanager
def receiving() -> Iterator[Receiver]:
    receiver = Receiver().start()
    try:
        yield receiver
    finally:
        receiver.close()
