"""Who is calling: API keys (stored as SHA-256 hashes), IP lockout, IP allow-lists, scope, and
per-key rate limits.

Keys are random UUIDs (122 bits), so one SHA-256 is the right hash: nothing to brute-force, and
lookup stays a single index probe. The stored hash is still compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import math
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from oneclickdz.server.errors import ServiceError, rate_limited
from oneclickdz.server.store import KeyRecord, Store

Clock = Callable[[], float]
log = logging.getLogger("oneclickdz.server.auth")


class MovableClock:
    """`time.monotonic()` plus an offset that only grows. Lockouts, rate limits and the key
    cache share one, so a test moves the service's time forward instead of sleeping."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.offset

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        self.offset += seconds


def new_key() -> str:
    """A fresh API key, in the UUID format of the documented examples."""
    return str(uuid.uuid4())


def hash_key(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def key_hint(key: str) -> str:
    return key[-4:]


def masked_key(hint: str) -> str:
    """How a key is shown back (validate, logs): only its last 4 characters."""
    return f"********-****-****-****-********{hint}"


@dataclass
class Lockout:
    """`attempts` bad keys from one IP within `window` s get it refused for `duration` s."""

    attempts: int = 5
    window: float = 900.0
    duration: float = 900.0
    clock: Clock = time.monotonic
    _failures: dict[str, deque[float]] = field(default_factory=dict)
    _blocked_until: dict[str, float] = field(default_factory=dict)

    def blocked(self, ip: str) -> bool:
        until = self._blocked_until.get(ip)
        if until is None:
            return False
        if self.clock() < until:
            return True
        del self._blocked_until[ip]
        self._failures.pop(ip, None)
        return False

    def fail(self, ip: str) -> int:
        """Record a failed attempt; returns how many are left before the IP is blocked."""
        now = self.clock()
        failures = self._failures.setdefault(ip, deque())
        failures.append(now)
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        left = max(0, self.attempts - len(failures))
        if left == 0:
            self._blocked_until[ip] = now + self.duration
        if len(self._failures) > 10_000:
            self._prune(now)
        return left

    def _prune(self, now: float) -> None:
        for ip in [ip for ip, f in self._failures.items() if not f or f[-1] <= now - self.window]:
            del self._failures[ip]


@dataclass
class RateLimiter:
    """A token bucket per key: `per_minute` requests a minute, bursts up to `per_minute`."""

    per_minute: int = 600
    clock: Clock = time.monotonic
    _buckets: dict[int, tuple[float, float]] = field(default_factory=dict)

    def take(self, key_id: int) -> int:
        """Take one token; returns 0, or the seconds to wait before the next one."""
        if self.per_minute <= 0:
            return 0
        now = self.clock()
        rate = self.per_minute / 60.0
        tokens, last = self._buckets.get(key_id, (float(self.per_minute), now))
        tokens = min(float(self.per_minute), tokens + (now - last) * rate)
        if tokens < 1.0:
            self._buckets[key_id] = (tokens, now)
            return max(1, math.ceil((1.0 - tokens) / rate))
        self._buckets[key_id] = (tokens - 1.0, now)
        return 0


class Authenticator:
    """Resolves the `X-Access-Token` of a request to its key, or refuses it."""

    def __init__(
        self,
        store: Store,
        lockout: Lockout,
        limiter: RateLimiter,
        cache_ttl: float = 1.0,
        clock: MovableClock | None = None,
    ) -> None:
        # Shared with the lockout and the limiter (see `runtime.build`).
        self.clock = clock if clock is not None else MovableClock()
        self._store = store
        self._lockout = lockout
        self._limiter = limiter
        self._cache_ttl = cache_ttl
        self._cache: dict[bytes, tuple[float, KeyRecord]] = {}
        self._networks: dict[tuple[str, ...], list[ipaddress.IPv4Network | ipaddress.IPv6Network]]
        self._networks = {}
        # Refusals, for the metrics: "invalid_token", "ip_blocked" or "rate_limited".
        self.observe: Callable[[str], None] = lambda event: None

    async def authenticate(self, token: str | None, ip: str, write: bool) -> KeyRecord:
        if self._lockout.blocked(ip):
            raise ServiceError(
                403,
                "IP_BLOCKED",
                "Your IP has been temporarily blocked due to too many invalid attempts",
            )
        # HTTP trims a field value's surrounding whitespace; a blank token is a missing one
        # (refused, but not an attempt at guessing a key, so not counted toward the lockout).
        token = token.strip(" \t") if token else None
        if not token:
            raise ServiceError(401, "MISSING_ACCESS_TOKEN", "Access token is required")
        key = await self._lookup(hash_key(token))
        if key is None:
            left = self._lockout.fail(ip)
            self.observe("invalid_token" if left else "ip_blocked")
            # The IP and the count only: nothing of the token itself is logged.
            if left:
                log.info("invalid access token", extra={"ip": ip, "attemptsLeft": left})
            else:
                log.warning("ip blocked after invalid access tokens", extra={"ip": ip})
            raise ServiceError(
                401,
                "INVALID_ACCESS_TOKEN",
                "The provided access token is invalid",
                {"attemptsLeft": left},
            )
        if not key.enabled:
            raise ServiceError(403, "KEY_DISABLED", "This access token has been disabled")
        if key.allowed_ips and not self._ip_allowed(ip, key.allowed_ips):
            raise ServiceError(403, "IP_NOT_ALLOWED", "Your IP is not allowed to use this key")
        if write and key.scope != "READ-WRITE":
            raise ServiceError(
                403, "INSUFFICIENT_SCOPE", "This access token is read-only; writes need READ-WRITE"
            )
        if wait := self._limiter.take(key.id):
            self.observe("rate_limited")
            raise rate_limited(wait)
        return key

    async def _lookup(self, key_hash: bytes) -> KeyRecord | None:
        now = self.clock()
        cached = self._cache.get(key_hash)
        if cached is not None and cached[0] > now:
            return cached[1]
        found = await self._store.reader().keys.find(key_hash)
        if found is None or not hmac.compare_digest(found[0], key_hash):
            self._cache.pop(key_hash, None)
            return None
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[key_hash] = (now + self._cache_ttl, found[1])
        return found[1]

    def _ip_allowed(self, ip: str, allowed: tuple[str, ...]) -> bool:
        networks = self._networks.get(allowed)
        if networks is None:
            networks = [ipaddress.ip_network(entry, strict=False) for entry in allowed]
            self._networks[allowed] = networks
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return any(address in network for network in networks)
