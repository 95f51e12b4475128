"""What `Client` and `AsyncClient` share: configuration, request building, envelope decoding,
error mapping, and the retry decision. The two clients only add the waiting (sleep vs await).

The retry rules live here and nowhere else:
- retried: connection failures, timeouts, 429, 5xx, and unreadable (empty/truncated) answers;
  never any other 4xx;
- the pause is exponential backoff with full jitter (0.5 s doubling, capped at 8 s), or exactly
  the server's `Retry-After` when it gives one (a `Retry-After` above 60 s is not waited for);
- placeOrder always carries a ref (the caller's, or `auto-<uuid4 hex>` made up once per call by
  `_endpoints.place_order`), so it is retried like a read; if a retry meets DUPLICATED_REF after
  an attempt that may have arrived, the existing order is returned instead of an error (the
  call's `recover`); when the retries run out after an attempt that may have arrived, the failure
  becomes `PlacementUnknownError` (its `request.ref` is the ref to place again with);
- a top-up's send is a placement too: with a ref it is retried and recovered the same way
  (DUPLICATED_REF's `details.topupId`);
- a call that is not safe to repeat (a top-up sent without a ref: the server makes one up) is
  retried only when the failure proves the request never reached the server (connection
  refused, 429); any other failure that may have reached it becomes `PlacementUnknownError`.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from email.utils import parsedate_to_datetime
from typing import Any, Generic, TypeVar
from urllib.parse import urlencode

import pydantic

from ._redact import mask
from ._transport import Request, Response
from ._version import __version__
from .errors import (
    APIConnectionError,
    APIError,
    DuplicateRefError,
    OneClickDZError,
    Placement,
    PlacementUnknownError,
    RateLimitError,
    ServerError,
    UnexpectedResponseError,
)
from .errors import error_class as error_class  # noqa: PLC0414 - re-exported (mapped in errors)
from .models import APIModel

logger = logging.getLogger("oneclickdz")

DEFAULT_BASE_URL = "https://api.oneclickdz.com/v3"
DEFAULT_TIMEOUT = 30.0
DEFAULT_MAX_RETRIES = 2
INITIAL_RETRY_DELAY = 0.5
MAX_RETRY_DELAY = 8.0
MAX_RETRY_AFTER = 60.0

T = TypeVar("T")
M = TypeVar("M", bound=APIModel)


# --------------------------------------------------------------------------- configuration


class BaseClient:
    """Configuration and request building, shared by the sync and the async client."""

    def __init__(
        self,
        api_key: str | None,
        base_url: str | None,
        timeout: float | None,
        max_retries: int,
    ) -> None:
        if api_key is None:
            api_key = os.environ.get("ONECLICKDZ_API_KEY") or None
        if base_url is None:
            base_url = os.environ.get("ONECLICKDZ_BASE_URL") or DEFAULT_BASE_URL
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        self.api_key = api_key.strip() if api_key else None
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.max_retries = max_retries
        self._headers = {
            "Accept": "application/json",
            "User-Agent": f"oneclickdz-python/{__version__}",
        }
        if self.api_key:
            self._headers["X-Access-Token"] = self.api_key

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(base_url={self.base_url!r}, "
            f"api_key={mask(self.api_key)!r}, timeout={self.timeout!r}, "
            f"max_retries={self.max_retries!r})"
        )

    def _options(self) -> dict[str, Any]:
        return {
            "api_key": self.api_key,
            "base_url": self.base_url,
            "timeout": self.timeout,
            "max_retries": self.max_retries,
        }

    def _build_request(self, call: Call[Any]) -> Request:
        url = self.base_url + call.path
        if call.params:
            url += "?" + urlencode(call.params)
        headers = dict(self._headers)
        content = None
        if call.body is not None:
            headers["Content-Type"] = "application/json"
            content = json.dumps(call.body, separators=(",", ":")).encode()
        timeout = self.timeout if call.timeout is None else call.timeout
        return Request(call.method, url, headers, content, timeout)

    def _start(self, call: Call[T]) -> CallState[T]:
        retries = self.max_retries if call.max_retries is None else call.max_retries
        return CallState(self, call, retries)


# --------------------------------------------------------------------------- calls


@dataclass(slots=True)
class Call(Generic[T]):
    """One API call: where it goes, what it sends, how its answer is decoded, how it may retry.

    Treated as immutable (use `dataclasses.replace`); not frozen only because a frozen
    dataclass's constructor costs twice as much, and one is built per request.
    """

    method: str
    path: str
    decode: Callable[[Response], T]
    params: Mapping[str, str] | None = None
    body: Mapping[str, Any] | None = None
    placement: Placement | None = None
    timeout: float | None = None
    max_retries: int | None = None
    # A placement's answer rebuilt from the DUPLICATED_REF met by a retry (None: not recoverable).
    recover: Callable[[DuplicateRefError], T | None] | None = None

    @property
    def repeatable(self) -> bool:
        """Reads are; a placement is only with a ref (the server refuses a second use of it),
        which `_endpoints.place_order` always gives placeOrder."""
        return self.placement is None or self.placement.ref is not None


def timed(call: Call[T], timeout: float | None) -> Call[T]:
    """`call` with its own timeout, when one is given (the methods' `timeout=`)."""
    return call if timeout is None else replace(call, timeout=timeout)


@dataclass(frozen=True, slots=True)
class Recovered(Generic[T]):
    """A failure that turned out to be a success (a placement's DUPLICATED_REF after a retry)."""

    value: T


class CallState(Generic[T]):
    """The life of one call across its attempts; the clients' loops drive it.

    state = client._start(call)
    while True:
        try:
            return state.finish(send(state.request()))
        except OneClickDZError as exc:
            step = state.after_failure(exc)  # raises when giving up
            if isinstance(step, Recovered): return step.value
            sleep(step)
    """

    def __init__(self, client: BaseClient, call: Call[T], max_retries: int) -> None:
        self._client = client
        self.call = call
        self.max_retries = max_retries
        self.attempt = 0
        self.may_have_arrived = False
        self._started = time.monotonic()

    def request(self) -> Request:
        return self._client._build_request(self.call)

    def finish(self, response: Response) -> T:
        """Decode a successful answer, or raise the APIError it carries."""
        if response.status_code >= 400:
            raise error_from_response(response, self._client.api_key)
        value = self.call.decode(response)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "request method=%s path=%s status=%d request_id=%s attempt=%d elapsed_ms=%.1f",
                self.call.method,
                self.call.path,
                response.status_code,
                response.headers.get("x-request-id"),
                self.attempt,
                (time.monotonic() - self._started) * 1000,
            )
        return value

    def after_failure(self, exc: OneClickDZError) -> float | Recovered[T]:
        """Return the pause before the next attempt, or the recovered value; else raise."""
        call = self.call
        placement = call.placement
        if (
            placement is not None
            and placement.ref is not None
            and call.recover is not None
            and isinstance(exc, DuplicateRefError)
            and self.may_have_arrived
        ):
            recovered = call.recover(exc)
            if recovered is not None:
                logger.info(
                    "placement recovered operation=%s ref=%s id=%s request_id=%s",
                    placement.operation,
                    placement.ref,
                    exc.order_id or exc.topup_id,
                    exc.request_id,
                )
                return Recovered(recovered)
        arrived = may_have_arrived(exc)
        self.may_have_arrived = self.may_have_arrived or arrived
        delay = retry_delay(exc, self.attempt, self.max_retries)
        if delay is not None and (call.repeatable or not arrived):
            self.attempt += 1
            logger.info(
                "retry method=%s path=%s attempt=%d/%d delay_s=%.3f reason=%s request_id=%s",
                call.method,
                call.path,
                self.attempt,
                self.max_retries,
                delay,
                _reason(exc),
                getattr(exc, "request_id", None),
            )
            return delay
        if placement is not None and self.may_have_arrived:
            # Some attempt may have created the order: whatever came last, it may exist.
            raise PlacementUnknownError(placement, exc) from exc
        raise exc


def _reason(exc: OneClickDZError) -> str:
    if isinstance(exc, APIError):
        return f"{type(exc).__name__}:{exc.status_code}:{exc.code}"
    return type(exc).__name__


# --------------------------------------------------------------------------- retry decision


def is_transient(exc: BaseException) -> bool:
    """Failures worth repeating: no answer, 429, 5xx, or an unreadable answer."""
    if isinstance(exc, APIConnectionError | RateLimitError | ServerError):
        return True
    return isinstance(exc, UnexpectedResponseError) and exc.malformed


def may_have_arrived(exc: BaseException) -> bool:
    """Could the server have acted on the request that failed this way?"""
    if isinstance(exc, APIConnectionError):
        return exc.request_sent
    if isinstance(exc, RateLimitError):
        return False  # refused before any handling
    return isinstance(exc, ServerError | UnexpectedResponseError)


def backoff_delay(retry_number: int, rand: Callable[[], float] = random.random) -> float:
    """Exponential backoff with full jitter: uniform in [0, min(8, 0.5 * 2**n)]."""
    ceiling = min(MAX_RETRY_DELAY, INITIAL_RETRY_DELAY * 2.0**retry_number)
    return ceiling * rand()


def retry_delay(
    exc: BaseException,
    attempt: int,
    max_retries: int,
    rand: Callable[[], float] = random.random,
) -> float | None:
    """How long to wait before repeating after `exc` on attempt `attempt` (0-based), or None.

    Retry-After is honoured exactly when given; one longer than 60 s is not waited for.
    """
    if not is_transient(exc) or attempt >= max_retries:
        return None
    if isinstance(exc, RateLimitError) and exc.retry_after is not None:
        return exc.retry_after if exc.retry_after <= MAX_RETRY_AFTER else None
    return backoff_delay(attempt, rand)


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After as seconds (it may be a number of seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - time.time()
    return None if math.isnan(seconds) else max(0.0, seconds)


# --------------------------------------------------------------------------- error mapping

_MISSING_KEY_HINT = " (pass api_key= to the client or set ONECLICKDZ_API_KEY)"


def error_from_response(response: Response, api_key: str | None = None) -> APIError:
    """Build the typed error an error answer (or an error envelope in a 2xx) stands for."""
    status = response.status_code
    try:
        body = json.loads(response.content) if response.content else None
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        error = {}
    code = error.get("code") if isinstance(error.get("code"), str) else None
    message = str(error.get("message") or f"HTTP {status} without an error envelope")
    details = error.get("details") if isinstance(error.get("details"), dict) else None
    request_id = (body.get("requestId") if isinstance(body, dict) else None) or (
        response.headers.get("x-request-id")
    )
    if api_key:  # the API never echoes it, but make sure no error message ever carries it
        message = message.replace(api_key, mask(api_key) or "")
    if code == "MISSING_ACCESS_TOKEN":
        message += _MISSING_KEY_HINT
    cls = error_class(status, code)
    kwargs: dict[str, Any] = {
        "status_code": status,
        "code": code,
        "details": details,
        "request_id": request_id,
    }
    if cls is RateLimitError:
        kwargs["retry_after"] = parse_retry_after(response.headers.get("retry-after"))
    return cls(message, **kwargs)


# --------------------------------------------------------------------------- decoding


class Envelope(pydantic.BaseModel, Generic[T]):
    """The success envelope: {success, data, meta?, requestId?}."""

    model_config = pydantic.ConfigDict(extra="allow", hide_input_in_errors=True)

    success: bool
    data: T
    meta: dict[str, Any] | None = None
    requestId: str | None = None  # the wire's name


def decoder(
    model: type[M], finish: Callable[[Envelope[M], Response], M] | None = None
) -> Callable[[Response], M]:
    """A decoder of `model` from a success envelope; `finish` may fold more into the model."""
    envelope_type = Envelope[model]  # type: ignore[valid-type]

    def decode(response: Response) -> M:
        try:
            envelope: Envelope[M] = envelope_type.model_validate_json(response.content)
        except pydantic.ValidationError as exc:
            raise _undecodable(response, model, exc) from None
        if not envelope.success:
            raise error_from_response(response)
        if finish is None:
            return envelope.data
        try:
            return finish(envelope, response)
        except pydantic.ValidationError as exc:  # what a finisher reads again (a page's items)
            raise _undecodable(response, model, exc) from None

    return decode


def _undecodable(
    response: Response, model: type[APIModel], exc: pydantic.ValidationError
) -> APIError:
    """Why a 2xx answer could not be read: not JSON, an error envelope, or the wrong shape.

    The body is never quoted: it may hold card codes.
    """
    request_id = response.headers.get("x-request-id")
    try:
        body = json.loads(response.content)
    except ValueError:
        return UnexpectedResponseError(
            f"answer is not JSON ({len(response.content)} bytes, likely cut short)",
            malformed=True,
            status_code=response.status_code,
            request_id=request_id,
        )
    if isinstance(body, dict) and body.get("success") is False:
        return error_from_response(response)
    problems = "; ".join(
        f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()[:5]
    )
    return UnexpectedResponseError(
        f"answer does not match {model.__name__}: {problems}",
        malformed=False,
        status_code=response.status_code,
        request_id=(body.get("requestId") if isinstance(body, dict) else None) or request_id,
    )
