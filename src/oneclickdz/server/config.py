"""The service's settings.

`oneclickdz serve` fills a `ServerConfig` from its options; each option can also be given by
an environment variable (`--rate-limit` or `ONECLICKDZ_RATE_LIMIT`, see `serve --help`), and
the option wins over the variable. Unset, the defaults below apply.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_DB = "sqlite:///./oneclickdz.db"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8731
MAX_FULFILL_DELAY = 40.0  # leaves headroom under the promise that no order stays HANDLING 45 s

# Limits on every connection (each one an option of `serve`).
MAX_HEADER_BYTES = 16 * 1024  # the request line and headers together
MAX_HEADERS = 100
MAX_BODY_BYTES = 64 * 1024
HEADER_TIMEOUT = 10.0  # seconds to receive a whole request head, once its first byte arrived
BODY_TIMEOUT = 10.0  # seconds to receive a whole declared body
KEEPALIVE_TIMEOUT = 5.0  # seconds an idle connection (or one that never sends) stays open
MAX_WORKERS = 64  # most service processes `serve --workers` runs on one port


@dataclass(frozen=True)
class ServerConfig:
    db_url: str = DEFAULT_DB
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    fulfill_delay: tuple[float, float] = (2.0, 10.0)
    seed: int | None = None
    faults: str = ""
    rate_limit: int = 600  # requests a minute per key, bursts up to the same; 0 turns it off
    lockout_attempts: int = 5
    lockout_window: float = 900.0
    lockout_duration: float = 900.0
    log_level: str = "info"
    busy_timeout: float = 5.0  # seconds a write waits for another process's lock, then 503
    max_header_bytes: int = MAX_HEADER_BYTES
    max_headers: int = MAX_HEADERS
    max_body_bytes: int = MAX_BODY_BYTES
    header_timeout: float = HEADER_TIMEOUT
    body_timeout: float = BODY_TIMEOUT
    keepalive_timeout: float = KEEPALIVE_TIMEOUT
    metrics: bool = True  # Prometheus metrics at /metrics
    # Rate limits and IP lockout shared through this Redis (see `limits.open_limits`), under
    # keys starting with `redis_prefix:` so that several services can share one Redis.
    redis_url: str | None = None
    redis_prefix: str = "oneclickdz"
    workers: int = 1  # service processes on the one port (1: no supervisor), 1..MAX_WORKERS
    fulfil_lease: float = 10.0  # seconds a process holds the orders it claimed for fulfilment
    # Top-ups: every documented delay (PENDING 2-15 s, HANDLING 3-8 s or 3-45 s, QUEUED 12-48 h)
    # multiplied by this factor (the demo shortens them; 1 keeps the documented ones).
    topup_delay_scale: float = 1.0
    payment_link_ttl: float = 1200.0  # seconds an OCPay link can be paid after its creation
    # Webhooks (see `dispatcher`): private and loopback receivers refused unless allowed.
    webhook_allow_private: bool = False
    webhook_concurrency: int = 32  # deliveries in flight per process
    webhook_timeout: float = 10.0  # seconds per attempt
    webhook_retries: tuple[float, ...] = (5.0, 60.0, 600.0, 3600.0, 21600.0, 57600.0)


def parse_schedule(text: str) -> tuple[float, ...]:
    """`5,60,600` -> the seconds before each retry of a webhook (none: a single attempt)."""
    try:
        delays = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ValueError(
            f"webhook retries {text!r}: expected seconds separated by commas, e.g. 5,60,600"
        ) from None
    if any(not 0 <= d <= 7 * 86400 for d in delays):
        raise ValueError(f"webhook retries {text!r}: each delay is 0 to 604800 seconds")
    return delays


def parse_delay(text: str) -> tuple[float, float]:
    """`LOW-HIGH` seconds (or one number) -> (low, high), within 0..40 s."""
    low_text, _, high_text = text.partition("-")
    try:
        low = float(low_text)
        high = float(high_text) if high_text else low
    except ValueError:
        raise ValueError(
            f"fulfil delay {text!r}: expected LOW-HIGH in seconds, e.g. 2-10"
        ) from None
    if not 0 <= low <= high <= MAX_FULFILL_DELAY:
        raise ValueError(
            f"fulfil delay {text!r}: need 0 <= LOW <= HIGH <= {MAX_FULFILL_DELAY:g} seconds"
        )
    return low, high
