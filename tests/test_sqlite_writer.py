"""SQLite's writer thread (storage/sqlite_writer.py): a unit of work in one hand-off, and units that
wait together committed together, each kept or rolled back on its own.
"""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncSession

from bot import cases, people
from bot.cases import CaseView, Person, Services
from bot.errors import Conflict
from storage.sqlite_writer import UnitWaitedError
from tests.completed_case import SIGNIFICANT_HARM_REFUSED, values_for


@pytest.fixture
async def svc(file_services: Services) -> Services:
    return file_services


async def teacher_of(svc: Services) -> Person:
    return await people.add(svc, email="tina@oak.sch.uk", role="staff", name="Tina", school="oak",
                            slack_user_id="U0TINA0000")


async def raised(svc: Services, teacher: Person, n: int) -> list[CaseView]:
    start = svc.policy.steps[svc.policy.start]
    return [await cases.raise_concern(svc, actor=teacher, platform="slack",
                                      values=values_for(start, None, SIGNIFICANT_HARM_REFUSED, teacher))
            for _ in range(n)]


def answering(svc: Services, teacher: Person, view: CaseView, *, version: int | None = None) -> object:
    assert view.step is not None
    return cases.answer(svc, actor=teacher, case_ref=view.ref, version=view.version if version is None else version,
                        step=view.step.id, values=values_for(view.step, view, SIGNIFICANT_HARM_REFUSED, teacher),
                        platform="slack")


async def answered(svc: Services) -> int:
    async with svc.db.read() as s:
        return int((await s.execute(text("SELECT count(*) FROM case_events WHERE kind = 'answered'"))).scalar_one())


async def test_answers_arriving_together_are_committed_together_and_a_stale_one_alone_is_refused(
        svc: Services) -> None:
    teacher = await teacher_of(svc)
    views = await raised(svc, teacher, 16)
    await svc.db.unit(lambda s: _nothing(s))  # the writer thread is up: its engine can be watched
    commits = []
    event.listen(svc.db._writer.engine, "commit", lambda conn: commits.append(1))  # type: ignore[union-attr]

    stale = answering(svc, teacher, views[0], version=views[0].version - 1)  # a form older than the case
    results = await asyncio.gather(stale, *(answering(svc, teacher, v) for v in views[1:]), return_exceptions=True)

    assert isinstance(results[0], Conflict)
    assert all(isinstance(r, CaseView) for r in results[1:])
    assert await answered(svc) == 15  # the refused one rolled back alone; the others kept
    assert len(commits) < 15, "answers that waited together were committed together"


async def _nothing(_s: AsyncSession) -> None:
    return None


async def test_a_unit_that_waits_on_something_else_is_refused_and_writes_nothing(svc: Services) -> None:
    async def waits(s: AsyncSession) -> None:
        await s.execute(text("INSERT INTO schools (slug, name, nation, timezone, created_at) "
                             "VALUES ('x', 'X', 'ENG', 'Europe/London', '2026-11-24 10:00:00.000000')"))
        await asyncio.sleep(0)  # not the database: a unit may not wait on it

    with pytest.raises(UnitWaitedError):
        await svc.db.unit(waits)
    async with svc.db.read() as s:
        assert (await s.execute(text("SELECT count(*) FROM schools WHERE slug = 'x'"))).scalar_one() == 0


async def test_a_failing_unit_among_others_loses_only_its_own_writes(svc: Services) -> None:
    async def insert(slug: str, *, fail: bool = False) -> None:
        async def work(s: AsyncSession) -> None:
            await s.execute(text("INSERT INTO schools (slug, name, nation, timezone, created_at) "
                                 "VALUES (:slug, 'X', 'ENG', 'Europe/London', '2026-11-24 10:00:00.000000')"),
                            {"slug": slug})
            if fail:
                raise ValueError("refused after writing")
        await svc.db.unit(work)

    outcomes = await asyncio.gather(*(insert(f"s{i}", fail=i % 3 == 0) for i in range(12)), return_exceptions=True)
    assert [isinstance(o, ValueError) for o in outcomes] == [i % 3 == 0 for i in range(12)]
    async with svc.db.read() as s:
        kept = sorted((await s.execute(text("SELECT slug FROM schools WHERE slug LIKE 's%'"))).scalars())
    assert kept == sorted(f"s{i}" for i in range(12) if i % 3)
