"""A 32-byte AES-256 key from an environment variable, else from a key file created on first use.

The service's card vault and the tracker's card store both keep their key this way: the
variable wins; otherwise the file beside the database is read, or created (mode 0600, written
whole under a temporary name and linked into place, so two processes starting at once agree on
one key). Needs `cryptography` (extras `server` and `tracker`).
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

log = logging.getLogger("oneclickdz")

__all__ = ["KeyFileError", "load_or_create_key", "parse_key"]


class KeyFileError(Exception):
    """The key is missing or malformed."""


def parse_key(text: str, env_var: str, error: type[Exception] = KeyFileError) -> bytes:
    """32 bytes from 64 hex characters or URL-safe base64; `error` names `env_var` when not."""
    text = text.strip()
    try:
        key = bytes.fromhex(text) if len(text) == 64 else base64.urlsafe_b64decode(text + "==")
    except (ValueError, binascii.Error):
        raise error(f"{env_var} is neither 64 hex characters nor base64") from None
    if len(key) != 32:
        raise error(f"{env_var} must hold 32 bytes (AES-256); it holds {len(key)}")
    return key


def load_or_create_key(
    key_file: Path | None,
    env_var: str,
    error: type[Exception] = KeyFileError,
    *,
    what: str,
    name: str = "key",
    logger: logging.Logger = log,
) -> bytes:
    """The key from `env_var`, else from `key_file`, created there (0600) if absent.

    `name` (e.g. "vault key") and `what` it protects word the warning `logger` logs when a key
    is generated.
    """
    if (env := os.environ.get(env_var)) is not None:
        return parse_key(env, env_var, error)
    if key_file is None:
        raise error(f"set {env_var} (32 bytes as hex) to seal card codes in this database")
    try:
        return parse_key(key_file.read_text(), env_var, error)
    except FileNotFoundError:
        pass
    key = AESGCM.generate_key(bit_length=256)
    tmp = key_file.with_name(f".{key_file.name}.{os.urandom(6).hex()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key.hex() + "\n")
        f.flush()
        os.fsync(f.fileno())
    try:
        os.link(tmp, key_file)
    except FileExistsError:  # another process created it first: use theirs
        return parse_key(key_file.read_text(), env_var, error)
    finally:
        tmp.unlink()
    logger.warning(
        "generated a new %s; back it up (without it %s cannot be read) or set %s instead",
        name,
        what,
        env_var,
        extra={"key_file": str(key_file)},
    )
    return key
