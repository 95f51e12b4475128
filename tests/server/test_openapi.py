"""The OpenAPI document at /v3/openapi.json and the reference at /v3/docs.

The document must be valid OpenAPI 3.1, describe exactly the app's routes with the bounds the
code enforces, document the error envelope everywhere, and its links must work; the reference
page must load Swagger UI from the service itself, never from the network.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
import pytest
from openapi_spec_validator import OpenAPIV31SpecValidator, validate
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route

from oneclickdz.server import orders, runtime
from oneclickdz.server.config import MAX_BODY_BYTES, ServerConfig
from oneclickdz.server.openapi import ASSETS_DIR, MissingSpec, build_document
from oneclickdz.server.paging import MAX_PAGE, MAX_PAGE_SIZE
from oneclickdz.server.testing import Service
from tests.server.helpers import PSN, client, error, ok

SERVER_SOURCES = Path(runtime.__file__).parent
KEYED_STATUSES = {401, 403}


def fetch_document(svc: Service) -> dict[str, Any]:
    response = httpx.get(f"{svc.base_url}/openapi.json", timeout=10)  # no key: it is public
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-request-id"].startswith("req_")
    document: dict[str, Any] = response.json()
    return document


@pytest.fixture(scope="module")
def document(service: Service) -> dict[str, Any]:
    return fetch_document(service)


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            yield method.upper(), path, operation


def operation_by_id(document: dict[str, Any], operation_id: str) -> dict[str, Any]:
    (found,) = [op for _, _, op in operations(document) if op["operationId"] == operation_id]
    return found


def resolve(document: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    """Follow a local `$ref` (one level is all the document uses)."""
    if "$ref" not in node:
        return node
    target: Any = document
    for part in node["$ref"].removeprefix("#/").split("/"):
        target = target[part]
    resolved: dict[str, Any] = target
    return resolved


def test_the_served_document_is_valid_openapi_3_1(document: dict[str, Any]) -> None:
    assert document["openapi"].startswith("3.1.")
    validate(document, cls=OpenAPIV31SpecValidator)


def _app_routes(tmp_path: Path) -> set[tuple[str, str]]:
    """(method, path) of every route of the app the service runs, less /metrics and assets."""
    app, backend = runtime.build(ServerConfig(db_url=f"sqlite:///{tmp_path / 'routes.db'}"))
    try:
        inner: Any = app
        for _ in range(20):  # the middlewares wrap the Starlette app; each keeps it as `.app`
            if isinstance(inner, Starlette):
                break
            inner = inner.app
        assert isinstance(inner, Starlette)
        found = set()
        for route in inner.router.routes:
            if isinstance(route, Mount):
                assert route.path.startswith("/v3/docs/"), route.path  # the page's assets
                continue
            assert isinstance(route, Route)
            if route.path == "/metrics" or route.path.startswith(("/pay/", "/v2/")):
                # outside the API: the metrics, the payer's HTML page (OCPay), and API v2
                # (answered 501 NOT_IMPLEMENTED)
                continue
            path = re.sub(r"{(\w+)(:\w+)?}", r"{\1}", route.path)
            found |= {(method, path) for method in (route.methods or set()) - {"HEAD"}}
        return found
    finally:
        backend.store.close()


def test_the_document_describes_exactly_the_routes_of_the_app(
    document: dict[str, Any], tmp_path: Path
) -> None:
    documented = {(method, path) for method, path, _ in operations(document)}
    routes = _app_routes(tmp_path)
    assert documented == routes
    # The hyphenated aliases and the reference itself are among them.
    assert {
        ("GET", "/v3/gift-cards/check-order/{order_id}"),
        ("POST", "/v3/gift-cards/place-order"),
        ("GET", "/v3/gift-cards/check-product/{product_id}"),
        ("GET", "/v3/openapi.json"),
        ("GET", "/v3/docs"),
    } <= routes


async def _handler(request: Request) -> Response:
    return Response()


def test_a_route_without_a_spec_fails_the_build() -> None:
    with pytest.raises(MissingSpec, match="refund"):
        build_document([Route("/v3/refund", _handler, name="refund")], max_body_bytes=1)
    with pytest.raises(MissingSpec, match="sku"):
        build_document([Route("/v3/ping/{sku}", _handler, name="ping")], max_body_bytes=1)
    # Outside the API (metrics) and mounts (the assets) are not operations.
    assert build_document([Route("/metrics", _handler, name="metrics")], max_body_bytes=1)


def test_the_bounds_are_the_ones_the_code_enforces(document: dict[str, Any]) -> None:
    body = operation_by_id(document, "placeOrder")["requestBody"]["content"]["application/json"]
    properties = body["schema"]["properties"]
    assert body["schema"]["required"] == ["productId", "typeId", "quantity"]
    assert properties["quantity"]["maximum"] == orders.MAX_QUANTITY
    assert properties["quantity"]["minimum"] == 1
    assert properties["ref"]["maxLength"] == orders.MAX_REF_LENGTH
    for listing in ("list", "transactions"):
        params = {p["name"]: p for p in operation_by_id(document, listing)["parameters"]}
        assert params["page"]["schema"]["maximum"] == MAX_PAGE
        assert params["pageSize"]["schema"]["maximum"] == MAX_PAGE_SIZE
        assert params["from"]["schema"]["format"] == params["to"]["schema"]["format"]
    limit = document["components"]["schemas"]["PayloadTooLargeDetails"]["properties"]["limit"]
    assert limit == {"const": MAX_BODY_BYTES}


def test_the_documented_bounds_are_where_the_service_refuses(
    document: dict[str, Any], service: Service, sandbox_key: str
) -> None:
    """At each documented bound the field is accepted; one past it, refused by name."""
    body_schema = operation_by_id(document, "placeOrder")["requestBody"]["content"]
    fields = body_schema["application/json"]["schema"]["properties"]
    order = {"productId": PSN, "typeId": "type_001", "quantity": 1}

    def refused_field(response: httpx.Response) -> str | None:
        if response.status_code != 400:
            return None
        field: str = error(response, 400, "ERR_VALIDATION")["details"]["field"]
        return field

    with client(service, sandbox_key) as c:
        for name in ("productId", "typeId", "ref"):
            longest = fields[name]["maxLength"]
            for length, refused in ((longest, False), (longest + 1, True)):
                response = c.post("/gift-cards/placeOrder", json={**order, name: "x" * length})
                assert (refused_field(response) == name) is refused, (name, length)
        quantity = fields["quantity"]
        for value, refused in (
            (quantity["maximum"], False),
            (quantity["maximum"] + 1, True),
            (quantity["minimum"], False),
            (quantity["minimum"] - 1, True),
        ):
            response = c.post("/gift-cards/placeOrder", json={**order, "quantity": value})
            assert (refused_field(response) == "quantity") is refused, value
        params = {p["name"]: p["schema"] for p in operation_by_id(document, "list")["parameters"]}
        for name in ("page", "pageSize"):
            for value, refused in (
                (params[name]["maximum"], False),
                (params[name]["maximum"] + 1, True),
                (params[name]["minimum"], False),
                (params[name]["minimum"] - 1, True),
            ):
                response = c.get("/gift-cards/list", params={name: value})
                assert (refused_field(response) == name) is refused, (name, value)


def test_the_documented_defaults_are_what_the_service_does(
    document: dict[str, Any], service: Service, sandbox_key: str
) -> None:
    params = {p["name"]: p for p in operation_by_id(document, "list")["parameters"]}
    with client(service, sandbox_key) as c:
        pagination = ok(c.get("/gift-cards/list"))["pagination"]
    assert pagination["pageSize"] == params["pageSize"]["schema"]["default"]
    assert pagination["page"] == params["page"]["schema"]["default"]


def test_the_body_limit_in_the_document_follows_the_configuration(
    service_factory: Callable[..., Service],
) -> None:
    svc = service_factory(extra_args=["--max-body-bytes", "2048"])
    document = fetch_document(svc)
    key = svc.create_key(balance=1000)
    with client(svc, key) as c:
        response = c.post("/gift-cards/placeOrder", content=b"{" + b" " * 2048 + b"}")
    details = error(response, 413, "PAYLOAD_TOO_LARGE")["details"]
    limit = document["components"]["schemas"]["PayloadTooLargeDetails"]["properties"]["limit"]
    assert limit == {"const": details["limit"]} == {"const": 2048}


def test_every_operation_documents_the_error_envelope(document: dict[str, Any]) -> None:
    envelope = document["components"]["schemas"]["Error"]
    assert envelope["required"] == ["success", "error", "requestId"]
    assert envelope["properties"]["error"]["required"] == ["code", "message"]
    public = {"/v3/ping", "/v3/openapi.json", "/v3/docs"}
    for method, path, operation in operations(document):
        responses = operation["responses"]
        statuses = {int(status) for status in responses}
        assert {200, 400, 405, 408, 429, 431, 500, 503} <= statuses, (method, path)
        assert (statuses >= KEYED_STATUSES) is (path not in public), (method, path)
        assert ("requestBody" in operation) is (413 in statuses), (method, path)
        for status, response in responses.items():
            headers = response["headers"]
            assert "X-Request-Id" in headers, (method, path, status)
            if status == "200":
                continue
            schema = response["content"]["application/json"]["schema"]
            assert schema["allOf"][0] == {"$ref": "#/components/schemas/Error"}
            codes = schema["allOf"][1]["properties"]["error"]["properties"]["code"]["enum"]
            assert codes and all(re.fullmatch(r"[A-Z_]+", code) for code in codes)
            if status in ("429", "503"):
                assert resolve(document, headers["Retry-After"])["required"] is True


def test_every_error_code_the_service_answers_is_documented(document: dict[str, Any]) -> None:
    """Each `(status, "CODE")` pair written in the service's source appears in the document."""
    raised: set[tuple[str, str]] = set()
    for source in SERVER_SOURCES.rglob("*.py"):
        text = source.read_text()
        raised |= set(re.findall(r"\b([1-5]\d\d),\s*\"([A-Z][A-Z_]+)\"", text))
        raised |= set(re.findall(r"\b([1-5]\d\d): \(\"([A-Z][A-Z_]+)\"", text))  # fault table
    assert len(raised) >= 15, raised  # the scan still finds the service's refusals
    documented = set()
    for _, _, operation in operations(document):
        for status, response in operation["responses"].items():
            if status != "200":
                schema = response["content"]["application/json"]["schema"]
                codes = schema["allOf"][1]["properties"]["error"]["properties"]["code"]["enum"]
                documented |= {(status, code) for code in codes}
    # API v2's paths answer 501 NOT_IMPLEMENTED: outside /v3, so outside the document.
    assert raised - documented == {("501", "NOT_IMPLEMENTED")}


def test_only_the_api_needs_a_key(document: dict[str, Any]) -> None:
    scheme = document["components"]["securitySchemes"]["AccessToken"]
    assert scheme == {**scheme, "type": "apiKey", "in": "header", "name": "X-Access-Token"}
    assert document["security"] == [{"AccessToken": []}]
    public = {path for _, path, op in operations(document) if op.get("security") == []}
    assert public == {"/v3/ping", "/v3/openapi.json", "/v3/docs"}


@pytest.mark.parametrize("place", ["placeOrder", "placeOrderAlias"])
def test_the_links_lead_from_a_placed_order_to_check_order(
    document: dict[str, Any], service: Service, sandbox_key: str, place: str
) -> None:
    links = operation_by_id(document, place)["responses"]["200"]["links"]
    assert {link["operationId"] for link in links.values()} == {"checkOrder", "checkOrderAlias"}
    paths = {op["operationId"]: (method, path) for method, path, op in operations(document)}
    with client(service, sandbox_key) as c:
        _, place_path = paths[place]
        order = {"productId": PSN, "typeId": "type_001", "quantity": 1}
        body = ok(c.post(place_path.removeprefix("/v3"), json=order))
        for link in links.values():
            method, path = paths[link["operationId"]]
            url = path
            for name, expression in link["parameters"].items():
                assert expression.startswith("$response.body#/")
                value: Any = {"data": body}
                for part in expression.removeprefix("$response.body#/").split("/"):
                    value = value[part]
                url = url.replace(f"{{{name}}}", value)
            assert "{" not in url
            found = ok(c.request(method, url.removeprefix("/v3")))
            assert found["_id"] == body["orderId"]


class _Assets(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [value for name, value in attrs if name in ("src", "href") and value]


def test_the_docs_page_loads_swagger_ui_from_the_service_only(service: Service) -> None:
    page_url = f"{service.base_url}/docs"
    with httpx.Client(timeout=10) as c:  # no key: the reference is public
        page = c.get(page_url)
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert "http:" not in page.text and "https:" not in page.text and "//" not in page.text
        parser = _Assets()
        parser.feed(page.text)
        assert {"swagger-ui.css", "swagger-ui-bundle.js"} <= {
            url.rsplit("/", 1)[-1] for url in parser.urls
        }
        spec_url = re.search(r'url: "([^"]+)"', page.text)
        assert spec_url is not None
        assert c.get(urljoin(page_url, spec_url.group(1))).json()["openapi"].startswith("3.1")
        kinds = {".css": "text/css", ".js": "javascript", ".png": "image/png"}
        for url in parser.urls:
            assert not urlsplit(url).scheme and not urlsplit(url).netloc, url
            asset = c.get(urljoin(page_url, url))
            assert asset.status_code == 200, url
            assert kinds[Path(url).suffix] in asset.headers["content-type"], url
            assert asset.content == (ASSETS_DIR / Path(url).name).read_bytes()
        missing = c.get(f"{service.base_url}/docs/assets/no-such-file.js")
        error(missing, 404, "NOT_FOUND")
