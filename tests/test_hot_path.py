"""The answer's hot path on a SQLite file (issue 12): the prebuilt statements run as plain SQL on
the driver's cursor, and exactly as SQLAlchemy would run them; anything that needs SQLAlchemy at
run time still goes through it. And `serve` keeps its start-up heap out of the collector's way.
"""

from __future__ import annotations

import gc
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import Column, DateTime, Integer, MetaData, Numeric, Table, bindparam, create_engine, insert, select, text
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

import storage.plain
from bot.app import freeze_startup_heap
from bot.cases import Person, Services
from storage import audit, children, repo
from storage.db import core, create_database
from storage.models import Case, CaseEvent, Child, School, Staff
from storage.plain import PlainResult, plain_sql
from storage.repo import (
    _CASE_WITH_EVENTS,
    _MEMBERSHIPS,
    _case_with_events_claimed,
    _claim,
    _event_and_projection,
    _person_and_case,
    _projection_update,
    _staff_memberships_query,
)
from storage.sqlite_writer import SyncBackedConnection
from tests.completed_case import complete
from tests.conftest import Clock

DIALECT = create_engine("sqlite://").dialect
# The answer's reads: the person with their memberships, the case with its events, the child.
READS = [(_staff_memberships_query(("slack_user_id",)), ("slack_user_id",)), (_CASE_WITH_EVENTS, ("ref",)),
         (children._find_child(1), ("school_id", "index_0"))]
EVENT_KEYS = ("case_id", "seq", "kind", "actor_id", "at", "payload", "prev_hash", "hash", "key_id")


def test_every_statement_of_the_answer_runs_asplain_sql() -> None:
    projection = ("assignee_id", "due_at", "head_hash", "status", "step", "updated_at", "urgent", "version")
    hot = [(audit._INSERT_EVENT, EVENT_KEYS), (audit._LAST_ACCESS, ()),
           (audit._INSERT_ACCESS, ("seq", "at", "actor_id", "school_id", "case_id", "action", "detail", "prev_hash",
                                   "hash", "key_id")),
           (_projection_update(projection), (*(f"new_{n}" for n in projection), "case_id", "expected_version")),
           (_projection_update((*projection, "child_id")),  # the answer that names the child joins it
            (*(f"new_{n}" for n in (*projection, "child_id")), "case_id", "expected_version")),
           (_claim("sqlite"), ("key", "case_id", "seen_at")), *READS]
    for statement, keys in hot:
        assert plain_sql(statement, DIALECT, keys) is not None, statement


def test_on_postgresql_too_every_core_statement_of_the_answer_runs_as_plain_sql() -> None:
    dialect = asyncpg_dialect()
    projection = ("head_hash", "status", "version")
    written = (*(f"event_{k}" for k in EVENT_KEYS), *(f"new_{n}" for n in projection), "case_id", "expected_version")
    for statement, keys in [(audit._INSERT_EVENT, EVENT_KEYS), (audit._LAST_ACCESS, ()), (audit._LAST_ACCESS_LOCKED, ()),
                            (_event_and_projection(projection), written),
                            (_claim("postgresql"), ("key", "case_id", "seen_at")),
                            (_case_with_events_claimed(), ("ref", "key", "seen_at")),
                            (_person_and_case(("slack_user_id",), True), ("slack_user_id", "ref", "key", "seen_at")),
                            (_person_and_case(("slack_user_id",), False), ("slack_user_id", "ref")),
                            (_MEMBERSHIPS, ("staff_id",)), *READS]:
        assert plain_sql(statement, dialect, keys) is not None, statement


async def test_a_refused_plain_statement_raises_as_sqlalchemy_would_on_either_database(db_url: str) -> None:
    db = create_database(db_url)
    row = {"slug": "oak", "name": "Oak", "nation": "ENG", "timezone": "Europe/London",
           "created_at": datetime(2026, 11, 30, 14, 5, tzinfo=UTC)}
    schools = insert(School.__table__).inline()  # type: ignore[attr-defined]
    try:
        async with db.transaction() as s:
            assert (await core(s, schools, row)).rowcount == 1
        with pytest.raises(IntegrityError) as refused:
            async with db.transaction() as s:
                await core(s, schools, {**row, "name": "Oakwood Primary"})
        assert "Oakwood" not in str(refused.value), "a parameter in an error message: errors are logged"
        async with db.read() as s:
            assert (await s.execute(text("SELECT count(*) FROM schools WHERE slug = 'oak'"))).scalar_one() == 1
    finally:
        await db.dispose()


def test_what_needs_sqlalchemy_at_run_time_is_left_to_it() -> None:
    table = Table("t", MetaData(), Column("id", Integer, primary_key=True), Column("n", Integer, default=5),
                  Column("at", DateTime))
    assert plain_sql(text("SELECT 1"), DIALECT, ()) is None  # not a prebuilt Core statement
    assert plain_sql(insert(table), DIALECT, ("at",)) is None  # a default to compute for "n"
    assert plain_sql(insert(table), DIALECT, ("n", "at")) is not None
    assert plain_sql(select(table.c.n).where(table.c.id.in_(bindparam("ids", expanding=True))), DIALECT,
                      ("ids",)) is None  # an expanding IN
    assert plain_sql(select(Table("m", MetaData(), Column("x", Numeric)).c.x), DIALECT,
                     ()) is None  # a number converted by what the driver says of it


def test_statements_built_afresh_are_forgotten_with_them() -> None:
    table = Table("t", MetaData(), Column("id", Integer, primary_key=True), Column("n", Integer))
    before = len(storage.plain._PLAIN)
    for _ in range(300):  # a caller that builds its statement on every call
        assert plain_sql(insert(table), DIALECT, ("id", "n")) is not None
    gc.collect()
    assert len(storage.plain._PLAIN) <= before + 1


def test_plain_sql_writes_and_reads_what_sqlalchemy_would(tmp_path: object) -> None:
    engine = create_engine(f"sqlite:///{tmp_path}/plain.db")
    School.__table__.create(engine)  # type: ignore[attr-defined]
    schools = School.__table__  # type: ignore[attr-defined]
    at = datetime(2026, 11, 30, 14, 5, tzinfo=UTC)
    row = {"slug": "oak", "name": "Oak", "nation": "ENG", "timezone": "Europe/London", "created_at": at}
    statement = insert(schools)
    with engine.begin() as conn:
        conn.execute(statement, {**row, "slug": "elm"})  # SQLAlchemy's way
        result = _run(SyncBackedConnection(conn), statement, row)  # the plain way
        assert isinstance(result, PlainResult) and result.rowcount == 1
    with engine.connect() as conn:
        stored = conn.execute(text("SELECT slug, created_at FROM schools ORDER BY slug")).all()
    assert stored[0][1] == stored[1][1], "the date converted as SQLAlchemy converts it"
    engine.dispose()


def test_a_refused_plain_statement_raises_as_sqlalchemy_would(tmp_path: object) -> None:
    engine = create_engine(f"sqlite:///{tmp_path}/plain.db")
    School.__table__.create(engine)  # type: ignore[attr-defined]
    row = {"slug": "oak", "name": "Oak", "nation": "ENG", "timezone": "Europe/London",
           "created_at": datetime(2026, 11, 30, 14, 5, tzinfo=UTC)}
    with engine.begin() as conn:
        _run(SyncBackedConnection(conn), insert(School.__table__), row)  # type: ignore[attr-defined]
        with pytest.raises(IntegrityError):  # the answer turns this into "changed by someone else"
            _run(SyncBackedConnection(conn), insert(School.__table__), row)  # type: ignore[attr-defined]
    engine.dispose()


def _run(connection: SyncBackedConnection, statement: object, params: dict[str, object]) -> object:
    coroutine = connection.execute(statement, params)
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value
    raise AssertionError("the facade never waits")


def test_start_up_heap_is_frozen() -> None:
    before = gc.get_freeze_count()
    try:
        freeze_startup_heap()
        assert gc.get_freeze_count() > before
    finally:
        gc.unfreeze()


async def test_snapshots_read_as_plain_sql_equal_what_the_orm_loads(services: Services, school: dict[str, Person],
                                                                      clock: Clock) -> None:
    """The answer's reads (the person and their memberships, the case, its events, the child) are read-only snapshots built
    from plain SQL: every column, converted (aware datetimes, booleans), equals what the ORM loads,
    in a write unit and in a read, on either database.
    """
    teacher, dsl = school["teacher"], school["dsl"]
    clock.now = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)  # after every time the completed case records
    view = await complete(services, teacher=teacher, dsl=dsl)
    for scope in (services.db.unit, _in_read(services)):
        snapshots, loaded = await scope(lambda s: _both_ways(s, view.ref))
        assert snapshots == loaded and len(snapshots["events"]) > 3 and snapshots["children"]
        assert snapshots["case"]["created_at"].tzinfo is not None and isinstance(snapshots["case"]["urgent"], bool)


def _in_read(services: Services) -> Callable[..., Awaitable[Any]]:
    async def scope(work: Callable[[AsyncSession], Awaitable[Any]]) -> Any:
        async with services.db.read() as s:
            return await work(s)
    return scope


async def _both_ways(s: AsyncSession, ref: str) -> tuple[dict[str, Any], dict[str, Any]]:
    case = await repo.case_by_ref(s, ref)
    assert case is not None and case.child_id is not None
    child = await s.get(Child, case.child_id)
    assert child is not None
    staff, memberships = await repo.staff_and_memberships(s, email="dee@oak.sch.uk") or (None, None)
    assert memberships == await repo.memberships_of(s, staff.id or 0) if staff else False
    snapshots = {"case": case.model_dump(), "events": [e.model_dump() for e in await repo.case_events(s, case.id or 0)],
                 "children": [c.model_dump() for c in await children.find_child(
                     s, school_id=case.school_id, name_indexes=[child.name_index, "not-an-index"])],
                 "staff": staff.model_dump() if staff else None}
    orm = await s.execute(select(Case).where(Case.ref == ref).execution_options(populate_existing=True))
    events = await s.execute(select(CaseEvent).where(CaseEvent.case_id == case.id).order_by(CaseEvent.seq))
    loaded = {"case": orm.scalars().one().model_dump(), "events": [e.model_dump() for e in events.scalars()],
              "children": [child.model_dump()],
              "staff": (await s.execute(select(Staff).where(Staff.email == "dee@oak.sch.uk"))).scalars().one().model_dump()}
    return snapshots, loaded
