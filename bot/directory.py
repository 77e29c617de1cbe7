"""People and roles from a school's directory groups (Microsoft Entra, through `consentbot staff
sync-teams`): who may use the bot, and who decides.

The DSL group holds the deciders, the optional staff group everyone else. For each person:

- In the DSL group: an active `dsl`; someone who is a `deputy` stays a deputy (the group cannot
  tell the two apart, `staff add --role deputy` can).
- In the staff group only: an active `staff` member (a DSL or deputy who has left the DSL group
  becomes `staff`).
- A platform user of the school in neither group: with a staff group configured, deactivated
  (they lose access; history still names them); without one, a DSL or deputy becomes `staff`
  and everyone else is left as they are.
- Admins are never touched. People without a platform id (added by hand, e.g. on Slack only)
  are never touched unless a group member's email matches them: then the id is linked.

A person is matched by platform id, else by email. Nobody is moved between schools: a match at
another school is reported and skipped. An empty group is refused rather than read as "everyone
left" (nor are members listed without an email address): a wrong group id or a missing
permission must not strip a school of its DSLs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession

from bot.cases import Services
from bot.errors import BotError
from bot.schools import InvalidSetting, school_or_refuse
from storage import repo
from storage.audit import append_access, append_staff_change
from storage.models import School, Staff

DECIDER_ROLES = ("dsl", "deputy")
ID_COLUMNS = {"teams": "teams_user_id", "slack": "slack_user_id"}


class UnusableGroup(BotError):
    """A directory group came back empty, or its members without email addresses: refused, since
    it would remove every member (a wrong group id, or an app that may not read users).
    """


@dataclass(frozen=True)
class DirectoryPerson:
    """A user as the directory lists them. `id`: the platform id (for Teams, the Entra object id);
    `email`: mail, else the user principal name, lower case.
    """

    id: str
    name: str
    email: str
    upn: str = ""


@dataclass(frozen=True)
class Step:
    """One change the sync makes (or would make). `action` is the access log's action name."""

    email: str
    action: str  # staff_added | staff_linked | staff_reactivated | staff_role_changed | staff_removed | skipped
    text: str
    staff: Staff | None = None
    person: DirectoryPerson | None = None
    role: str | None = None  # the new role (added, role changed)


@dataclass(frozen=True)
class SyncReport:
    """What a sync changed (or, on a dry run, would change), as (email, change) pairs."""

    school: str
    dry_run: bool
    changes: list[tuple[str, str]] = field(default_factory=list)
    unchanged: int = 0


async def check_school(svc: Services, *, school: str) -> None:
    """NotFound naming the known schools unless `school` exists (checked before reading a directory)."""
    async with svc.db.read() as s:
        await school_or_refuse(s, school)


async def sync(svc: Services, *, school: str, dsls: Sequence[DirectoryPerson],
               staff: Sequence[DirectoryPerson] | None, platform: str = "teams", dry_run: bool = False) -> SyncReport:
    """Bring the school's people and roles into line with its groups, in one transaction (see the
    module docstring for the rules). `staff` None: no staff group is configured.

    Raises NotFound for an unknown school (none is created), UnusableGroup for an empty group or
    one whose members come without email addresses, InvalidSetting for an unknown platform.
    A dry run reads only.
    """
    column = ID_COLUMNS.get(platform)
    if column is None:
        raise InvalidSetting(f"unknown platform {platform!r}: use {' or '.join(ID_COLUMNS)}")
    _check_usable(dsls, "DSL")
    if staff is not None:
        _check_usable(staff, "staff")
    opened = svc.db.read() if dry_run else svc.db.transaction()
    async with opened as s:
        home = await school_or_refuse(s, school)
        rows = await repo.list_staff(s, include_inactive=True)
        planner = _Planner(home.id or 0, rows, column)
        steps = planner.plan(dsls, staff)
        if not dry_run:
            await _apply(s, svc, home, steps, column, source=f"{platform}_sync")
    return SyncReport(school=school, dry_run=dry_run, changes=[(step.email, step.text) for step in steps],
                      unchanged=planner.unchanged)


def _check_usable(people: Sequence[DirectoryPerson], label: str) -> None:
    if not people:
        raise UnusableGroup(f"the {label} group has no members (or none whose account is enabled): nothing was "
                            "changed. Check the group id, and that the app may read the group's members.")
    # Without permission to read users, a directory lists each member with an id only (Graph:
    # "limited information returned for inaccessible member objects").
    blank = sum(1 for p in people if not p.email)
    if blank:
        raise UnusableGroup(f"{blank} of the {len(people)} members of the {label} group came without an email address "
                            "or user name, so the app may list members but not read users (for Microsoft Entra: "
                            "grant the Graph application permission User.ReadBasic.All, with admin consent). "
                            "Nothing was changed.")


def _wanted(dsls: Sequence[DirectoryPerson],
            staff: Sequence[DirectoryPerson] | None) -> dict[str, tuple[DirectoryPerson, str]]:
    """Platform id -> (person, group role): the DSL group wins over the staff group."""
    wanted = {p.id: (p, "staff") for p in staff or ()}
    wanted.update({p.id: (p, "dsl") for p in dsls})
    return wanted


def _new_role(current: str, group_role: str) -> str:
    if current == "admin" or (group_role == "dsl" and current == "deputy"):
        return current
    return group_role


class _Planner:
    """Works out the steps from the staff rows (read, never changed here)."""

    def __init__(self, school_id: int, rows: Sequence[Staff], column: str) -> None:
        self.school_id, self.column, self.rows = school_id, column, rows
        self.by_id = {getattr(r, column): r for r in rows if getattr(r, column)}
        self.by_email = {r.email: r for r in rows}
        self.matched: set[int] = set()
        self.adding: set[str] = set()
        self.unchanged = 0

    def plan(self, dsls: Sequence[DirectoryPerson], staff: Sequence[DirectoryPerson] | None) -> list[Step]:
        steps: list[Step] = []
        for person, group_role in _wanted(dsls, staff).values():
            steps.extend(self._member(person, group_role))
        steps.extend(self._leavers(staff_group=staff is not None))
        return steps

    def _member(self, person: DirectoryPerson, group_role: str) -> list[Step]:
        problem = _malformed(person)
        if problem:
            return [Step(person.email or person.id, "skipped", f"skipped: {problem}")]
        row = self.by_id.get(person.id) or self.by_email.get(person.email)
        if row is None and person.email in self.adding:
            return [Step(person.email, "skipped", "skipped: two directory users with one email")]
        if row is None:
            self.adding.add(person.email)
            return [Step(person.email, "staff_added", f"added as {group_role}", person=person, role=group_role)]
        refusal = self._refusal(row, person)
        if refusal:
            return [Step(person.email, "skipped", f"skipped: {refusal}")]
        self.matched.add(row.id or 0)
        steps = self._changes(row, person, group_role)
        self.unchanged += not steps
        return steps

    def _refusal(self, row: Staff, person: DirectoryPerson) -> str | None:
        if row.school_id != self.school_id:
            return "registered at another school (people are not moved between schools)"
        if (row.id or 0) in self.matched:
            return "matches someone already matched (two directory users with one email?)"
        linked = getattr(row, self.column)
        if linked and linked != person.id:
            return "the email is registered with a different platform id"
        return None

    def _changes(self, row: Staff, person: DirectoryPerson, group_role: str) -> list[Step]:
        if row.role == "admin":
            return []  # admins are managed by hand only
        steps = []
        if not getattr(row, self.column):
            steps.append(Step(row.email, "staff_linked", "linked to their directory account", staff=row, person=person))
        if not row.active:
            steps.append(Step(row.email, "staff_reactivated", "reactivated", staff=row))
        role = _new_role(row.role, group_role)
        if role != row.role:
            steps.append(Step(row.email, "staff_role_changed", f"role {row.role} -> {role}", staff=row, role=role))
        return steps

    def _leavers(self, *, staff_group: bool) -> list[Step]:
        steps = []
        for row in self.rows:
            gone = (row.school_id == self.school_id and row.active and getattr(row, self.column)
                    and row.role != "admin" and (row.id or 0) not in self.matched)
            if not gone:
                continue
            if staff_group:
                steps.append(Step(row.email, "staff_removed", "removed (in neither group)", staff=row))
            elif row.role in DECIDER_ROLES:
                steps.append(Step(row.email, "staff_role_changed", f"role {row.role} -> staff (not in the DSL group)",
                                  staff=row, role="staff"))
        return steps


def _malformed(person: DirectoryPerson) -> str | None:
    if not person.email or "@" not in person.email or len(person.email) > 254:
        return "no usable email address"
    if not person.id or len(person.id) > 64:
        return "no usable platform id"
    return None


async def _apply(s: AsyncSession, svc: Services, home: School, steps: Sequence[Step], column: str, *,
                 source: str) -> None:
    for step in steps:
        if step.action == "skipped":
            continue
        staff = step.staff
        if step.action == "staff_added":
            staff = await _add(s, home, step, column)
        detail: dict[str, object] = {"staff_id": staff.id if staff else None, "source": source}
        if staff is not None and step.action != "staff_added":
            detail.update(_change(staff, step, column))
        elif step.role:
            detail["role"] = step.role
        if staff is not None:  # with the row's fingerprint, which `audit verify` checks the row against
            await append_staff_change(s, staff=staff, action=step.action, at=svc.clock(), detail=detail)
        else:
            await append_access(s, action=step.action, at=svc.clock(), school_id=home.id, detail=detail)


async def _add(s: AsyncSession, home: School, step: Step, column: str) -> Staff:
    assert step.person is not None and step.role is not None  # noqa: S101 - planned with both
    staff = Staff(school_id=home.id or 0, email=step.person.email, display_name=step.person.name[:200] or step.email,
                  role=step.role)
    setattr(staff, column, step.person.id)
    s.add(staff)
    await s.flush()
    return staff


def _change(staff: Staff, step: Step, column: str) -> dict[str, object]:
    """Set the attribute a step changes; returns what the access log records beyond the id."""
    if step.action == "staff_linked" and step.person is not None:
        setattr(staff, column, step.person.id)
    elif step.action == "staff_reactivated":
        staff.active = True
    elif step.action == "staff_removed":
        staff.active = False
    elif step.action == "staff_role_changed" and step.role:
        before, staff.role = staff.role, step.role
        return {"from": before, "to": step.role}
    return {}
