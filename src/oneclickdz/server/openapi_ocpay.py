"""The OpenAPI description of `/v3/ocpay` (merged into `openapi.SPECS`). The payer's page,
`/pay/{ref}`, is HTML outside the API: not described here."""

from __future__ import annotations

from oneclickdz.server import payment_api as api
from oneclickdz.server import payments
from oneclickdz.server.openapi import _MONEY, _TIMESTAMP, Json, OperationSpec, _object
from oneclickdz.server.store import FeeMode, PaymentStatus

# What the texts may hold (the service refuses control characters; lines only in the long ones).
_ONE_LINE = r"[^\u0000-\u001f\u007f]"
_LINES = r"[^\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]"
_REF: Json = {"type": "string", "pattern": f"^{payments.REF_PATTERN.pattern}$",
              "examples": ["OCPL-A1B2C3-D4E5"]}  # fmt: skip
_FEE_MODE: Json = {
    "enum": [m.value for m in FeeMode],
    "default": FeeMode.NO_FEE.value,
    "description": "Who bears the 1% fee: NO_FEE the merchant (nets amount - fee), SPLIT_FEE "
    "half each (the payer pays amount + floor(fee/2)), CUSTOMER_FEE the payer (pays amount + "
    "fee, the merchant nets the amount).",
}
_PRODUCT = {
    "title": {"type": "string", "minLength": 1, "maxLength": api.MAX_TITLE,
              "pattern": rf"^{_ONE_LINE}*\S{_ONE_LINE}*$",
              "description": "One line, not blank: no control characters."},
    "amount": {"type": "integer", "minimum": api.MIN_AMOUNT, "maximum": api.MAX_AMOUNT,
               "description": "Whole DZD."},
}  # fmt: skip
_DESCRIPTION: Json = {"type": "string", "maxLength": api.MAX_DESCRIPTION,
                      "pattern": f"^{_LINES}*$"}  # fmt: skip
_SUCCESS_MESSAGE: Json = {"type": "string", "maxLength": api.MAX_SUCCESS_MESSAGE,
                          "pattern": f"^{_LINES}*$",
                          "description": "Shown to the payer once paid."}  # fmt: skip
_REDIRECT_URL: Json = {
    "type": "string", "format": "uri", "maxLength": api.MAX_REDIRECT_URL,
    "description": "http or https. After paying or cancelling, the payer returns there with "
    "`paymentRef` and `status` (CONFIRMED or FAILED) added to the query.",
}  # fmt: skip

_CREATE_BODY: Json = {
    "type": "object",
    "required": ["productInfo"],
    "properties": {
        "productInfo": {
            "type": "object",
            "required": ["title", "amount"],
            "properties": {**_PRODUCT, "description": {**_DESCRIPTION, "type": ["string", "null"]}},
        },
        "feeMode": {**_FEE_MODE, "enum": [*_FEE_MODE["enum"], None]},
        "successMessage": {**_SUCCESS_MESSAGE, "type": ["string", "null"]},
        "redirectUrl": {**_REDIRECT_URL, "type": ["string", "null"]},
    },
    "examples": [{"productInfo": {"title": "Premium subscription", "amount": 5000,
                                  "description": "One month"},
                  "feeMode": "NO_FEE", "successMessage": "Thank you!",
                  "redirectUrl": "https://shop.example/return"}],
}  # fmt: skip

_URL: Json = {
    "type": "string", "format": "uri",
    "description": "The payer's page, served by this service: `<base>/pay/<ref>`.",
}  # fmt: skip
_LINK: Json = _object(
    {
        "paymentRef": _REF,
        "ref": {**_REF, "description": "The same as `paymentRef` (the docs' example's key)."},
        "paymentUrl": _URL,
        "productInfo": _object(
            {"title": _PRODUCT["title"], "amount": _PRODUCT["amount"]},
            {"description": _DESCRIPTION},
        ),
        "feeMode": {"enum": [m.value for m in FeeMode]},
        "isSandbox": {"type": "boolean"},
        "createdAt": _TIMESTAMP,
        "time": {**_TIMESTAMP, "description": "The same as `createdAt` (the docs' example's)."},
    },
    {"successMessage": _SUCCESS_MESSAGE, "redirectUrl": _REDIRECT_URL},
)
_DETAILS: Json = _object(
    {
        "transactionRef": {"type": "string", "description": "The `_id` of the RECEIVE movement "
                           "in /v3/account/transactions."},
        "amount": {**_MONEY, "description": "What the payer paid, in DZD."},
        "fee": _MONEY,
        "netAmount": {**_MONEY, "description": "What your balance received, in DZD."},
        "paymentMethod": {"enum": list(payments.METHODS)},
        "completedAt": _TIMESTAMP,
        "currency": {"const": "DZD"},
        "isSandbox": {"type": "boolean"},
        "createdDate": _TIMESTAMP,
    }
)  # fmt: skip
_CHECK: Json = {
    **_object(
        {
            "status": {"enum": [s.value for s in PaymentStatus]},
            "message": {"type": "string"},
            "paymentRef": _REF,
        },
        {"transactionDetails": _DETAILS},
    ),
    "if": {"properties": {"status": {"const": PaymentStatus.CONFIRMED.value}}},
    "then": {"required": ["transactionDetails"]},
    "else": {"properties": {"transactionDetails": False}},
}

OCPAY_SPECS: dict[str, OperationSpec] = {
    "createLink": OperationSpec(
        "Create an OCPay payment link", "ocpay", "write",
        data=_object({"paymentLink": _LINK, "paymentUrl": _URL, "paymentRef": _REF}),
        body=_CREATE_BODY,
        errors={400: ("ERR_VALIDATION",)},
        links={"checkPayment": ("checkPayment", {"ref": "$response.body#/data/paymentRef"})},
        description="The link belongs to the key's account and environment (`isSandbox`). "
        "The payer opens `paymentUrl` (a page of this service), and pays or cancels, once; "
        "paying credits your balance in that environment with the fee applied (a RECEIVE "
        "movement). An unpaid link expires 20 minutes after its creation (`serve "
        "--payment-link-ttl`).",
    ),
    "checkPayment": OperationSpec(
        "A payment link's status, and its transaction once CONFIRMED", "ocpay", "read",
        data=_CHECK,
        path_params={"ref": {"type": "string", "minLength": 1}},
        errors={404: ("NOT_FOUND",), 410: ("PAYMENT_LINK_EXPIRED",)},
        description="PENDING until the payer pays (CONFIRMED) or cancels (FAILED). Any link "
        "of the key's account, sandbox or production. 410 once a PENDING link has expired; "
        "another account's link is as unknown as a missing one.",
    ),
}  # fmt: skip
