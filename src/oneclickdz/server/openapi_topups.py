"""The OpenAPI description of `/v3/mobile` and `/v3/internet` (merged into `openapi.SPECS`)."""

from __future__ import annotations

from oneclickdz.server import topups
from oneclickdz.server.openapi import (
    _MONEY,
    _PAGING,
    _TIMESTAMP,
    Json,
    OperationSpec,
    _object,
    _page_of,
    _query,
    _window,
)

_ID: Json = {"type": "string", "minLength": 1}
_REF: Json = {"type": "string", "minLength": 1, "maxLength": topups.MAX_REF_LENGTH,
              "description": "Your own reference, unique per account, environment and service; "
                             "absent: one is made (`API-<username>-...`)."}  # fmt: skip
_SENT = _object(
    {"topupId": {"type": "string"}, "topupRef": {"type": "string"}, "newBalance": _MONEY}
)
_SEND_ERRORS = {
    400: ("ERR_VALIDATION",),
    403: ("DUPLICATED_REF", "INSUFFICIENT_BALANCE", "OUT_OF_STOCK"),
    404: ("NOT_FOUND",),
}

_PLAN_BASE: Json = {
    "code": {"type": "string"}, "name": {"type": "string"}, "operator": {"type": "string"},
    "isEnabled": {"type": "boolean"},
}  # fmt: skip
_COST: Json = {"cost": {"type": "number", "description": "What 1 DZD of credit costs you."}}
_PLANS = _object({
    "dynamicPlans": {"type": "array", "items": _object(
        {**_PLAN_BASE, "min_amount": {"type": "integer"}, "max_amount": {"type": "integer"}},
        _COST)},
    "fixedPlans": {"type": "array", "items": _object(
        {**_PLAN_BASE, "amount": {"type": "integer"}}, _COST)},
})  # fmt: skip

_MOBILE_STATUSES = ["PENDING", "HANDLING", "FULFILLED", "REFUNDED", "UNKNOWN_ERROR"]
_MOBILE_TOPUP = _object(
    {
        "_id": _ID, "ref": {"type": "string"}, "status": {"enum": _MOBILE_STATUSES},
        "plan_code": {"type": "string"}, "MSSIDN": {"type": "string"},
        "topup_amount": _MONEY,
        "balance_amount": {**_MONEY, "description": "Debited from your balance (0 once "
                                                    "REFUNDED)."},
        "created_at": _TIMESTAMP,
    },
    {
        "refund_message": {"type": "string", "description": "In Arabic; REFUNDED or "
                                                            "UNKNOWN_ERROR only."},
        "suggested_offers": {"type": "array", "items": _object(
            {"typename": {"type": "string"}, "plan_code": {"type": "string"},
             "amount": _MONEY})},
    },
)  # fmt: skip
_MOBILE_BODY: Json = {
    "type": "object",
    "required": ["plan_code", "MSSIDN"],
    "properties": {
        "plan_code": {"type": "string", "examples": ["PREPAID_DJEZZY"]},
        "MSSIDN": {"type": "string", "pattern": f"^{topups.MSSIDN.pattern}$",
                   "description": "The line: 05 Ooredoo, 06 Mobilis (and Pixx), 07 Djezzy; it "
                                  "must be the plan operator's. Sandbox: the last 8 digits "
                                  "00000001 refund, 00000002 refund with suggested offers, "
                                  "00000003 end in UNKNOWN_ERROR."},
        "amount": {"type": "integer", "description": "DZD of credit: required for dynamic "
                                                     "plans (their min..max), ignored for "
                                                     "fixed ones."},
        "ref": _REF,
    },
    "examples": [{"plan_code": "PREPAID_DJEZZY", "MSSIDN": "0778037340", "amount": 500}],
}  # fmt: skip

_INTERNET_TYPE: Json = {"enum": list(topups.INTERNET_TYPES)}
_INTERNET_TOPUP = _object(
    {
        "_id": _ID, "ref": {"type": "string"},
        "status": {"enum": ["HANDLING", "FULFILLED", "REFUNDED", "QUEUED"]},
        "type": _INTERNET_TYPE, "number": {"type": "string"}, "topup_amount": _MONEY,
        "balance_amount": {**_MONEY, "description": "Ours: debited from your balance (0 "
                                                    "once REFUNDED)."},
        "created_at": _TIMESTAMP,
    },
    {
        "card_code": {"type": "string", "description": "FULFILLED only."},
        "num_trans": {"type": "string"}, "date_traitement": _TIMESTAMP,
    },
)  # fmt: skip
_INTERNET_BODY: Json = {
    "type": "object",
    "required": ["type", "number", "value"],
    "properties": {
        "type": _INTERNET_TYPE,
        "number": {"type": "string", "description": "ADSL `^0[0-9]{8}$`, 4G `^213[0-9]{9}$`. "
                                                    "Sandbox: the last 8 digits 00000001 "
                                                    "refund, 00000002 queue then fulfil, "
                                                    "00000003 queue then refund."},
        "value": {"type": "integer", "description": "A product's `value`."},
        "ref": _REF,
    },
    "examples": [{"type": "ADSL", "number": "036362608", "value": 1000}],
}  # fmt: skip
_TYPE_QUERY = {**_query("type", _INTERNET_TYPE, "ADSL or 4G."), "required": True}
_INTERNET_LIST = _page_of(_INTERNET_TOPUP)
_INTERNET_LIST["required"] = ["topups", "pagination"]
_INTERNET_LIST["properties"] = {
    "topups": _INTERNET_LIST["properties"].pop("items"),
    **_INTERNET_LIST["properties"],
}


def _check(tag: str, data: Json, what: str, param: str) -> OperationSpec:
    return OperationSpec(
        f"A {what} and its status", tag, "read", data=data, path_params={param: _ID},
        errors={404: ("NOT_FOUND",)},
    )  # fmt: skip


TOPUP_SPECS: dict[str, OperationSpec] = {
    "mobilePlans": OperationSpec("Mobile plans, dynamic and fixed", "mobile", "read",
                                 data=_PLANS),
    "mobileSend": OperationSpec(
        "Send a mobile top-up (debits amount × cost at once)", "mobile", "write",
        data=_SENT, body=_MOBILE_BODY, errors=_SEND_ERRORS,
        description="PENDING (2-15 s), HANDLING (3-8 s), then FULFILLED, REFUNDED (the charge "
        "comes back) or UNKNOWN_ERROR (never refunded by itself: an operator resolves it).",
    ),
    "mobileCheckId": _check("mobile", _MOBILE_TOPUP, "mobile top-up", "id"),
    "mobileCheckRef": _check("mobile", _MOBILE_TOPUP, "mobile top-up, by your ref", "ref"),
    "mobileList": OperationSpec(
        "The key's mobile top-ups, newest first", "mobile", "read",
        data=_page_of(_MOBILE_TOPUP), query=(*_PAGING, *_window(both=True)),
        errors={400: ("ERR_VALIDATION",)},
    ),
    "internetProducts": OperationSpec(
        "Internet recharge cards of a type", "internet", "read",
        data=_object({"type": _INTERNET_TYPE, "products": {"type": "array", "items": _object(
            {"value": {"type": "integer"}, "cost": _MONEY, "available": {"type": "boolean"}})}}),
        query=(_TYPE_QUERY,), errors={400: ("ERR_VALIDATION",)},
    ),
    "internetCheckNumber": OperationSpec(
        "Whether a line can be recharged", "internet", "read",
        data=_object({"ncli": {"type": "string"}, "type": {"enum": ["ADSL", "4GLTE"]}},
                     {"offre": {"type": "string"}}),
        query=(_TYPE_QUERY, {**_query("number", {"type": "string"}, "The line."),
                             "required": True}),
        errors={400: ("ERR_VALIDATION", "ERR_PHONE")},
    ),
    "internetSend": OperationSpec(
        "Send an internet recharge (debits the card's cost at once)", "internet", "write",
        data=_SENT, body=_INTERNET_BODY, errors=_SEND_ERRORS,
        description="HANDLING (3-45 s), then FULFILLED (with `card_code`), REFUNDED, or QUEUED "
        "(processed within 12-48 h: final for polling, not a failure).",
    ),
    "internetCheckId": _check("internet", _INTERNET_TOPUP, "internet recharge", "id"),
    "internetCheckRef": _check("internet", _INTERNET_TOPUP, "internet recharge, by your ref",
                               "ref"),
    "internetList": OperationSpec(
        "The key's internet recharges, newest first", "internet", "read",
        data=_INTERNET_LIST, query=(*_PAGING, *_window(both=True)),
        errors={400: ("ERR_VALIDATION",)},
    ),
}  # fmt: skip
