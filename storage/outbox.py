"""The outbox sender's SQL: claim due messages under a lease, then record what happened.

Claiming is exactly-once across processes and replicas: on PostgreSQL the claim reads with
`FOR UPDATE SKIP LOCKED`, so two senders never take the same row; on SQLite every
transaction starts with BEGIN IMMEDIATE (storage.db), which serialises the claims. A claim
sets status `sending` and `lease_until`; the lease is also the fencing token: a result is
recorded only while the row is still held under the same lease, so a sender whose lease ran
out (and whose row another sender took over) cannot overwrite the newer outcome.

A message ends `sent`, `failed` (a routine one after its last attempt; `requeue` queues it
again) or `cancelled` (an urgent alert no longer needed: a DSL has taken its case).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, and_, func, or_, true, union, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from storage.models import AccessLog, Case, OutboxMessage, Reminder, Staff

ADDRESS_COLUMNS = {"slack": Staff.slack_user_id, "teams": Staff.teams_user_id}


@dataclass(frozen=True)
class Claimed:
    """A message claimed for sending. `uncertain`: an earlier attempt may have been delivered."""

    id: int
    dedupe_key: str
    payload: str
    address: str | None
    attempts: int
    lease_until: datetime
    uncertain: bool
    case_id: int | None = None
    recipient_id: int = 0


def _due(platform: str, now: datetime) -> ColumnElement[bool]:
    pending = and_(col(OutboxMessage.status) == "pending", col(OutboxMessage.next_attempt_at) <= now)
    abandoned = and_(col(OutboxMessage.status) == "sending", col(OutboxMessage.lease_until) < now)
    return and_(col(OutboxMessage.platform) == platform, or_(pending, abandoned))


async def claim_due(session: AsyncSession, *, platform: str, now: datetime, lease_until: datetime,
                    limit: int) -> list[Claimed]:
    """Take up to `limit` due messages of `platform`, oldest first, until `lease_until`."""
    address = ADDRESS_COLUMNS.get(platform, Staff.email)
    query = (select(OutboxMessage, address).join(Staff, col(Staff.id) == OutboxMessage.recipient_id)
             .where(_due(platform, now)).order_by(col(OutboxMessage.next_attempt_at), col(OutboxMessage.id))
             .limit(limit).with_for_update(skip_locked=True, of=OutboxMessage))
    claims = [Claimed(id=m.id or 0, dedupe_key=m.dedupe_key, payload=m.payload, address=addr, attempts=m.attempts,
                      lease_until=lease_until, uncertain=m.status == "sending" or _was_ambiguous(m.last_error),
                      case_id=m.case_id, recipient_id=m.recipient_id)
              for m, addr in (await session.execute(query)).all()]
    if claims:  # read before the update: the ORM refreshes the loaded rows with what it writes
        await session.execute(update(OutboxMessage).where(col(OutboxMessage.id).in_([c.id for c in claims]))
                              .values(status="sending", lease_until=lease_until))
    return claims


AMBIGUOUS = "ambiguous:"


def _was_ambiguous(last_error: str | None) -> bool:
    return bool(last_error and last_error.startswith(AMBIGUOUS))


def _held(claim: Claimed) -> ColumnElement[bool]:
    return and_(col(OutboxMessage.id) == claim.id, col(OutboxMessage.status) == "sending",
                col(OutboxMessage.lease_until) == claim.lease_until)


async def mark_sent(session: AsyncSession, claim: Claimed, *, ref: str, now: datetime) -> bool:
    """Record delivery and the platform's reference. False if the lease was lost meanwhile."""
    result = await session.execute(update(OutboxMessage).where(_held(claim)).values(
        status="sent", sent_ref=ref[:200], sent_at=now, lease_until=None, attempts=claim.attempts + 1))
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def reschedule(session: AsyncSession, claim: Claimed, *, at: datetime, error: str | None,
                     count_attempt: bool) -> bool:
    """Put a message back to be tried again at `at`."""
    attempts = claim.attempts + 1 if count_attempt else claim.attempts
    result = await session.execute(update(OutboxMessage).where(_held(claim)).values(
        status="pending", next_attempt_at=at, lease_until=None, attempts=attempts, last_error=error))
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def mark_failed(session: AsyncSession, claim: Claimed, *, error: str) -> bool:
    """Give up on a message; `error` is a content-free code."""
    result = await session.execute(update(OutboxMessage).where(_held(claim)).values(
        status="failed", lease_until=None, attempts=claim.attempts + 1, last_error=error[:200]))
    return bool(result.rowcount)  # type: ignore[attr-defined]


CANCELLED = "cancelled"  # no longer needed: an urgent alert whose case a DSL has taken


async def mark_cancelled(session: AsyncSession, claim: Claimed, *, reason: str) -> bool:
    """Stop trying a message nobody needs any more; `reason` is a content-free code."""
    result = await session.execute(update(OutboxMessage).where(_held(claim)).values(
        status=CANCELLED, lease_until=None, attempts=claim.attempts + 1, last_error=reason[:200]))
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def alert_taken(session: AsyncSession, *, case_ids: Sequence[int], reminder_kind: str, action: str) -> set[int]:
    """Those of `case_ids` whose urgent alert is no longer needed: a DSL acknowledged it (access log
    `action`), or answered, which cancels the case's pending `reminder_kind` reminders; or the case closed.
    """
    ids = list(case_ids)
    cancelled = select(Reminder.case_id).where(col(Reminder.case_id).in_(ids), col(Reminder.kind) == reminder_kind,
                                               col(Reminder.status) == "cancelled")
    logged = select(AccessLog.case_id).where(col(AccessLog.case_id).in_(ids), col(AccessLog.action) == action)
    closed = select(Case.id).where(col(Case.id).in_(ids), col(Case.status) == "closed")
    return {int(case_id) for case_id in (await session.execute(union(cancelled, logged, closed))).scalars()}


@dataclass(frozen=True)
class Requeued:
    """What `requeue` did: failed messages queued again, waiting ones made due, failed ones left."""

    failed: int
    waiting: int
    failed_left: int


async def requeue(session: AsyncSession, *, now: datetime, platform: str | None, failed: bool) -> Requeued:
    """Make every waiting message (of `platform`, or all) due now; with `failed`, queue failed ones
    again with their attempts reset. `last_error` is kept: a message an earlier attempt may have
    delivered is looked for before it is posted again.
    """
    mine = col(OutboxMessage.platform) == platform if platform else true()
    waiting = await session.execute(update(OutboxMessage).where(
        mine, col(OutboxMessage.status) == "pending", col(OutboxMessage.next_attempt_at) > now).values(
        next_attempt_at=now))
    is_failed = and_(mine, col(OutboxMessage.status) == "failed")
    if not failed:
        left = (await session.execute(select(func.count()).select_from(OutboxMessage).where(is_failed))).scalar()
        return Requeued(failed=0, waiting=int(waiting.rowcount), failed_left=int(left or 0))  # type: ignore[attr-defined]
    requeued = await session.execute(update(OutboxMessage).where(is_failed).values(
        status="pending", attempts=0, next_attempt_at=now, lease_until=None))
    return Requeued(failed=int(requeued.rowcount), waiting=int(waiting.rowcount),  # type: ignore[attr-defined]
                    failed_left=0)


async def states_of(session: AsyncSession, keys: Sequence[str]) -> dict[str, tuple[str, str | None]]:
    """(status, sent_ref) of the messages with these dedupe keys."""
    if not keys:
        return {}
    query = select(OutboxMessage.dedupe_key, OutboxMessage.status, OutboxMessage.sent_ref).where(
        col(OutboxMessage.dedupe_key).in_(list(keys)))
    return {key: (status, ref) for key, status, ref in (await session.execute(query)).all()}


async def next_due_at(session: AsyncSession, *, platform: str) -> datetime | None:
    """When the next waiting message of `platform` becomes due (None when none waits)."""
    pending = select(func.min(OutboxMessage.next_attempt_at)).where(
        col(OutboxMessage.platform) == platform, col(OutboxMessage.status) == "pending")
    leased = select(func.min(OutboxMessage.lease_until)).where(
        col(OutboxMessage.platform) == platform, col(OutboxMessage.status) == "sending")
    times = [(await session.execute(q)).scalar() for q in (pending, leased)]
    found = [t for t in times if t is not None]
    return min(found) if found else None


async def latest_id(session: AsyncSession) -> int:
    """The newest outbox row's id (0 when empty)."""
    return int((await session.execute(select(func.max(OutboxMessage.id)))).scalar() or 0)


async def queued_after(session: AsyncSession, *, after_id: int) -> list[tuple[OutboxMessage, Staff]]:
    """Messages queued after `after_id`, each with its recipient, oldest first."""
    query = (select(OutboxMessage, Staff).join(Staff, col(Staff.id) == OutboxMessage.recipient_id)
             .where(col(OutboxMessage.id) > after_id).order_by(col(OutboxMessage.id)))
    return [(message, staff) for message, staff in (await session.execute(query)).all()]


async def mark_shown(session: AsyncSession, ids: Sequence[int], *, now: datetime) -> None:
    """Terminal messages count as delivered once printed."""
    if ids:
        await session.execute(update(OutboxMessage).where(col(OutboxMessage.id).in_(ids))
                              .values(status="sent", sent_ref="console", sent_at=now))


UNSENT = ("pending", "sending", "failed")


@dataclass(frozen=True)
class Backlog:
    """Undelivered messages of one school on one platform: how many, and when the oldest was queued."""

    school_id: int
    platform: str
    count: int
    oldest: datetime


async def undelivered(session: AsyncSession, *, delivering: Sequence[str], stuck_before: datetime) -> list[Backlog]:
    """Messages nobody will get without help, by school and platform: failed ones, waiting ones on a platform
    not in `delivering` (nothing sends them), and waiting ones queued before `stuck_before`.
    """
    waiting = col(OutboxMessage.status).in_(("pending", "sending"))
    stuck = or_(col(OutboxMessage.status) == "failed",
                and_(waiting, or_(col(OutboxMessage.platform).not_in(list(delivering)),
                                  col(OutboxMessage.created_at) < stuck_before)))
    query = (select(OutboxMessage.school_id, OutboxMessage.platform, func.count(), func.min(OutboxMessage.created_at))
             .where(stuck).group_by(col(OutboxMessage.school_id), col(OutboxMessage.platform))
             .order_by(col(OutboxMessage.school_id), col(OutboxMessage.platform)))
    return [Backlog(school_id=school, platform=platform, count=int(n), oldest=oldest)
            for school, platform, n, oldest in (await session.execute(query)).all()]


async def oldest_unsent(session: AsyncSession) -> dict[str, datetime]:
    """When the oldest message not yet sent (waiting or failed) was queued, per platform that has one."""
    query = (select(OutboxMessage.platform, func.min(OutboxMessage.created_at))
             .where(col(OutboxMessage.status).in_(UNSENT)).group_by(col(OutboxMessage.platform)))
    return {platform: oldest for platform, oldest in (await session.execute(query)).all()}

