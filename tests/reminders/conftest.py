"""Fixtures for reminder, digest and calendar tests: a fresh migrated SQLite database per test,
services with a hand-moved clock, one school's people, and helpers that write rows directly."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from bot import reminders
from bot.cases import Person, Services
from bot.crypto import Keyring, generate_key
from storage import repo
from storage.db import create_database
from storage.models import Case, OutboxMessage, Reminder
from tests.conftest import Clock, england

LONDON = ZoneInfo("Europe/London")


def london(*args: int) -> datetime:
    return datetime(*args, tzinfo=LONDON)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.fixture
def tick() -> Clock:
    return Clock(london(2026, 11, 24, 10, 0))  # a Tuesday in term


@pytest.fixture
async def svc(migrated_sqlite_url: str, tick: Clock) -> AsyncIterator[Services]:
    db = create_database(migrated_sqlite_url)
    yield Services(db=db, keyring=Keyring.parse(generate_key("t1")), policy=england(), clock=tick)
    await db.dispose()


@dataclass
class People:
    teacher: Person
    teacher2: Person
    dsl: Person
    deputy: Person
    head: Person
    other_dsl: Person


@pytest.fixture
async def oak(svc: Services) -> People:
    from bot import people

    async def add(email: str, role: str, name: str, school: str = "oak") -> Person:
        return await people.add(svc, email=email, role=role, name=name, school=school,
                                slack_user_id=f"U{email.split('@')[0].upper():0<9}")

    return People(
        teacher=await add("tina@oak.sch.uk", "staff", "Tina Teacher"),
        teacher2=await add("tom@oak.sch.uk", "staff", "Tom Teacher"),
        dsl=await add("dee@oak.sch.uk", "dsl", "Dee DSL"),
        deputy=await add("pat@oak.sch.uk", "deputy", "Pat Deputy"),
        head=await add("hal@oak.sch.uk", "admin", "Hal Head"),
        other_dsl=await add("olu@elm.sch.uk", "dsl", "Olu DSL", school="elm"),
    )


async def make_case(svc: Services, raiser: Person, *, status: str = "awaiting_outcome", urgent: bool = False,
                    assignee: Person | None = None, due_at: datetime | None = None, step: str = "eh_outcome",
                    created_at: datetime | None = None) -> Case:
    created = created_at or svc.clock()
    async with svc.db.transaction() as s:
        return await repo.insert_case(s, Case(
            ref="", school_id=raiser.school_id, raised_by=raiser.id, policy_id=svc.policy.id,
            policy_version=svc.policy.version, step=step, status=status, urgent=urgent,
            assignee_id=assignee.id if assignee else None, due_at=due_at, created_at=created, updated_at=created))


async def add_reminder(svc: Services, case: Case, to: Person, *, due: datetime, kind: str = "outcome",
                       level: int = 0) -> str:
    key = f"{case.id}:{kind}:test:{level}:{to.id}"
    async with svc.db.transaction() as s:
        await repo.add_reminders(s, [Reminder(case_id=case.id or 0, recipient_id=to.id, kind=kind, level=level,
                                              due_at=due, unique_key=key)])
    return key


async def add_ladder(svc: Services, case: Case, rungs: list[tuple[int, Person]], *, start: datetime,
                     kind: str = "outcome", scope: str = "test") -> list[str]:
    """One row per rung (minutes after `start`, recipient), keyed like bot.notify's: case:kind:scope:level:recipient."""
    rows = [Reminder(case_id=case.id or 0, recipient_id=person.id, kind=kind, level=level,
                     due_at=start + timedelta(minutes=minutes), unique_key=f"{case.id}:{kind}:{scope}:{level}:{person.id}")
            for level, (minutes, person) in enumerate(rungs)]
    async with svc.db.transaction() as s:
        await repo.add_reminders(s, rows)
    return [r.unique_key for r in rows]


async def sweep_through(svc: Services, tick: Clock, until: datetime, *, batch: int = 500) -> None:
    """Sweep now and at every later due time up to `until`, as the 30-second timer would (minus the idle sweeps)."""
    while True:
        await reminders.sweep(svc, batch=batch)
        waiting = [r.due_at for r in await reminder_rows(svc) if r.status == "pending" and r.due_at > tick.now]
        if not waiting or min(waiting) > until:
            return
        tick.now = min(waiting)


async def reminder_rows(svc: Services) -> list[Reminder]:
    from sqlmodel import col, select

    async with svc.db.transaction() as s:
        return list((await s.execute(select(Reminder).order_by(col(Reminder.id)))).scalars())


async def outbox_rows(svc: Services, kind: str | None = None) -> list[OutboxMessage]:
    from sqlmodel import col, select

    query = select(OutboxMessage).order_by(col(OutboxMessage.id))
    if kind:
        query = query.where(OutboxMessage.kind == kind)
    async with svc.db.transaction() as s:
        return list((await s.execute(query)).scalars())
