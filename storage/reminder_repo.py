"""Reminder, calendar and digest queries: the sweep's claim and finish, school calendars, digest inputs.

The sweep's claim is two statements (lapsed claims, then due rows), each UPDATE ... WHERE id IN
(SELECT ... LIMIT n FOR UPDATE SKIP LOCKED). On PostgreSQL concurrent sweeps skip each other's
locked rows; on SQLite the engine's BEGIN IMMEDIATE serialises them (SQLAlchemy renders no FOR
UPDATE there). Both read ix_reminders_due (status, due_at), so the cost follows the number due,
not the table's size. The finish reads the other rungs of the batch's ladders in one query
(`other_rungs`), so that only the highest rung due is sent.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, datetime
from typing import Any, NamedTuple

from sqlalchemy import and_, bindparam, delete, func, or_, text, update
from sqlalchemy import select as sa_select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from storage.models import (
    AccessLog,
    Case,
    CaseEvent,
    DigestRun,
    Membership,
    OutboxMessage,
    Reminder,
    School,
    SchoolCalendarEntry,
    Staff,
)
from storage.repo import _insert

LIVE = ("pending", "claimed")
SENT_BY_DIGEST = "sent_by_digest"
SENT = ("sent", SENT_BY_DIGEST)
SUPERSEDED = "superseded"  # a lower rung not sent because a higher rung of its ladder went instead
_QUIET = {"synchronize_session": False}  # no ORM objects to refresh: skip the per-row evaluation


def _lapsed(now: datetime) -> Any:
    """Claimed rows whose lease ran out (their sweep died): few, found under status='claimed'."""
    return select(Reminder.id).where(col(Reminder.status) == "claimed", col(Reminder.claimed_until) <= now)


def _due(now: datetime) -> Any:
    """Pending rows that are due, oldest first.

    Equality on status lets ix_reminders_due (status, due_at) hand rows over already in due_at
    order, so LIMIT stops the scan after one batch. `status IN ('pending','claimed')` would need a
    sort of every match, and PostgreSQL then prefers a full scan of the table.
    """
    return (select(Reminder.id).where(col(Reminder.status) == "pending", col(Reminder.due_at) <= now)
            .order_by(col(Reminder.due_at)))


async def claim_due(session: AsyncSession, *, now: datetime, lease_until: datetime, limit: int) -> list[int]:
    """Claim up to `limit` rows (lapsed claims first, then due rows, oldest first) until `lease_until`."""
    ids: list[int] = []
    for query in (_lapsed(now), _due(now)):
        if len(ids) >= limit:
            break
        locked = query.limit(limit - len(ids)).with_for_update(skip_locked=True)
        result = await session.execute(update(Reminder).where(col(Reminder.id).in_(locked.scalar_subquery()))
                                       .values(status="claimed", claimed_until=lease_until)
                                       .returning(col(Reminder.id)), execution_options=_QUIET)
        ids += [int(rid) for rid in result.scalars() if rid is not None]
    return ids


async def owned(session: AsyncSession, *, ids: Sequence[int], lease_until: datetime) -> list[Reminder]:
    """The claimed rows still ours: a row re-claimed after our lease ran out has another lease."""
    query = (select(Reminder).where(col(Reminder.id).in_(ids), col(Reminder.status) == "claimed",
                                    col(Reminder.claimed_until) == lease_until)
             .order_by(col(Reminder.id)).with_for_update())
    return list((await session.execute(query)).scalars())


async def due_now(session: AsyncSession, *, now: datetime, limit: int) -> list[Reminder]:
    """Due rows without claiming them (the dry run)."""
    ids = [*(await session.execute(_lapsed(now).limit(limit))).scalars(),
           *(await session.execute(_due(now).limit(limit))).scalars()][:limit]
    query = select(Reminder).where(col(Reminder.id).in_(ids)).order_by(col(Reminder.due_at), col(Reminder.id))
    return list((await session.execute(query)).scalars())


async def finish(session: AsyncSession, *, sent: Sequence[int], cancelled: Sequence[int],
                 deferred: Sequence[tuple[int, datetime]], now: datetime, superseded: Sequence[int] = ()) -> None:
    """Record what the sweep did with the rows it owns."""
    for ids, values in ((sent, {"status": "sent", "sent_at": now}), (cancelled, {"status": "cancelled"}),
                        (superseded, {"status": SUPERSEDED})):
        if ids:
            await session.execute(update(Reminder).where(col(Reminder.id).in_(ids))
                                  .values(claimed_until=None, **values), execution_options=_QUIET)
    if deferred:
        # Core UPDATE with bind parameters: executemany, one statement for the batch.
        table = Reminder.__table__  # type: ignore[attr-defined]
        stmt = table.update().where(table.c.id == bindparam("rid")).values(
            due_at=bindparam("new_due"), status="pending", claimed_until=None)
        await session.execute(stmt, [{"rid": rid, "new_due": due} for rid, due in deferred])


class Rung(NamedTuple):
    """A reminder row's place on its ladder: what the sweep needs to send only the highest rung."""

    id: int
    case_id: int
    kind: str
    level: int
    recipient_id: int | None
    unique_key: str
    status: str
    due_at: datetime


def _rung_columns() -> Any:
    table = Reminder.__table__  # type: ignore[attr-defined]
    return sa_select(*(table.c[name] for name in Rung._fields))


async def other_rungs(session: AsyncSession, *, rows: Sequence[Reminder]) -> list[Rung]:
    """Rows of the same cases, kinds and recipients as `rows` that may outrank them (a higher level, live or
    sent) or be outranked (a lower level, pending), in one query. Callers match the ladders exactly.
    """
    recipients = sorted({r.recipient_id for r in rows if r.recipient_id is not None})
    if not recipients:
        return []
    low, high = min(r.level for r in rows), max(r.level for r in rows)
    query = _rung_columns().where(
        col(Reminder.case_id).in_(sorted({r.case_id for r in rows})), col(Reminder.kind).in_(sorted({r.kind for r in rows})),
        col(Reminder.recipient_id).in_(recipients),
        or_(and_(col(Reminder.level) > low, col(Reminder.status).in_((*LIVE, *SENT))),
            and_(col(Reminder.level) < high, col(Reminder.status) == "pending")))
    return [Rung(*row) for row in (await session.execute(query)).all()]


async def supersede_pending(session: AsyncSession, *, ids: Sequence[int]) -> int:
    """Mark lower rungs superseded, those still pending only: a row another sweep has just claimed is
    skipped, not waited for (SKIP LOCKED, as in the claim), and that sweep decides it.
    """
    if not ids:
        return 0
    locked = (select(Reminder.id).where(col(Reminder.id).in_(sorted(ids)), col(Reminder.status) == "pending")
              .with_for_update(skip_locked=True))
    result = await session.execute(update(Reminder).where(col(Reminder.id).in_(locked.scalar_subquery()))
                                   .values(status=SUPERSEDED, claimed_until=None), execution_options=_QUIET)
    return int(result.rowcount)  # type: ignore[attr-defined]


async def enqueue_rows(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    """Queue outbox rows (column values) in one executemany; a dedupe key already queued is skipped.

    Like repo.enqueue, but compiled once and cached: a multi-VALUES insert of 500 ORM objects
    is recompiled on every call and costs more than the rest of a sweep batch together.
    """
    if rows:
        table = OutboxMessage.__table__  # type: ignore[attr-defined]
        await session.execute(_insert(session, table).on_conflict_do_nothing(index_elements=["dedupe_key"]),
                              list(rows))


async def rows_by_id(session: AsyncSession, model: Any, ids: Iterable[int]) -> dict[int, Any]:
    """Rows of `model` (Case, Staff, School) by id, in one query."""
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    return {r.id: r for r in (await session.execute(select(model).where(col(model.id).in_(wanted)))).scalars()}


async def calendar_entries(session: AsyncSession, school_ids: Iterable[int]) -> dict[int, list[SchoolCalendarEntry]]:
    """Each school's imported term and closure dates."""
    found: dict[int, list[SchoolCalendarEntry]] = {sid: [] for sid in school_ids}
    if found:
        query = select(SchoolCalendarEntry).where(col(SchoolCalendarEntry.school_id).in_(sorted(found)))
        for entry in (await session.execute(query)).scalars():
            found[entry.school_id].append(entry)
    return found


async def replace_calendar(session: AsyncSession, *, school_id: int, terms: Sequence[tuple[date, date]],
                           closures: Sequence[tuple[date, date]], now: datetime) -> None:
    """Replace a school's calendar with an imported one (re-importing the same file changes nothing)."""
    await session.execute(delete(SchoolCalendarEntry).where(col(SchoolCalendarEntry.school_id) == school_id))
    session.add_all([SchoolCalendarEntry(school_id=school_id, kind=kind, start_date=start, end_date=end,
                                         imported_at=now)
                     for kind, spans in (("term", terms), ("closure", closures)) for start, end in spans])
    await session.flush()


async def cancel(session: AsyncSession, *, case_id: int, kinds: Sequence[str]) -> int:
    """Stop a case's live reminders of some kinds, claimed ones too (their sweep then skips them)."""
    result = await session.execute(update(Reminder).where(
        col(Reminder.case_id) == case_id, col(Reminder.status).in_(LIVE), col(Reminder.kind).in_(kinds)
    ).values(status="cancelled", claimed_until=None))
    return int(result.rowcount)  # type: ignore[attr-defined]


async def pending_for_case(session: AsyncSession, *, case_id: int, kinds: Sequence[str]) -> list[Reminder]:
    """A case's pending reminders of some kinds."""
    query = select(Reminder).where(col(Reminder.case_id) == case_id, col(Reminder.status) == "pending",
                                   col(Reminder.kind).in_(kinds)).order_by(col(Reminder.id))
    return list((await session.execute(query)).scalars())


async def access_count(session: AsyncSession, *, case_id: int, action: str) -> int:
    """How many access log entries of one action a case has (snoozes so far)."""
    query = select(func.count()).select_from(AccessLog).where(col(AccessLog.case_id) == case_id,
                                                              col(AccessLog.action) == action)
    return int((await session.execute(query)).scalar_one())


async def listing(session: AsyncSession, *, overdue_at: datetime | None) -> list[tuple[Reminder, str, str]]:
    """Live reminders (only those due by `overdue_at`, when given) with the case ref and recipient name."""
    query = (select(Reminder, Case.ref, Staff.display_name)
             .join(Case, col(Case.id) == col(Reminder.case_id))
             .join(Staff, col(Staff.id) == col(Reminder.recipient_id))
             .where(col(Reminder.status).in_(LIVE)).order_by(col(Reminder.due_at), col(Reminder.id)))
    if overdue_at is not None:
        query = query.where(col(Reminder.due_at) <= overdue_at)
    return [(r, ref, name) for r, ref, name in (await session.execute(query)).all()]


async def digest_recipients(session: AsyncSession, *, roles: Sequence[str],
                            school_ids: Sequence[int]) -> list[tuple[Staff, int]]:
    """(person, school) seats of active staff with one of `roles` at one of these schools: by their
    home role or by a membership's role there. A DSL of two schools has two seats; by school, then id.
    """
    home = select(Staff, Staff.school_id).where(col(Staff.role).in_(roles), col(Staff.school_id).in_(school_ids))
    away = (select(Staff, Membership.school_id).join(Membership, col(Membership.staff_id) == col(Staff.id))
            .where(col(Membership.role).in_(roles), col(Membership.school_id).in_(school_ids)))
    seats: dict[tuple[int, int], tuple[Staff, int]] = {}
    for query in (home, away):
        for staff, school_id in (await session.execute(query.where(col(Staff.active).is_(True)))).all():
            seats.setdefault((staff.id or 0, int(school_id)), (staff, int(school_id)))
    return [seats[key] for key in sorted(seats, key=lambda k: (k[1], k[0]))]


async def schools(session: AsyncSession) -> list[School]:
    """Every school."""
    return list((await session.execute(select(School).order_by(col(School.id)))).scalars())


async def open_cases(session: AsyncSession, *, school_ids: Sequence[int]) -> list[Case]:
    """Cases not closed, of some schools, oldest first."""
    query = (select(Case).where(col(Case.school_id).in_(school_ids), col(Case.status) != "closed")
             .order_by(col(Case.created_at), col(Case.id)))
    return list((await session.execute(query)).scalars())


async def closed_since(session: AsyncSession, *, school_ids: Sequence[int], since: datetime) -> list[Case]:
    """Cases of some schools that closed at or after `since`."""
    query = (select(Case).where(col(Case.school_id).in_(school_ids), col(Case.status) == "closed",
                                col(Case.updated_at) >= since).order_by(col(Case.updated_at)))
    return list((await session.execute(query)).scalars())


async def cases_created_since(session: AsyncSession, *, school_ids: Sequence[int], since: datetime) -> list[Case]:
    """Cases of some schools raised at or after `since`."""
    query = select(Case).where(col(Case.school_id).in_(school_ids), col(Case.created_at) >= since)
    return list((await session.execute(query)).scalars())


async def answer_events(session: AsyncSession, *, case_ids: Sequence[int]) -> list[CaseEvent]:
    """The answer events of some cases, in order (their payloads name the step answered)."""
    if not case_ids:
        return []
    query = (select(CaseEvent).where(col(CaseEvent.case_id).in_(case_ids), col(CaseEvent.kind) == "answered")
             .order_by(col(CaseEvent.case_id), col(CaseEvent.seq)))
    return list((await session.execute(query)).scalars())


async def digested(session: AsyncSession, *, seats: Sequence[tuple[int, int]], kind: str,
                   periods: Sequence[str]) -> set[tuple[int, int, str]]:
    """(recipient, school, period) already digested among these (recipient, school) seats and periods
    (the unique index answers it: the digest check runs every few minutes, so it must not read every
    past digest).
    """
    if not seats or not periods:
        return set()
    query = select(DigestRun.recipient_id, DigestRun.school_id, DigestRun.period).where(
        col(DigestRun.recipient_id).in_(sorted({rid for rid, _ in seats})), col(DigestRun.kind) == kind,
        col(DigestRun.period).in_(sorted(set(periods))))
    wanted = set(seats)
    return {(int(rid), int(sid), str(period)) for rid, sid, period in (await session.execute(query)).all()
            if (rid, sid) in wanted}


async def last_built(session: AsyncSession, *, seats: Sequence[tuple[int, int]],
                     kind: str) -> dict[tuple[int, int], datetime]:
    """When each (recipient, school) seat's most recent digest of a kind was built."""
    if not seats:
        return {}
    query = (select(DigestRun.recipient_id, DigestRun.school_id, func.max(DigestRun.built_at))
             .where(col(DigestRun.recipient_id).in_(sorted({rid for rid, _ in seats})), col(DigestRun.kind) == kind)
             .group_by(col(DigestRun.recipient_id), col(DigestRun.school_id)))
    wanted = set(seats)
    return {(int(rid), int(sid)): built for rid, sid, built in (await session.execute(query)).all()
            if (rid, sid) in wanted}


async def record_digests(session: AsyncSession, runs: Sequence[DigestRun]) -> None:
    """Record digests built; one already recorded for the same recipient, school and period is kept."""
    if runs:
        table = DigestRun.__table__  # type: ignore[attr-defined]
        await session.execute(_insert(session, table).on_conflict_do_nothing(
            index_elements=["recipient_id", "school_id", "kind", "period"]),
            [r.model_dump(exclude={"id"}) for r in runs])


class DueOrSent(NamedTuple):
    """A reminder of a case, for the digest: when it is due, and whether and when it went."""

    case: Case
    due_at: datetime
    status: str
    sent_at: datetime | None


async def reminders_due_or_sent(session: AsyncSession, *, school_ids: Sequence[int], kind: str, until: datetime,
                                since: datetime) -> list[DueOrSent]:
    """Reminders of one kind for cases of some schools, closed cases too: live ones due by `until`
    and ones sent (or folded into a digest) at or after `since`.
    """
    query = (select(Case, Reminder.due_at, Reminder.status, Reminder.sent_at)
             .join(Reminder, col(Reminder.case_id) == col(Case.id))
             .where(col(Case.school_id).in_(school_ids), col(Reminder.kind) == kind,
                    or_(and_(col(Reminder.status).in_(LIVE), col(Reminder.due_at) <= until),
                        and_(col(Reminder.status).in_(SENT), col(Reminder.sent_at) >= since)))
             .order_by(col(Reminder.due_at), col(Case.id)))
    return [DueOrSent(*row) for row in (await session.execute(query)).all()]


async def fold_into_digest(session: AsyncSession, *, school_id: int, recipient_ids: Sequence[int],
                           kinds: Sequence[str], until: datetime, now: datetime) -> list[tuple[int, int]]:
    """Mark routine reminders of one school's cases due by `until` as sent by the digest (that school's
    digest lists only its cases, so another school's reminders wait for theirs). Returns
    (recipient_id, case_id) pairs.
    """
    routine_cases = select(Case.id).where(col(Case.urgent).is_(False), col(Case.school_id) == school_id)
    result = await session.execute(update(Reminder).where(
        col(Reminder.recipient_id).in_(recipient_ids), col(Reminder.status) == "pending",
        col(Reminder.kind).in_(kinds), col(Reminder.due_at) <= until,
        col(Reminder.case_id).in_(routine_cases.scalar_subquery()),
    ).values(status=SENT_BY_DIGEST, sent_at=now).returning(col(Reminder.recipient_id), col(Reminder.case_id)))
    return [(int(rid or 0), int(cid)) for rid, cid in result.all()]


async def due_query_plan(session: AsyncSession, *, now: datetime, limit: int = 500) -> list[str]:
    """The database's plan for the sweep's due-row query (tests and the benchmark check it uses the index)."""
    query = _due(now).limit(limit)
    dialect = session.get_bind().dialect
    compiled = query.compile(dialect=dialect, compile_kwargs={"literal_binds": True})
    prefix = "EXPLAIN QUERY PLAN " if dialect.name == "sqlite" else "EXPLAIN "
    rows = (await session.execute(text(prefix + str(compiled)))).all()
    return [str(row[-1]) for row in rows]
