"""Managing people and roles (from the CLI; chat platforms map their user ids onto these)."""

from __future__ import annotations

import difflib
import getpass
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from bot.cases import Person, Services
from bot.errors import Conflict, NotFound
from bot.schools import InvalidSetting, school_or_refuse
from storage import repo
from storage.audit import append_staff_change
from storage.models import Membership, School, Staff

ROLES = ("staff", "dsl", "deputy", "admin")
# Slack member ids: U (or W on Enterprise Grid) then at least 8 capitals and digits, e.g. U012ABCDEF
# (https://docs.slack.dev/reference/objects/user-object: 9 or 11 characters today, and may grow).
SLACK_USER_ID = re.compile(r"[UW][A-Z0-9]{8,20}")
# Teams: the person's Entra object id (a GUID), or the Bot Framework id of a chat user ("29:...").
ENTRA_OBJECT_ID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
BOT_FRAMEWORK_ID = re.compile(r"29:[A-Za-z0-9_\-]+")
TEAMS_ID_MAX = 64  # the staff.teams_user_id column
# A deliberately plain check (a mailbox is proven by use, not by a pattern): one @, no spaces or
# separators a list or a CSV would split on, and a dotted domain.
LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
EMAIL = re.compile(rf"[^@\s<>()\[\],;:\"']+@{LABEL}(?:\.{LABEL})+")
EMAIL_MAX = 254  # the staff.email column (and RFC 5321's path limit)
NAME_MAX = 200


def check_email(value: str) -> str:
    """An email address, lower case, or InvalidSetting saying what one looks like."""
    email = value.strip().lower()
    if len(email) > EMAIL_MAX or not EMAIL.fullmatch(email):
        raise InvalidSetting(f"{value!r} is not an email address: use the person's work address, such as "
                             "name@school.sch.uk")
    return email


def check_role(value: str) -> str:
    """One of ROLES, or InvalidSetting naming them."""
    if value not in ROLES:
        raise InvalidSetting(f"{value!r} is not a role: use one of {', '.join(ROLES)}")
    return value


def check_name(value: str) -> str:
    """A display name: not blank, at most NAME_MAX characters."""
    name = value.strip()
    if not name or len(name) > NAME_MAX:
        raise InvalidSetting(f"a name must be 1 to {NAME_MAX} characters")
    return name


def check_slack_id(value: str) -> str:
    """A Slack member id, or InvalidSetting saying what one looks like and where to find it."""
    if not SLACK_USER_ID.fullmatch(value):
        raise InvalidSetting(f"{value!r} is not a Slack member id. A member id looks like U012ABCDEF (U or W, then "
                             "capital letters and digits): in Slack, open the person's profile, click the three dots "
                             "(More), then 'Copy member ID'.")
    return value


def check_teams_id(value: str) -> str:
    """A Teams user id (Entra object id or Bot Framework id), or InvalidSetting saying what one looks like."""
    well_formed = ENTRA_OBJECT_ID.fullmatch(value) or BOT_FRAMEWORK_ID.fullmatch(value)
    if not well_formed or len(value) > TEAMS_ID_MAX:
        raise InvalidSetting(f"{value!r} is not a Teams user id. Use the person's Microsoft Entra object id, "
                             "which looks like 00aa00aa-bb11-cc22-dd33-44ee44ee44ee (Entra admin centre > Users > "
                             "the person > Object ID), or their Bot Framework id, which starts with 29: (at most "
                             f"{TEAMS_ID_MAX} characters).")
    return value


@dataclass(frozen=True)
class Operator:
    """Who ran an operator command (`consentbot export`, `staff add`...), as the access log records
    it: a registered person (`--as EMAIL`), else the account on the server that ran it.
    """

    staff_id: int | None
    detail: dict[str, Any] = field(default_factory=dict)  # {"operator": "staff:4"} or {"operator": "os:alice"}


def os_user() -> str:
    """The server account running this command."""
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name and no passwd entry (some containers)
        return f"uid{os.getuid()}"


def os_operator(**detail: Any) -> Operator:
    """The OS user as the operator (no `--as`, or it matched nobody)."""
    return Operator(staff_id=None, detail={"operator": f"os:{os_user()}", **detail})


async def operator(svc: Services, *, email: str | None) -> Operator:
    """The operator: the active member of staff with `email`, else the OS user (and whether an
    email was given that matched nobody, without the email itself).
    """
    if email:
        async with svc.db.read() as s:
            staff = await repo.staff_by(s, email=email.strip().lower())
        if staff is not None:
            return Operator(staff_id=staff.id, detail={"operator": f"staff:{staff.id}"})
    return os_operator(as_unmatched=True) if email else os_operator()


async def add(svc: Services, *, email: str, role: str, name: str, school: str,
              slack_user_id: str | None = None, teams_user_id: str | None = None,
              create_school: bool = True, by: Operator | None = None) -> Person:
    """Register a member of staff. An email, Slack id or Teams id belongs to one person.

    Raises InvalidSetting for a malformed Slack or Teams id; NotFound for an unknown school unless
    `create_school`; Conflict when the email or an id is registered already. `by`: the operator
    (default the OS user), logged with the new row's fingerprint.
    """
    email, role, name = check_email(email), check_role(role), check_name(name)
    slack_user_id = check_slack_id(slack_user_id) if slack_user_id is not None else None
    teams_user_id = check_teams_id(teams_user_id) if teams_user_id is not None else None
    try:
        async with svc.db.transaction() as s:
            home = await _home(s, school, create_school)
            removed = await repo.staff_by(s, include_inactive=True, email=email, active=False)
            if removed is not None:
                raise Conflict(f"{email} was removed: `consentbot staff reactivate {email}` brings them back, and "
                               "`consentbot staff edit` changes their details")
            staff = Staff(school_id=home.id or 0, email=email, display_name=name, role=role,
                          slack_user_id=slack_user_id, teams_user_id=teams_user_id)
            s.add(staff)
            await log_change(svc, s, staff, "staff_added", by, role=role)
            return Person.of(staff)
    except IntegrityError:
        raise Conflict(f"{email} (or that Slack/Teams id) is already registered") from None


async def _home(s: AsyncSession, slug: str, create: bool) -> School:
    # A mistyped slug would otherwise quietly make a second school with no DSL, whose concerns
    # alert nobody: new schools are made only on request.
    if create:
        return await repo.ensure_school(s, slug)
    return await school_or_refuse(s, slug, hint=await close_school(s, slug) + " Add --create-school to create it.")


async def close_school(s: AsyncSession, slug: str) -> str:
    """" Did you mean 'oak'?" for a slug that is a likely typo of a known school's, else ""."""
    if await repo.get_school(s, slug) is not None:
        return ""
    close = difflib.get_close_matches(slug, [k.slug for k in await repo.list_schools(s)], n=1, cutoff=0.6)
    return f" Did you mean {close[0]!r}?" if close else ""


async def listing(svc: Services, *, school: str | None) -> list[tuple[str, ...]]:
    """Rows of email, name, role, school, platform ids: one per school a person belongs to (their
    home school, then their memberships of others), the role being theirs at that school.
    """
    async with svc.db.read() as s:
        only = await repo.get_school(s, school) if school else None
        if school and only is None:
            raise NotFound(f"No school {school!r}.{await close_school(s, school)}")
        slugs = {k.id: k.slug for k in await repo.list_schools(s)}
        elsewhere = await repo.all_memberships(s)
        rows: list[tuple[str, ...]] = []
        for r in await repo.list_staff(s):
            for sid, role in [(r.school_id, r.role), *elsewhere.get(r.id or 0, [])]:
                if only is None or sid == only.id:
                    rows.append((r.email, r.display_name, role, slugs.get(sid, "?"), r.slack_user_id or "-",
                                 r.teams_user_id or "-"))
        return rows


async def remove(svc: Services, *, email: str, by: Operator | None = None) -> None:
    """Deactivate a member of staff; they stay named in the history."""
    async with svc.db.transaction() as s:
        staff = await repo.staff_by(s, email=email.strip().lower())
        if staff is None:
            raise NotFound(f"No active member of staff {email}.")
        await repo.deactivate_staff(s, staff.id or 0)
        await s.refresh(staff)  # the fingerprint covers the row as stored: inactive now
        await log_change(svc, s, staff, "staff_removed", by)


@dataclass(frozen=True)
class Edit:
    """What `consentbot staff edit` changes. None: leave as is; "" clears a platform id."""

    name: str | None = None
    role: str | None = None
    slack_user_id: str | None = None
    teams_user_id: str | None = None
    email: str | None = None


def checked(edit: Edit) -> dict[str, Any]:
    """The staff columns an edit sets, each value checked (InvalidSetting for a malformed one)."""
    values: dict[str, Any] = {}
    if edit.name is not None:
        values["display_name"] = check_name(edit.name)
    if edit.role is not None:
        values["role"] = check_role(edit.role)
    if edit.email is not None:
        values["email"] = check_email(edit.email)
    if edit.slack_user_id is not None:
        values["slack_user_id"] = check_slack_id(edit.slack_user_id) if edit.slack_user_id else None
    if edit.teams_user_id is not None:
        values["teams_user_id"] = check_teams_id(edit.teams_user_id) if edit.teams_user_id else None
    return values


EDITABLE = tuple(f.name for f in fields(Edit))


async def edit(svc: Services, *, email: str, changes: Edit, by: Operator | None = None) -> list[str]:
    """Change a member of staff's details (a removed person's too); returns the names of the columns
    whose value changed (nothing is logged when none did). The change is logged with the operator,
    the columns' names (never their values) and the row's new fingerprint.

    Raises InvalidSetting for a malformed value, NotFound for an unknown email, Conflict when the
    new email or id is someone else's.
    """
    values = checked(changes)
    try:
        async with svc.db.transaction() as s:
            staff = await _anyone(s, email)
            changed = apply(staff, values)
            if changed:
                await log_change(svc, s, staff, "staff_edited", by, fields=changed)
            return changed
    except IntegrityError:
        raise Conflict("that email, Slack id or Teams id is already registered to someone else") from None


def apply(staff: Staff, values: dict[str, Any]) -> list[str]:
    """Set `values` on the row; the sorted names of those that differ from what it held."""
    changed = sorted(name for name, value in values.items() if getattr(staff, name) != value)
    for name in changed:
        setattr(staff, name, values[name])
    return changed


async def reactivate(svc: Services, *, email: str, by: Operator | None = None) -> Person:
    """Give a removed member of staff access again, as they were (logged with the new fingerprint).
    NotFound for an unknown email, Conflict for someone who is active.
    """
    async with svc.db.transaction() as s:
        staff = await _anyone(s, email)
        if staff.active:
            raise Conflict(f"{staff.email} is active already")
        staff.active = True
        await log_change(svc, s, staff, "staff_reactivated", by)
        return Person.of(staff)


async def join(svc: Services, *, email: str, school: str, role: str, by: Operator | None = None) -> str:
    """Give an active member of staff a role at another school than their home one (a trust's DSL
    covering two schools), or change their role there. Returns "added", "changed" or "unchanged".
    Logged with the operator and the person's new fingerprint, which covers their memberships.

    Raises InvalidSetting for a bad role, NotFound for an unknown person or school (with a
    likely match), Conflict for the person's home school (`staff edit --role` changes that role).
    """
    role = check_role(role)
    async with svc.db.transaction() as s:
        staff = await repo.staff_by(s, email=email.strip().lower())
        if staff is None:
            raise NotFound(f"No active member of staff {email.strip()}.")
        there = await school_or_refuse(s, school, hint=await close_school(s, school))
        if there.id == staff.school_id:
            raise Conflict(f"{school} is {staff.email}'s home school: `consentbot staff edit {staff.email} --role "
                           f"{role}` changes their role there")
        held = await repo.membership(s, staff_id=staff.id or 0, school_id=there.id or 0)
        if held is not None and held.role == role:
            return "unchanged"
        if held is None:
            s.add(Membership(staff_id=staff.id or 0, school_id=there.id or 0, role=role, created_at=svc.clock()))
        else:
            held.role = role
        await log_change(svc, s, staff, "staff_joined", by, school=there.slug, role=role)
        return "added" if held is None else "changed"


async def leave(svc: Services, *, email: str, school: str, by: Operator | None = None) -> None:
    """End a member of staff's membership of a school other than their home one (logged, with the
    new fingerprint). Cases they raised or decided there keep their name. NotFound when they had none.
    """
    async with svc.db.transaction() as s:
        staff = await _anyone(s, email)
        there = await school_or_refuse(s, school, hint=await close_school(s, school))
        held = await repo.membership(s, staff_id=staff.id or 0, school_id=there.id or 0)
        if held is None:
            raise NotFound(f"{staff.email} is not a member of {there.slug} (apart from a home school, which "
                           "`consentbot staff remove` ends).")
        await s.delete(held)
        await log_change(svc, s, staff, "staff_left", by, school=there.slug)


async def schools_of(svc: Services, *, email: str) -> list[tuple[str, str]]:
    """(school slug, role) of every school a person belongs to, the home one first."""
    async with svc.db.read() as s:
        staff = await _anyone(s, email)
        home = await s.get(School, staff.school_id)
        rows = [(home.slug if home else "?", staff.role)]
        for sid, role in await repo.memberships_of(s, staff.id or 0):
            other = await s.get(School, sid)
            rows.append((other.slug if other else "?", role))
        return rows


async def _anyone(s: AsyncSession, email: str) -> Staff:
    """The member of staff with this email, removed or not; NotFound otherwise."""
    staff = await repo.staff_by(s, include_inactive=True, email=email.strip().lower())
    if staff is None:
        raise NotFound(f"No member of staff {email.strip()}.")
    return staff


async def link_on_first_contact(svc: Services, *, platform: str, user_id: str, email: str,
                                school_id: int | None = None) -> Person | None:
    """Link `user_id` on `platform` to the active member of staff registered with `email` who has no id
    there yet (logged with the fingerprint, the person as their own operator); None when nobody fits.
    The email must come from the platform itself (a verified profile), never from what a user typed.
    `school_id`: only someone of this school (the school a Slack workspace serves, with several).
    """
    column = {"slack": "slack_user_id", "teams": "teams_user_id"}[platform]
    async with svc.db.transaction() as s:
        if await repo.staff_by(s, include_inactive=True, **{column: user_id}) is not None:
            return None  # the id is someone's already (perhaps a removed person's): never moved silently
        staff = await repo.staff_by(s, email=email.strip().lower())
        if staff is None or getattr(staff, column) is not None or school_id not in (None, staff.school_id):
            return None
        setattr(staff, column, user_id)
        who = Operator(staff_id=staff.id, detail={"operator": "first_contact"})
        await log_change(svc, s, staff, "staff_linked", who, platform=platform)
        return Person.of(staff)


async def log_change(svc: Services, s: AsyncSession, staff: Staff, action: str, by: Operator | None,
                      **detail: Any) -> None:
    """Log a change to a staff row: who made it, and the row's fingerprint (checked by `audit verify`)."""
    by = by or os_operator()
    await append_staff_change(s, staff=staff, action=action, at=svc.clock(), actor_id=by.staff_id,
                              detail={**detail, **by.detail})


async def colleagues(svc: Services, *, actor: Person,
                     roles: Sequence[str] = ("staff", "dsl", "deputy")) -> list[tuple[str, str, str]]:
    """(email, name, role label) of the active staff of the actor's school with one of `roles`, to
    pick an assignee, by name.
    """
    async with svc.db.read() as s:
        rows = await repo.list_staff(s, school_id=actor.school_id, roles=roles)
    rows.sort(key=lambda r: (r.display_name.casefold(), r.email))
    return [(r.email, r.display_name, svc.policy.role_label(r.role)) for r in rows]
