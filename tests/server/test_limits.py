"""Limits on every connection, held against raw sockets: head size and count, body size, head
and body timeouts, idle connections; each refusal is the envelope, then the connection closes."""

from __future__ import annotations

import json
import selectors
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from oneclickdz.server.testing import Service
from tests.conftest import fresh_account
from tests.server.helpers import PSN, balance, client, ok

MAX_HEADER_BYTES = 4096
MAX_HEADERS = 20
MAX_BODY_BYTES = 1024
LIMIT_ARGS = [
    "--max-header-bytes", str(MAX_HEADER_BYTES),
    "--max-headers", str(MAX_HEADERS),
    "--max-body-bytes", str(MAX_BODY_BYTES),
    "--header-timeout", "1",
    "--body-timeout", "1",
    "--keepalive-timeout", "1",
]  # fmt: skip
PATIENCE = 30.0  # how long a test waits for the server to act: generous, never asserted
ORDER = json.dumps({"productId": PSN, "typeId": "type_001", "quantity": 1}).encode()


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """A service with small limits and 1-second timeouts."""
    service = Service(tmp_path_factory.mktemp("limits"), extra_args=LIMIT_ARGS).start()
    yield service
    service.stop()


@pytest.fixture
def api(svc: Service) -> Iterator[httpx.Client]:
    """A client with a key on an account of its own."""
    with client(svc, svc.create_key(sandbox=True, account=fresh_account(), balance=1000)) as c:
        yield c


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: Any


def connect(svc: Service) -> socket.socket:
    return socket.create_connection(("127.0.0.1", svc.port), timeout=PATIENCE)


def read_answer(sock: socket.socket) -> Answer:
    """One HTTP/1.1 response with a Content-Length, read from `sock`."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before a response: {data!r}"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers["content-length"])
    while len(rest) < length:
        chunk = sock.recv(65536)
        assert chunk, "connection closed inside the body"
        rest += chunk
    return Answer(int(status_line.split()[1]), headers, json.loads(rest[:length]))


def refused(answer: Answer, status: int, code: str) -> dict[str, Any]:
    """Check `answer` is the error envelope with `status` and `code`; its `error`."""
    assert answer.status == status, answer
    assert answer.headers["content-type"] == "application/json"
    body = answer.body
    assert set(body) == {"success", "error", "requestId"}, body
    assert body["success"] is False
    assert body["error"]["code"] == code, body
    assert body["requestId"].startswith("req_")
    assert answer.headers["x-request-id"] == body["requestId"]
    error: dict[str, Any] = body["error"]
    return error


def closed(sock: socket.socket) -> bool:
    """True once the server closed the connection (waits up to PATIENCE for it)."""
    try:
        while chunk := sock.recv(65536):
            assert not chunk.startswith(b"HTTP/"), chunk
        return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def exchange(svc: Service, raw: bytes) -> tuple[Answer, bool]:
    """Send `raw` on a new connection: the answer, and whether the server then closed it."""
    with connect(svc) as sock:
        sock.sendall(raw)
        answer = read_answer(sock)
        return answer, closed(sock)


def head(path: str = "/v3/ping", method: str = "GET", *lines: str) -> bytes:
    text = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n" + "".join(f"{x}\r\n" for x in lines)
    return (text + "\r\n").encode()


def post_order(key: str, body: bytes, length: int | None = None) -> bytes:
    """A placeOrder request with `body`, declaring `length` bytes (default: the body's)."""
    declared = len(body) if length is None else length
    lines = [f"X-Access-Token: {key}", "Content-Type: application/json"]
    return head("/v3/gift-cards/placeOrder", "POST", *lines, f"Content-Length: {declared}") + body


def test_a_head_over_the_byte_limit_is_431_then_closed(svc: Service) -> None:
    padding = "a" * (MAX_HEADER_BYTES - 100)
    answer, _ = exchange(svc, head("/v3/ping", "GET", f"X-Pad: {padding}"))
    assert answer.status == 200  # under the limit
    unfinished = head("/v3/ping", "GET", f"X-Pad: {padding}")[:-4] + b"b" * 200
    answer, was_closed = exchange(svc, unfinished)
    error = refused(answer, 431, "REQUEST_HEADER_FIELDS_TOO_LARGE")
    assert error["details"] == {"limit": MAX_HEADER_BYTES}
    assert answer.headers["connection"] == "close"
    assert was_closed
    # A long URL counts too.
    answer, was_closed = exchange(svc, head("/v3/ping?" + "q" * MAX_HEADER_BYTES))
    refused(answer, 431, "REQUEST_HEADER_FIELDS_TOO_LARGE")
    assert was_closed


def test_more_headers_than_the_limit_is_431_then_closed(svc: Service) -> None:
    # Host is one of them.
    answer, _ = exchange(svc, head("/v3/ping", "GET", *(f"X-H{i}: v" for i in range(19))))
    assert answer.status == 200
    answer, was_closed = exchange(svc, head("/v3/ping", "GET", *(f"X-H{i}: v" for i in range(20))))
    error = refused(answer, 431, "REQUEST_HEADER_FIELDS_TOO_LARGE")
    assert error["details"] == {"limit": MAX_HEADERS}
    assert was_closed


def test_a_body_over_the_configured_limit_is_413(svc: Service, api: httpx.Client) -> None:
    key = api.headers["x-access-token"]
    answer, _ = exchange(svc, post_order(key, ORDER + b" " * (MAX_BODY_BYTES - len(ORDER))))
    assert answer.status == 200, answer  # exactly at the limit: placed
    answer, _ = exchange(svc, post_order(key, ORDER + b" " * (MAX_BODY_BYTES + 1 - len(ORDER))))
    error = refused(answer, 413, "PAYLOAD_TOO_LARGE")
    assert error["details"] == {"limit": MAX_BODY_BYTES}
    assert len(ok(api.get("/gift-cards/list"))["items"]) == 1


def test_a_head_that_does_not_arrive_in_time_is_408_then_closed(svc: Service) -> None:
    answer, was_closed = exchange(svc, b"GET /v3/ping HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
    error = refused(answer, 408, "REQUEST_TIMEOUT")
    assert error["details"] == {"timeout": 1.0}
    assert answer.headers["connection"] == "close"
    assert was_closed


def test_a_short_body_is_408_and_places_nothing(svc: Service, api: httpx.Client) -> None:
    before = balance(api)
    answer, was_closed = exchange(svc, post_order(api.headers["x-access-token"], b"{}", 10))
    error = refused(answer, 408, "REQUEST_TIMEOUT")
    assert error["details"] == {"timeout": 1.0}
    assert answer.headers["connection"] == "close"
    assert was_closed
    assert balance(api) == before
    assert ok(api.get("/gift-cards/list"))["items"] == []


def test_idle_connections_are_closed(svc: Service) -> None:
    with connect(svc) as silent:  # connected, never sends a byte
        assert closed(silent)
    with connect(svc) as kept:  # one request, then nothing
        kept.sendall(head())
        assert read_answer(kept).status == 200
        assert closed(kept)
    with connect(svc) as blank:  # bytes that begin no request are not activity
        blank.sendall(b"\r\n")
        assert closed(blank)


def test_hundreds_of_half_open_connections_are_all_closed(svc: Service, api: httpx.Client) -> None:
    socks = []
    for i in range(300):
        sock = socket.create_connection(("127.0.0.1", svc.port), timeout=PATIENCE)
        if i % 2:
            sock.sendall(b"GET /v3/ping HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # a partial head
        sock.setblocking(False)
        socks.append(sock)
    selector = selectors.DefaultSelector()
    for sock in socks:
        selector.register(sock, selectors.EVENT_READ)
    open_ = set(socks)
    deadline = time.monotonic() + 60.0
    try:
        while open_ and time.monotonic() < deadline:
            for ready, _ in selector.select(timeout=1.0):
                conn = ready.fileobj
                assert isinstance(conn, socket.socket)
                try:
                    data = conn.recv(65536)
                except ConnectionResetError:
                    data = b""
                if not data:  # closed by the server (a partial head got its 408 first)
                    selector.unregister(conn)
                    open_.discard(conn)
    finally:
        selector.close()
        for sock in socks:
            sock.close()
    assert not open_, f"{len(open_)} of 300 half-open connections still open"
    ok(api.get("/ping"))  # and the service still answers


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_an_endless_header_does_not_grow_the_server(svc: Service, api: httpx.Client) -> None:
    assert svc.process is not None
    ok(api.get("/ping"))
    before = _rss_kib(svc.process.pid)
    sent, socks = 0, []
    try:
        for _ in range(4):  # 4 connections, 8 MB of one header each, all kept open
            sock = connect(svc)
            socks.append(sock)
            try:
                sock.sendall(b"GET /v3/ping HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Endless: ")
                for _ in range(128):
                    sock.sendall(b"x" * 65536)
                    sent += 65536
            except (BrokenPipeError, ConnectionResetError):
                pass  # the server refused it and closed
        ok(api.get("/ping"))
        peak = before
        for _ in range(20):  # the largest size seen while the server reads what was sent
            peak = max(peak, _rss_kib(svc.process.pid))
            time.sleep(0.1)
    finally:
        for sock in socks:
            sock.close()
    growth = (peak - before) * 1024
    assert growth < 4 * 1024 * 1024, f"server grew by {growth} bytes for {sent} bytes sent"


def test_a_client_leaving_mid_body_is_not_an_error(svc: Service, api: httpx.Client) -> None:
    before = balance(api)
    with connect(svc) as sock:
        sock.sendall(post_order(api.headers["x-access-token"], ORDER[:10], len(ORDER)))
        time.sleep(0.2)  # let the app start reading the body
    deadline = time.monotonic() + PATIENCE
    while "client disconnected" not in svc.logs():
        assert time.monotonic() < deadline, svc.logs()
        time.sleep(0.05)
    events = [json.loads(line) for line in svc.logs().splitlines() if line.startswith("{")]
    assert not [e for e in events if e["level"] in ("error", "critical")], events
    assert "Traceback" not in svc.logs()
    gone = [e for e in events if e["event"] == "client disconnected"]
    assert gone and all(e["level"] == "info" and "exception" not in e for e in gone), gone
    assert balance(api) == before
    assert ok(api.get("/gift-cards/list"))["items"] == []


def test_every_answer_of_the_service_is_the_envelope(svc: Service, api: httpx.Client) -> None:
    key = api.headers["x-access-token"]
    walk = [
        (head("/v3/nowhere"), 404, "NOT_FOUND"),
        (head("/v3/ping/"), 404, "NOT_FOUND"),
        (head("/v3/ping", "POST", "Content-Length: 0"), 405, "METHOD_NOT_ALLOWED"),
        (head("/v3/gift-cards/placeOrder"), 405, "METHOD_NOT_ALLOWED"),
        (post_order(key, b"{", 1), 400, "ERR_VALIDATION"),
        (post_order(key, b"x" * 2000), 413, "PAYLOAD_TOO_LARGE"),
        (post_order(key, b"{", 5), 408, "REQUEST_TIMEOUT"),
        (b"GET /v3/ping HTTP/1.1\r\n", 408, "REQUEST_TIMEOUT"),
        (head("/v3/ping", "GET", "X-Big: " + "b" * MAX_HEADER_BYTES), 431,
         "REQUEST_HEADER_FIELDS_TOO_LARGE"),
        (b"NOT HTTP AT ALL\r\n\r\n", 400, "BAD_REQUEST"),
        (head("/v3/ping", "GET", "Content-Length: x"), 400, "BAD_REQUEST"),
    ]  # fmt: skip
    for raw, status, code in walk:
        answer, _ = exchange(svc, raw)
        refused(answer, status, code)
