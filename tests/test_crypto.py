"""AES-GCM field encryption: round trip, binding to place, tamper, rotation, key handling."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from bot.crypto import DecryptError, Keyring, KeyringError, generate_key, is_encrypted, load_keyring


def test_round_trip_and_key_id_recorded() -> None:
    ring = Keyring.parse(generate_key("a1"))
    token = ring.encrypt("Zebedee", context="case:1:child")
    assert is_encrypted(token) and token.startswith("enc:v1:a1:") and "Zebedee" not in token
    assert ring.decrypt(token, context="case:1:child") == "Zebedee"


def test_a_token_moved_to_another_place_or_altered_fails() -> None:
    ring = Keyring.parse(generate_key("a1"))
    token = ring.encrypt("Zebedee", context="case:1:child")
    with pytest.raises(DecryptError):
        ring.decrypt(token, context="case:2:child")
    middle = len(token) - 20  # inside the ciphertext: the last base64 characters may carry only padding bits
    flipped = token[:middle] + ("A" if token[middle] != "A" else "B") + token[middle + 1:]
    with pytest.raises(DecryptError) as caught:
        ring.decrypt(flipped, context="case:1:child")
    assert "Zebedee" not in str(caught.value)


def test_rotation_new_key_encrypts_old_key_still_decrypts() -> None:
    old = generate_key("old")
    token = Keyring.parse(old).encrypt("x", context="c")
    rotated = Keyring.parse(f"{generate_key('new')},{old}")
    assert rotated.active == "new"
    assert rotated.encrypt("y", context="c").startswith("enc:v1:new:")
    assert rotated.decrypt(token, context="c") == "x"
    with pytest.raises(DecryptError, match="no key with id 'old'"):
        Keyring.parse(generate_key("new")).decrypt(token, context="c")


@pytest.mark.parametrize("bad", ["", "nokey", "k1:!!!", "k1:c2hvcnQ="])
def test_malformed_key_rings_are_refused(bad: str) -> None:
    with pytest.raises(KeyringError):
        Keyring.parse(bad)


def test_production_refuses_to_start_without_a_key(tmp_path: Path) -> None:
    with pytest.raises(KeyringError, match="production refuses to start"):
        load_keyring(configured=None, production=True, dev_key_file=tmp_path / "k")


def test_development_generates_a_key_file_and_warns_loudly(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    key_file = tmp_path / "consentbot.db.key"
    with caplog.at_level(logging.WARNING):
        first = load_keyring(configured=None, production=False, dev_key_file=key_file)
    assert key_file.exists() and oct(key_file.stat().st_mode & 0o777) == "0o600"
    assert "DEVELOPMENT ONLY" in caplog.text
    again = load_keyring(configured=None, production=False, dev_key_file=key_file)
    assert again.keys == first.keys  # the same key on the next start: data stays readable


def test_each_development_key_has_an_id_of_its_own(tmp_path: Path) -> None:
    rings = [load_keyring(configured=None, production=False, dev_key_file=tmp_path / name / "consentbot.db.key",
                          database_file=tmp_path / name / "consentbot.db") for name in ("a", "b")]
    ids = [ring.active for ring in rings]
    assert all(kid.startswith("dev") and len(kid) > 3 for kid in ids) and ids[0] != ids[1]
    assert rings[0].source == f"the development key file {tmp_path / 'a' / 'consentbot.db.key'}"


def test_a_database_whose_development_key_file_is_missing_is_refused(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from bot.config import Settings
    from bot.runtime import build_services

    for name in ("CONSENTBOT_ENCRYPTION_KEY", "CONSENTBOT_ENV", "CONSENTBOT_POLICY", "DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    build_services(Settings())  # the first start: a key file and the database file beside it
    assert (tmp_path / "consentbot.db").exists()
    (tmp_path / "consentbot.db.key").unlink()
    with pytest.raises(KeyringError) as refused:
        build_services(Settings())
    assert str(refused.value) == ("consentbot.db exists but its development key file consentbot.db.key is missing: "
                                  "restore it, or set CONSENTBOT_ENCRYPTION_KEY")
    assert not (tmp_path / "consentbot.db.key").exists()
