"""Key check values: the key ids this database was written with, each with a token that
only the right key opens (bot/keys.py decides what to make of them).
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import select

from storage.models import KeyCheck
from storage.repo import _insert


async def has_key_checks(session: AsyncSession) -> bool:
    """False before migration 0004 (`consentbot db upgrade` makes the table)."""
    return bool(await session.run_sync(lambda s: sa.inspect(s.connection()).has_table(KeyCheck.__tablename__)))


async def key_checks(session: AsyncSession) -> dict[str, str]:
    """Key id -> check token."""
    return {row.key_id: row.token for row in (await session.execute(select(KeyCheck))).scalars()}


async def add_key_check(session: AsyncSession, *, key_id: str, token: str, at: datetime) -> None:
    """Record a key's check value; one recorded first by another process is kept."""
    await session.execute(_insert(session, KeyCheck).values(key_id=key_id, token=token, created_at=at)
                          .on_conflict_do_nothing(index_elements=["key_id"]))
