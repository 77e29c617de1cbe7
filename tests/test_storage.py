"""Storage: migrations match the models; people are deactivated, never deleted."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from bot import cases, people, views
from bot.cases import Services
from bot.crypto import generate_key
from bot.errors import NotFound
from storage import repo
from storage.db import create_database
from storage.migrate import head_revision, is_current, upgrade
from storage.models import SQLModel

CONSENTBOT = str(Path(sys.executable).with_name("consentbot"))


async def test_the_migrations_create_exactly_the_models_schema(db_url: str) -> None:
    db = create_database(db_url)
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
        assert "not registered" in str(exc)
    else:
        raise AssertionError("a removed member of staff signed in")
    listed = await people.listing(services, school="oak")
    assert "tom@oak.sch.uk" not in [row[0] for row in listed]


def test_production_refuses_to_start_without_a_key(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONSENTBOT_", "DATABASE_"))}
    env["CONSENTBOT_ENV"] = "production"
    done = subprocess.run([CONSENTBOT, "serve"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
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


def test_an_unreachable_database_is_a_one_line_error_without_the_url(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONSENTBOT_", "DATABASE_"))}
    env.update(DATABASE_URL="postgresql+asyncpg://someone:s3cret@127.0.0.1:1/nowhere",
               CONSENTBOT_ENCRYPTION_KEY=generate_key("k"))
    done = subprocess.run([CONSENTBOT, "staff", "list"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "error: cannot reach the database in DATABASE_URL" in done.stderr
    assert "Traceback" not in done.stderr and "s3cret" not in done.stderr


async def test_a_record_keeps_the_names_of_people_who_have_left(services: Services, school: dict) -> None:
    view = await cases.raise_concern(services, actor=school["teacher"], platform="test",
                                     values={"immediate_danger": "no"})
    await cases.answer(services, actor=school["teacher"], case_ref=view.ref, version=view.version, step="concern",
                       values={"child": "A", "concern": "B", "seen_at": "C"}, platform="test")
    await people.remove(services, email="tina@oak.sch.uk")
    record = (await views.export_as_operator(services, case_ref=view.ref)).record
    assert record["raised"]["by"] == "Tina Teacher"
