"""Small helpers for talking to the service in tests: envelopes checked on every call."""

from __future__ import annotations

import time
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
