"""`consentbot doctor`: what would stop an alert reaching a school's DSL, school by school.

A school CANNOT BE ALERTED when none of its active DSLs or deputies is reachable on a platform
this deployment sends on (`Services.delivering`): an urgent concern raised there reaches nobody.
Everything else found is a warning. /metrics reports the same counts (bot/app.py).
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from bot.cases import Services
from bot.notify import DECIDER_ROLES, delivering_to, escalation_contacts, platform_of, reachable
from storage import outbox, repo, slack_installations
from storage.models import School, SlackInstallation, Staff

STUCK_AFTER = timedelta(minutes=10)  # a message on a delivering platform is normally sent within seconds
FEW_STAFF = 2  # a school this small with no DSL, named like another, is probably a mistyped slug
PLATFORMS = ("console", "slack", "teams")
ROLE_NAMES = {"dsl": "DSL", "deputy": "deputy"}
PHONE_NAMES = {"--dsl-phone": "DSL phone", "--front-door-phone": "front-door phone"}


@dataclass(frozen=True)
class Finding:
    """One problem at one school. `blocking`: the school cannot be alerted at all."""

    school: str
    text: str
    blocking: bool = False

    def line(self) -> str:
        """As doctor prints it."""
        return f"{self.school}: {'CANNOT BE ALERTED: ' if self.blocking else ''}{self.text}"


@dataclass
class Report:
    """Every school checked and what was found."""

    schools: int = 0
    findings: list[Finding] = field(default_factory=list)
    reach: list[str] = field(default_factory=list)  # per school: who can be alerted, on which platform

    @property
    def unalertable(self) -> int:
        """How many schools cannot be alerted."""
        return len({f.school for f in self.findings if f.blocking})

    @property
    def warnings(self) -> int:
        """How many findings are warnings."""
        return sum(not f.blocking for f in self.findings)

    def summary(self) -> str:
        """The closing line."""
        noun = "school" if self.schools == 1 else "schools"
        warnings = "warning" if self.warnings == 1 else "warnings"
        return f"{self.schools} {noun} checked: {self.unalertable} cannot be alerted, {self.warnings} {warnings}"


def cannot_be_alerted(staff: Sequence[Staff], delivering: frozenset[str]) -> bool:
    """True when a school with these active staff has some, and no DSL or deputy among them is reachable.

    A school with no active staff at all is not counted: nobody there can raise a concern (and a
    school row cannot be deleted, so a mistyped one emptied by `staff remove` must not fail forever).
    """
    deciders = [p for p in staff if p.role in DECIDER_ROLES]
    return bool(staff) and not any(reachable(p, delivering) for p in deciders)


async def count_unalertable(svc: Services) -> int:
    """How many schools cannot be alerted (for /metrics)."""
    async with svc.db.transaction() as s:
        schools = await repo.list_schools(s)
        staff = await repo.list_staff(s)
        reaching = {school.id: await delivering_to(s, school.id or 0, svc.delivering) for school in schools}
    return sum(cannot_be_alerted(_of(staff, school), reaching[school.id]) for school in schools)


async def oldest_unsent_ages(svc: Services, *, now: datetime) -> dict[str, float]:
    """Seconds since the oldest message not yet sent was queued, per platform (0 when none waits)."""
    async with svc.db.transaction() as s:
        oldest = await outbox.oldest_unsent(s)
    ages = {platform: 0.0 for platform in PLATFORMS}
    ages.update({platform: max(0.0, (now - at).total_seconds()) for platform, at in oldest.items()})
    return dict(sorted(ages.items()))


async def check(svc: Services) -> Report:
    """Check every school: who can be alerted, fallback numbers, escalation, likely typos, stuck messages,
    and, with Slack workspaces installed through OAuth, which workspace serves each school.
    """
    now = svc.clock()
    report = Report()
    async with svc.db.transaction() as s:
        schools = await repo.list_schools(s)
        staff = await repo.list_staff(s)
        backlog = await outbox.undelivered(s, delivering=sorted(svc.delivering), stuck_before=now - STUCK_AFTER)
        installed = await slack_installations.list_installations(s)  # none: one workspace (SLACK_BOT_TOKEN)
        sizes = {school.slug: _of(staff, school) for school in schools}
        for school in schools:
            report.schools += 1
            reaching = await delivering_to(s, school.id or 0, svc.delivering)  # an unlinked workspace reaches none
            unlinked = "slack" in svc.delivering and "slack" not in reaching
            report.reach.append(reach_line(school, sizes[school.slug], reaching))
            report.reach += _workspace_line(school, installed)
            report.findings += await _school(s, school, sizes, reaching, unlinked)
            report.findings += [_stuck(school, b, now) for b in backlog if b.school_id == school.id]
    report.findings += [_not_linked(row) for row in installed if row.school_id is None]
    return report


async def _school(s: AsyncSession, school: School, sizes: dict[str, list[Staff]],
                  delivering: frozenset[str], unlinked: bool) -> list[Finding]:
    if not sizes[school.slug]:  # nobody there to raise a concern, or to be told of one
        return [Finding(school.slug, "no active staff")]
    return [*_alerting(school, sizes[school.slug], delivering, unlinked), *_workspace(school, sizes, unlinked),
            *_typo(school, sizes), *_fallbacks(school), *await _escalation(s, school, delivering, unlinked)]


def reach_line(school: School, staff: list[Staff], delivering: frozenset[str]) -> str:
    """"oak: 2 of 3 DSLs and deputies can be alerted (slack 1, teams 1)": where each would be messaged."""
    deciders = [p for p in staff if p.role in DECIDER_ROLES]
    where = [platform_of(p, prefer=school.chat_platform, delivering=delivering) for p in deciders
             if reachable(p, delivering)]
    counts = ", ".join(f"{name} {where.count(name)}" for name in sorted(set(where)))
    return f"{school.slug}: {len(where)} of {len(deciders)} DSLs and deputies can be alerted" + (
        f" ({counts})" if counts else "")


def _of(staff: Sequence[Staff], school: School) -> list[Staff]:
    return [p for p in staff if p.school_id == school.id]


def _alerting(school: School, staff: list[Staff], delivering: frozenset[str], unlinked: bool) -> list[Finding]:
    found = []
    if cannot_be_alerted(staff, delivering):
        found.append(Finding(school.slug, "no active DSL or deputy can be reached through the bot, so an urgent "
                                          f"concern raised here alerts nobody{_hint(delivering, unlinked)}",
                             blocking=True))
    for role in DECIDER_ROLES:
        if not any(p.role == role for p in staff):
            found.append(Finding(school.slug, f"no {ROLE_NAMES[role]}"))
    found += [Finding(school.slug, f"{ROLE_NAMES[p.role]} {p.email} cannot be reached "
                                   f"({_why(p, delivering, unlinked)})")
              for p in staff if p.role in DECIDER_ROLES and not reachable(p, delivering)]
    return found


def _hint(delivering: frozenset[str], unlinked: bool) -> str:
    if unlinked:
        return " (no Slack workspace is linked to this school)"
    return "" if delivering else " (this deployment sends on no chat platform: see docs/slack-setup.md)"


def _why(person: Staff, delivering: frozenset[str], unlinked: bool) -> str:
    platform = platform_of(person)
    if platform == "slack" and unlinked:  # Slack is on, but no workspace of this school carries the DM
        return "their Slack id is in no workspace linked to this school"
    if platform == "console" or not delivering:
        return "no Slack or Teams id on a platform this deployment sends on"
    return f"their {platform.capitalize()} id is on a platform this deployment does not send on"


def _workspace_line(school: School, installed: Sequence[SlackInstallation]) -> list[str]:
    """"oak: Slack workspace Oak Primary (T0OAKWOOD1)": the one that serves it (several-workspaces mode only)."""
    serving = next((row for row in installed if row.school_id == school.id), None)
    if serving is None:
        return []
    return [f"{school.slug}: Slack workspace {serving.team_name or '-'} ({serving.team_id or serving.enterprise_id})"]


def _workspace(school: School, sizes: dict[str, list[Staff]], unlinked: bool) -> list[Finding]:
    on_slack = [p for p in sizes[school.slug] if p.slack_user_id]
    if not unlinked or not on_slack:
        return []
    people = "1 person" if len(on_slack) == 1 else f"{len(on_slack)} people"
    return [Finding(school.slug, f"no Slack workspace is linked to this school, so its {people} registered on Slack "
                                 "cannot be alerted there or raise a concern there (consentbot slack link TEAM_ID "
                                 f"--school {school.slug})")]


def _not_linked(row: SlackInstallation) -> Finding:
    team = row.team_id or row.enterprise_id
    return Finding(f"Slack workspace {row.team_name or '-'} ({team})",
                   f"installed but linked to no school, so it serves nobody: run `consentbot slack link {team} "
                   "--school SLUG`")


def _typo(school: School, sizes: dict[str, list[Staff]]) -> list[Finding]:
    staff = sizes[school.slug]
    if len(staff) > FEW_STAFF or any(p.role == "dsl" for p in staff):
        return []
    bigger = [slug for slug, people in sizes.items() if slug != school.slug and len(people) > len(staff)]
    match = difflib.get_close_matches(school.slug, bigger, n=1)
    if not match:
        return []
    people = "1 member of staff" if len(staff) == 1 else f"{len(staff)} members of staff"
    return [Finding(school.slug, f"looks like a typo of {match[0]!r} ({people}, no DSL)")]


def _fallbacks(school: School) -> list[Finding]:
    missing = [flag for flag, value in (("--dsl-phone", school.dsl_phone), ("--front-door-phone",
                                                                           school.front_door_phone)) if not value]
    if not missing:
        return []
    what = "no fallback phone numbers set" if len(missing) == 2 else f"no {PHONE_NAMES[missing[0]]} number set"
    return [Finding(school.slug, f"{what} (consentbot school set {school.slug} {' ... '.join(missing)} ...)")]


async def _escalation(s: AsyncSession, school: School, delivering: frozenset[str], unlinked: bool) -> list[Finding]:
    contacts = await escalation_contacts(s, school.id or 0)
    found = []
    if school.escalation_staff_id and all(p.id != school.escalation_staff_id for p in contacts):
        found.append(Finding(school.slug, "the escalation contact set for this school has left (is no longer active)"))
    if not contacts:
        found.append(Finding(school.slug, f"no escalation contact (consentbot school set {school.slug} --escalation "
                                          "EMAIL, or add an admin)"))
    elif not any(reachable(p, delivering) for p in contacts):
        who = ", ".join(p.email for p in contacts)
        found.append(Finding(school.slug, f"escalation contact {who} cannot be reached "
                                          f"({_why(contacts[0], delivering, unlinked)})"))
    return found


def _stuck(school: School, backlog: outbox.Backlog, now: datetime) -> Finding:
    noun = "message" if backlog.count == 1 else "messages"
    return Finding(school.slug, f"{backlog.count} {noun} undelivered (oldest {age(now - backlog.oldest)}) "
                                f"on {backlog.platform}")


def age(elapsed: timedelta) -> str:
    """A duration as an operator reads it: 45s, 12m, 2h 5m, 3d 4h."""
    seconds = max(0, int(elapsed.total_seconds()))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m" if minutes else f"{secs}s"
