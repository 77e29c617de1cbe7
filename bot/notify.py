"""What follows from an answer: outbox messages and reminder rows, written in the caller's
transaction. Messages hold references and verbs only (see bot.messages).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from bot.checklist import Progress
from bot.messages import Kind, Message
from bot.policy.model import Actor, Policy, Step
from storage import repo
from storage.models import Case, OutboxMessage, Reminder, Staff

DECIDER_ROLES = ("dsl", "deputy")
OUTCOME_REMINDER = "outcome"
URGENT_ACK_REMINDER = "urgent_ack"


def platform_of(staff: Staff) -> str:
    """Where a person is reached: Slack, then Teams, else the terminal."""
    if staff.slack_user_id:
        return "slack"
    if staff.teams_user_id:
        return "teams"
    return "console"


def outbox_row(case: Case, staff: Staff, message: Message, key: str, now: datetime) -> OutboxMessage:
    """One queued message to one person."""
    assert staff.id is not None and case.id is not None  # noqa: S101
    return OutboxMessage(school_id=case.school_id, case_id=case.id, recipient_id=staff.id, platform=platform_of(staff),
                         kind=message.kind.value, payload=message.to_json(), dedupe_key=key,
                         next_attempt_at=now, created_at=now)


async def follow_up(s: AsyncSession, policy: Policy, case: Case, *, before: Progress, after: Progress, step: Step,
                    prior: Step | None, actor_id: int, now: datetime, visit: int) -> None:
    """Queue what answering `step` (after `prior`) calls for, moving `before` to `after`."""
    nxt = after.step
    alert = after.urgent and not before.urgent and step.actor is not Actor.DSL  # a DSL deciding needs no alert
    decided = step.actor is Actor.DSL and (prior is None or prior.actor is not Actor.DSL)
    needed = nxt is not None and nxt.actor is Actor.DSL and step.actor is not Actor.DSL
    deciders = await repo.list_staff(s, school_id=case.school_id, roles=DECIDER_ROLES) if alert or decided or needed else []
    rows: list[OutboxMessage] = []
    if alert:
        rows += _urgent_alerts(case, deciders, now)
        await _urgent_ack_reminders(s, policy, case, now)
    if decided:
        rows += await _decided(s, case, deciders, step, actor_id, now, visit)
    if needed and nxt is not None:
        rows += _decision_needed(case, deciders, nxt, now, after, visit_of(after, nxt))
    if nxt is not None and nxt.actor is Actor.ASSIGNEE:
        rows += await _assigned(s, policy, case, nxt, after, now)
    await repo.cancel_reminders(s, case.id or 0, _stopped_by(step, after))
    await repo.enqueue(s, rows)


def _stopped_by(step: Step, after: Progress) -> list[str]:
    """Reminders an answer makes moot: a DSL's answer acknowledges an urgent case; the outcome stops its ladder."""
    stopped = []
    if step.actor is Actor.DSL or after.done:
        stopped.append(URGENT_ACK_REMINDER)
    if step.actor is Actor.ASSIGNEE or after.done:
        stopped.append(OUTCOME_REMINDER)
    return stopped


def visit_of(progress: Progress, step: Step) -> int:
    """How many times the case has reached `step` before (0 the first time)."""
    return int(progress.facts.get(f"_visits.{step.id}", 0))


def _urgent_alerts(case: Case, deciders: Sequence[Staff], now: datetime) -> list[OutboxMessage]:
    message = Message(kind=Kind.URGENT_ALERT, case_ref=case.ref, urgent=True)
    return [outbox_row(case, d, message, f"{case.id}:urgent_alert:{d.id}", now) for d in deciders]


def decision_key(case: Case, step_id: str, visit: int, staff_id: int | None) -> str:
    """The dedupe key of a 'decision needed' message, which a 'decided' message supersedes."""
    return f"{case.id}:decision:{step_id}:{visit}:{staff_id}"


def _decision_needed(case: Case, deciders: Sequence[Staff], step: Step, now: datetime, after: Progress,
                     visit: int) -> list[OutboxMessage]:
    message = Message(kind=Kind.DECISION_NEEDED, case_ref=case.ref, urgent=after.urgent, step_title=step.title)
    return [outbox_row(case, d, message, decision_key(case, step.id, visit, d.id), now) for d in deciders]


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
    return await repo.list_staff(s, school_id=case.school_id, roles=(to,))


async def _outcome_reminders(s: AsyncSession, policy: Policy, case: Case, step: Step, assignee: Staff,
                             due: datetime, visit: int) -> None:
    await _write_ladder(s, policy, case, OUTCOME_REMINDER, due, assignee, f"{step.id}:{visit}")


async def _urgent_ack_reminders(s: AsyncSession, policy: Policy, case: Case, now: datetime) -> None:
    await _write_ladder(s, policy, case, URGENT_ACK_REMINDER, now, None, "raised")


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
