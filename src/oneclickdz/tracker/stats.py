"""What the tracker reports: the counters it keeps, `stats()`, and the summary of a run."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Latency", "RunSummary", "TrackerStats"]

# Counter names (persisted in the store; `stats()` reads them back).
CALLS_PLACE = "calls.placeOrder"
CALLS_CHECK = "calls.checkOrder"
CALLS_LIST = "calls.list"
# Top-ups and payment links: one counter per endpoint, `calls.<endpoint>` (e.g.
# `calls.mobile/send`); `stats().api_calls` shows those that were called, by endpoint name.
CALLS_PREFIX = "calls."
TOPUP_CALLS = tuple(
    f"{kind}/{call}"
    for kind in ("mobile", "internet")
    for call in ("send", "check-id", "check-ref")
)
PAYMENT_CALLS = ("ocpay/createLink", "ocpay/checkPayment")
THROTTLED = "throttled_429"
CHECKED_BY_SWEEP = "checked.by_sweep"
CHECKED_BY_CHECK = "checked.by_checkOrder"
SWEEPS = "sweeps"
SWEEPS_ABANDONED = "sweeps.abandoned"
SWEEP_MISSES = "sweeps.missed_orders"
HANDLER_CALLS = "handler.calls"
HANDLER_FAILURES = "handler.failures"
# Signed order webhooks (`oneclickdz.tracker.receiver`): received = refused + verified, and
# verified = duplicate + hinted + ignored. Only `hinted` costs an API call (a checkOrder).
WEBHOOKS_RECEIVED = "webhooks.received"
WEBHOOKS_REFUSED = "webhooks.refused"  # bad signature, old timestamp, missing header, bad body
WEBHOOKS_VERIFIED = "webhooks.verified"
WEBHOOKS_DUPLICATE = "webhooks.duplicate"  # an event id seen before: nothing done
WEBHOOKS_HINTED = "webhooks.hinted"  # an open order followed here: checked at once
WEBHOOKS_IGNORED = "webhooks.ignored"  # an order not followed here, or already final


@dataclass(frozen=True, slots=True)
class RunSummary:
    """What `run(until_idle=True)` leaves behind: rows by state, and whether all is well."""

    states: Mapping[str, int]

    @property
    def ok(self) -> bool:
        """Nothing failed delivery, is stuck or needs an operator (ours, or the API's: a mobile
        top-up in UNKNOWN_ERROR). A QUEUED internet recharge is on its way, not a failure.

        Rejected intents (the API refused them: nothing was bought) are counted in `states` but
        are a final answer, not a failure to act on.
        """
        return not any(
            self.states.get(name, 0)
            for name in ("delivery_failed", "stuck", "needs_operator", "needs_resolution")
        )


@dataclass(frozen=True, slots=True)
class Latency:
    count: int
    p50: float | None
    p99: float | None

    @classmethod
    def of(cls, values: Sequence[float]) -> Latency:
        if not values:
            return cls(0, None, None)
        ordered = sorted(values)
        return cls(len(ordered), _pct(ordered, 0.50), _pct(ordered, 0.99))


def _pct(ordered: Sequence[float], q: float) -> float:
    return round(ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)], 3)


@dataclass(frozen=True, slots=True)
class TrackerStats:
    """`tracker.stats()`: orders by state, API calls by kind, 429s, latencies, stuck orders."""

    states: Mapping[str, int]
    api_calls: Mapping[str, int]
    throttled: int
    placement_to_final: Latency
    final_to_delivered: Latency
    stuck: Sequence[str]
    counters: Mapping[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "states": dict(self.states),
            "api_calls": dict(self.api_calls),
            "throttled_429": self.throttled,
            "placement_to_final_s": _lat(self.placement_to_final),
            "final_to_delivered_s": _lat(self.final_to_delivered),
            "stuck": list(self.stuck),
            "counters": dict(self.counters),
        }


def _lat(lat: Latency) -> dict[str, Any]:
    return {"count": lat.count, "p50": lat.p50, "p99": lat.p99}
