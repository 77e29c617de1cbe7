"""Schools and their settings: fallback phone numbers, escalation contact, timezone, digest time,
and the chat platform for people registered on both.

Every value is checked before anything is written; a change is recorded in the access log by
the names of the settings changed, never their values.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import time
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy.ext.asyncio import AsyncSession

from bot.cases import Services
from bot.errors import BotError, NotFound
from bot.schooltime import QUIET_END, QUIET_START
from storage import repo
from storage.audit import append_access
from storage.models import School, Staff

PHONE = re.compile(r"[0-9 +\-()]{1,40}")
SETTING_NAMES = {"escalation_staff_id": "escalation", "chat_platform": "platform"}
PLATFORMS = ("slack", "teams")  # column name -> setting name, where they differ
HHMM = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])")


class InvalidSetting(BotError, ValueError):
    """A value that cannot be stored: the message says what a valid one looks like."""


@dataclass(frozen=True)
class Changes:
    """What `consentbot school set` asks for. None: leave as is; "" clears an optional setting."""

    name: str | None = None
    dsl_phone: str | None = None
    front_door_phone: str | None = None
    escalation: str | None = None  # an email
    timezone: str | None = None
    digest_time: str | None = None
    platform: str | None = None  # slack | teams: where people registered on both are messaged


@dataclass(frozen=True)
class SchoolSettings:
    """One school's settings as an operator reads them (None: not set)."""

    slug: str
    name: str
    timezone: str
    dsl_phone: str | None
    front_door_phone: str | None
    escalation: str | None  # the contact's email
    digest_time: str | None
    platform: str | None = None


def check_phone(text: str, *, label: str) -> str:
    """A phone number: digits, spaces and + - ( ), at most 40 characters, at least one digit."""
    value = text.strip()
    if not PHONE.fullmatch(value) or not any(c.isdigit() for c in value):
        raise InvalidSetting(f"{label} must be a phone number: digits, spaces and + - ( ) only, at most 40 "
                             "characters (e.g. 01632 960 123 or +44 1632 960123)")
    return value


def check_timezone(text: str) -> str:
    """An IANA timezone name, such as Europe/London."""
    try:
        ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidSetting(f"unknown timezone {text!r}: use an IANA name such as Europe/London") from None
    return text


def check_digest_time(text: str) -> str:
    """HH:MM (24-hour), outside the 01:00-02:59 band in which UK clocks change."""
    match = HHMM.fullmatch(text.strip())
    if match is None:
        raise InvalidSetting(f"digest time must be HH:MM on the 24-hour clock, such as 07:30, not {text!r}")
    if QUIET_START <= time(int(match[1]), int(match[2])) < QUIET_END:
        # A daily job at a wall time that is skipped or doubled when the clocks change would be
        # missed or sent twice on those days (see bot/schooltime.py).
        raise InvalidSetting(f"digest time {text.strip()} falls between 01:00 and 02:59, when the clocks change: "
                             "pick another time")
    return text.strip()


async def school_or_refuse(s: AsyncSession, slug: str, *, hint: str = "") -> School:
    """The school with this slug, or NotFound naming the schools there are."""
    school = await repo.get_school(s, slug)
    if school is None:
        known = ", ".join(k.slug for k in await repo.list_schools(s)) or "none yet"
        raise NotFound(f"no school {slug!r}. Known schools: {known}.{hint}")
    return school


async def update(svc: Services, *, slug: str, changes: Changes) -> list[str]:
    """Apply `changes` to the school; returns the names of the settings whose value changed (sorted,
    as `Changes` names them).

    Raises InvalidSetting for a malformed value or an escalation contact who is not an active
    member of staff of this school, NotFound for an unknown school. Nothing is written then.
    """
    values = _checked(changes)
    async with svc.db.transaction() as s:
        school = await school_or_refuse(s, slug)
        if changes.escalation is not None:
            values["escalation_staff_id"] = await _escalation_id(s, school, changes.escalation)
        changed = {k: v for k, v in values.items() if getattr(school, k) != v}
        names = sorted(SETTING_NAMES.get(k, k) for k in changed)
        if changed:
            await repo.update_school(s, school.id or 0, changed)
            await append_access(s, action="school_updated", at=svc.clock(), school_id=school.id,
                                detail={"changed": names})
    return names


def _checked(changes: Changes) -> dict[str, str | int | None]:
    """Column values from the requested changes (except the escalation contact, which needs the database)."""
    values: dict[str, str | int | None] = {}
    if changes.name is not None:
        if not changes.name.strip() or len(changes.name.strip()) > 200:
            raise InvalidSetting("the school's name must be 1 to 200 characters")
        values["name"] = changes.name.strip()
    if changes.timezone is not None:
        values["timezone"] = check_timezone(changes.timezone)
    for column, label in (("dsl_phone", "the DSL phone"), ("front_door_phone", "the front-door phone")):
        given = getattr(changes, column)
        if given is not None:
            values[column] = check_phone(given, label=label) if given.strip() else None
    if changes.digest_time is not None:
        values["digest_time"] = check_digest_time(changes.digest_time) if changes.digest_time.strip() else None
    if changes.platform is not None:
        values["chat_platform"] = check_platform(changes.platform) if changes.platform.strip() else None
    return values


def check_platform(text: str) -> str:
    """A chat platform name: "slack" or "teams"."""
    value = text.strip().lower()
    if value not in PLATFORMS:
        raise InvalidSetting(f"platform must be slack or teams, not {text!r}")
    return value


async def _escalation_id(s: AsyncSession, school: School, email: str) -> int | None:
    if not email.strip():
        return None
    staff = await repo.staff_by(s, email=email.strip().lower())
    if staff is None or staff.school_id != school.id:
        raise InvalidSetting(f"the escalation contact must be an active member of staff of {school.slug}: "
                             f"add them first with `consentbot staff add EMAIL --school {school.slug} ...`")
    return staff.id


async def listing(svc: Services) -> list[SchoolSettings]:
    """Every school's settings, by slug."""
    async with svc.db.transaction() as s:
        rows = []
        for school in await repo.list_schools(s):
            contact = await repo.get_staff(s, school.escalation_staff_id) if school.escalation_staff_id else None
            rows.append(SchoolSettings(slug=school.slug, name=school.name, timezone=school.timezone,
                                       dsl_phone=school.dsl_phone, front_door_phone=school.front_door_phone,
                                       escalation=_named(contact), digest_time=school.digest_time,
                                       platform=school.chat_platform))
    return rows


def _named(contact: Staff | None) -> str | None:
    if contact is None:
        return None
    return contact.email if contact.active else f"{contact.email} (no longer active)"
