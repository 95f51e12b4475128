"""Who is calling: API keys (stored as SHA-256 hashes), IP lockout, IP allow-lists, scope, and
per-key rate limits (their state, in memory or shared by several processes, is in `limits`).

Keys are random UUIDs (122 bits), so one SHA-256 is the right hash: nothing to brute-force, and
lookup stays a single index probe. The stored hash is still compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import time
import uuid
from collections.abc import Callable

from oneclickdz.server.errors import ServiceError, rate_limited
from oneclickdz.server.limits import LimitPolicy, LimitState, Lockout, MemoryLimits, RateLimiter
from oneclickdz.server.store import KeyRecord, Store

# Lockout and RateLimiter live in `limits` now (the memory state); still importable from here.
__all__ = [
    "Authenticator",
    "Lockout",
    "MovableClock",
    "RateLimiter",
    "hash_key",
    "ip_blocked",
    "key_hint",
    "masked_key",
    "new_key",
]
log = logging.getLogger("oneclickdz.server.auth")


class MovableClock:
    """`time.monotonic()` plus an offset that only grows. Lockouts, rate limits and the key
    cache share one, so a test moves the service's time forward instead of sleeping (a shared
    limit state adds the offset to the wall clock: see `limits.shared_time`)."""

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


class Authenticator:
    """Resolves the `X-Access-Token` of a request to its key, or refuses it.

    A blocked IP is refused before its key is looked up; the limits' state is asked once per
    request on the hot path (a cached key: `admit`), twice on a key-cache miss (`blocked` first,
    so a blocked IP never reaches the database).
    """

    def __init__(
        self,
        store: Store,
        limits: LimitState | None = None,
        cache_ttl: float = 1.0,
        clock: MovableClock | None = None,
    ) -> None:
        # Shared with the limits (see `runtime.build`): tests move the service's time with it.
        self.clock = clock if clock is not None else MovableClock()
        self.limits = limits if limits is not None else MemoryLimits(LimitPolicy(), self.clock)
        self._store = store
        self._cache_ttl = cache_ttl
        self._cache: dict[bytes, tuple[float, KeyRecord]] = {}
        self._networks: dict[tuple[str, ...], list[ipaddress.IPv4Network | ipaddress.IPv6Network]]
        self._networks = {}
        # Refusals, for the metrics: "invalid_token", "ip_blocked" or "rate_limited".
        self.observe: Callable[[str], None] = lambda event: None

    async def authenticate(self, token: str | None, ip: str, write: bool) -> KeyRecord:
        # HTTP trims a field value's surrounding whitespace; a blank token is a missing one
        # (refused, but not an attempt at guessing a key, so not counted toward the lockout).
        token = token.strip(" \t") if token else None
        if not token:
            await self._refuse_if_blocked(ip)
            raise ServiceError(401, "MISSING_ACCESS_TOKEN", "Access token is required")
        key_hash = hash_key(token)
        key = self._cached(key_hash)
        checked = key is None
        if key is None:
            await self._refuse_if_blocked(ip)
            key = await self._fetch(key_hash)
            if key is None:
                raise self._invalid(await self.limits.fail(ip), ip)
        refusal = self._refusal(key, ip, write)
        if refusal is not None:
            if not checked:
                await self._refuse_if_blocked(ip)
            raise refusal
        wait = await self.limits.admit(ip, key.id)
        if wait is None:
            raise ip_blocked()
        if wait:
            self.observe("rate_limited")
            raise rate_limited(wait)
        return key

    async def aclose(self) -> None:
        """Release the limits' connections (the service's lifespan calls it at shutdown)."""
        await self.limits.aclose()

    async def _refuse_if_blocked(self, ip: str) -> None:
        if await self.limits.blocked(ip):
            raise ip_blocked()

    def _invalid(self, left: int | None, ip: str) -> ServiceError:
        if left is None:  # blocked meanwhile (by another request): this one is not counted
            return ip_blocked()
        self.observe("invalid_token" if left else "ip_blocked")
        # The IP and the count only: nothing of the token itself is logged.
        if left:
            log.info("invalid access token", extra={"ip": ip, "attemptsLeft": left})
        else:
            log.warning("ip blocked after invalid access tokens", extra={"ip": ip})
        return ServiceError(
            401,
            "INVALID_ACCESS_TOKEN",
            "The provided access token is invalid",
            {"attemptsLeft": left},
        )

    def _refusal(self, key: KeyRecord, ip: str, write: bool) -> ServiceError | None:
        """Why this key may not make this request (disabled, IP, scope), if it may not."""
        if not key.enabled:
            return ServiceError(403, "KEY_DISABLED", "This access token has been disabled")
        if key.allowed_ips and not self._ip_allowed(ip, key.allowed_ips):
            return ServiceError(403, "IP_NOT_ALLOWED", "Your IP is not allowed to use this key")
        if write and key.scope != "READ-WRITE":
            return ServiceError(
                403, "INSUFFICIENT_SCOPE", "This access token is read-only; writes need READ-WRITE"
            )
        return None

    def _cached(self, key_hash: bytes) -> KeyRecord | None:
        cached = self._cache.get(key_hash)
        if cached is not None and cached[0] > self.clock():
            return cached[1]
        return None

    async def _fetch(self, key_hash: bytes) -> KeyRecord | None:
        found = await self._store.reader().keys.find(key_hash)
        if found is None or not hmac.compare_digest(found[0], key_hash):
            self._cache.pop(key_hash, None)
            return None
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[key_hash] = (self.clock() + self._cache_ttl, found[1])
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


def ip_blocked() -> ServiceError:
    return ServiceError(
        403, "IP_BLOCKED", "Your IP has been temporarily blocked due to too many invalid attempts"
    )
