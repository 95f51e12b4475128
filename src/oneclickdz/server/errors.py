"""Errors the service answers with: each becomes the documented error envelope.

Raise `ServiceError` (or one of the helpers) anywhere below the routes; the app turns it into
`{"success": false, "error": {"code", "message", "details"}, "requestId"}` with its status.
"""

from __future__ import annotations

from typing import Any


class ServiceError(Exception):
    """A refusal the client should see, with its HTTP status and documented error code."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.headers = headers or {}


def validation(field: str, value: Any, message: str) -> ServiceError:
    """400 ERR_VALIDATION naming the field at fault, in the docs' `body/<field> …` style."""
    return ServiceError(400, "ERR_VALIDATION", message, {"field": field, "value": value})


def not_found(message: str) -> ServiceError:
    return ServiceError(404, "NOT_FOUND", message)


def rate_limited(retry_after: int, message: str = "Too many requests") -> ServiceError:
    return ServiceError(
        429, "RATE_LIMIT_EXCEEDED", message, {"retryAfter": retry_after},
        headers={"Retry-After": str(retry_after)},
    )  # fmt: skip
