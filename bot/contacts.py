"""Where chat platforms reach people, and recognising a registered person on first contact.

A platform's address for a person (a Teams conversation reference) is opaque here: the platform
writes it and reads it back. People are registered by email (`consentbot staff add`, or the
directory sync); the first time they write to the bot their platform id is linked to that
registration, so nobody copies ids by hand.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from bot.cases import NOT_REGISTERED, Person, Services
from bot.errors import NotFound
from storage import repo
from storage.audit import append_access, append_staff_change

PLATFORM_IDS = {"slack": "slack_user_id", "teams": "teams_user_id"}


async def remember_address(svc: Services, *, platform: str, user_id: str, address: str) -> None:
    """Keep where `platform` reaches this person, for messages the bot starts later."""
    async with svc.db.transaction() as s:
        await repo.save_address(s, platform, user_id, address, svc.clock())


async def address_of(svc: Services, *, platform: str, user_id: str) -> str | None:
    """Where `platform` reaches this person, if they have ever been reached there."""
    async with svc.db.read() as s:
        return await repo.address_of(s, platform, user_id)


async def known(svc: Services, *, platform: str, user_id: str) -> Person | None:
    """The active member of staff with this platform id, if linked already."""
    async def work(s: AsyncSession) -> Person | None:
        staff = await repo.staff_by(s, **_by(platform, user_id))
        return await Person.load(s, staff) if staff else None

    return await svc.db.quick_read(work)


async def linkable(svc: Services, *, platform: str) -> tuple[int, int]:
    """Who could be linked on first contact (active staff with no id on `platform`), as a value that
    changes when one is added, removed, reactivated or linked: (how many, newest id).
    """
    async def work(s: AsyncSession) -> tuple[int, int]:
        return await repo.linkable_staff(s, column=PLATFORM_IDS[platform])

    return await svc.db.quick_read(work)


def _by(platform: str, user_id: str) -> dict[str, Any]:
    return {PLATFORM_IDS[platform]: user_id}


async def recognise(svc: Services, *, platform: str, user_id: str, emails: Sequence[str]) -> Person:
    """The person with this platform id; else the registered person with one of `emails` (their
    work email or sign-in name) and no id on this platform yet, who is linked now (audited).
    NotFound for anyone else; an attempt is logged without the addresses tried.
    """
    column = PLATFORM_IDS[platform]
    async with svc.db.transaction() as s:
        staff = await repo.staff_by(s, **_by(platform, user_id))
        for email in dict.fromkeys(e.strip().lower() for e in emails if e and e.strip()):
            if staff is not None:
                break
            match = await repo.staff_by(s, email=email)
            if match is not None and getattr(match, column) is None:
                await repo.link_platform_id(s, match.id or 0, platform, user_id)
                await append_staff_change(s, staff=match, action="staff_linked", at=svc.clock(),
                                          detail={"platform": platform})
                staff = match
        if staff is None:
            await append_access(s, action="refused_unregistered", at=svc.clock(), school_id=None,
                                detail={"platform": platform})
        person = await Person.load(s, staff) if staff else None
    if person is None:
        raise NotFound(NOT_REGISTERED)
    return person
