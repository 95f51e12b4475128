"""Generated contract tests: schemathesis drives the running service from its own OpenAPI
document, and every answer must match it.

Every operation gets valid and invalid requests (with the key, and without it); the stateful
run follows the document's links from placeOrder to checkOrder. Checks: no server error, the
status is documented, the body matches its schema, the content type and the documented headers
(`X-Request-Id`, `Retry-After`) are there. The runs are bounded and derandomized, so CI is fast
and stable.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import hypothesis.strategies as st
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import CheckContext, GenerationMode, Response
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from oneclickdz.server.catalog import DEFAULT_CATALOG
from oneclickdz.server.orders import TEST_PARTIAL, TEST_REFUND
from oneclickdz.server.testing import Service
from oneclickdz.server.webhooks import EVENT_TYPES

Operation = schemathesis.APIOperation[Any, Any, Any, Any]
Case = schemathesis.Case[Operation]

MAX_EXAMPLES = 25  # per operation and generation mode
ALIAS_EXAMPLES = 8  # a hyphenated alias runs the same handler: it only has to be routed right
FAULT_EXAMPLES = 8  # per operation, with faults injected
SCENARIOS = 12  # stateful runs, each of up to 6 steps
SEED = 20251129
# The service without the protections that would turn a fuzzer's traffic into 429 and 403,
# taking webhook endpoints on 127.0.0.1 (so that many generated ones are made).
SERVICE_ARGS = ["--rate-limit", "0", "--lockout-attempts", "1000000", "--webhook-allow-private"]
# Whatever URLs the run registers, no webhook is ever sent: every delivery is dropped.
NO_WEBHOOKS_SENT = "webhook:1:drop"
# Health checks about generation speed and filtering: a loaded 2-core CI machine trips them
# without anything being wrong with the document or the service.
SUPPRESSED = [HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large]
SETTINGS = settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=SUPPRESSED,
)

# The ordered products and types, so that many generated orders succeed (and can be followed).
KNOWN_ORDERS = st.fixed_dictionaries(
    {
        "productId": st.sampled_from(
            [p["id"] for c in DEFAULT_CATALOG["categories"] for p in c["products"]]
        ),
        "typeId": st.sampled_from(
            ["type_001", "type_002", "type_003", "pubg_60", TEST_PARTIAL, TEST_REFUND]
        ),
        "quantity": st.integers(1, 5),
    }
)
# Webhook endpoints that can be made (the service allows loopback receivers), and ids that
# the ones made have (a fresh database numbers them from 1).
KNOWN_WEBHOOKS = st.fixed_dictionaries(
    {"url": st.sampled_from(["http://127.0.0.1:9/hooks", "http://localhost:9/orders"])},
    optional={"events": st.lists(st.sampled_from(EVENT_TYPES), max_size=3)},
)
KNOWN_WEBHOOK_IDS = st.fixed_dictionaries({"id": st.integers(1, 30)})


def _date_param(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def time_window_is_honoured(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """Two valid ends in order are accepted; reversed ones are refused (any year, 1 to 9999)."""
    query = case.query or {}
    start, end = _date_param(query.get("from")), _date_param(query.get("to"))
    if start is None or end is None or response.status_code not in (200, 400):
        return None
    body = response.json()
    field = body.get("error", {}).get("details", {}).get("field") if not body["success"] else None
    if start <= end:
        assert field not in ("from", "to"), f"a valid window was refused: {body['error']}"
    else:
        assert response.status_code == 400, f"a reversed window was accepted: from {start} to {end}"
    return True


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    response_schema_conformance,
    content_type_conformance,
    response_headers_conformance,
    time_window_is_honoured,
]


def load_schema(svc: Service, key: str, document: dict[str, Any]) -> schemathesis.BaseSchema:
    """The service's document as schemathesis sees it, sending `key` and placing real orders."""
    config = schemathesis.Config.from_dict(
        {
            "base-url": f"http://127.0.0.1:{svc.port}/",
            "seed": SEED,
            "max-redirects": 0,  # a redirect is an answer to check, not one to follow
            "request-timeout": 30,
            "suppress-health-check": [check.name for check in SUPPRESSED],
            "auth": {"openapi": {"AccessToken": {"api_key": key}}},
            "generation": {"mode": "all", "deterministic": True},
        }
    )
    schema = schemathesis.openapi.from_dict(document, config=config)

    @schema.hook("before_generate_body")
    def known_bodies(context: Any, strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        operation_id = context.operation.definition.raw["operationId"]
        if operation_id.startswith("placeOrder"):
            return st.one_of(KNOWN_ORDERS, strategy)
        if operation_id == "createWebhook":
            return st.one_of(KNOWN_WEBHOOKS, strategy)
        return strategy

    @schema.hook("before_generate_path_parameters")
    def known_ids(context: Any, strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        if context.operation.path.startswith("/v3/webhooks/"):
            return st.one_of(KNOWN_WEBHOOK_IDS, strategy)
        return strategy

    return schema


def fetch_document(svc: Service) -> dict[str, Any]:
    """The served document (fetched until it comes: a service with faults may refuse a few)."""
    with httpx.Client(base_url=svc.base_url, timeout=10) as client:
        for _ in range(50):
            response = client.get("/openapi.json")
            if response.status_code == 200:
                document: dict[str, Any] = response.json()
                return document
    raise AssertionError(f"no document: {response.status_code} {response.text}")


def start(service_factory: Callable[..., Service], faults: str = "") -> schemathesis.BaseSchema:
    rules = ",".join(filter(None, [faults, NO_WEBHOOKS_SENT]))
    svc = service_factory(extra_args=[*SERVICE_ARGS, "--faults", rules], fulfill_delay="0-0.05")
    key = svc.create_key(sandbox=True, account="contract", balance=100_000_000)
    return load_schema(svc, key, fetch_document(svc))


def exercise(
    strategy: st.SearchStrategy[Case], checks: list[Any], seen: Counter[int], examples: int
) -> None:
    """Send up to `examples` generated requests; each answer must pass every check."""

    @settings(SETTINGS, max_examples=examples)
    @given(strategy)
    def run(case: Case) -> None:
        response = case.call_and_validate(checks=checks)
        seen[response.status_code] += 1

    run()


def operations(schema: schemathesis.BaseSchema) -> list[Operation]:
    found = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
    assert len(found) == len({op.label for op in found}) >= 14, [op.label for op in found]
    return found


def examples(operation: Operation) -> int:
    alias = operation.definition.raw["operationId"].endswith("Alias")
    return ALIAS_EXAMPLES if alias else MAX_EXAMPLES


def can_be_invalid(operation: Operation) -> bool:
    raw = operation.definition.raw
    return bool(raw.get("parameters")) or "requestBody" in raw


def auth_enforced_once() -> Any:
    """schemathesis' `ignored_auth`, once per operation that answered 2xx (it re-sends each
    request without the key and with a wrong one: every time would triple the run)."""
    confirmed: set[str] = set()

    def auth_enforced(ctx: CheckContext, response: Response, case: Case) -> bool | None:
        if case.operation.label in confirmed or not 200 <= response.status_code < 300:
            return None
        result = ignored_auth(ctx, response, case)
        confirmed.add(case.operation.label)
        return result

    return auth_enforced


def test_every_operation_keeps_its_contract(
    service_factory: Callable[..., Service], subtests: pytest.Subtests
) -> None:
    """Valid requests (also without the key), then invalid ones, to every operation."""
    schema = start(service_factory)
    seen: Counter[int] = Counter()
    valid_checks = [*CHECKS, auth_enforced_once()]
    for operation in operations(schema):
        with subtests.test(f"valid {operation.label}"):
            exercise(operation.as_strategy(), valid_checks, seen, examples(operation))
        if can_be_invalid(operation):  # else there is nothing to make invalid
            with subtests.test(f"invalid {operation.label}"):
                invalid = operation.as_strategy(GenerationMode.NEGATIVE)
                exercise(invalid, CHECKS, seen, examples(operation))
    # The run reached the service's answers, its refusals and its misses, not only 401s.
    assert {200, 400, 401, 404} <= set(seen), seen


def test_placed_orders_are_followed_to_check_order(
    service_factory: Callable[..., Service],
) -> None:
    """The stateful run: placeOrder's links lead to checkOrder, which finds the order."""
    # Without the webhook endpoints: deleting one, or reaching a key's limit, changes what the
    # same steps answer next time, and Hypothesis' stateful runs replay steps.
    schema = start(service_factory).exclude(tag="webhooks")
    schema = schema.exclude(tag="ocpay")  # its links (createLink -> checkPayment) are not orders
    placed: set[str] = set()
    found: set[str] = set()

    class Machine(schema.as_state_machine()):  # type: ignore[misc]
        def after_call(self, response: Response, case: Case) -> None:
            super().after_call(response, case)
            if response.status_code != 200:
                return
            if case.operation.method.upper() == "POST":
                placed.add(response.json()["data"]["orderId"])
            else:
                found.add(response.json()["data"]["_id"])

        def validate_response(
            self, response: Response, case: Case, additional_checks: Any = None, **kwargs: Any
        ) -> None:
            case.validate_response(response, checks=CHECKS)

    Machine.run(settings=settings(SETTINGS, max_examples=SCENARIOS, stateful_step_count=6))
    assert found, "no placed order was ever followed to checkOrder"
    assert found <= placed


def test_faults_are_answered_as_documented(
    service_factory: Callable[..., Service], subtests: pytest.Subtests
) -> None:
    """Injected 429, 500 and 503 answers match the document too (envelope, Retry-After)."""
    schema = start(service_factory, "*:0.2:503,*:0.2:429=2,*:0.1:500")
    checks = [check for check in CHECKS if check is not not_a_server_error]
    seen: Counter[int] = Counter()
    for operation in operations(schema):
        with subtests.test(operation.label):
            exercise(operation.as_strategy(), checks, seen, FAULT_EXAMPLES)
    assert {429, 500, 503} <= set(seen), seen
