"""Storage: migrations match the models; people are deactivated, never deleted; a database that
hangs or is locked fails fast (issue 8, defect 5), and a malformed DATABASE_URL is one line."""

from __future__ import annotations

import asyncio
import socket
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, OperationalError

from bot import cases, people, views
from bot.app import build_app
from bot.cases import Services
from bot.config import Settings
from bot.crypto import Keyring, generate_key
from bot.errors import NotFound
from bot.runtime import DatabaseUrlError, build_services
from storage import repo
from storage.audit import GENESIS, new_case_event
from storage.db import create_database
from storage.migrate import head_revision, is_current, upgrade
from storage.models import ProcessedDelivery, SQLModel
from tests.cli.harness import run_in_process
from tests.conftest import england


async def test_the_migrations_create_exactly_the_models_schema(empty_db_url: str) -> None:
    db = create_database(empty_db_url)
    assert not await is_current(db)
    await upgrade(db)
    assert await is_current(db) and head_revision() is not None
    async with db.engine.connect() as conn:
        diff = await conn.run_sync(lambda c: compare_metadata(MigrationContext.configure(c), SQLModel.metadata))
    await db.dispose()
    assert diff == [], f"models and migrations differ: {diff}"


async def test_removed_staff_can_no_longer_sign_in_but_stay_in_history(services: Services, school: dict) -> None:
    await people.remove(services, email="tom@oak.sch.uk")
    try:
        await cases.identify(services, email="tom@oak.sch.uk")
    except NotFound as exc:
        assert "access to consentbot has been removed" in str(exc)
    else:
        raise AssertionError("a removed member of staff signed in")
    listed = await people.listing(services, school="oak")
    assert "tom@oak.sch.uk" not in [row[0] for row in listed]


def test_production_refuses_to_start_without_a_key(tmp_path: Path) -> None:
    done = run_in_process("serve", cwd=tmp_path, env={"CONSENTBOT_ENV": "production"})
    assert done.returncode == 1
    assert "production refuses to start without it" in done.stderr
    assert not (tmp_path / "consentbot.db.key").exists()


async def test_the_projection_moves_on_only_from_the_version_that_was_read(services: Services, school: dict) -> None:
    view = await cases.raise_concern(services, actor=school["teacher"], platform="test",
                                     values={"immediate_danger": "no"})
    async with services.db.transaction() as s:
        case = await repo.case_by_ref(s, view.ref)
        assert case is not None and case.version == 1
        with pytest.raises(repo.StaleVersion):
            await repo.save_projection(s, case, expected_version=0, status="awaiting_decision")
        await repo.save_projection(s, case, expected_version=1, version=2)
    async with services.db.transaction() as s:
        again = await repo.case_by_ref(s, view.ref)
        assert again is not None and (again.version, again.status) == (2, "draft")


async def test_an_event_and_its_projection_are_written_together_or_not_at_all(services: Services,
                                                                              school: dict) -> None:
    view = await cases.raise_concern(services, actor=school["teacher"], platform="test",
                                     values={"immediate_danger": "no"})

    def event(s: Any, case: Any) -> Any:
        return new_case_event(s, case, seq=case.version + 1, prev_hash=case.head_hash or GENESIS, kind="answered",
                              actor_id=school["teacher"].id, at=services.clock(), payload={"step": "x"})

    with pytest.raises(repo.StaleVersion):  # the version read has moved on: nothing of it may stay
        async with services.db.transaction() as s:
            case = await repo.case_by_ref(s, view.ref)
            assert case is not None
            await repo.append_and_project(s, event(s, case), case, expected_version=0, version=2)
    async with services.db.transaction() as s:
        case = await repo.case_by_ref(s, view.ref)
        assert case is not None and len(await repo.case_events(s, case.id or 0)) == 1
        written = event(s, case)
        await repo.append_and_project(s, written, case, expected_version=1, version=2, head_hash=written.hash)
    async with services.db.read() as s:
        again = await repo.case_by_ref(s, view.ref)
        assert again is not None and (again.version, again.head_hash) == (2, written.hash)
        assert [e.hash for e in await repo.case_events(s, again.id or 0)][-1] == written.hash


async def test_a_transaction_keeps_or_discards_its_orm_and_plain_sql_writes_together(services: Services) -> None:
    """The ORM's writes (even one only added, never flushed) and the plain SQL of the hot path
    (storage.plain) commit together, and roll back together; the connection is left clean.
    """
    def delivery(key: str) -> ProcessedDelivery:
        return ProcessedDelivery(key=key, case_id=None, seen_at=services.clock())

    async with services.db.transaction() as s:
        s.add(delivery("orm-kept"))
        assert await repo.claim_delivery(s, "plain-kept", None)
    for orm in (True, False):
        with pytest.raises(RuntimeError):
            async with services.db.transaction() as s:
                if orm:
                    s.add(delivery("orm-lost"))
                    await s.flush()
                assert await repo.claim_delivery(s, f"plain-lost-{orm}", None)
                raise RuntimeError("after both writes")
    async with services.db.read() as s:
        keys = set((await s.execute(text("SELECT key FROM processed_deliveries"))).scalars())
    assert {"orm-kept", "plain-kept"} <= keys
    assert not keys & {"orm-lost", "plain-lost-True", "plain-lost-False"}


def test_an_unreachable_database_is_a_one_line_error_without_the_url(tmp_path: Path) -> None:
    env = {"DATABASE_URL": "postgresql+asyncpg://someone:s3cret@127.0.0.1:1/nowhere",
           "CONSENTBOT_ENCRYPTION_KEY": generate_key("k")}
    done = run_in_process("staff", "list", cwd=tmp_path, env=env)
    assert done.returncode == 1
    assert "error: cannot reach the database in DATABASE_URL" in done.stderr
    assert "Traceback" not in done.stderr and "s3cret" not in done.stderr


async def test_a_record_keeps_the_names_of_people_who_have_left(services: Services, school: dict) -> None:
    view = await cases.raise_concern(services, actor=school["teacher"], platform="test",
                                     values={"immediate_danger": "no"})
    await cases.answer(services, actor=school["teacher"], case_ref=view.ref, version=view.version, step="concern",
                       values={"child": "A", "year_group": "year_4", "concern": "B", "seen_at": "2026-11-24T09:10:00+00:00"},
                       platform="test")
    await people.remove(services, email="tina@oak.sch.uk")
    record = (await views.export_as_operator(services, case_ref=view.ref)).record
    assert record["raised"]["by"] == "Tina Teacher"


@pytest.fixture
def black_hole() -> Iterator[str]:
    """A PostgreSQL URL whose server accepts connections and never answers (the kernel completes
    the handshake for the listen backlog; nothing ever reads or writes)."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        yield f"postgresql+asyncpg://someone:s3cret@127.0.0.1:{server.getsockname()[1]}/consentbot"


async def test_a_black_holed_database_fails_readyz_and_requests_within_seconds(black_hole: str) -> None:
    svc = Services(db=create_database(black_hole), keyring=Keyring.parse(generate_key("t1")), policy=england())
    app = build_app(Settings(DATABASE_URL=black_hole), svc)

    async def readyz() -> tuple[httpx.Response, float]:
        started = time.perf_counter()
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app") as client:
            return await client.get("/readyz"), time.perf_counter() - started

    async def a_request() -> tuple[BaseException | None, float]:
        started = time.perf_counter()
        try:
            await cases.identify(svc, slack_user_id="U0TINA")  # where every Slack request starts
        except (OSError, DBAPIError) as exc:
            return exc, time.perf_counter() - started
        return None, time.perf_counter() - started

    (ready, ready_took), (error, error_took) = await asyncio.wait_for(asyncio.gather(readyz(), a_request()), 10)
    await svc.db.dispose()
    assert ready.status_code == 503 and ready.json()["status"] in ("database unreachable",
                                                                  "database did not answer within 2 s")
    assert ready_took < 3 and error is not None and error_took < 3, (ready_took, error_took)


async def test_a_long_statement_is_cancelled_by_the_statement_timeout(db_url: str) -> None:
    if not db_url.startswith("postgresql"):
        pytest.skip("SQLite has no statement timeout; its busy timeout is tested below")
    db = create_database(db_url, statement_timeout=0.5)
    started = time.perf_counter()
    with pytest.raises(DBAPIError, match="statement timeout"):
        async with db.read() as s:
            await s.execute(text("SELECT pg_sleep(10)"))
    await db.dispose()
    assert time.perf_counter() - started < 2


async def test_a_sqlite_writer_gives_up_after_the_busy_timeout_while_readers_read(sqlite_url: str) -> None:
    db = create_database(sqlite_url, timeout=0.3)
    await upgrade(db)
    other_process = sqlite3.connect(sqlite_url.removeprefix("sqlite+aiosqlite:///"), isolation_level=None)
    other_process.execute("BEGIN IMMEDIATE")  # another process holds the write lock, and hangs
    try:
        async with db.read() as s:
            assert (await s.execute(text("SELECT count(*) FROM schools"))).scalar_one() == 0
        started = time.perf_counter()
        with pytest.raises(OperationalError, match="database is locked"):
            async with db.transaction() as s:
                await s.execute(text("INSERT INTO schools (slug, name, nation, timezone, created_at) "
                                     "VALUES ('oak', 'Oak', 'ENG', 'Europe/London', '2026-01-01')"))
        assert time.perf_counter() - started < 1.5
    finally:
        other_process.close()
        await db.dispose()


@pytest.mark.parametrize("url", ["not a url", "postgresql+asyncpg://someone:s3cret@db:port/x",
                                 "postgresql+asyncpg://someone:s3cret@db:99999/x", "postgresql://someone:s3cret@db/x",
                                 "postgresql+asyncpg://someone:s3cret@db/x?sslmode=require"])
def test_a_malformed_database_url_is_named_without_echoing_it(url: str) -> None:
    with pytest.raises(DatabaseUrlError) as refused:
        build_services(Settings(DATABASE_URL=url, CONSENTBOT_ENCRYPTION_KEY=generate_key("k")))
    assert str(refused.value).startswith("DATABASE_URL ") and "s3cret" not in str(refused.value)


def test_a_malformed_database_url_is_a_one_line_error(tmp_path: Path) -> None:
    env = {"DATABASE_URL": "postgresql+asyncpg://someone:s3cret@db.internal:port/x",
           "CONSENTBOT_ENCRYPTION_KEY": generate_key("k")}
    done = run_in_process("staff", "list", cwd=tmp_path, env=env)
    assert done.returncode == 1 and done.stderr == ("error: DATABASE_URL is not a database URL (expected "
                                                    "sqlite+aiosqlite:///PATH or postgresql+asyncpg://USER:PASSWORD@"
                                                    "HOST:PORT/NAME)\n")


async def test_the_schema_check_agrees_with_alembic(db_url: str) -> None:
    """serve checks the schema without importing Alembic; it must read what Alembic reads."""
    from storage.migrate import alembic_head, alembic_revision
    from storage.schema_version import current_revision, head_revision

    assert head_revision() == alembic_head() is not None
    db = create_database(db_url)
    try:
        assert await current_revision(db) == await alembic_revision(db) == head_revision()
    finally:
        await db.dispose()


async def test_an_empty_database_has_no_revision(empty_db_url: str) -> None:
    from storage.schema_version import current_revision

    db = create_database(empty_db_url)
    try:
        assert await current_revision(db) is None
    finally:
        await db.dispose()
