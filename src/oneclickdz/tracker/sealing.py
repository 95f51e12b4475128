"""Card codes at rest: sealed with AES-256-GCM under the merchant's own key.

What is sealed: a gift-card order's cards, and an internet recharge's card code (one `Card`
whose value is the code, `seal_code`). Nothing else the tracker keeps is a secret.

The key comes from `ONECLICKDZ_TRACKER_KEY` (64 hex characters or base64), else from the key
file `ONECLICKDZ_TRACKER_KEY_FILE` names, else from a key file beside a SQLite store; a key
file is created on first use with mode 0600, as the service's vault does. A PostgreSQL store
has no file beside it: it needs one of the two variables (every runner the same key). Each
order's cards are one ciphertext bound to the intent and order ids, so rows cannot be swapped.
A sealed check token in the store refuses a wrong key at start instead of failing at delivery.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from oneclickdz import _keyfile
from oneclickdz.models import Card

__all__ = ["ENV_VAR", "FILE_ENV_VAR", "CardSealer", "TrackerKeyError", "load_key"]

log = logging.getLogger("oneclickdz.tracker")

ENV_VAR = "ONECLICKDZ_TRACKER_KEY"
FILE_ENV_VAR = "ONECLICKDZ_TRACKER_KEY_FILE"
_NONCE = 12
_CHECK = b"oneclickdz tracker check"


class TrackerKeyError(Exception):
    """The tracker key is missing, malformed, or not the key this store was sealed with."""


def load_key(key_file: Path | None) -> bytes:
    """$ONECLICKDZ_TRACKER_KEY, else the key file $ONECLICKDZ_TRACKER_KEY_FILE names, else
    `key_file` (the store's own: None for a database server). Created (0600) when absent."""
    if os.environ.get(FILE_ENV_VAR):
        key_file = Path(os.environ[FILE_ENV_VAR])
    if key_file is None and os.environ.get(ENV_VAR) is None:
        raise TrackerKeyError(
            f"this store keeps no key file beside it: set {ENV_VAR} (64 hex characters, the "
            f"same for every runner) or {FILE_ENV_VAR} (a key file, created on first use)"
        )
    return _keyfile.load_or_create_key(
        key_file,
        ENV_VAR,
        TrackerKeyError,
        what="the tracker's card codes",
        name="tracker key",
        logger=log,
    )


class CardSealer:
    """Seals and opens one order's cards."""

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)

    def seal(self, cards: Sequence[Card], context: str) -> bytes:
        plain = json.dumps([[c.value, c.serial] for c in cards], separators=(",", ":")).encode()
        nonce = os.urandom(_NONCE)
        return nonce + self._aead.encrypt(nonce, plain, context.encode())

    def open(self, sealed: bytes, context: str) -> tuple[Card, ...]:
        try:
            plain = self._aead.decrypt(sealed[:_NONCE], sealed[_NONCE:], context.encode())
        except InvalidTag:
            raise TrackerKeyError(
                "the tracker key does not open these cards (wrong key, or the row was altered)"
            ) from None
        return tuple(Card(value=value, serial=serial) for value, serial in json.loads(plain))

    def seal_code(self, code: str, context: str) -> bytes:
        """An internet recharge's card code, sealed as one card (`open` gives it back)."""
        return self.seal([Card(value=code)], context)

    def check_token(self) -> bytes:
        nonce = os.urandom(_NONCE)
        return nonce + self._aead.encrypt(nonce, _CHECK, None)

    def verify(self, token: bytes) -> None:
        try:
            self._aead.decrypt(token[:_NONCE], token[_NONCE:], None)
        except InvalidTag:
            raise TrackerKeyError(
                f"the tracker key does not open this store's cards (wrong {ENV_VAR}, or the key "
                "file was replaced)"
            ) from None
