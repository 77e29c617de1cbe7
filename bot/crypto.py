"""AES-GCM encryption of sensitive fields, with key ids so keys can rotate.

A key ring is written `KID:BASE64KEY[,KID:BASE64KEY...]`; the first key encrypts, every key
decrypts. A token is `enc:v1:KID:BASE64(nonce || ciphertext)`. The associated data binds a
token to its place (e.g. case id and field), so a ciphertext copied elsewhere fails to decrypt.
"""

from __future__ import annotations

import base64
import logging
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

logger = logging.getLogger(__name__)
PREFIX = "enc:v1:"
NONCE_BYTES = 12
MAX_KID = 64  # storage.models.KeyCheck.key_id


class KeyringError(ValueError):
    """A key ring is missing or malformed. Never carries key material."""


class DecryptError(ValueError):
    """A token could not be decrypted (unknown key, tampered, or moved). Never carries data."""


@dataclass(frozen=True)
class Keyring:
    """Named AES-256 keys; `active` encrypts. `source` says where they came from, for messages."""

    keys: dict[str, bytes]
    active: str
    source: str = "CONSENTBOT_ENCRYPTION_KEY"
    # Derived keys and ciphers, made once per key id: every answer seals an event and indexes a
    # name, and HKDF each time was 2% of an answer's CPU (issue 12). Keys never change in a ring.
    _derived: dict[tuple[str, str], bytes] = field(default_factory=dict, init=False, repr=False, compare=False)
    _ciphers: dict[str, AESGCM] = field(default_factory=dict, init=False, repr=False, compare=False)

    @classmethod
    def parse(cls, text: str, *, source: str = "CONSENTBOT_ENCRYPTION_KEY") -> Keyring:
        """Parse `KID:BASE64KEY[,...]`."""
        keys: dict[str, bytes] = {}
        for part in (p.strip() for p in text.split(",") if p.strip()):
            kid, sep, b64 = part.partition(":")
            if not sep or not kid.isalnum() or len(kid) > MAX_KID:
                raise KeyringError(f"each key must be written KID:BASE64KEY (KID letters and digits, at most {MAX_KID})")
            try:
                raw = base64.urlsafe_b64decode(b64.encode())
            except ValueError:
                raise KeyringError(f"key {kid!r} is not valid base64") from None
            if len(raw) != 32:
                raise KeyringError(f"key {kid!r} must be 32 bytes (AES-256); run `consentbot keygen`")
            keys[kid] = raw
        if not keys:
            raise KeyringError("no key given; run `consentbot keygen`")
        return cls(keys=keys, active=next(iter(keys)), source=source)

    def encrypt(self, plaintext: str, *, context: str) -> str:
        """Encrypt under the active key; `context` must be given again to decrypt."""
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._cipher(self.active).encrypt(nonce, plaintext.encode(), context.encode())
        return f"{PREFIX}{self.active}:{base64.urlsafe_b64encode(nonce + sealed).decode()}"

    def decrypt(self, token: str, *, context: str) -> str:
        """Decrypt a token made by `encrypt` with the same context."""
        if not is_encrypted(token):
            raise DecryptError("value is not an encrypted token")
        kid, _, b64 = token[len(PREFIX):].partition(":")
        if kid not in self.keys:
            raise DecryptError(f"no key with id {kid!r} in the key ring")
        try:
            blob = base64.urlsafe_b64decode(b64.encode())
            plain = self._cipher(kid).decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], context.encode())
        except (InvalidTag, ValueError):
            raise DecryptError("token failed authentication (tampered, or decrypted in the wrong place)") from None
        return plain.decode()

    def derived(self, purpose: str, *, kid: str | None = None) -> bytes:
        """A 32-byte key for `purpose` (e.g. "audit-chain"), derived from the key `kid` (default the
        active one) with HKDF: held outside the database like the key ring, and never the
        encryption key itself. Derived again under each key id, so a rotated ring still checks
        what an older key made.
        """
        kid = kid or self.active
        if kid not in self.keys:
            raise KeyringError(f"no key with id {kid!r} in the key ring")
        made = self._derived.get((purpose, kid))
        if made is None:
            made = self._derived[(purpose, kid)] = HKDF(
                algorithm=hashes.SHA256(), length=32, salt=None, info=f"consentbot {purpose} v1".encode(),
            ).derive(self.keys[kid])
        return made

    def _cipher(self, kid: str) -> AESGCM:
        cipher = self._ciphers.get(kid)
        if cipher is None:
            cipher = self._ciphers[kid] = AESGCM(self.keys[kid])
        return cipher


def is_encrypted(value: object) -> bool:
    """True for a token made by `Keyring.encrypt`."""
    return isinstance(value, str) and value.startswith(PREFIX)


def generate_key(kid: str | None = None) -> str:
    """A new key ring entry, `KID:BASE64KEY`."""
    kid = kid or "k" + secrets.token_hex(4)
    return f"{kid}:{base64.urlsafe_b64encode(AESGCM.generate_key(bit_length=256)).decode()}"


def load_keyring(*, configured: str | None, production: bool, dev_key_file: Path | None,
                 database_file: Path | None = None) -> Keyring:
    """The key ring from configuration; in development only, a generated key kept in a file
    beside the SQLite `database_file`. A key is never generated for a database that exists:
    its data would be under a key nobody has any more.
    """
    if configured:
        return Keyring.parse(configured)
    if production:
        raise KeyringError("CONSENTBOT_ENCRYPTION_KEY is not set; production refuses to start without it "
                           "(generate one with `consentbot keygen`)")
    if dev_key_file is None:
        raise KeyringError("CONSENTBOT_ENCRYPTION_KEY is not set, and there is no SQLite file "
                           "to keep a development key beside")
    if not dev_key_file.exists():
        if database_file is not None and database_file.exists():
            raise KeyringError(f"{database_file} exists but its development key file {dev_key_file} is missing: "
                               "restore it, or set CONSENTBOT_ENCRYPTION_KEY")
        dev_key_file.parent.mkdir(parents=True, exist_ok=True)
        # A fresh id each time: a key made again can never pass for the one it replaces.
        write_private(dev_key_file, generate_key("dev" + secrets.token_hex(4)) + "\n", replace=False)
    logger.warning("!!! DEVELOPMENT ONLY: CONSENTBOT_ENCRYPTION_KEY is not set; using the generated key in %s. "
                   "Anyone with that file can read the sensitive fields. Set CONSENTBOT_ENCRYPTION_KEY "
                   "(from `consentbot keygen`) and CONSENTBOT_ENV=production before real use. !!!", dev_key_file)
    return Keyring.parse(dev_key_file.read_text().strip(), source=f"the development key file {dev_key_file}")


def write_private(path: Path, text: str, *, replace: bool) -> bool:
    """Write a file only its owner can read: 0600 from its creation (never created wider and
    narrowed after), and whole or not there at all. With `replace` an existing file is replaced
    (by a new, private one); without, it is kept and False is returned.
    """
    partial = path.with_name(f".{path.name}.{secrets.token_hex(4)}.partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        if replace:
            os.replace(partial, path)
        else:
            os.link(partial, path)  # fails if the file exists: a key is never overwritten
        return True
    except FileExistsError:
        return False
    finally:
        partial.unlink(missing_ok=True)
