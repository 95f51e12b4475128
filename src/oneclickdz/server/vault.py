"""The card vault: card codes and serials are sealed with AES-256-GCM before they touch disk.

The 32-byte key comes from `ONECLICKDZ_VAULT_KEY` (64 hex characters or URL-safe base64), or
is generated once into a file beside the database (mode 0600). A keyed fingerprint of each code
lets the store refuse a duplicate without ever holding the code in clear.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
from pathlib import Path

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from oneclickdz import _keyfile

log = logging.getLogger("oneclickdz.server.vault")

ENV_VAR = "ONECLICKDZ_VAULT_KEY"
_NONCE = 12
_CHECK_PLAINTEXT = b"oneclickdz vault check"


class VaultError(Exception):
    """The vault key is missing, malformed, or not the key this database was sealed with."""


def parse_key(text: str) -> bytes:
    return _keyfile.parse_key(text, ENV_VAR, VaultError)


def load_or_create_key(key_file: Path | None) -> bytes:
    """The vault key from the environment, else from `key_file`, created there if absent."""
    return _keyfile.load_or_create_key(
        key_file, ENV_VAR, VaultError, what="the card inventory", name="vault key", logger=log
    )


class Vault:
    """Seals and opens card secrets; the same key gives the same fingerprints."""

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)
        self._fingerprint_key = hmac.new(key, b"oneclickdz card fingerprint", "sha256").digest()

    def seal_card(self, value: str, serial: str, context: str) -> bytes:
        """Encrypt a card; `context` (product/type) is bound in, so rows cannot be swapped."""
        nonce = os.urandom(_NONCE)
        return nonce + self._aead.encrypt(nonce, orjson.dumps([value, serial]), context.encode())

    def open_card(self, sealed: bytes, context: str) -> tuple[str, str]:
        value, serial = orjson.loads(
            self._aead.decrypt(sealed[:_NONCE], sealed[_NONCE:], context.encode())
        )
        return str(value), str(serial)

    def seal(self, data: bytes, context: bytes) -> bytes:
        """Encrypt another secret (a webhook's signing secret), bound to `context`."""
        nonce = os.urandom(_NONCE)
        return nonce + self._aead.encrypt(nonce, data, context)

    def open(self, sealed: bytes, context: bytes) -> bytes:
        return self._aead.decrypt(sealed[:_NONCE], sealed[_NONCE:], context)

    def fingerprint(self, value: str) -> bytes:
        return hmac.new(self._fingerprint_key, value.encode(), hashlib.sha256).digest()

    def check_token(self) -> str:
        """A sealed marker stored with the data, to detect a wrong key at start-up."""
        nonce = os.urandom(_NONCE)
        return (nonce + self._aead.encrypt(nonce, _CHECK_PLAINTEXT, None)).hex()

    def verify(self, token: str) -> None:
        raw = bytes.fromhex(token)
        try:
            self._aead.decrypt(raw[:_NONCE], raw[_NONCE:], None)
        except InvalidTag:
            raise VaultError(
                "the vault key does not open this database's card inventory "
                f"(wrong {ENV_VAR}, or the key file beside the database was replaced)"
            ) from None
