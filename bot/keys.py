"""Keys that cannot be confused. For each key id it was written with, the database keeps a
check value: a fixed text encrypted under that key. A key ring that holds one of those ids
under a different key, or none of those ids at all, would write data nobody can read beside
data it cannot read: it is refused at start-up and /readyz reports it. Messages name key ids,
never key material.
"""

from __future__ import annotations

from collections.abc import Mapping

from bot.cases import Services
from bot.crypto import DecryptError, Keyring
from bot.errors import BotError
from storage import keys as store

CHECK_TEXT = "consentbot key check v1"
CHECK_CONTEXT = "key-check"


class KeyMismatch(BotError):
    """The configured key ring is not the one the database was written with."""


async def mismatch(svc: Services) -> str | None:
    """Why the key ring cannot be used with this database, or None. Reads only."""
    stored = await _stored(svc)
    return None if stored is None else problem(svc.keyring, stored)


async def check(svc: Services) -> None:
    """Refuse (KeyMismatch) a key ring that cannot read the stored check values; record the
    active key's check value when there is none yet (a first start, or a rotation's new key).
    """
    stored = await _stored(svc)
    if stored is None:
        return
    if reason := problem(svc.keyring, stored):
        raise KeyMismatch(reason)
    if svc.keyring.active in stored:
        return
    token = svc.keyring.encrypt(CHECK_TEXT, context=CHECK_CONTEXT)
    async with svc.db.transaction() as s:
        await store.add_key_check(s, key_id=svc.keyring.active, token=token, at=svc.clock())
        stored = await store.key_checks(s)
    # Two processes starting at once with different keys under one id: one check value is
    # kept, and the process whose key does not open it is refused here.
    if reason := problem(svc.keyring, stored):
        raise KeyMismatch(reason)


async def _stored(svc: Services) -> dict[str, str] | None:
    """The stored check values; None before `consentbot db upgrade` made their table."""
    async with svc.db.read() as s:
        return await store.key_checks(s) if await store.has_key_checks(s) else None


def problem(ring: Keyring, stored: Mapping[str, str]) -> str | None:
    """What is wrong with `ring` against the stored check values (key id -> token), or None."""
    held = [kid for kid in stored if kid in ring.keys]
    for kid in held:
        if not _opens(ring, stored[kid]):
            return f"the key with id {kid!r} in {ring.source} is not the one this database was written with"
    if stored and not held:
        return (f"the database was written with the key id(s) {_ids(stored)}, and {ring.source} holds none of them "
                f"(it holds {_ids(ring.keys)}): set the key(s) it was written with")
    return None


def _opens(ring: Keyring, token: str) -> bool:
    try:
        return ring.decrypt(token, context=CHECK_CONTEXT) == CHECK_TEXT
    except DecryptError:
        return False


def _ids(ids: Mapping[str, object]) -> str:
    return ", ".join(repr(kid) for kid in sorted(ids))
