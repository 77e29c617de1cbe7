"""Whether the schema is current, without importing Alembic: `serve` asks this at every start and
for every /readyz, and Alembic (with Mako) costs a tenth of a second and several MiB to import.
Upgrading still uses Alembic (storage/migrate.py); a test checks both agree on the head.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

from sqlalchemy import text

from storage.db import Database

VERSIONS = Path(__file__).parent / "migrations" / "versions"
_REVISION = re.compile(r"^revision\s*=\s*['\"](\w+)['\"]", re.MULTILINE)
_DOWN = re.compile(r"^down_revision\s*=\s*['\"](\w+)['\"]", re.MULTILINE)


@lru_cache(maxsize=1)
def head_revision() -> str | None:
    """The newest migration: the one revision no other migration revises."""
    revisions, revised = set(), set()
    for path in VERSIONS.glob("*.py"):
        source = path.read_text(encoding="utf-8")
        revisions.update(_REVISION.findall(source))
        revised.update(_DOWN.findall(source))
    heads = revisions - revised
    if len(heads) > 1:
        raise RuntimeError(f"several newest migrations: {sorted(heads)}")
    return next(iter(heads), None)


async def current_revision(db: Database) -> str | None:
    """The schema's migration, or None for an empty database (no alembic_version table yet)."""
    exists = ("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'alembic_version'" if db.is_sqlite
              else "SELECT to_regclass('alembic_version') IS NOT NULL")
    async with db.engine.connect() as conn:
        if not (await conn.execute(text(exists))).scalar():
            return None
        return (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar()


async def is_current(db: Database) -> bool:
    """True when the database is reachable and at the newest migration."""
    return await current_revision(db) == head_revision()
