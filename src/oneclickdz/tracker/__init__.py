"""The order tracker: every order followed to a final state, its cards delivered once.

Gift-card orders (`place`), mobile top-ups (`send_mobile`), internet recharges
(`send_internet`) and OCPay payment links (`create_payment`) alike; see `tracker`.

    from oneclickdz import AsyncClient
    from oneclickdz.tracker import Tracker

    async def deliver(delivery):          # your code: email the cards, credit the customer...
        ...                               # drop a repeat by delivery.delivery_key

    async with Tracker(AsyncClient(), "sqlite:///shop-tracker.db", handler=deliver) as tracker:
        await tracker.place("507f1f77bcf86cd799439011", "type_001", 2, meta={"order": "A1"})
        await tracker.run(until_idle=True)

Needs the `tracker` extra (`pip install "oneclickdz[tracker]"`: aiohttp and cryptography).
"""

from __future__ import annotations

from .config import TrackerConfig
from .model import (
    Delivery,
    IntentSpec,
    InternetSpec,
    Kind,
    MobileSpec,
    PaymentSpec,
    State,
    TrackedOrder,
)
from .sealing import TrackerKeyError
from .stats import Latency, RunSummary, TrackerStats
from .store import (
    DEFAULT_STORE_URL,
    DuplicateOrderError,
    LeaseLostError,
    RunnerActiveError,
    TrackerStore,
    open_store,
)
from .tracker import Handler, Tracker, TxHandler

__all__ = [
    "DEFAULT_STORE_URL",
    "Delivery",
    "DuplicateOrderError",
    "Handler",
    "IntentSpec",
    "InternetSpec",
    "Kind",
    "Latency",
    "LeaseLostError",
    "MobileSpec",
    "PaymentSpec",
    "RunSummary",
    "RunnerActiveError",
    "State",
    "TrackedOrder",
    "Tracker",
    "TrackerConfig",
    "TrackerKeyError",
    "TrackerStats",
    "TrackerStore",
    "TxHandler",
    "open_store",
]
