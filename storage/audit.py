"""Hash chains: one per case (its events) and one for the access log (views, exports,
refusals, staff changes). Each row's hash covers its content and the previous hash, so an
altered, removed or reordered row breaks the chain from there on.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from storage.models import AccessLog, Case, CaseEvent

GENESIS = "0" * 64


def canonical(obj: Any) -> str:
    """Deterministic JSON: the bytes that are hashed and stored."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def chain_hash(prev_hash: str, fields: dict[str, Any]) -> str:
    """sha256 over the previous hash and the row's canonical content."""
    return hashlib.sha256((prev_hash + canonical(fields)).encode()).hexdigest()


def _event_fields(e: CaseEvent) -> dict[str, Any]:
    return {"case_id": e.case_id, "seq": e.seq, "kind": e.kind, "actor_id": e.actor_id,
            "at": e.at.isoformat(), "payload": e.payload}


def _access_fields(a: AccessLog) -> dict[str, Any]:
    return {"seq": a.seq, "at": a.at.isoformat(), "actor_id": a.actor_id, "school_id": a.school_id,
            "case_id": a.case_id, "action": a.action, "detail": a.detail}


def new_case_event(case: Case, *, seq: int, prev_hash: str, kind: str, actor_id: int | None,
                   at: datetime, payload: dict[str, Any]) -> CaseEvent:
    """The next event of `case`'s chain (not yet added to a session)."""
    assert case.id is not None  # noqa: S101 - the case row is flushed first
    event = CaseEvent(case_id=case.id, seq=seq, kind=kind, actor_id=actor_id, at=at,
                      payload=canonical(payload), prev_hash=prev_hash, hash="")
    event.hash = chain_hash(prev_hash, _event_fields(event))
    return event


async def append_access(session: AsyncSession, *, action: str, at: datetime, actor_id: int | None = None,
                        school_id: int | None = None, case_id: int | None = None,
                        detail: dict[str, Any] | None = None) -> AccessLog:
    """Append to the access log. Serialised on PostgreSQL by a transaction-level advisory lock."""
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(text("SELECT pg_advisory_xact_lock(7215001)"))
    last = (await session.execute(select(AccessLog).order_by(col(AccessLog.seq).desc()).limit(1))).scalars().first()
    row = AccessLog(seq=(last.seq + 1) if last else 1, at=at, actor_id=actor_id, school_id=school_id,
                    case_id=case_id, action=action, detail=canonical(detail or {}),
                    prev_hash=last.hash if last else GENESIS, hash="")
    row.hash = chain_hash(row.prev_hash, _access_fields(row))
    session.add(row)
    return row


@dataclass(frozen=True)
class ChainProblem:
    """One break in a chain. `case_ref` is None for the access log."""

    case_ref: str | None
    seq: int
    problem: str


def verify_events(case: Case, events: list[CaseEvent]) -> list[ChainProblem]:
    """Check one case's chain (events in stored seq order) against its head."""
    problems, prev = [], GENESIS
    for expected_seq, e in enumerate(events, start=1):
        if e.seq != expected_seq:
            problems.append(ChainProblem(case.ref, e.seq, f"expected event {expected_seq}: removed or reordered"))
        if e.prev_hash != prev:
            problems.append(ChainProblem(case.ref, e.seq, "does not follow the previous event"))
        if chain_hash(e.prev_hash, _event_fields(e)) != e.hash:
            problems.append(ChainProblem(case.ref, e.seq, "content does not match its hash (altered)"))
        prev = e.hash
    if case.version != len(events) or case.head_hash != prev:
        problems.append(ChainProblem(case.ref, len(events), "the case's head does not match its last event "
                                                            "(an event was removed or added)"))
    return problems


def verify_access_log(rows: list[AccessLog]) -> list[ChainProblem]:
    """Check the access log chain (rows in seq order)."""
    problems, prev = [], GENESIS
    for expected_seq, row in enumerate(rows, start=1):
        if row.seq != expected_seq or row.prev_hash != prev:
            problems.append(ChainProblem(None, row.seq, "access log entry removed or reordered"))
        if chain_hash(row.prev_hash, _access_fields(row)) != row.hash:
            problems.append(ChainProblem(None, row.seq, "access log entry altered"))
        prev = row.hash
    return problems
