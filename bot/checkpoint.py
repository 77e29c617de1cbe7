"""Checkpoints of chain heads, kept outside the database (`consentbot audit checkpoint`).

A keyed chain shows a changed row, but not a chain cut short: its shorter self still verifies.
A checkpoint records, at one moment, every case's reference, version and head, and the access
log's last seq and head, signed with an HMAC under a key derived from the key ring. `audit verify
--checkpoint FILE` then fails for a chain shorter than it was, or no longer holding the head it
had at that seq (cut and re-grown), and for a case that is gone. A file holds ids and hashes
only, never content.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Any

from bot.cases import Services
from bot.crypto import Keyring
from bot.errors import BotError
from bot.people import Operator
from storage import repo
from storage.audit import GENESIS, ChainProblem, append_access, canonical

FORMAT = "consentbot-audit-checkpoint/1"
PURPOSE = "audit-checkpoint"


class CheckpointError(BotError):
    """A checkpoint file that cannot be trusted: unreadable, another format, or a bad signature."""


@dataclass(frozen=True)
class Checkpoint:
    """Chain heads at one moment: the access log's (seq, head), each case's ref -> (version, head)."""

    taken_at: str
    access: tuple[int, str]
    cases: dict[str, tuple[int, str]]

    def problems(self, *, access: list[str], chains: dict[str, list[str]]) -> list[ChainProblem]:
        """What the chains now (hashes in seq order; `chains` by case reference) lost since."""
        problems = _lost(None, self.access, access)
        for ref, head in sorted(self.cases.items()):
            if ref not in chains:
                problems.append(ChainProblem(ref, 0, f"gone: it was at version {head[0]} at the checkpoint "
                                                     f"of {self.taken_at} (deleted)"))
            else:
                problems += _lost(ref, head, chains[ref])
        return problems


def _lost(ref: str | None, head: tuple[int, str], hashes: list[str]) -> list[ChainProblem]:
    seq, expected = head
    if len(hashes) < seq:
        what = "events, fewer than the" if ref else "entries, fewer than the"
        return [ChainProblem(ref, seq, f"missing: {len(hashes)} {what} {seq} at the checkpoint (truncated or emptied)")]
    if seq and hashes[seq - 1] != expected:
        return [ChainProblem(ref, seq, "differs from the head at the checkpoint (the chain was rewritten)")]
    return []


async def take(svc: Services) -> tuple[str, Checkpoint]:
    """The signed checkpoint file's text for the chains as they are now, and what it holds."""
    async with svc.db.read() as s:  # one snapshot: every head from the same moment
        last = (await repo.access_log(s))[-1:]
        cases = await repo.all_cases(s)
    checkpoint = Checkpoint(taken_at=svc.clock().isoformat(timespec="seconds"),
                            access=(last[0].seq, last[0].hash) if last else (0, GENESIS),
                            cases={c.ref: (c.version, c.head_hash or GENESIS) for c in cases})
    return render(svc.keyring, checkpoint), checkpoint


async def take_logged(svc: Services, *, by: Operator) -> str:
    """`take`, logged first: the entry naming who took it is the newest one the checkpoint holds, so
    deleting the newest entry is caught too.
    """
    async with svc.db.transaction() as s:
        await append_access(s, action="checkpoint_taken", at=svc.clock(), actor_id=by.staff_id, detail=by.detail)
    return (await take(svc))[0]


def render(keyring: Keyring, checkpoint: Checkpoint) -> str:
    """The checkpoint as signed JSON (signed under the active key; the file names its key id)."""
    body = {"format": FORMAT, "taken_at": checkpoint.taken_at, "key_id": keyring.active,
            "access_log": {"seq": checkpoint.access[0], "head": checkpoint.access[1]},
            "cases": {ref: {"version": v, "head": h} for ref, (v, h) in sorted(checkpoint.cases.items())}}
    return json.dumps({**body, "signature": _signature(keyring, body)}, indent=1, sort_keys=True) + "\n"


def parse(keyring: Keyring, text: str) -> Checkpoint:
    """A checkpoint file's heads, once its signature is checked (CheckpointError otherwise)."""
    try:
        body = json.loads(text)
        signature = body.pop("signature")
        if body.get("format") != FORMAT:
            raise CheckpointError(f"not a checkpoint file of format {FORMAT}")
        if not keyring.keys.get(str(body.get("key_id"))):
            raise CheckpointError(f"it was signed with key id {body.get('key_id')!r}, which the key ring does not hold")
        if not hmac.compare_digest(_signature(keyring, body), str(signature)):
            raise CheckpointError("its signature does not match: it was altered, or made with another key")
        return Checkpoint(taken_at=str(body["taken_at"]),
                          access=(int(body["access_log"]["seq"]), str(body["access_log"]["head"])),
                          cases={ref: (int(h["version"]), str(h["head"])) for ref, h in body["cases"].items()})
    except (ValueError, KeyError, TypeError, AttributeError):
        raise CheckpointError("not a readable consentbot checkpoint file") from None


def _signature(keyring: Keyring, body: dict[str, Any]) -> str:
    key = keyring.derived(PURPOSE, kid=str(body["key_id"]))
    return hmac.new(key, canonical(body).encode(), hashlib.sha256).hexdigest()
