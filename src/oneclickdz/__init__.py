"""oneclickdz: a Python SDK for the OneClickDZ v3 API: gift cards, mobile top-ups, internet
recharges and OCPay payment links.

    from oneclickdz import Client

    with Client() as client:  # $ONECLICKDZ_API_KEY
        outcome = client.gift_cards.process_order("507f1f77bcf86cd799439011", "type_001", 2)
        print(outcome.summary)

`AiohttpTransport` (extra `fast`) is imported on first use, so the core install needs only httpx
and pydantic.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._transport import (
    AsyncHTTPXTransport,
    AsyncTransport,
    HTTPXTransport,
    Request,
    Response,
    Transport,
)
from ._version import __version__
from .client import AsyncClient, Client
from .errors import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    AuthenticationError,
    DuplicateRefError,
    InconsistentOrderError,
    InsufficientBalanceError,
    InvalidInputError,
    InvalidNumberError,
    InvalidRequestError,
    IPBlockedError,
    NotFoundError,
    OneClickDZError,
    OutOfStockError,
    PaymentLinkExpiredError,
    PermissionDeniedError,
    PlacementUnknownError,
    PollTimeoutError,
    RateLimitError,
    ServerError,
    UnexpectedResponseError,
)
from .models import (
    Balance,
    Card,
    Catalog,
    CatalogProduct,
    Category,
    Health,
    KeyInfo,
    Order,
    OrderStatus,
    Page,
    Pagination,
    PlacedOrder,
    PlaceOrderRequest,
    Product,
    ProductType,
    TokenInfo,
    Transaction,
)
from .outcome import Outcome
from .payment_models import (
    FeeMode,
    Payment,
    PaymentLink,
    PaymentStatus,
    ProductInfo,
    TransactionDetails,
)
from .polling import PollPolicy
from .topup_models import (
    InternetProduct,
    InternetProducts,
    InternetTopup,
    InternetTopupStatus,
    MobilePlan,
    MobilePlans,
    MobileTopup,
    MobileTopupStatus,
    NumberCheck,
    SuggestedOffer,
    TopupSent,
)
from .topup_outcome import TopupOutcome

if TYPE_CHECKING:
    from ._aiohttp import AiohttpTransport

__all__ = [
    "APIConnectionError",
    "APIError",
    "APITimeoutError",
    "AiohttpTransport",
    "AsyncClient",
    "AsyncHTTPXTransport",
    "AsyncTransport",
    "AuthenticationError",
    "Balance",
    "Card",
    "Catalog",
    "CatalogProduct",
    "Category",
    "Client",
    "DuplicateRefError",
    "FeeMode",
    "HTTPXTransport",
    "Health",
    "IPBlockedError",
    "InconsistentOrderError",
    "InsufficientBalanceError",
    "InternetProduct",
    "InternetProducts",
    "InternetTopup",
    "InternetTopupStatus",
    "InvalidInputError",
    "InvalidNumberError",
    "InvalidRequestError",
    "KeyInfo",
    "MobilePlan",
    "MobilePlans",
    "MobileTopup",
    "MobileTopupStatus",
    "NotFoundError",
    "NumberCheck",
    "OneClickDZError",
    "Order",
    "OrderStatus",
    "OutOfStockError",
    "Outcome",
    "Page",
    "Pagination",
    "Payment",
    "PaymentLink",
    "PaymentLinkExpiredError",
    "PaymentStatus",
    "PermissionDeniedError",
    "PlaceOrderRequest",
    "PlacedOrder",
    "PlacementUnknownError",
    "PollPolicy",
    "PollTimeoutError",
    "Product",
    "ProductInfo",
    "ProductType",
    "RateLimitError",
    "Request",
    "Response",
    "ServerError",
    "SuggestedOffer",
    "TokenInfo",
    "TopupOutcome",
    "TopupSent",
    "Transaction",
    "TransactionDetails",
    "Transport",
    "UnexpectedResponseError",
    "__version__",
]


def __getattr__(name: str) -> Any:
    """Import AiohttpTransport only when asked for, so aiohttp stays optional."""
    if name == "AiohttpTransport":
        from ._aiohttp import AiohttpTransport

        AiohttpTransport.__module__ = __name__
        return AiohttpTransport
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# Users see `oneclickdz.Client`, not `oneclickdz.client.Client` (as httpx does).
for _name in __all__:
    _obj = globals().get(_name)
    if _obj is not None and hasattr(_obj, "__module__") and _name != "__version__":
        _obj.__module__ = __name__
del _name, _obj
