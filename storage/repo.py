"""Repository functions: every SQL statement the bot runs lives here (and in audit.py)."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import DateTime, String, bindparam, false, func, insert, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import col, select

from storage.audit import insert_event
from storage.db import core
from storage.models import (
    AccessLog,
    Case,
    CaseEvent,
    ChatAddress,
    Membership,
    OutboxMessage,
    ProcessedDelivery,
    Reminder,
    School,
    Staff,
    utcnow,
)
from storage.plain import detached, snapshot

REF_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"  # no 0/O or 1/I/L: refs are read aloud
DECIDERS = ("dsl", "deputy")


class StaleVersion(Exception):
    """The case changed since the caller read it."""


async def get_school(session: AsyncSession, slug: str) -> School | None:
    """The school with this slug."""
    return (await session.execute(select(School).where(School.slug == slug))).scalars().first()


async def ensure_school(session: AsyncSession, slug: str, name: str | None = None) -> School:
    """The school with this slug, created if new."""
    school = await get_school(session, slug)
    if school is None:
        school = School(slug=slug, name=name or slug)
        session.add(school)
        await session.flush()
    return school


async def staff_by(session: AsyncSession, *, include_inactive: bool = False, **criteria: Any) -> Staff | None:
    """One active member of staff (or anyone who ever was) matching every criterion (email=...,
    slack_user_id=...).
    """
    query = _staff_query(include_inactive, tuple(sorted(criteria)))
    return (await session.execute(query, criteria)).scalars().first()


async def linkable_staff(session: AsyncSession, *, column: str) -> tuple[int, int]:
    """(count, highest id) of active staff with no `column` (a platform id): who could be linked."""
    unlinked = (await session.execute(select(func.count(), func.max(Staff.id)).where(
        col(Staff.active).is_(True), getattr(Staff, column).is_(None)))).one()
    return int(unlinked[0]), int(unlinked[1] or 0)


_STAFF_QUERIES: dict[tuple[bool, tuple[str, ...]], Any] = {}


def _staff_query(include_inactive: bool, names: tuple[str, ...]) -> Any:
    """The staff lookup by these columns, built once (every request identifies someone)."""
    key = (include_inactive, names)
    if key not in _STAFF_QUERIES:
        query = select(Staff) if include_inactive else select(Staff).where(col(Staff.active).is_(True))
        for name in names:
            query = query.where(getattr(Staff, name) == bindparam(name))
        _STAFF_QUERIES[key] = query
    return _STAFF_QUERIES[key]


async def staff_and_memberships(session: AsyncSession, **criteria: Any) -> tuple[Staff, list[tuple[int, str]]] | None:
    """The active member of staff matching every criterion, as a read-only snapshot, with
    memberships_of them: one query, as every request identifies someone.
    """
    rows = (await core(session, _staff_memberships_query(tuple(sorted(criteria))), criteria)).all()
    if not rows:
        return None
    staff = snapshot(Staff, zip(_STAFF_COLUMNS, rows[0], strict=False))
    return staff, sorted((row[-2], row[-1]) for row in rows if row[-2] is not None)


_STAFF_COLUMNS = tuple(Staff.__table__.columns.keys())  # type: ignore[attr-defined]


@lru_cache(maxsize=8)
def _staff_memberships_query(names: tuple[str, ...]) -> Any:
    """The active person by these columns, one row per membership beyond their home school (one
    row with none), built once per set of columns.
    """
    query: Any = (select(Staff, col(Membership.school_id).label("member_school_id"),
                         col(Membership.role).label("member_role"))
                  .outerjoin(Membership, col(Membership.staff_id) == col(Staff.id)).where(col(Staff.active).is_(True)))
    for name in names:
        query = query.where(getattr(Staff, name) == bindparam(name))
    return query


async def get_staff(session: AsyncSession, staff_id: int) -> Staff | None:
    """A member of staff by id, active or not (history names people who have left)."""
    return await session.get(Staff, staff_id)


async def list_staff(session: AsyncSession, *, school_id: int | None = None, roles: Sequence[str] = (),
                     include_inactive: bool = False) -> list[Staff]:
    """Active staff (or everyone who ever was), optionally of one school (its own staff and members
    from elsewhere) and some roles (their role in that school).
    """
    if school_id is not None:
        return [staff for staff, _ in await members(session, school_id=school_id, roles=roles,
                                                    include_inactive=include_inactive)]
    query = select(Staff).order_by(col(Staff.id))
    if not include_inactive:
        query = query.where(col(Staff.active).is_(True))
    if roles:
        query = query.where(col(Staff.role).in_(roles))
    return list((await session.execute(query)).scalars())


async def members(session: AsyncSession, *, school_id: int, roles: Sequence[str] = (),
                  include_inactive: bool = False) -> list[tuple[Staff, str]]:
    """(person, their role there) for everyone at a school: those whose home it is, and members from
    other schools (a trust's DSL), with one of `roles` if given; by id.
    """
    home = select(Staff, Staff.role).where(Staff.school_id == school_id)
    away = (select(Staff, Membership.role).join(Membership, col(Membership.staff_id) == col(Staff.id))
            .where(Membership.school_id == school_id))
    found: list[tuple[Staff, str]] = []
    for query in (home, away):
        if not include_inactive:
            query = query.where(col(Staff.active).is_(True))
        found += [(staff, role) for staff, role in (await session.execute(query)).all() if not roles or role in roles]
    return sorted(found, key=lambda pair: pair[0].id or 0)


async def memberships_of(session: AsyncSession, staff_id: int) -> list[tuple[int, str]]:
    """(school id, role) of a person's memberships beyond their home school, by school id."""
    return sorted((sid, role) for sid, role in (await core(session, _MEMBERSHIPS, {"staff_id": staff_id})).all())


_MEMBERSHIPS = select(Membership.school_id, Membership.role).where(Membership.staff_id == bindparam("staff_id"))


async def all_memberships(session: AsyncSession) -> dict[int, list[tuple[int, str]]]:
    """Staff id -> their memberships beyond their home school, as memberships_of gives them."""
    grouped: dict[int, list[tuple[int, str]]] = {}
    for staff_id, sid, role in (await session.execute(
            select(Membership.staff_id, Membership.school_id, Membership.role))).all():
        grouped.setdefault(staff_id, []).append((sid, role))
    return {staff_id: sorted(pairs) for staff_id, pairs in grouped.items()}


async def membership(session: AsyncSession, *, staff_id: int, school_id: int) -> Membership | None:
    """A person's membership of a school other than their home one."""
    query = select(Membership).where(Membership.staff_id == staff_id, Membership.school_id == school_id)
    return (await session.execute(query)).scalars().first()


async def role_at(session: AsyncSession, staff: Staff, school_id: int) -> str | None:
    """The person's role at a school (home or membership); None when they are not part of it."""
    if staff.school_id == school_id:
        return staff.role
    found = await membership(session, staff_id=staff.id or 0, school_id=school_id)
    return found.role if found else None


async def insert_case(session: AsyncSession, case: Case) -> Case:
    """Insert a case under a fresh random reference (not guessable, reveals no counts)."""
    return await insert_with_fresh_ref(session, case, prefix="C-", taken=case_by_ref)


async def insert_with_fresh_ref(session: AsyncSession, row: Any, *, prefix: str,
                                taken: Callable[[AsyncSession, str], Awaitable[object | None]]) -> Any:
    """Insert `row` under a fresh random reference `prefix` + six letters: not guessable, and it
    reveals no counts. `taken` finds a row already holding a reference.
    """
    for _ in range(20):
        ref = prefix + "".join(secrets.choice(REF_ALPHABET) for _ in range(6))
        if (await taken(session, ref)) is None:
            row.ref = ref
            session.add(row)
            await session.flush()
            return row
    raise RuntimeError(f"could not allocate a {prefix} reference")


async def case_by_ref(session: AsyncSession, ref: str) -> Case | None:
    """The case with this reference: a read-only snapshot (storage.plain.detached), as the case
    row changes only through save_projection and the other Core updates.
    """
    return next(iter(detached(Case, await core(session, _CASE_BY_REF, {"ref": ref.strip().upper()}))), None)


async def case_events(session: AsyncSession, case_id: int) -> list[CaseEvent]:
    """A case's events in chain order (read-only snapshots: events are never changed)."""
    return detached(CaseEvent, await core(session, _CASE_EVENTS, {"case_id": case_id}))


async def case_with_events(session: AsyncSession, ref: str) -> tuple[Case, list[CaseEvent]] | None:
    """case_by_ref and its case_events, in one query (an answer reads both)."""
    rows = (await core(session, _CASE_WITH_EVENTS, {"ref": ref.strip().upper()})).all()
    return _case_and_events(rows) if rows else None


async def case_with_events_claimed(session: AsyncSession, ref: str, key: str) -> tuple[Case, list[CaseEvent], bool] | None:
    """case_with_events, and the delivery `key` claimed for the case (claim_delivery): True when
    it was not seen before. If the case is not the caller's to answer, the caller must roll back,
    the claim with it. On PostgreSQL one statement, the claim an INSERT ... SELECT as its CTE: one
    round trip instead of two. On SQLite, whose statements cost no round trip, the two as they are.
    """
    if session.get_bind().dialect.name != "postgresql":
        found = await case_with_events(session, ref)
        return None if found is None else (*found, await claim_delivery(session, key, found[0].id))
    rows = (await core(session, _case_with_events_claimed(), {"ref": ref.strip().upper(), "key": key,
                                                               "seen_at": utcnow()})).all()
    if not rows:
        return None
    case, events = _case_and_events(rows)
    return case, events, bool(rows[0][-1])


def _case_and_events(rows: Sequence[Any]) -> tuple[Case, list[CaseEvent]]:
    """A case and its events from the rows of _CASE_WITH_EVENTS (the case's columns, then the event's)."""
    split = len(_CASE_COLUMNS)
    return (snapshot(Case, zip(_CASE_COLUMNS, rows[0][:split], strict=True)),
            [snapshot(CaseEvent, zip(_EVENT_COLUMNS, row[split:split + len(_EVENT_COLUMNS)], strict=True))
             for row in rows if row[split] is not None])


@lru_cache(maxsize=1)
def _case_with_events_claimed() -> Any:
    """_CASE_WITH_EVENTS with a last column saying whether the claim (its CTE) inserted the key.
    PostgreSQL runs a data-modifying CTE exactly once, whether or not the query reads it.
    """
    from sqlalchemy.dialects import postgresql

    deliveries = ProcessedDelivery.__table__  # type: ignore[attr-defined]
    source = select(bindparam("key", type_=String), col(Case.id), bindparam("seen_at", type_=DateTime(timezone=True)))
    claimed = (postgresql.insert(deliveries).from_select(["key", "case_id", "seen_at"], source.where(
        Case.ref == bindparam("ref"))).on_conflict_do_nothing(index_elements=["key"])
        .returning(deliveries.c.key).cte("claimed"))
    return _CASE_WITH_EVENTS.add_columns(select(func.count()).select_from(claimed).scalar_subquery().label("claimed"))


PersonRead = tuple[Staff, list[tuple[int, str]]]
CaseRead = tuple[Case, list[CaseEvent], bool]


async def person_and_case(session: AsyncSession, criteria: dict[str, Any], ref: str,
                          key: str | None) -> tuple[PersonRead | None, CaseRead | None]:
    """staff_and_memberships(**criteria), and the case with its events and the delivery `key`
    claimed (case_with_events_claimed; with no key, claimed is True): what an answer reads first.
    On PostgreSQL in one round trip, the two queries side by side in a FULL JOIN ON false (each
    row is one query's, the other's columns NULL); on SQLite one after the other. When the person
    is not found, the caller must roll back: the claim may have been made.
    """
    if session.get_bind().dialect.name != "postgresql":
        person = await staff_and_memberships(session, **criteria)
        if person is None:
            return None, None
        if key:
            return person, await case_with_events_claimed(session, ref, key)
        found = await case_with_events(session, ref)
        return person, None if found is None else (*found, True)
    names = tuple(sorted(criteria))
    params = {**criteria, "ref": ref.strip().upper(), **({"key": key, "seen_at": utcnow()} if key else {})}
    rows = (await core(session, _person_and_case(names, bool(key)), params)).all()
    width = len(_STAFF_COLUMNS) + 2  # the person's columns, then their membership's two
    people = [row[:width] for row in rows if row[0] is not None]
    case_rows = [row[width:] for row in rows if row[width] is not None]
    person = None if not people else (snapshot(Staff, zip(_STAFF_COLUMNS, people[0], strict=False)),
                                      sorted((r[-2], r[-1]) for r in people if r[-2] is not None))
    if not case_rows:
        return person, None
    return person, (*_case_and_events(case_rows), bool(case_rows[0][-1]) if key else True)


@lru_cache(maxsize=8)
def _person_and_case(names: tuple[str, ...], claimed: bool) -> Any:
    """_staff_memberships_query(names) and the case query (with the claim, or not) as one, ordered
    as the case query is (the person's rows come last). Columns are labelled by their side: the
    two share names (id, school_id).
    """
    person = _staff_memberships_query(names).subquery("person")
    case = (_case_with_events_claimed() if claimed else _CASE_WITH_EVENTS).subquery("case_read")
    return (select(*(c.label(f"p_{c.key}") for c in person.c), *(c.label(f"c_{c.key}") for c in case.c))
            .select_from(person.join(case, false(), full=True)).order_by(case.c.event_seq))


_CASE_COLUMNS = tuple(Case.__table__.columns.keys())  # type: ignore[attr-defined]
_EVENTS = CaseEvent.__table__  # type: ignore[attr-defined]
_EVENT_COLUMNS = tuple(_EVENTS.columns.keys())
# One row per event (one with none), in chain order: the case's columns, then the event's.
_CASE_WITH_EVENTS = (select(Case, *(column.label(f"event_{column.key}") for column in _EVENTS.columns))
                     .outerjoin(_EVENTS, _EVENTS.c.case_id == col(Case.id)).where(Case.ref == bindparam("ref"))
                     .order_by(_EVENTS.c.seq))
# Built once: an answer runs these every time.
_CASE_BY_REF = select(Case).where(Case.ref == bindparam("ref"))
_CASE_EVENTS = select(CaseEvent).where(CaseEvent.case_id == bindparam("case_id")).order_by(col(CaseEvent.seq))


async def save_projection(session: AsyncSession, case: Case, *, expected_version: int, **values: Any) -> None:
    """Move the case's projection on, only if nobody else has since `expected_version`."""
    result = await core(session, _projection_update(tuple(sorted(values))),
                        {**{f"new_{name}": value for name, value in values.items()},
                         "case_id": case.id, "expected_version": expected_version})
    if result.rowcount != 1:
        raise StaleVersion(case.ref)
    for name, value in values.items():  # as stored: the session has nothing left to write for them
        set_committed_value(case, name, value)


async def append_and_project(session: AsyncSession, event: CaseEvent, case: Case, *, expected_version: int,
                             **values: Any) -> None:
    """Write the sealed `event` (storage.audit.new_case_event) and move the case's projection on,
    only if nobody else has since `expected_version` (else StaleVersion, and the transaction
    must roll back: the event is written either way). On PostgreSQL one statement, the event's
    INSERT a CTE of the projection's UPDATE: one round trip instead of two. On SQLite, whose
    statements cost no round trip, the two statements as they are.
    """
    if session.get_bind().dialect.name != "postgresql":
        await insert_event(session, event)
        await save_projection(session, case, expected_version=expected_version, **values)
        return
    params = {f"event_{name}": value for name, value in event.model_dump(exclude={"id"}).items()}
    result = await core(session, _event_and_projection(tuple(sorted(values))),
                        {**params, **{f"new_{name}": value for name, value in values.items()},
                         "case_id": case.id, "expected_version": expected_version})
    if result.rowcount != 1:
        raise StaleVersion(case.ref)
    for name, value in values.items():
        set_committed_value(case, name, value)


@lru_cache(maxsize=8)
def _event_and_projection(names: tuple[str, ...]) -> Any:
    """The projection's UPDATE for these columns with the event's INSERT as its CTE (PostgreSQL)."""
    events = CaseEvent.__table__  # type: ignore[attr-defined]
    written = insert(events).values({c.name: bindparam(f"event_{c.name}") for c in events.columns if c.name != "id"})
    return _projection_update(names).add_cte(written.cte("new_event"))


@lru_cache(maxsize=8)
def _projection_update(names: tuple[str, ...]) -> Any:
    """The projection's UPDATE for these columns, built once (every answer runs it)."""
    cases = Case.__table__  # type: ignore[attr-defined]
    return (update(cases).where(cases.c.id == bindparam("case_id"), cases.c.version == bindparam("expected_version"))
            .values({name: bindparam(f"new_{name}") for name in names}))


async def claim_delivery(session: AsyncSession, key: str, case_id: int | None) -> bool:
    """Record an idempotency key. False when it was seen before (the caller changes nothing)."""
    result = await core(session, _claim(session.get_bind().dialect.name),
                        {"key": key, "case_id": case_id, "seen_at": utcnow()})
    return bool(result.rowcount)


# Built once per dialect: every answer claims its delivery.
@lru_cache(maxsize=2)
def _claim(dialect: str) -> Any:
    """The delivery claim, built once per dialect (every answer claims its delivery)."""
    return _insert_for(dialect, ProcessedDelivery).on_conflict_do_nothing(index_elements=["key"])


def _insert_for(dialect: str, model: Any) -> Any:
    # Imported when first used: a SQLite deployment never loads the PostgreSQL dialect (25 ms at start).
    if dialect == "postgresql":
        from sqlalchemy.dialects import postgresql

        return postgresql.insert(model)
    from sqlalchemy.dialects import sqlite

    return sqlite.insert(model)


def _insert(session: AsyncSession, model: Any) -> Any:
    dialect = session.get_bind().dialect.name
    return _insert_for(dialect, model)


async def enqueue(session: AsyncSession, messages: Sequence[OutboxMessage]) -> None:
    """Queue messages; a message whose dedupe key is queued already is skipped."""
    if messages:
        rows = [m.model_dump(exclude={"id"}) for m in messages]
        await session.execute(_insert(session, OutboxMessage).values(rows).on_conflict_do_nothing(
            index_elements=["dedupe_key"]))


async def add_reminders(session: AsyncSession, reminders: Sequence[Reminder]) -> None:
    """Write reminder rows; a row whose unique key exists already is skipped."""
    if reminders:
        rows = [r.model_dump(exclude={"id"}) for r in reminders]
        await session.execute(_insert(session, Reminder).values(rows).on_conflict_do_nothing(
            index_elements=["unique_key"]))


async def cancel_reminders(session: AsyncSession, case_id: int, kinds: Sequence[str]) -> None:
    """Stop the pending reminders of some kinds for a case."""
    if not kinds:
        return
    await session.execute(update(Reminder).where(
        col(Reminder.case_id) == case_id, col(Reminder.status) == "pending", col(Reminder.kind).in_(kinds)
    ).values(status="cancelled"))


async def open_cases(session: AsyncSession, *, school_id: int) -> list[Case]:
    """A school's cases that have not closed, oldest first."""
    query = select(Case).where(Case.school_id == school_id, Case.status != "closed").order_by(col(Case.created_at))
    return list((await session.execute(query)).scalars())


async def all_cases(session: AsyncSession) -> list[Case]:
    """Every case, by id."""
    return list((await session.execute(select(Case).order_by(col(Case.id)))).scalars())


async def deactivate_staff(session: AsyncSession, staff_id: int) -> None:
    """Mark a member of staff inactive (rows that name them stay)."""
    await session.execute(update(Staff).where(col(Staff.id) == staff_id).values(active=False))


async def access_log(session: AsyncSession) -> list[AccessLog]:
    """The whole access log, in chain order."""
    return list((await session.execute(select(AccessLog).order_by(col(AccessLog.seq)))).scalars())


async def access_log_with_refs(session: AsyncSession, *, case_ref: str | None = None) -> list[tuple[AccessLog, str | None]]:
    """Access log entries with their case reference (None for entries about no case), optionally for one case."""
    query = select(AccessLog, Case.ref).outerjoin(Case, col(Case.id) == AccessLog.case_id).order_by(col(AccessLog.seq))
    if case_ref:
        query = query.where(Case.ref == case_ref.strip().upper())
    return [(entry, ref) for entry, ref in (await session.execute(query)).all()]


async def outbox_counts(session: AsyncSession) -> list[tuple[str, int]]:
    """(status, number of messages) for the metrics page."""
    query = select(OutboxMessage.status, func.count()).group_by(OutboxMessage.status)
    return [(status, int(count)) for status, count in (await session.execute(query)).all()]


async def outbox_depths(session: AsyncSession) -> list[tuple[str, str, int]]:
    """(platform, status, number of messages) of the messages not yet settled (pending, sending, failed)."""
    query = (select(OutboxMessage.platform, OutboxMessage.status, func.count())
             .where(col(OutboxMessage.status).in_(("pending", "sending", "failed")))
             .group_by(OutboxMessage.platform, OutboxMessage.status))
    return [(platform, status, int(n)) for platform, status, n in (await session.execute(query)).all()]


async def reminders_waiting(session: AsyncSession, *, now: datetime, late: datetime) -> tuple[int, int]:
    """(due, overdue): pending reminders due by `now`, and those of them due before `late` (the sweep is behind)."""
    query = select(func.count(), func.count().filter(col(Reminder.due_at) <= late)).where(
        col(Reminder.status) == "pending", col(Reminder.due_at) <= now)
    due, overdue = (await session.execute(query)).one()
    return int(due), int(overdue)


async def list_schools(session: AsyncSession) -> list[School]:
    """Every school, by slug."""
    return list((await session.execute(select(School).order_by(col(School.slug)))).scalars())


async def update_school(session: AsyncSession, school_id: int, values: dict[str, Any]) -> None:
    """Change some of a school's settings (column name to new value)."""
    if values:
        await session.execute(update(School).where(col(School.id) == school_id).values(**values))


async def save_address(session: AsyncSession, platform: str, user_id: str, address: str, now: datetime) -> None:
    """Remember where `platform` reaches a person (replaces what was known)."""
    known = await session.get(ChatAddress, (platform, user_id))
    if known is None:
        session.add(ChatAddress(platform=platform, user_id=user_id, address=address, updated_at=now))
    elif known.address != address:
        known.address, known.updated_at = address, now


async def address_of(session: AsyncSession, platform: str, user_id: str) -> str | None:
    """Where `platform` reaches a person, if it has told us."""
    known = await session.get(ChatAddress, (platform, user_id))
    return known.address if known else None


async def link_platform_id(session: AsyncSession, staff_id: int, platform: str, user_id: str) -> None:
    """Record a person's id on a platform (first contact, matched by email)."""
    staff = await session.get(Staff, staff_id)
    if staff is not None:
        setattr(staff, f"{platform}_user_id", user_id)
