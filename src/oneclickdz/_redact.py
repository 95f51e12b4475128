"""Masking of secrets (card codes, serials, API keys) for reprs, logs and error messages."""

from __future__ import annotations

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
