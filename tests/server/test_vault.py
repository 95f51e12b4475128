"""The card vault: one key per database, sealed cards bound to their product and type."""

from __future__ import annotations

import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidTag

from oneclickdz.server.vault import ENV_VAR, Vault, VaultError, load_or_create_key


def test_processes_starting_together_share_one_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    key_file = tmp_path / "shop.db.key"
    with ThreadPoolExecutor(8) as pool:
        keys = set(pool.map(lambda _: load_or_create_key(key_file), range(8)))
    assert len(keys) == 1
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["shop.db.key"]  # no temporary file left
    assert load_or_create_key(key_file) in keys


def test_the_environment_key_wins_and_is_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_VAR, "ab" * 32)
    assert load_or_create_key(tmp_path / "unused.key") == bytes.fromhex("ab" * 32)
    assert not (tmp_path / "unused.key").exists()
    monkeypatch.setenv(ENV_VAR, "ab" * 16)
    with pytest.raises(VaultError, match="32 bytes"):
        load_or_create_key(None)


def test_a_sealed_card_opens_only_as_its_own_product_and_type() -> None:
    vault = Vault(bytes(32))
    sealed = vault.seal_card("PSN-1234-5678", "SN-42", "p1/type_001")
    assert b"PSN-1234" not in sealed
    assert b"SN-42" not in sealed
    assert vault.open_card(sealed, "p1/type_001") == ("PSN-1234-5678", "SN-42")
    with pytest.raises(InvalidTag):
        vault.open_card(sealed, "p1/type_002")
    with pytest.raises(InvalidTag):
        Vault(bytes([1]) * 32).open_card(sealed, "p1/type_001")
    assert vault.seal_card("PSN-1234-5678", "SN-42", "p1/type_001") != sealed  # fresh nonce


def test_fingerprints_are_stable_per_key_and_reveal_nothing() -> None:
    vault = Vault(bytes(32))
    assert vault.fingerprint("CODE-1") == vault.fingerprint("CODE-1")
    assert vault.fingerprint("CODE-1") != vault.fingerprint("CODE-2")
    assert vault.fingerprint("CODE-1") != Vault(bytes([1]) * 32).fingerprint("CODE-1")
    assert b"CODE-1" not in vault.fingerprint("CODE-1")
