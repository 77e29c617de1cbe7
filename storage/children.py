"""Children and the cases about them: the SQL behind a child's chronology."""

from __future__ import annotations

import functools
from collections.abc import Collection
from typing import Any

from sqlalchemy import bindparam
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from storage.db import core
from storage.models import Case, Child
from storage.plain import detached
from storage.repo import insert_with_fresh_ref


async def find_child(session: AsyncSession, *, school_id: int, name_indexes: Collection[str]) -> list[Child]:
    """The school's children whose blind index is one of `name_indexes` (one per key id), oldest
    first, as read-only snapshots (storage.plain.detached).
    """
    indexes = sorted(set(name_indexes))
    params = {"school_id": school_id, **{f"index_{n}": index for n, index in enumerate(indexes)}}
    return detached(Child, await core(session, _find_child(len(indexes)), params))


@functools.lru_cache(maxsize=8)
def _find_child(count: int) -> Any:
    """The lookup for `count` blind indexes (one per key id in the ring), built once: the concern
    step of every case runs it. One placeholder each, not an expanding IN, so that it runs as
    plain SQL (storage/plain.py).
    """
    indexes: list[Any] = [bindparam(f"index_{n}") for n in range(count)]
    return (select(Child).where(Child.school_id == bindparam("school_id"), col(Child.name_index).in_(indexes))
            .order_by(col(Child.id)))


async def insert_child(session: AsyncSession, child: Child) -> Child:
    """Insert a child under a fresh random reference (it reveals nothing and no counts)."""
    inserted: Child = await insert_with_fresh_ref(session, child, prefix="CH-", taken=child_by_ref)
    return inserted


async def child_by_ref(session: AsyncSession, ref: str) -> Child | None:
    """The child with this reference."""
    return (await session.execute(select(Child).where(Child.ref == ref.strip().upper()))).scalars().first()


async def cases_of_child(session: AsyncSession, child_id: int) -> list[Case]:
    """Every case about the child, in the order they were raised."""
    query = select(Case).where(Case.child_id == child_id).order_by(col(Case.created_at), col(Case.id))
    return list((await session.execute(query)).scalars())


async def raised_from(session: AsyncSession, case_id: int) -> list[Case]:
    """The later cases raised from this one (its re-escalations and linked concerns)."""
    query = select(Case).where(Case.linked_case_id == case_id).order_by(col(Case.created_at), col(Case.id))
    return list((await session.execute(query)).scalars())
