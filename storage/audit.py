"""Keyed hash chains: one per case (its events) and one for the access log (views, exports,
refusals, staff changes, and the index of cases).

Each row's hash is an HMAC-SHA256, under a key derived from the key ring (held outside the
database, like the encryption key), over the previous hash and the row's content. Someone who can
write to the database but does not hold the key cannot alter a row and re-hash the chain after
it. Each row records the id of the key that sealed it, so a rotated ring still verifies older
rows. Rows written before keyed chains (`key_id` None) carry plain SHA-256: `consentbot db
upgrade` adopts them once (bot/audit_adopt.py), and an unkeyed row verifies only inside an
adopted prefix. docs/audit.md says what is checked and why.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import Integer, String, column, func, insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import select

from storage.db import SEALER, core
from storage.models import AccessLog, Case, CaseEvent, Membership, Staff

GENESIS = "0" * 64
CHAIN_PURPOSE = "audit-chain"
CASE_OPENED = "case_opened"
STAFF_PREFIX = "staff:"  # keeps a staff fingerprint apart from any chain hash (those start with 64 hex digits)


class ChainKeys(Protocol):
    """Where chain keys come from (bot.crypto.Keyring): the active key id, and keys derived per purpose."""

    @property
    def active(self) -> str:
        """The key id new rows are sealed under."""

    def derived(self, purpose: str, *, kid: str | None = None) -> bytes:
        """A key for `purpose` derived from key `kid`; ValueError for an id the ring does not hold."""


@dataclass
class Sealer:
    """Seals chain rows and staff fingerprints with HMAC-SHA256 under the derived audit key."""

    keys: ChainKeys
    _derived: dict[str, bytes] = field(default_factory=dict, repr=False)

    @property
    def kid(self) -> str:
        """The key id new rows are sealed under."""
        return self.keys.active

    def holds(self, kid: str) -> bool:
        """True when the key ring can derive the audit key of `kid`."""
        try:
            self._key(kid)
        except ValueError:
            return False
        return True

    def seal(self, prev_hash: str, fields: dict[str, Any], *, kid: str) -> str:
        """HMAC-SHA256 over the previous hash and the row's canonical content."""
        return hmac.new(self._key(kid), (prev_hash + canonical(fields)).encode(), hashlib.sha256).hexdigest()

    def fingerprint(self, staff: Staff, *, kid: str, elsewhere: Sequence[tuple[int, str]] = ()) -> str:
        """A keyed fingerprint of a staff row as consentbot last wrote it, with the person's
        memberships of other schools (school id, role), so a role granted outside consentbot shows.
        """
        return self.seal(STAFF_PREFIX, staff_fields(staff, elsewhere), kid=kid)

    def is_sealed(self, row_hash: str, prev_hash: str, fields: dict[str, Any], *, kid: str) -> bool:
        """True when `row_hash` is this content's seal under `kid` (False for a key the ring lacks)."""
        return self.holds(kid) and hmac.compare_digest(self.seal(prev_hash, fields, kid=kid), row_hash)

    def _key(self, kid: str) -> bytes:
        if kid not in self._derived:
            self._derived[kid] = self.keys.derived(CHAIN_PURPOSE, kid=kid)
        return self._derived[kid]


def sealer_of(session: AsyncSession) -> Sealer:
    """The Sealer of the transaction `session` belongs to (storage.db.Database puts it there)."""
    sealer = session.info.get(SEALER)
    if sealer is None:  # never an unkeyed row: that would pass for a legacy one
        raise RuntimeError("this transaction has no audit key: open it through the Services' database")
    return sealer


def canonical(obj: Any) -> str:
    """Deterministic JSON: the bytes that are hashed and stored."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def chain_hash(prev_hash: str, fields: dict[str, Any]) -> str:
    """The unkeyed SHA-256 of rows written before keyed chains (checked only in an adopted prefix)."""
    return hashlib.sha256((prev_hash + canonical(fields)).encode()).hexdigest()


def event_fields(e: CaseEvent) -> dict[str, Any]:
    """What a case event's hash covers."""
    return {"case_id": e.case_id, "seq": e.seq, "kind": e.kind, "actor_id": e.actor_id,
            "at": e.at.isoformat(), "payload": e.payload}


def access_fields(a: AccessLog) -> dict[str, Any]:
    """What an access-log entry's hash covers."""
    return {"seq": a.seq, "at": a.at.isoformat(), "actor_id": a.actor_id, "school_id": a.school_id,
            "case_id": a.case_id, "action": a.action, "detail": a.detail}


def staff_fields(staff: Staff, elsewhere: Sequence[tuple[int, str]] = ()) -> dict[str, Any]:
    """What a staff fingerprint covers: everything that says who someone is and what they may do.
    Memberships of other schools are covered only when there are some, so that fingerprints logged
    before memberships existed still hold.
    """
    fields: dict[str, Any] = {
        "id": staff.id, "school_id": staff.school_id, "email": staff.email, "display_name": staff.display_name,
        "role": staff.role, "active": bool(staff.active), "slack_user_id": staff.slack_user_id,
        "teams_user_id": staff.teams_user_id}
    if elsewhere:
        fields["elsewhere"] = [[sid, role] for sid, role in sorted(elsewhere)]
    return fields


def new_case_event(session: AsyncSession, case: Case, *, seq: int, prev_hash: str, kind: str, actor_id: int | None,
                   at: datetime, payload: dict[str, Any]) -> CaseEvent:
    """The next event of `case`'s chain, sealed under the active key (not yet added to the session)."""
    assert case.id is not None  # noqa: S101 - the case row is flushed first
    sealer = sealer_of(session)
    # model_construct: no validation or ORM state for a row written by a Core insert (a tenth of the cost).
    fields: dict[str, Any] = {"case_id": case.id, "seq": seq, "kind": kind, "actor_id": actor_id, "at": at,
              "payload": canonical(payload), "prev_hash": prev_hash, "key_id": sealer.kid}
    sealed = sealer.seal(prev_hash, event_fields(CaseEvent.model_construct(**fields)), kid=sealer.kid)
    return CaseEvent.model_construct(**fields, hash=sealed)


async def append_access(session: AsyncSession, *, action: str, at: datetime, actor_id: int | None = None,
                        school_id: int | None = None, case_id: int | None = None,
                        detail: dict[str, Any] | None = None) -> AccessLog:
    """Append to the access log. Serialised on PostgreSQL by a transaction-level advisory lock,
    taken and followed by the read of the last entry in one round trip (migration 0010).
    """
    sealer = sealer_of(session)
    postgres = session.get_bind().dialect.name == "postgresql"
    last = (await core(session, _LAST_ACCESS_LOCKED if postgres else _LAST_ACCESS)).first()
    fields: dict[str, Any] = {
        "seq": (last.seq + 1) if last else 1, "at": at, "actor_id": actor_id, "school_id": school_id,
        "case_id": case_id, "action": action, "detail": canonical(detail or {}),
        "prev_hash": last.hash if last else GENESIS, "key_id": sealer.kid}
    # model_construct: no validation or ORM state for a row written by a Core insert (a tenth of the cost).
    sealed = sealer.seal(fields["prev_hash"], access_fields(AccessLog.model_construct(**fields)), kid=sealer.kid)
    row = AccessLog.model_construct(**fields, hash=sealed)
    # A Core insert: the ORM's unit of work costs more than the row (issue 12's hot path).
    await core(session, _INSERT_ACCESS, row.model_dump(exclude={"id"}))
    return row


# Built once: statements on every answer's path are compiled from SQLAlchemy's cache, not rebuilt.
_ACCESS = AccessLog.__table__  # type: ignore[attr-defined]
_LAST_ACCESS = select(_ACCESS.c.seq, _ACCESS.c.hash).order_by(_ACCESS.c.seq.desc()).limit(1)
_HEAD = func.consentbot_last_access().table_valued(column("seq", Integer), column("hash", String))
# PostgreSQL: advisory lock 7215001 taken, then the last entry read with a fresh snapshot, in one call.
_LAST_ACCESS_LOCKED = select(_HEAD.c.seq, _HEAD.c.hash)
_INSERT_ACCESS = insert(_ACCESS).inline()  # inline: no RETURNING of the id, which nobody reads
_INSERT_EVENT = insert(CaseEvent.__table__).inline()  # type: ignore[attr-defined]


async def insert_event(session: AsyncSession, event: CaseEvent) -> None:
    """Write a sealed case event (from new_case_event) with a Core insert."""
    await core(session, _INSERT_EVENT, event.model_dump(exclude={"id"}))


async def append_staff_change(session: AsyncSession, *, staff: Staff, action: str, at: datetime,
                              actor_id: int | None = None, detail: dict[str, Any] | None = None) -> AccessLog:
    """Log a change to a staff row with the row's keyed fingerprint as it now is: `audit verify`
    compares each staff row with its latest fingerprint, so an edit made outside consentbot shows.
    """
    await session.flush()  # the row's id, and the values the fingerprint covers, as stored
    sealer = sealer_of(session)
    query = select(Membership.school_id, Membership.role).where(Membership.staff_id == staff.id)
    elsewhere = [(sid, role) for sid, role in (await session.execute(query)).all()]
    # Under the key append_access seals the entry with.
    fingerprint = sealer.fingerprint(staff, kid=sealer.kid, elsewhere=elsewhere)
    return await append_access(session, action=action, at=at, actor_id=actor_id, school_id=staff.school_id,
                               detail={**(detail or {}), "staff_id": staff.id, "fingerprint": fingerprint})


async def index_case(session: AsyncSession, case: Case, *, at: datetime, actor_id: int | None) -> AccessLog:
    """Enter a new case in the chained index of cases (its id and reference only), so that
    `audit verify` notices a case deleted outright, events and all.
    """
    return await append_access(session, action=CASE_OPENED, at=at, actor_id=actor_id, school_id=case.school_id,
                               case_id=case.id, detail={"case_id": case.id, "ref": case.ref})


@dataclass(frozen=True)
class ChainProblem:
    """One break in a chain. `case_ref` is None for the access log, staff records and checkpoints;
    `subject` then says which ("access log", "staff record 4", "checkpoint").
    """

    case_ref: str | None
    seq: int
    problem: str
    subject: str = "access log"

    def line(self) -> str:
        """One line for the operator: references and ids, never content."""
        if self.case_ref:
            event = f" event {self.seq}" if self.seq else ""
            return f"case {self.case_ref}{event}: {self.problem}"
        if self.subject == "access log":
            return f"access log entry {self.seq}: {self.problem}"
        return f"{self.subject}: {self.problem}"


@dataclass(frozen=True)
class Adopted:
    """A legacy (unkeyed) prefix that `db upgrade` adopted under the key: its length and last hash."""

    version: int
    head: str


def _unkeyed_problem(row_hash: str, prev: str, fields: dict[str, Any], seq: int, adopted: Adopted | None) -> str | None:
    if adopted is None or seq > adopted.version:
        return "not sealed with the audit key (an unkeyed hash: rewritten without the key, or never adopted)"
    if chain_hash(prev, fields) != row_hash:
        return "content does not match its hash (altered)"
    if seq == adopted.version and row_hash != adopted.head:
        return "differs from the history adopted under the audit key (rewritten)"
    return None


def _row_problem(sealer: Sealer, row_hash: str, prev: str, fields: dict[str, Any], *, seq: int, key_id: str | None,
                 adopted: Adopted | None) -> str | None:
    if key_id is None:
        return _unkeyed_problem(row_hash, prev, fields, seq, adopted)
    if not sealer.holds(key_id):
        return f"sealed with key id {key_id!r}, which the key ring does not hold"
    if not sealer.is_sealed(row_hash, prev, fields, kid=key_id):
        return "content does not match its seal (altered, or re-hashed without the key)"
    return None


def verify_events(sealer: Sealer, case: Case, events: list[CaseEvent], adopted: Adopted | None) -> list[ChainProblem]:
    """Check one case's chain (events in stored seq order) against its head."""
    problems, prev = [], GENESIS
    for expected_seq, e in enumerate(events, start=1):
        if e.seq != expected_seq:
            problems.append(ChainProblem(case.ref, e.seq, f"expected event {expected_seq}: removed or reordered"))
        if e.prev_hash != prev:
            problems.append(ChainProblem(case.ref, e.seq, "does not follow the previous event"))
        if why := _row_problem(sealer, e.hash, e.prev_hash, event_fields(e), seq=e.seq, key_id=e.key_id,
                               adopted=adopted):
            problems.append(ChainProblem(case.ref, e.seq, why))
        prev = e.hash
    if case.version != len(events) or case.head_hash != prev:
        problems.append(ChainProblem(case.ref, len(events), "the case's head does not match its last event "
                                                            "(an event was removed or added)"))
    if adopted is not None and adopted.version > len(events):
        problems.append(ChainProblem(case.ref, len(events), f"shorter than the {adopted.version} events adopted"))
    return problems


def verify_access_log(sealer: Sealer, rows: list[AccessLog], adopted: Adopted | None) -> list[ChainProblem]:
    """Check the access log chain (rows in seq order)."""
    problems, prev = [], GENESIS
    for expected_seq, row in enumerate(rows, start=1):
        if row.seq != expected_seq or row.prev_hash != prev:
            problems.append(ChainProblem(None, row.seq, "access log entry removed or reordered"))
        if why := _row_problem(sealer, row.hash, row.prev_hash, access_fields(row), seq=row.seq, key_id=row.key_id,
                               adopted=adopted):
            problems.append(ChainProblem(None, row.seq, why))
        prev = row.hash
    return problems
