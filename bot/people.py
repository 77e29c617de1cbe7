"""Managing people and roles (from the CLI; chat platforms map their user ids onto these)."""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError

from bot.cases import Person, Services
from bot.errors import Conflict, NotFound
from storage import repo
from storage.audit import append_access
from storage.models import School, Staff


async def add(svc: Services, *, email: str, role: str, name: str, school: str,
              slack_user_id: str | None = None, teams_user_id: str | None = None) -> Person:
    """Register a member of staff. An email, Slack id or Teams id belongs to one person."""
    try:
        async with svc.db.transaction() as s:
            home = await repo.ensure_school(s, school)
            staff = Staff(school_id=home.id or 0, email=email.strip().lower(), display_name=name, role=role,
                          slack_user_id=slack_user_id, teams_user_id=teams_user_id)
            s.add(staff)
            await s.flush()
            await append_access(s, action="staff_added", at=svc.clock(), school_id=home.id,
                                detail={"staff_id": staff.id, "role": role})
            return Person.of(staff)
    except IntegrityError:
        raise Conflict(f"{email} (or that Slack/Teams id) is already registered") from None


async def listing(svc: Services, *, school: str | None) -> list[tuple[str, ...]]:
    """Rows of email, name, role, school, platform ids."""
    async with svc.db.transaction() as s:
        home = await repo.get_school(s, school) if school else None
        if school and home is None:
            raise NotFound(f"No school {school!r}.")
        rows = await repo.list_staff(s, school_id=home.id if home else None)
        slugs = {r.school_id: getattr(await s.get(School, r.school_id), "slug", "") for r in rows}
        return [(r.email, r.display_name, r.role, slugs[r.school_id], r.slack_user_id or "-", r.teams_user_id or "-")
                for r in rows]


async def remove(svc: Services, *, email: str) -> None:
    """Deactivate a member of staff; they stay named in the history."""
    async with svc.db.transaction() as s:
        staff = await repo.staff_by(s, email=email.strip().lower())
        if staff is None:
            raise NotFound(f"No active member of staff {email}.")
        await repo.deactivate_staff(s, staff.id or 0)
        await append_access(s, action="staff_removed", at=svc.clock(), school_id=staff.school_id,
                            detail={"staff_id": staff.id})


async def colleagues(svc: Services, *, actor: Person) -> list[tuple[str, str, str]]:
    """(email, name, role label) of the active staff of the actor's school, to pick an assignee."""
    async with svc.db.transaction() as s:
        rows = await repo.list_staff(s, school_id=actor.school_id)
    return [(r.email, r.display_name, svc.policy.role_label(r.role)) for r in rows if r.role != "admin"]
