"""How the tracker spends its rate budget and how patient it is."""

from __future__ import annotations

from dataclasses import dataclass

from oneclickdz.polling import PollPolicy

__all__ = ["TrackerConfig"]


@dataclass(frozen=True, slots=True)
class TrackerConfig:
    """How the tracker spends its budget and how patient it is.

    rate_per_minute:   API calls a minute for this key (None: no limit); the service's is 600
    burst:             calls that may go out at once after a quiet spell (1: none, so no
                       60 s window ever holds more than rate_per_minute + 1 calls)
    max_in_flight:     API calls out at the same time
    interval:          seconds between two checks of an order (the guide's 5 s); with webhooks,
                       between two tries of a hinted check that failed
    deadline:          seconds after placement before an order is flagged stuck
    stuck_interval:    seconds between checks of a stuck order
    check_mode:        "auto" (sweep when cheaper), "check" (checkOrder only), "sweep"
    max_place_attempts: placement tries (the same ref each time) before asking an operator
    max_delivery_attempts: handler failures before the order is delivery_failed
    delivery_concurrency: handlers running at once; also the most repeats a crash can cause
    restart_spread:    seconds over which the first checks after a start are spread
    clock_skew:        seconds the API's clock may differ from ours before it is learnt
    webhooks:          signed order webhooks arrive (`oneclickdz.tracker.receiver`): each one is
                       a hint, confirmed by one checkOrder at once, and polling slows down to the
                       safety schedule
    safety_interval:   with webhooks, seconds between two checks of an order (instead of
                       `interval`): a lost webhook delays an order by at most this much
    resolution_interval: seconds between two checks of a mobile top-up in UNKNOWN_ERROR
                       (`needs_resolution`), until the API's operator settles it
    queued_interval:   seconds between two checks of a QUEUED internet recharge (`queued`),
                       which ends FULFILLED or REFUNDED within 12-48 h
    payment_deadline:  seconds after a payment link's creation before it is flagged stuck: a
                       link lives 20 minutes, then checkPayment answers 410 (FAILED)
    create_grace:      seconds a payment intent may wait for its link (`create_payment` in
                       progress) before a runner calls it abandoned (the creating process
                       stopped before storing the link's ref: no payer ever had that link)

    Top-ups and payment links are checked every `interval` (there are no webhooks for them),
    top-ups up to `deadline`, links up to `payment_deadline`, then every `stuck_interval`.
    """

    rate_per_minute: float | None = 600.0
    burst: float = 1.0
    max_in_flight: int = 32
    interval: float = 5.0
    deadline: float = 600.0
    stuck_interval: float = 60.0
    check_mode: str = "auto"
    max_place_attempts: int = 30
    max_delivery_attempts: int = 5
    delivery_concurrency: int = 1
    delivery_backoff: float = 1.0
    restart_spread: float = 5.0
    clock_skew: float = 120.0
    flush_interval: float = 0.05
    webhooks: bool = False
    safety_interval: float = 60.0
    resolution_interval: float = 3600.0
    queued_interval: float = 3600.0
    payment_deadline: float = 1260.0
    create_grace: float = 300.0

    def __post_init__(self) -> None:
        if self.check_mode not in ("auto", "check", "sweep"):
            raise ValueError("check_mode must be auto, check or sweep")
        if self.max_in_flight < 1 or self.delivery_concurrency < 1:
            raise ValueError("max_in_flight and delivery_concurrency must be >= 1")
        if self.interval <= 0 or self.deadline <= 0 or self.stuck_interval <= 0:
            raise ValueError("interval, deadline and stuck_interval must be > 0")
        if self.safety_interval <= 0:
            raise ValueError("safety_interval must be > 0")
        slow = (self.resolution_interval, self.queued_interval, self.payment_deadline)
        if min(slow) <= 0 or self.create_grace <= 0:
            raise ValueError(
                "resolution_interval, queued_interval, payment_deadline and create_grace "
                "must be > 0"
            )

    @property
    def poll_interval(self) -> float:
        """Seconds between two scheduled checks of an order: `safety_interval` with webhooks."""
        return self.safety_interval if self.webhooks else self.interval

    @property
    def policy(self) -> PollPolicy:
        """The checks of a gift-card order (`poll_interval` apart, up to `deadline`)."""
        return _checks(self.poll_interval, self.deadline)

    @property
    def topup_policy(self) -> PollPolicy:
        """The checks of a top-up: every `interval`, up to `deadline` (no webhooks for them)."""
        return _checks(self.interval, self.deadline)

    @property
    def payment_policy(self) -> PollPolicy:
        """The checks of a payment link: every `interval`, up to `payment_deadline`."""
        return _checks(self.interval, self.payment_deadline)


def _checks(every: float, timeout: float) -> PollPolicy:
    """A fixed pause of `every` seconds between checks, up to `timeout` seconds in all."""
    return PollPolicy(
        interval=every, max_attempts=None, timeout=timeout, max_interval=max(60.0, every)
    )
