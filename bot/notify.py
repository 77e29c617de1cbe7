"""What follows from an answer: outbox messages and reminder rows, written in the caller's
transaction. Messages hold references and verbs only (see bot.messages).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from bot.checklist import Progress
from bot.messages import Kind, Message
from bot.policy.model import Actor, Policy, Step
from storage import repo, slack_installations
from storage.audit import append_access
from storage.models import Case, OutboxMessage, Reminder, School, Staff

DECIDER_ROLES = ("dsl", "deputy")
OUTCOME_REMINDER = "outcome"  # the assignee has not recorded the parents' answer
URGENT_ACK_REMINDER = "urgent_ack"  # no DSL or deputy has acknowledged an urgent alert
DRAFT_REMINDER = "draft"  # a concern started but not finished by the person raising it
DECISION_REMINDER = "decision"  # a case waits on a DSL decision
REVIEW_REMINDER = "review"  # the review date a DSL set (G5, G9); fires on a closed case too


def platforms_of(staff: Staff) -> list[str]:
    """The chat platforms a person has an id on (Slack first)."""
    return [name for name, user_id in (("slack", staff.slack_user_id), ("teams", staff.teams_user_id)) if user_id]


def platform_of(staff: Staff, *, prefer: str | None = None, delivering: frozenset[str] | None = None) -> str:
    """Where a person is reached: the school's chosen platform (`prefer`) when they are on it,
    else the first of theirs the deployment delivers on, else Slack, then Teams, else the terminal.
    """
    mine = platforms_of(staff)
    usable = [p for p in mine if delivering is None or p in delivering]
    if prefer in usable:
        return str(prefer)
    return (usable or mine or ["console"])[0]


async def delivering_to(s: AsyncSession, school_id: int, delivering: frozenset[str]) -> frozenset[str]:
    """The platforms that reach a school's people. With Slack workspaces installed (a trust's
    set-up of several), Slack reaches a school only through the workspace linked to it: a school
    left unlinked must not be told its DSL was alerted.
    """
    if "slack" not in delivering or not await slack_installations.any_installed(s):
        return delivering
    if await slack_installations.installation_of_school(s, school_id) is not None:
        return delivering
    return delivering - {"slack"}


def reachable(staff: Staff, delivering: frozenset[str]) -> bool:
    """True when the person is active and has an id on a platform this deployment delivers on."""
    return staff.active and any(p in delivering for p in platforms_of(staff))


async def route(s: AsyncSession, rows: Sequence[OutboxMessage | dict[str, Any]], delivering: frozenset[str]) -> None:
    """Send each queued message where its recipient's school says (`consentbot school set
    --platform`), for people registered on two platforms.
    """
    for row in rows:
        staff = await s.get(Staff, _column(row, "recipient_id"))
        school = await s.get(School, _column(row, "school_id"))
        if staff is None or len(platforms_of(staff)) < 2:
            continue
        chosen = platform_of(staff, prefer=school.chat_platform if school else None, delivering=delivering)
        if isinstance(row, dict):
            row["platform"] = chosen
        else:
            row.platform = chosen


def _column(row: OutboxMessage | dict[str, Any], name: str) -> Any:
    return row[name] if isinstance(row, dict) else getattr(row, name)


async def escalation_contacts(s: AsyncSession, school_id: int) -> list[Staff]:
    """The school's named escalation contact (`consentbot school set --escalation`), else its admins."""
    school = await s.get(School, school_id)
    named = await repo.get_staff(s, school.escalation_staff_id) if school and school.escalation_staff_id else None
    if named is not None and named.active:
        return [named]
    return await repo.list_staff(s, school_id=school_id, roles=("admin",))


def outbox_row(case: Case, staff: Staff, message: Message, key: str, now: datetime) -> OutboxMessage:
    """One queued message to one person."""
    assert staff.id is not None and case.id is not None  # noqa: S101
    return OutboxMessage(school_id=case.school_id, case_id=case.id, recipient_id=staff.id, platform=platform_of(staff),
                         kind=message.kind.value, payload=message.to_json(), dedupe_key=key,
                         next_attempt_at=now, created_at=now)


@dataclass(frozen=True)
class Reach:
    """What an answer that needs a DSL could do: how many DSLs and deputies of the school the
    bot can actually reach (an alert counts only if this is at least one), and the school.
    """

    deciders: int
    school: School | None


@dataclass(frozen=True)
class Answered:
    """One answer, as notify sees it: the step answered (after `prior`), the progress before and after."""

    step: Step
    prior: Step | None
    before: Progress
    after: Progress
    actor_id: int
    visit: int
    values: Mapping[str, Any] = field(default_factory=dict)  # the answer as given (plaintext, in memory only)


async def follow_up(s: AsyncSession, policy: Policy, case: Case, answered: Answered, *, now: datetime,
                    delivering: frozenset[str]) -> Reach | None:
    """Queue what an answer calls for. Returns the reach when the answer needs a DSL (an urgent
    alert, or a decision now waiting), so the person answering can be told the truth.
    """
    a, nxt = answered, answered.after.step
    delivering = await delivering_to(s, case.school_id, delivering)
    alert = a.after.urgent and not a.before.urgent and a.step.actor is not Actor.DSL  # a DSL deciding needs no alert
    decided = a.step.actor is Actor.DSL and (a.prior is None or a.prior.actor is not Actor.DSL)
    needed = nxt is not None and nxt.actor is Actor.DSL and a.step.actor is not Actor.DSL
    deciders = await repo.list_staff(s, school_id=case.school_id, roles=DECIDER_ROLES) if alert or decided or needed else []
    rows: list[OutboxMessage] = []
    if alert and not needed:  # with a decision waiting too, the decision message is the alert: one DM each
        rows += _urgent_alerts(case, deciders, now)
    if alert:
        await _write_ladder(s, policy, case, URGENT_ACK_REMINDER, now, None, "raised")
    if decided:
        rows += await _decided(s, case, deciders, a.step, a.actor_id, now, a.visit)
    if needed and nxt is not None:
        rows += _decision_needed(case, deciders, nxt, now, a.after, visit_of(a.after, nxt),
                                 replaces_alert=a.before.urgent and not _dsl_has_answered(policy, a.before))
        await _write_ladder(s, policy, case, DECISION_REMINDER, now, None, f"{nxt.id}:{visit_of(a.after, nxt)}")
    if nxt is not None and nxt.actor is Actor.ASSIGNEE:
        rows += await _assigned(s, policy, case, nxt, a.after, now)
    rows += await _planned(s, policy, case, a, now)
    reach = await _reach(s, case, deciders, delivering, now, urgent=alert) if alert or needed else None
    if reach is not None and reach.deciders == 0:
        rows += await _unreachable(s, case, now)
    await repo.cancel_reminders(s, case.id or 0, _stopped_by(a.step, a.after))
    await route(s, rows, delivering)
    await repo.enqueue(s, rows)
    return reach


async def _planned(s: AsyncSession, policy: Policy, case: Case, a: Answered, now: datetime) -> list[OutboxMessage]:
    """Rows that follow from where the case now is: an unfinished concern, a review date, a closed case."""
    if a.prior is None and a.after.step is not None and a.after.step.actor is Actor.STAFF:
        await _write_ladder(s, policy, case, DRAFT_REMINDER, now, None, "raised")  # nothing left unseen
    for f in a.step.fields:  # the stored fact may be encrypted (a date is): the answer as given says the day
        if f.reminds and a.values.get(f.key):
            await _review_ladder(s, policy, case, f"{a.step.id}:{a.visit}", str(a.values[f.key]))
    return await _closed(s, case, a.actor_id, now) if a.after.done else []


def _dsl_has_answered(policy: Policy, progress: Progress) -> bool:
    return any(key.startswith("_visits.") and policy.steps[key[len("_visits."):]].actor is Actor.DSL
               for key in progress.facts)


async def _reach(s: AsyncSession, case: Case, deciders: Sequence[Staff], delivering: frozenset[str], now: datetime,
                 *, urgent: bool) -> Reach:
    """Count the DSLs and deputies the bot can reach; record it when there are none."""
    count = sum(1 for d in deciders if reachable(d, delivering))
    if count == 0:
        await append_access(s, action="alert_unreachable", at=now, school_id=case.school_id, case_id=case.id,
                            detail={"urgent": urgent, "deciders": len(deciders)})
    return Reach(deciders=count, school=await s.get(School, case.school_id))


async def _unreachable(s: AsyncSession, case: Case, now: datetime) -> list[OutboxMessage]:
    """No DSL or deputy can be reached: the school's escalation contact is told (a reference only)."""
    message = Message(kind=Kind.UNREACHABLE, case_ref=case.ref, urgent=True)
    return [outbox_row(case, p, message, f"{case.id}:unreachable:{case.version}:{p.id}", now)
            for p in await escalation_contacts(s, case.school_id)]


async def _closed(s: AsyncSession, case: Case, actor_id: int, now: datetime) -> list[OutboxMessage]:
    """The person who raised the concern hears that it closed, and who closed it (no outcome detail)."""
    raiser, closer = await repo.get_staff(s, case.raised_by), await repo.get_staff(s, actor_id)
    if raiser is None:
        return []
    message = Message(kind=Kind.CLOSED, case_ref=case.ref, by=closer.display_name if closer else "a DSL")
    return [outbox_row(case, raiser, message, f"{case.id}:closed", now)]


def _stopped_by(step: Step, after: Progress) -> list[str]:
    """Reminders an answer makes moot: a DSL's answer acknowledges an urgent case and ends the
    wait for a decision; the outcome stops its ladder; leaving the first steps ends the draft.
    """
    stopped = []
    if step.actor is Actor.DSL or after.done:
        stopped += [URGENT_ACK_REMINDER, DECISION_REMINDER]
    if step.actor is Actor.ASSIGNEE or after.done:
        stopped.append(OUTCOME_REMINDER)
    if after.step is None or after.step.actor is not Actor.STAFF:
        stopped.append(DRAFT_REMINDER)
    return stopped


def visit_of(progress: Progress, step: Step) -> int:
    """How many times the case has reached `step` before (0 the first time)."""
    return int(progress.facts.get(f"_visits.{step.id}", 0))


def _urgent_alerts(case: Case, deciders: Sequence[Staff], now: datetime) -> list[OutboxMessage]:
    message = Message(kind=Kind.URGENT_ALERT, case_ref=case.ref, urgent=True, can_acknowledge=True)
    return [outbox_row(case, d, message, urgent_alert_key(case, d.id), now) for d in deciders]


def decision_key(case: Case, step_id: str, visit: int, staff_id: int | None) -> str:
    """The dedupe key of a 'decision needed' message, which a 'decided' message supersedes."""
    return f"{case.id}:decision:{step_id}:{visit}:{staff_id}"


def urgent_alert_key(case: Case, staff_id: int | None) -> str:
    """The dedupe key of an urgent alert, which the first 'decision needed' message updates in place."""
    return f"{case.id}:urgent_alert:{staff_id}"


def _decision_needed(case: Case, deciders: Sequence[Staff], step: Step, now: datetime, after: Progress,
                     visit: int, *, replaces_alert: bool) -> list[OutboxMessage]:
    """One DM per DSL: on an urgent case the first decision message rewrites the urgent alert sent earlier."""
    rows = []
    for d in deciders:
        message = Message(kind=Kind.DECISION_NEEDED, case_ref=case.ref, urgent=after.urgent, step_title=step.title,
                          can_acknowledge=after.urgent,
                          supersedes=urgent_alert_key(case, d.id) if replaces_alert else None)
        rows.append(outbox_row(case, d, message, decision_key(case, step.id, visit, d.id), now))
    return rows


async def _decided(s: AsyncSession, case: Case, deciders: Sequence[Staff], step: Step, actor_id: int,
                   now: datetime, visit: int) -> list[OutboxMessage]:
    """Every copy of 'decision needed' becomes 'decided by ... at ...' (first decision wins)."""
    decider = await repo.get_staff(s, actor_id)
    by = decider.display_name if decider else "a DSL"
    rows = []
    for d in deciders:
        message = Message(kind=Kind.DECIDED, case_ref=case.ref, by=by, at=now.isoformat(timespec="minutes"),
                          supersedes=decision_key(case, step.id, visit, d.id))
        rows.append(outbox_row(case, d, message, f"{case.id}:decided:{step.id}:{visit}:{d.id}", now))
    return rows


async def _assigned(s: AsyncSession, policy: Policy, case: Case, step: Step, after: Progress,
                    now: datetime) -> list[OutboxMessage]:
    assignee = await repo.get_staff(s, int(after.facts["assignee"]))
    due = datetime.fromisoformat(after.facts["due_at"])
    if assignee is None:
        return []
    visit = visit_of(after, step)
    await _outcome_reminders(s, policy, case, step, assignee, due, visit)
    message = Message(kind=Kind.ACTION_ASSIGNED, case_ref=case.ref, urgent=after.urgent, step_title=step.title,
                      due_at=due.isoformat(timespec="minutes"))
    return [outbox_row(case, assignee, message, f"{case.id}:assigned:{step.id}:{visit}", now)]


async def _ladder_recipients(s: AsyncSession, case: Case, to: str, assignee: Staff | None) -> list[Staff]:
    if to == "assignee":
        return [assignee] if assignee else []
    if to == "raiser":
        raiser = await repo.get_staff(s, case.raised_by)
        return [raiser] if raiser else []
    if to == "escalation":
        return await escalation_contacts(s, case.school_id)
    return await repo.list_staff(s, school_id=case.school_id, roles=(to,))


async def _outcome_reminders(s: AsyncSession, policy: Policy, case: Case, step: Step, assignee: Staff,
                             due: datetime, visit: int) -> None:
    await _write_ladder(s, policy, case, OUTCOME_REMINDER, due, assignee, f"{step.id}:{visit}")


async def _review_ladder(s: AsyncSession, policy: Policy, case: Case, scope: str, day: str) -> None:
    """The review date reminds the DSL from the start of that working day (the sweep keeps to school days)."""
    school = await s.get(School, case.school_id)
    opens = time.fromisoformat(str((policy.settings.get("school_time") or {}).get("working_start", "08:00")))
    zone = ZoneInfo(school.timezone if school else "Europe/London")
    start = datetime.combine(date.fromisoformat(day), opens, zone).astimezone(UTC)
    await _write_ladder(s, policy, case, REVIEW_REMINDER, start, None, scope)


async def _write_ladder(s: AsyncSession, policy: Policy, case: Case, kind: str, start: datetime,
                        assignee: Staff | None, scope: str) -> None:
    """One reminder row per rung of the policy's ladder and per recipient, keyed so a retry adds none."""
    ladder: list[dict[str, Any]] = (policy.settings.get("reminders") or {}).get(kind) or []
    rows = []
    for level, rung in enumerate(ladder):
        due = start + timedelta(minutes=int(rung.get("after_minutes", 0)))
        for person in await _ladder_recipients(s, case, str(rung["to"]), assignee):
            rows.append(Reminder(case_id=case.id or 0, recipient_id=person.id, kind=kind, level=level, due_at=due,
                                 unique_key=f"{case.id}:{kind}:{scope}:{level}:{person.id}"))
    await repo.add_reminders(s, rows)
