"""Small helpers for talking to the service in tests: envelopes checked on every call."""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterator, Sequence
from typing import Any

import httpx

from oneclickdz.server.testing import Service

PSN = "507f1f77bcf86cd799439011"


def client(service: Service, key: str | None = None, source_ip: str | None = None) -> httpx.Client:
    """An HTTP client for `service`, sending `key`, optionally from another loopback address."""
    headers = {"X-Access-Token": key} if key is not None else {}
    transport = httpx.HTTPTransport(local_address=source_ip) if source_ip else None
    return httpx.Client(
        base_url=service.base_url, headers=headers, transport=transport, timeout=10.0
    )


def ok(response: httpx.Response) -> Any:
    """The `data` of a success envelope, after checking the envelope itself."""
    body = response.json()
    assert response.status_code == 200, body
    assert body["success"] is True
    assert body["requestId"].startswith("req_")
    assert response.headers["x-request-id"] == body["requestId"]
    assert body["meta"]["timestamp"].endswith("Z")
    return body["data"]


def error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The `error` of an error envelope, after checking its status, code and request id."""
    body = response.json()
    assert response.status_code == status, body
    assert body["success"] is False
    assert body["error"]["code"] == code, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert body["requestId"].startswith("req_")
    assert response.headers["x-request-id"] == body["requestId"]
    assert set(body) == {"success", "error", "requestId"}
    result: dict[str, Any] = body["error"]
    return result


def place(
    c: httpx.Client,
    type_id: str = "type_001",
    quantity: int = 1,
    product_id: str = PSN,
    ref: str | None = None,
) -> str:
    body: dict[str, Any] = {"productId": product_id, "typeId": type_id, "quantity": quantity}
    if ref is not None:
        body["ref"] = ref
    data = ok(c.post("/gift-cards/placeOrder", json=body))
    order_id: str = data["orderId"]
    return order_id


def wait_final(c: httpx.Client, order_id: str, within: float = 20.0) -> dict[str, Any]:
    """Poll checkOrder until the order leaves HANDLING (fails the test after `within` s)."""
    deadline = time.monotonic() + within
    while True:
        order: dict[str, Any] = ok(c.get(f"/gift-cards/checkOrder/{order_id}"))
        if order["status"] != "HANDLING":
            return order
        assert time.monotonic() < deadline, f"order {order_id} still HANDLING after {within}s"
        time.sleep(0.05)


def balance(c: httpx.Client) -> float:
    value: float = ok(c.get("/account/balance"))["balance"]
    return value


# -- the service's database, seen from outside (as an operator or another process would) ----


def query(svc: Service, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """Run one statement on the service's database, either engine (`?` placeholders); its rows."""
    if svc.db_url.startswith("sqlite:"):
        with contextlib.closing(sqlite3.connect(svc.db_path, isolation_level=None)) as db:
            return db.execute(sql, params).fetchall()
    import psycopg

    with psycopg.connect(svc.db_url, autocommit=True) as conn:
        cur = conn.execute(sql.replace("?", "%s"), params)
        return cur.fetchall() if cur.description else []


@contextlib.contextmanager
def writes_blocked(svc: Service) -> Iterator[None]:
    """Hold what every placement needs, as a long import by another process would: SQLite's
    write lock, or PostgreSQL's balance rows."""
    if svc.db_url.startswith("sqlite:"):
        db = sqlite3.connect(svc.db_path, isolation_level=None)
        db.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            db.execute("ROLLBACK")
            db.close()
        return
    import psycopg

    with psycopg.connect(svc.db_url) as conn:
        conn.execute("SELECT * FROM balances FOR UPDATE")
        try:
            yield
        finally:
            conn.rollback()


SERVICE_TABLES = ("accounts", "balances", "api_keys", "transactions", "products",
                  "product_types", "orders", "cards", "settings", "webhook_endpoints",
                  "webhook_events", "webhook_deliveries", "webhook_attempts")  # fmt: skip


def stored_bytes(svc: Service) -> bytes:
    """Everything the service's database holds at rest: SQLite's files (the database, its WAL),
    or every row of every table of PostgreSQL, as text and raw bytes."""
    if svc.db_url.startswith("sqlite:"):
        path = svc.db_path
        files = [p for p in path.parent.iterdir() if p.name.startswith(path.name)]
        assert path in files
        return b"".join(p.read_bytes() for p in files)
    parts: list[bytes] = []
    for table in SERVICE_TABLES:
        for row in query(svc, f"SELECT * FROM {table}"):
            for value in row:
                parts.append(bytes(value) if isinstance(value, (bytes, memoryview)) else
                             str(value).encode())  # fmt: skip
    assert parts
    return b"\x00".join(parts)
