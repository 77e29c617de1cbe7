"""Run Alembic migrations on an async engine, and tell whether the schema is current."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from storage.db import Database
from storage.schema_version import current_revision, head_revision, is_current

__all__ = ["MIGRATIONS", "current_revision", "head_revision", "is_current", "upgrade"]

MIGRATIONS = Path(__file__).parent / "migrations"


def _config(connection: Any = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def alembic_head() -> str | None:
    """The newest migration, as Alembic reads it (storage.schema_version.head_revision must agree)."""
    return ScriptDirectory.from_config(_config()).get_current_head()


async def upgrade(db: Database) -> None:
    """Bring the schema to the newest migration."""
    async with db.engine.begin() as conn:
        await conn.run_sync(lambda sync_conn: command.upgrade(_config(sync_conn), "head"))


async def alembic_revision(db: Database) -> str | None:
    """The schema's migration as Alembic reads it (storage.schema_version.current_revision must agree)."""
    async with db.engine.connect() as conn:
        return await conn.run_sync(lambda c: MigrationContext.configure(c).get_current_revision())
