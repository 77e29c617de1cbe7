"""Property: whenever a concern is raised, classroom staff are reminded only in working hours on a
school day, urgent case or not; DSLs still hear about an urgent case at once.

Each example gets a fresh database (a copy of one migrated template) and lives through a week of
sweeps, event by event: the clock jumps to each next due time, as the 30-second timer would reach it.
The week spans the spring clock change, Good Friday and Easter Monday.
"""

from __future__ import annotations

import asyncio
import shutil
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot import people
from bot.cases import Person, Services
from bot.crypto import Keyring, generate_key
from bot.policy.model import Policy
from bot.schooltime import SchoolCalendar
from storage.db import create_database
from storage.migrate import upgrade
from tests.conftest import england

from .conftest import Clock, add_ladder, make_case, outbox_rows, sweep_through

# Hypothesis takes naive bounds and adds the zone: Thursday 26 March to Thursday 2 April 2026, UTC.
FIRST = datetime(2026, 3, 26, tzinfo=UTC).replace(tzinfo=None)
LAST = datetime(2026, 4, 2, 23, 59, tzinfo=UTC).replace(tzinfo=None)
SCHOOL = SchoolCalendar()  # the oracle: Europe/London, England's bank holidays, 08:00-17:00
ROLES = {"teacher": "staff", "teacher2": "staff", "dsl": "dsl", "deputy": "deputy", "head": "admin"}


@dataclass(frozen=True)
class Template:
    """A migrated database with one school's people, copied for each example."""

    path: Path
    staff: dict[str, Person]
    policy: Policy = field(repr=False)  # keeps a falsifying example's report short


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Template:
    """Built once per module: migrating takes longer than a whole example."""
    path = tmp_path_factory.mktemp("property") / "template.db"
    policy = england()

    async def build() -> dict[str, Person]:
        db = create_database(f"sqlite+aiosqlite:///{path}")
        await upgrade(db)
        svc = Services(db=db, keyring=Keyring.parse(generate_key("t1")), policy=policy)
        try:
            return {name: await people.add(svc, email=f"{name}@oak.sch.uk", role=role, name=name.title(),
                                           school="oak", slack_user_id=f"U{name.upper():0<9}")
                    for name, role in ROLES.items()}
        finally:
            await db.dispose()

    return Template(path, asyncio.run(build()), policy)


def in_working_time(when: datetime) -> bool:
    local = when.astimezone(SCHOOL.zone)
    return SCHOOL.is_school_day(local.date()) and SCHOOL.working_start <= local.time() < SCHOOL.working_end


async def live_a_week(template: Template, raised: datetime, urgent: bool) -> list[tuple[str, datetime]]:
    """Raise a concern at `raised` with its ladders, sweep for a week; (role, when) of every reminder queued."""
    staff, policy = template.staff, template.policy
    copy = template.path.with_name(f"{uuid.uuid4().hex}.db")
    shutil.copyfile(template.path, copy)
    db = create_database(f"sqlite+aiosqlite:///{copy}")
    clock = Clock(raised)
    svc = Services(db=db, keyring=Keyring.parse(generate_key("t1")), policy=policy, clock=clock)
    try:
        draft = await make_case(svc, staff["teacher"], status="draft", step="concern", urgent=urgent)
        await add_ladder(svc, draft, [(15, staff["teacher"]), (15, staff["dsl"])], start=raised, kind="draft")
        assigned = await make_case(svc, staff["teacher"], assignee=staff["teacher2"], urgent=urgent, due_at=raised)
        await add_ladder(svc, assigned, [(0, staff["teacher2"]), (240, staff["teacher2"]), (1440, staff["dsl"]),
                                         (2880, staff["deputy"])], start=raised)
        if urgent:
            await add_ladder(svc, assigned, [(15, staff["deputy"]), (30, staff["head"])], start=raised,
                             kind="urgent_ack", scope="raised")
        await sweep_through(svc, clock, raised + timedelta(days=7))
        role_of = {person.id: ROLES[name] for name, person in staff.items()}
        return [(role_of[row.recipient_id], row.created_at) for row in await outbox_rows(svc)]
    finally:
        await db.dispose()
        copy.unlink()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raised=st.datetimes(min_value=FIRST, max_value=LAST, timezones=st.just(UTC)), urgent=st.booleans())
def test_classroom_staff_are_reminded_only_in_working_hours_on_school_days(template, raised, urgent):
    queued = asyncio.run(live_a_week(template, raised, urgent))

    to_staff = [when for role, when in queued if role == "staff"]
    assert to_staff, "the assignee and the raiser are always reminded within the week"
    assert [when for when in to_staff if not in_working_time(when)] == []
    if urgent:  # a DSL hears about an unfinished urgent concern when it falls due, at any hour
        assert ("dsl", raised + timedelta(minutes=15)) in queued
