"""The HTTP edge of `/v3/mobile` and `/v3/internet`: request parsing in the API's AJV-style
errors, the use cases (send, check, list, the plans and products), and the wire views.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Mapping
from functools import partial
from typing import Any

from oneclickdz.server import topups
from oneclickdz.server.chance import Chance
from oneclickdz.server.errors import ServiceError, not_found, validation
from oneclickdz.server.formats import iso, money, object_id
from oneclickdz.server.fulfilment import Fulfilment
from oneclickdz.server.paging import parse_page
from oneclickdz.server.store import KeyRecord, Store, TopupKind, TopupRecord
from oneclickdz.server.topups import INTERNET, MOBILE, SendTopup
from oneclickdz.server.vault import Vault

log = logging.getLogger("oneclickdz.server.topups")

_NUMBER_PATTERNS = {
    "MSSIDN": topups.MSSIDN.pattern,
    **{t: p.pattern for t, p in topups.NUMBERS.items()},
}


class TopupApi:
    """Every top-up operation, bound to the service's store, vault and fulfilment clock."""

    def __init__(self, store: Store, vault: Vault, fulfilment: Fulfilment, chance: Chance) -> None:
        self.store = store
        self.vault = vault
        self.fulfilment = fulfilment
        self.chance = chance

    # -- catalog -----------------------------------------------------------------------------

    def mobile_plans(self) -> dict[str, Any]:
        return {
            "dynamicPlans": [plan_view(p) for p in topups.PLANS if p.dynamic],
            "fixedPlans": [plan_view(p) for p in topups.PLANS if not p.dynamic],
        }

    def internet_products(self, query: Mapping[str, str]) -> dict[str, Any]:
        kind = _internet_type(query.get("type"), "querystring")
        return {
            "type": kind,
            "products": [
                {"value": p.value, "cost": p.cost, "available": p.available}
                for p in topups.PRODUCTS[kind]
            ],
        }

    def check_number(self, query: Mapping[str, str]) -> dict[str, Any]:
        """Whether a line can be recharged: a simulated Algérie Télécom lookup (format only)."""
        kind = _internet_type(query.get("type"), "querystring")
        number = query.get("number")
        if number is None:
            raise validation("number", None, "querystring must have required property 'number'")
        if not topups.NUMBERS[kind].fullmatch(number):
            raise ServiceError(
                400, "ERR_PHONE", f"Invalid phone number for {kind} service",
                {"number": number[:40], "type": kind,
                 "reason": "Number does not match required format"},
            )  # fmt: skip
        ncli = f"110{number[-3:-1]}*****"
        if kind == "ADSL":
            return {"ncli": ncli, "offre": "FTTc-b_10M", "type": "ADSL"}
        return {"ncli": ncli, "type": "4GLTE"}

    # -- send --------------------------------------------------------------------------------

    async def send(self, key: KeyRecord, kind: TopupKind, body: Any) -> dict[str, Any]:
        if kind is MOBILE:
            cmd, plan = parse_mobile_send(body)
            charge = topups.mobile_charge_cents(plan, cmd.amount)
        else:
            cmd, product = parse_internet_send(body)
            if not product.available:
                raise ServiceError(
                    403, "OUT_OF_STOCK", "Card value out of stock",
                    {"type": product.type, "value": product.value},
                )  # fmt: skip
            charge = product.cost * 100
        topup_id = object_id()
        ref = cmd.ref or auto_ref(key, kind)
        low, high = topups.first_delay(kind)
        delay = self.chance.delays.uniform(low, high) * self.fulfilment.topup_scale
        topup, balance = await self.store.write(
            partial(topups.place, key=key, cmd=cmd, topup_id=topup_id, ref=ref,
                    now=iso(time.time()), due_at=self.fulfilment.now() + delay,
                    charge_cents=charge)
        )  # fmt: skip
        if topup.due_at is not None:
            self.fulfilment.schedule(topup.id, topup.due_at)
        log.info(
            "top-up sent",
            extra={"topupId": topup.id, "kind": kind.value, "env": topup.env,
                   "plan": topup.plan_code, "amount": cmd.amount},
        )  # fmt: skip
        return {"topupId": topup.id, "topupRef": topup.ref, "newBalance": money(balance)}

    # -- check and list ----------------------------------------------------------------------

    async def check(
        self, key: KeyRecord, kind: TopupKind, *, topup_id: str | None = None,
        ref: str | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        reader = self.store.reader()
        found: TopupRecord | None = None
        if ref is not None:
            found = await reader.topups.by_ref(key.account_id, key.env, kind, ref)
        elif topup_id is not None:
            found = await reader.topups.get(topup_id)
        if found is None or not _owned(found, key, kind):
            what = f"reference '{ref}'" if ref is not None else f"id '{topup_id}'"
            raise not_found(f"Top-up with {what} not found")
        return self.view(found)

    async def list(self, key: KeyRecord, kind: TopupKind, query: Mapping[str, str]) -> Any:
        page = parse_page(query, both_ends=True)
        records, total = await self.store.reader().topups.page(
            key.account_id, key.env, kind, page.window, page.size, page.offset
        )
        rendered = page.render([self.view(t) for t in records], total)
        if kind is INTERNET:  # the docs' internet list names its items `topups`
            rendered = {"topups": rendered.pop("items"), **rendered}
        return rendered

    def view(self, topup: TopupRecord) -> dict[str, Any]:
        return mobile_view(topup) if topup.kind is MOBILE else self.internet_view(topup)

    def internet_view(self, t: TopupRecord) -> dict[str, Any]:
        view: dict[str, Any] = {
            "_id": t.id,
            "ref": t.ref,
            "status": t.status.value,
            "type": t.plan_code,
            "number": t.number,
            "topup_amount": money(t.amount_cents),
            "balance_amount": 0 if t.status is topups.REFUNDED else money(t.charge_cents),
            "created_at": t.created_at,
        }
        if t.status is topups.FULFILLED and t.card_secret is not None:
            code, trans = self.vault.open_card(t.card_secret, topups.card_context(t.id))
            view["card_code"] = code
            view["num_trans"] = trans
            view["date_traitement"] = t.date_traitement
        return view


def _owned(topup: TopupRecord, key: KeyRecord, kind: TopupKind) -> bool:
    """Another account's (or environment's, or service's) top-up is as unknown as a missing one."""
    return topup.account_id == key.account_id and topup.env == key.env and topup.kind is kind


def auto_ref(key: KeyRecord, kind: TopupKind) -> str:
    """A ref for a send without one, in the docs' shape: `API-<username>-<ms>-<random>`."""
    label = "" if kind is MOBILE else "internet-"
    return f"API-{key.account_name[:40]}-{label}{int(time.time() * 1000)}-{os.urandom(3).hex()}"


# -- views ------------------------------------------------------------------------------------


def plan_view(plan: topups.Plan) -> dict[str, Any]:
    view: dict[str, Any] = {"code": plan.code, "name": plan.name, "operator": plan.operator}
    if plan.show_cost:
        view["cost"] = float(plan.cost)
    view["isEnabled"] = True
    if plan.dynamic:
        view["min_amount"] = plan.min_amount
        view["max_amount"] = plan.max_amount
    else:
        view["amount"] = plan.amount
    return view


def mobile_view(t: TopupRecord) -> dict[str, Any]:
    view: dict[str, Any] = {
        "_id": t.id,
        "ref": t.ref,
        "status": t.status.value,
        "plan_code": t.plan_code,
        "MSSIDN": t.number,
        "topup_amount": money(t.amount_cents),
        "balance_amount": 0 if t.status is topups.REFUNDED else money(t.charge_cents),
        "created_at": t.created_at,
    }
    if t.status is topups.UNKNOWN_ERROR:
        view["refund_message"] = topups.UNKNOWN_MESSAGE
    elif t.status is topups.REFUNDED:
        suggest = topups.suggests_offers(t)
        view["refund_message"] = topups.OFFER_REFUSED if suggest else topups.REFUND_MESSAGE
        if suggest:
            plan = topups.PLANS_BY_CODE[topups.SUGGESTIONS[t.number[:2]]]
            view["suggested_offers"] = [
                {"typename": plan.name, "plan_code": plan.code, "amount": money(t.amount_cents)}
            ]
    return view


# -- request parsing --------------------------------------------------------------------------


def _body(body: Any, required: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise validation("body", None, "body must be object")
    for field in required:
        if field not in body:
            raise validation(field, None, f"body must have required property '{field}'")
    return body


def _string(body: Mapping[str, Any], field: str) -> str:
    value = body[field]
    if not isinstance(value, str):
        raise validation(field, _shown(value), f"body/{field} must be string")
    return value


def _pattern(value: str, field: str, pattern_name: str) -> str:
    pattern = _NUMBER_PATTERNS[pattern_name]
    if not re.fullmatch(pattern, value):
        raise validation(field, value[:40], f'body/{field} must match pattern "^{pattern}$"')
    return value


def _integer(body: Mapping[str, Any], field: str) -> int:
    value = body[field]
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise validation(field, _shown(value), f"body/{field} must be integer")
    return value


def _ref(body: Mapping[str, Any]) -> str | None:
    ref = body.get("ref")
    if ref is None:
        return None
    if not isinstance(ref, str):
        raise validation("ref", _shown(ref), "body/ref must be string")
    if not ref or len(ref) > topups.MAX_REF_LENGTH:
        raise validation(
            "ref", ref[:40], f"body/ref must be 1 to {topups.MAX_REF_LENGTH} characters"
        )
    return ref


def _shown(value: Any) -> Any:
    """A refused value as `details.value` shows it: scalars as given, text cut short."""
    if isinstance(value, str):
        return value[:40]
    return value if isinstance(value, (int, float, bool)) or value is None else None


def parse_mobile_send(body: Any) -> tuple[SendTopup, topups.Plan]:
    """A mobile send: the plan exists, the number is the plan operator's, and a dynamic plan's
    amount is within its bounds (a fixed plan's amount is its own, whatever was sent)."""
    body = _body(body, ("plan_code", "MSSIDN"))
    code = _string(body, "plan_code")
    number = _pattern(_string(body, "MSSIDN"), "MSSIDN", "MSSIDN")
    ref = _ref(body)
    plan = topups.PLANS_BY_CODE.get(code)
    if plan is None:
        raise not_found(f"Plan '{code[:40]}' not found")
    if number[:2] != topups.PREFIX[plan.operator]:
        raise validation("MSSIDN", number, "MSSIDN doesn't match plan operator")
    if plan.amount is not None:
        return SendTopup(MOBILE, plan.code, number, plan.amount, ref), plan
    if body.get("amount") is None:
        raise validation("amount", None, "amount is required for dynamic plans")
    amount = _integer(body, "amount")
    low, high = plan.min_amount or 0, plan.max_amount or 0
    if amount < low:
        raise validation("amount", amount, f"body/amount must be >= {low}")
    if amount > high:
        raise validation("amount", amount, f"body/amount must be <= {high}")
    return SendTopup(MOBILE, plan.code, number, amount, ref), plan


def parse_internet_send(body: Any) -> tuple[SendTopup, topups.Product]:
    """An internet send: the type, a number in its format, and one of its products' values."""
    body = _body(body, ("type", "number", "value"))
    kind = _internet_type(body["type"], "body")
    number = _pattern(_string(body, "number"), "number", kind)
    value = _integer(body, "value")
    ref = _ref(body)
    for product in topups.PRODUCTS[kind]:
        if product.value == value:
            return SendTopup(INTERNET, kind, number, value, ref), product
    allowed = ", ".join(str(p.value) for p in topups.PRODUCTS[kind])
    raise validation("value", value, f"body/value must be one of the {kind} values: {allowed}")


def _internet_type(raw: Any, where: str) -> str:
    if raw is None:
        raise validation("type", None, f"{where} must have required property 'type'")
    if raw not in topups.INTERNET_TYPES:
        shown = raw[:40] if isinstance(raw, str) else None
        raise validation("type", shown, f"{where}/type must be equal to one of the allowed "
                         "values: ADSL, 4G")  # fmt: skip
    return str(raw)
