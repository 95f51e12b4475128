"""Masking of secrets (card codes, serials, API keys, passwords in URLs) for reprs, logs and
error messages."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

VISIBLE = 4
_MIN_LENGTH_TO_SHOW = 2 * VISIBLE


def mask(value: str | None) -> str | None:
    """Hide all but the last 4 characters of a secret; short secrets are hidden entirely.

    `mask("ABCD-EFGH-1234")` is `"****1234"`. The length is not revealed either.
    """
    if value is None:
        return None
    if len(value) < _MIN_LENGTH_TO_SHOW:
        return "****"
    return "****" + value[-VISIBLE:]


def safe_url(url: str) -> str:
    """`url` with its password, if any, replaced by `***` (for messages and logs)."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        netloc = parts.netloc.rpartition("@")
        user = netloc[0].partition(":")[0]
        return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[2]}"))
    except ValueError:
        return "<unparsable URL>"


def one_line(exc: BaseException) -> str:
    """An exception's message on one line (drivers' messages span several)."""
    return " ".join(str(exc).split()) or type(exc).__name__
