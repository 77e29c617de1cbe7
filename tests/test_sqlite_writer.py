"""SQLite's writer (storage/sqlite_writer.py): a unit of work in one hand-off, and units that
wait together committed together, each kept or rolled back on its own; on the event loop when the
database is free, in the writer thread when it is not, and the loop never waits for the lock.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncSession

from bot import cases, people
from bot.cases import CaseView, Person, Services
from bot.errors import Conflict
from storage.sqlite_writer import SqliteWriter, UnitWaitedError
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
    await svc.db.unit(lambda s: _nothing(s))  # the writer is up: its engines can be watched
    commits = []
    writer = svc.db._writer
    assert writer is not None and writer.inline_engine is not None
    for engine in (writer.engine, writer.inline_engine):  # on the event loop or in the thread
        event.listen(engine, "commit", lambda conn: commits.append(1))

    stale = answering(svc, teacher, views[0], version=views[0].version - 1)  # a form older than the case
    results = await asyncio.gather(stale, *(answering(svc, teacher, v) for v in views[1:]), return_exceptions=True)

    assert isinstance(results[0], Conflict)
    assert all(isinstance(r, CaseView) for r in results[1:])
    assert await answered(svc) == 15  # the refused one rolled back alone; the others kept
    assert 0 < len(commits) < 15, "answers that waited together were committed together"


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


async def _insert_school(s: AsyncSession, slug: str) -> str:
    await s.execute(text("INSERT INTO schools (slug, name, nation, timezone, created_at) "
                         "VALUES (:slug, 'X', 'ENG', 'Europe/London', '2026-11-24 10:00:00.000000')"), {"slug": slug})
    return slug


async def _schools(svc: Services, prefix: str) -> list[str]:
    async with svc.db.read() as s:
        found = await s.execute(text("SELECT slug FROM schools WHERE slug LIKE :p ORDER BY slug"), {"p": prefix + "%"})
        return list(found.scalars())


@asynccontextmanager
async def _loop_pulse() -> AsyncIterator[list[float]]:
    """The event loop's pulse meanwhile: the gaps between 5 ms sleeps (the longest is how long it was blocked)."""
    stop, gaps = asyncio.Event(), []

    async def beat() -> None:
        last = time.perf_counter()
        while not stop.is_set():
            await asyncio.sleep(0.005)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    pulse = asyncio.create_task(beat())
    try:
        yield gaps
    finally:
        stop.set()
        await pulse


async def _started_writer(svc: Services) -> SqliteWriter:
    await svc.db.unit(lambda s: _nothing(s))  # the writer exists once it has run a unit
    assert svc.db._writer is not None
    return svc.db._writer


async def test_units_run_on_the_event_loop_when_the_database_is_free(svc: Services) -> None:
    writer = await _started_writer(svc)
    before = dict(writer.batches)

    slugs = await asyncio.gather(*(svc.db.unit(lambda s, i=i: _insert_school(s, f"loop{i:02d}")) for i in range(8)))

    assert sorted(slugs) == await _schools(svc, "loop")
    assert writer.batches["inline"] - before["inline"] == 1, "the turn's eight units in one inline batch"
    assert writer.batches["thread"] == before["thread"]


async def test_a_unit_waits_in_the_thread_while_a_long_job_holds_the_write_lock(svc: Services) -> None:
    writer = await _started_writer(svc)
    before = dict(writer.batches)

    async with _loop_pulse() as gaps:
        async with svc.db.transaction() as job:  # a long job's transaction: this process's write lock is taken
            await _insert_school(job, "jobx")
            waiting = asyncio.create_task(svc.db.unit(lambda s: _insert_school(s, "unitx")))
            await asyncio.sleep(0.3)
            assert not waiting.done(), "the unit waits for the job, not beside it"
        assert await waiting == "unitx"

    assert await _schools(svc, "jobx") == ["jobx"] and await _schools(svc, "unitx") == ["unitx"]
    assert writer.batches["thread"] == before["thread"] + 1 and writer.batches["inline"] == before["inline"]
    assert max(gaps) < 0.2, f"the event loop was blocked for {max(gaps):.3f} s"


async def test_a_unit_waits_in_the_thread_while_another_process_holds_sqlites_lock(svc: Services) -> None:
    writer = await _started_writer(svc)
    before = dict(writer.batches)
    other = sqlite3.connect(Path(str(writer.engine.url.database)), isolation_level=None)  # as a CLI command would
    try:
        async with _loop_pulse() as gaps:
            other.execute("BEGIN IMMEDIATE")
            other.execute("INSERT INTO schools (slug, name, nation, timezone, created_at) "
                          "VALUES ('otherx', 'X', 'ENG', 'Europe/London', '2026-11-24 10:00:00.000000')")
            waiting = asyncio.create_task(svc.db.unit(lambda s: _insert_school(s, "unity")))
            await asyncio.sleep(0.3)
            assert not waiting.done()
            other.execute("COMMIT")
            assert await waiting == "unity"
    finally:
        other.close()

    assert await _schools(svc, "otherx") == ["otherx"] and await _schools(svc, "unity") == ["unity"]
    assert writer.batches["thread"] == before["thread"] + 1 and writer.batches["inline"] == before["inline"]
    assert max(gaps) < 0.2, f"the event loop was blocked for {max(gaps):.3f} s"


async def test_a_unit_whose_caller_has_gone_is_not_written_and_the_others_are(svc: Services) -> None:
    await svc.db.unit(lambda s: _nothing(s))
    async with svc.db.transaction():  # a long job: both units wait in the thread's queue meanwhile
        kept = asyncio.create_task(svc.db.unit(lambda s: _insert_school(s, "keptx")))
        gone = asyncio.create_task(svc.db.unit(lambda s: _insert_school(s, "gonex")))
        await asyncio.sleep(0.1)
        gone.cancel()  # its request was abandoned before its turn came
        await asyncio.sleep(0.05)

    assert await kept == "keptx"
    with pytest.raises(asyncio.CancelledError):
        await gone
    assert await _schools(svc, "keptx") == ["keptx"] and await _schools(svc, "gonex") == []
    assert await svc.db.unit(lambda s: _insert_school(s, "afterx")) == "afterx"  # the writer is still working


async def test_a_unit_after_the_writer_stopped_is_refused_not_left_waiting(svc: Services) -> None:
    writer = await _started_writer(svc)
    await asyncio.to_thread(writer.close)  # as on shutdown
    other = sqlite3.connect(Path(str(writer.engine.url.database)), isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # the loop cannot write now: the unit would go to the thread
        with pytest.raises(RuntimeError, match="stopped"):
            await asyncio.wait_for(svc.db.unit(lambda s: _insert_school(s, "latex")), timeout=5)
    finally:
        other.execute("ROLLBACK")
        other.close()
