"""Every error the SDK raises, in one hierarchy.

    OneClickDZError                    base of everything the SDK raises on purpose
    ├── APIError                       the API answered, with an error: status_code, code, message,
    │   │                              details, request_id
    │   ├── AuthenticationError        401 MISSING_ACCESS_TOKEN, INVALID_ACCESS_TOKEN
    │   │                              (attempts_left)
    │   ├── PermissionDeniedError      403 KEY_DISABLED, IP_NOT_ALLOWED, INSUFFICIENT_SCOPE
    │   │   └── IPBlockedError         403 IP_BLOCKED: too many invalid keys from this IP
    │   ├── NotFoundError              404 NOT_FOUND: unknown product, type, order or path
    │   │   └── PaymentLinkExpiredError
    │   │                              410 PAYMENT_LINK_EXPIRED: an OCPay link's 20 minutes passed
    │   ├── InvalidRequestError        400 ERR_VALIDATION (field, value); 405; 413
    │   │   └── InvalidNumberError     ERR_PHONE: the service refused a phone/line number (reason)
    │   ├── InsufficientBalanceError   403 INSUFFICIENT_BALANCE (required, available)
    │   ├── OutOfStockError            403 OUT_OF_STOCK (requested, available)
    │   ├── DuplicateRefError          403 DUPLICATED_REF (order_id / topup_id holding the ref)
    │   ├── RateLimitError             429 RATE_LIMIT_EXCEEDED (retry_after)
    │   ├── ServerError                5xx INTERNAL_ERROR, SERVICE_UNAVAILABLE
    │   └── UnexpectedResponseError    an answer the SDK cannot read: empty, truncated, wrong shape
    ├── APIConnectionError             no answer at all: refused, reset, dropped (request_sent)
    │   └── APITimeoutError            no answer in time
    ├── PlacementUnknownError          placeOrder or a top-up's send failed after the request may
    │                                  have reached the server, so it may exist (request, cause)
    ├── PollTimeoutError               a wait ended before the order, top-up or payment turned
    │                                  final (last_order)
    ├── InconsistentOrderError         a final order or top-up breaks its status's invariants
    └── InvalidInputError              refused by the SDK before sending (also a ValueError):
                                       a documented rule the input breaks (field, value)

Retried automatically (see `_base`): APIConnectionError, APITimeoutError, RateLimitError,
ServerError and an unreadable (empty or truncated) answer. Nothing else is.

No message here ever contains an API key or a card code: the API's own message and details are
shown, the request's headers and the response's body are not.

`error_class` maps an error answer to its class: by the API's code first, else by the status.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

if TYPE_CHECKING:
    from .polling import Pollable

__all__ = [
    "APIConnectionError",
    "APIError",
    "APITimeoutError",
    "AuthenticationError",
    "DuplicateRefError",
    "IPBlockedError",
    "InconsistentOrderError",
    "InsufficientBalanceError",
    "InvalidInputError",
    "InvalidNumberError",
    "InvalidRequestError",
    "NotFoundError",
    "OneClickDZError",
    "OutOfStockError",
    "PaymentLinkExpiredError",
    "PermissionDeniedError",
    "PlacementUnknownError",
    "PollTimeoutError",
    "RateLimitError",
    "ServerError",
    "UnexpectedResponseError",
]


class OneClickDZError(Exception):
    """Base of every error this SDK raises on purpose."""


class APIError(OneClickDZError):
    """The API answered with an error envelope (or an answer that is not one)."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        code: str | None = None,
        details: Mapping[str, Any] | None = None,
        request_id: str | None = None,
    ) -> None:
        self.message = message
        self.status_code = status_code
        self.code = code
        self.details: Mapping[str, Any] = dict(details or {})
        self.request_id = request_id
        super().__init__(self._describe())

    def _describe(self) -> str:
        head = f"{self.code}: {self.message}" if self.code else self.message
        where = f"HTTP {self.status_code}"
        if self.request_id:
            where += f", request {self.request_id}"
        return f"{head} ({where})"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(status_code={self.status_code}, code={self.code!r}, "
            f"message={self.message!r}, request_id={self.request_id!r})"
        )


class AuthenticationError(APIError):
    """401: the key is missing or wrong; each wrong key brings this IP closer to a block."""

    @property
    def attempts_left(self) -> int | None:
        """How many more invalid keys this IP may send before it is blocked for 15 minutes."""
        return _int(self.details.get("attemptsLeft"))


class PermissionDeniedError(APIError):
    """403: the key may not do this (disabled, IP not allowed, READ-ONLY scope)."""


class IPBlockedError(PermissionDeniedError):
    """403 IP_BLOCKED: this IP sent too many invalid keys and is blocked for a while."""


class NotFoundError(APIError):
    """404: unknown product, type, order (another account's orders look unknown too) or path."""


class PaymentLinkExpiredError(NotFoundError):
    """410: the OCPay link was not paid within its life (20 minutes); the payment is FAILED."""


class InvalidRequestError(APIError):
    """400 ERR_VALIDATION (and 405, 413): the request itself is wrong; retrying cannot help."""

    @property
    def field(self) -> str | None:
        """The offending field, when the API names it."""
        value = self.details.get("field")
        return None if value is None else str(value)

    @property
    def value(self) -> Any:
        """The offending value, as the API echoes it."""
        return self.details.get("value")


class InvalidNumberError(InvalidRequestError):
    """ERR_PHONE: the service refused a phone or line number for a service (ADSL, 4G, mobile)."""

    @property
    def number(self) -> str | None:
        value = self.details.get("number")
        return None if value is None else str(value)

    @property
    def service_type(self) -> str | None:
        """The service the number was checked for (`details.type`)."""
        value = self.details.get("type")
        return None if value is None else str(value)

    @property
    def reason(self) -> str | None:
        value = self.details.get("reason")
        return None if value is None else str(value)


class InsufficientBalanceError(APIError):
    """403 INSUFFICIENT_BALANCE: the order costs more than the account holds."""

    @property
    def required(self) -> Decimal | None:
        """What the request would have cost, in DZD."""
        return _decimal(self.details.get("required"))

    @property
    def available(self) -> Decimal | None:
        """The account's balance, in DZD."""
        return _decimal(self.details.get("available"))


class OutOfStockError(APIError):
    """403 OUT_OF_STOCK: fewer cards of this type are in stock than requested."""

    @property
    def requested(self) -> int | None:
        return _int(self.details.get("requested"))

    @property
    def available(self) -> int | None:
        return _int(self.details.get("available"))


class DuplicateRefError(APIError):
    """403 DUPLICATED_REF: this ref already names an order (`order_id`) or a top-up (`topup_id`)."""

    @property
    def order_id(self) -> str | None:
        value = self.details.get("orderId")
        return None if value is None else str(value)

    @property
    def topup_id(self) -> str | None:
        value = self.details.get("topupId")
        return None if value is None else str(value)


class RateLimitError(APIError):
    """429: too many requests for this key; `retry_after` says how long to wait, when known."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        self.retry_after = retry_after
        super().__init__(message, **kwargs)


class ServerError(APIError):
    """5xx: the API failed or is unavailable; usually transient."""


class UnexpectedResponseError(APIError):
    """An answer the SDK cannot read: an empty or truncated body, or data of the wrong shape.

    `malformed` is true when the body was not JSON at all (likely a cut connection, retried);
    false when it was JSON of an unexpected shape (not retried: the same answer would come back).
    """

    def __init__(self, message: str, *, malformed: bool, **kwargs: Any) -> None:
        self.malformed = malformed
        super().__init__(message, **kwargs)


class APIConnectionError(OneClickDZError):
    """No answer: the connection failed, was reset, or dropped before a response arrived.

    `request_sent` is false only when the request certainly never left (the connection could not be
    opened); when it is true the server may have acted on the request.
    """

    def __init__(self, message: str, *, request_sent: bool) -> None:
        self.request_sent = request_sent
        super().__init__(message)


class APITimeoutError(APIConnectionError):
    """No answer within the timeout."""


class Placement(Protocol):
    """A request that creates something (an order, a top-up), as PlacementUnknownError keeps it."""

    @property
    def ref(self) -> str | None: ...

    @property
    def operation(self) -> str:
        """The call's name, e.g. `placeOrder`, `mobile/send`."""
        ...

    @property
    def listing(self) -> str:
        """Where to look for what it may have created, e.g. `list_orders()`."""
        ...

    def describe(self) -> str:
        """What it creates, without secrets, e.g. `an order (product P, type T, quantity 2)`."""
        ...


R = TypeVar("R", bound=Placement)


class PlacementUnknownError(OneClickDZError, Generic[R]):
    """A placement failed after the request may have reached the server: what it creates may exist.

    A placement with a ref (every placeOrder; a top-up's send when given one) was retried without
    an answer. Reconcile before buying again: send it again with the same ref (`request.ref`): it
    either buys once or raises `DuplicateRefError` naming what exists. A top-up sent without a ref
    is never retried once it may have arrived: look for it in the list of top-ups.
    `request` holds what was sent; `__cause__` the failure.
    """

    def __init__(self, request: R, cause: OneClickDZError) -> None:
        self.request = request
        self.cause = cause
        ref = f"ref {request.ref!r}" if request.ref else "no ref"
        advice = (
            "place it again with the same ref to learn its id"
            if request.ref
            else f"it was not retried because it had no ref; look for it in {request.listing}"
        )
        super().__init__(
            f"{request.operation} may or may not have created {request.describe()}, {ref}: "
            f"{type(cause).__name__}: {cause}; {advice}"
        )


class PollTimeoutError(OneClickDZError):
    """A wait ended (attempts or time used up) before the order (top-up, payment) turned final.

    It is not lost: `last_order` is the last state seen (None if no check succeeded) and it can be
    waited for again later. `noun` names what was waited for ("order", "top-up", "payment").
    """

    def __init__(
        self,
        order_id: str,
        last_order: Pollable | None,
        *,
        attempts: int,
        elapsed: float,
        last_error: OneClickDZError | None = None,
        noun: str = "order",
    ) -> None:
        self.order_id = order_id
        self.last_order = last_order
        self.attempts = attempts
        self.elapsed = elapsed
        self.last_error = last_error
        if last_order is None:
            state = "never read successfully"
        else:
            status = str(last_order.status)
            known = "" if last_order.has_known_status else " (a status unknown to this SDK)"
            state = f"still {status}{known}"
        tail = f"; last error: {type(last_error).__name__}" if last_error is not None else ""
        super().__init__(
            f"{noun} {order_id} {state} after {attempts} check(s) in {elapsed:.1f} s{tail}"
        )


class InconsistentOrderError(OneClickDZError):
    """A final order (or top-up) breaks the invariants of its status; it gets no Outcome.

    Nothing is delivered or accounted from such an order: a card is never dropped or invented.
    The message names the broken rule, never a card code.
    """

    def __init__(self, order: Pollable, problem: str, *, noun: str = "order") -> None:
        self.order = order
        self.problem = problem
        super().__init__(f"{noun} {order.id} is {order.status}: {problem}")


class InvalidInputError(OneClickDZError, ValueError):
    """Refused by the SDK before any request: the input breaks a rule the documentation states
    (a phone or line number's pattern, a payment link's bounds). `field` and `value` name it."""

    def __init__(self, field: str, value: Any, rule: str) -> None:
        self.field = field
        self.value = value
        self.rule = rule
        shown = repr(value)
        if len(shown) > 40:
            shown = shown[:37] + "..."
        super().__init__(f"{field} {rule} (got {shown})")


# --------------------------------------------------------------------------- mapping

_BY_CODE: dict[str, type[APIError]] = {
    "MISSING_ACCESS_TOKEN": AuthenticationError,
    "INVALID_ACCESS_TOKEN": AuthenticationError,
    "ERR_AUTH": AuthenticationError,
    "IP_BLOCKED": IPBlockedError,
    "KEY_DISABLED": PermissionDeniedError,
    "IP_NOT_ALLOWED": PermissionDeniedError,
    "INSUFFICIENT_SCOPE": PermissionDeniedError,
    "NOT_FOUND": NotFoundError,
    "PAYMENT_LINK_EXPIRED": PaymentLinkExpiredError,
    "ERR_VALIDATION": InvalidRequestError,
    "ERR_PHONE": InvalidNumberError,
    "METHOD_NOT_ALLOWED": InvalidRequestError,
    "PAYLOAD_TOO_LARGE": InvalidRequestError,
    "INSUFFICIENT_BALANCE": InsufficientBalanceError,
    "NO_BALANCE": InsufficientBalanceError,
    "OUT_OF_STOCK": OutOfStockError,
    "DUPLICATED_REF": DuplicateRefError,
    "RATE_LIMIT_EXCEEDED": RateLimitError,
    "INTERNAL_ERROR": ServerError,
    "SERVICE_UNAVAILABLE": ServerError,
}

_BY_STATUS: dict[int, type[APIError]] = {
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    410: PaymentLinkExpiredError,  # only OCPay's checkPayment answers 410
    429: RateLimitError,
}


def error_class(status_code: int, code: str | None) -> type[APIError]:
    """The error class for an answer: by the API's code first, else by the HTTP status."""
    if code in _BY_CODE:
        return _BY_CODE[code]
    if status_code in _BY_STATUS:
        return _BY_STATUS[status_code]
    if status_code >= 500:
        return ServerError
    if 400 <= status_code < 500:
        return InvalidRequestError
    return APIError


def _decimal(value: Any) -> Decimal | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
