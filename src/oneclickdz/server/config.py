"""The service's settings: arguments first, then environment, then these defaults."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_DB = "sqlite:///./oneclickdz.db"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8731
MAX_FULFILL_DELAY = 40.0  # leaves headroom under the promise that no order stays HANDLING 45 s


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
