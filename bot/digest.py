"""Each DSL's morning digest on school days, and a weekly summary.

References, staff names and counts only: never a child's details.

Idempotent per (DSL, day): the outbox dedupe key is `digest:daily:<staff id>:<date>` and a
`digest_runs` row records it, so every replica may run the cron and a restart may run it
again. The digest folds in routine reminders to the DSL that fall due soon after it: those rows
are marked `sent_by_digest` in the same transaction, so the DSL gets one message, not both.
"""

from __future__ import annotations

import json
import logging
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from bot import notify
from bot.cases import Services
from bot.messages import Kind, Message
from bot.policy.model import Actor
from bot.reminders import calendar_for
from bot.schooltime import SchoolCalendar
from storage import reminder_repo
from storage.models import Case, DigestRun, OutboxMessage, School, Staff

logger = logging.getLogger(__name__)
DAILY, WEEKLY = "daily", "weekly"
WEEK = timedelta(days=7)


@dataclass(frozen=True)
class Recipient:
    """Who a digest is for (plain values: a dry run's rollback leaves no rows to read)."""

    id: int
    email: str
    display_name: str

    @classmethod
    def of(cls, staff: Staff) -> Recipient:
        """From a staff row."""
        return cls(id=staff.id or 0, email=staff.email, display_name=staff.display_name)


@dataclass
class DigestReport:
    """The digests built (or, in a dry run, that would be built)."""

    messages: list[tuple[Recipient, OutboxMessage]] = field(default_factory=list)
    folded: int = 0


@dataclass(frozen=True)
class _School:
    school: School
    calendar: SchoolCalendar
    today: date


class _DryRun(Exception):
    """Raised to roll a dry run's transaction back: it then changes nothing."""


async def run_digests(svc: Services, *, now: datetime | None = None, dry_run: bool = False) -> DigestReport:
    """Build today's digests (and this week's summaries) for every DSL whose school is open today."""
    now = now or svc.clock()
    report = DigestReport()
    try:
        async with svc.db.transaction() as s:
            await _build(svc, s, now, report)
            if dry_run:
                raise _DryRun
    except _DryRun:
        pass
    logger.info("digests built=%s folded=%s dry_run=%s", len(report.messages), report.folded, dry_run)
    return report


def _rules(svc: Services) -> dict[str, Any]:
    return dict(svc.policy.settings.get("digest") or {})


async def _open_schools(svc: Services, s: Any, now: datetime) -> dict[int, _School]:
    schools = await reminder_repo.schools(s)
    entries = await reminder_repo.calendar_entries(s, (x.id or 0 for x in schools))
    found = {}
    for school in schools:
        calendar = calendar_for(school, entries[school.id or 0], dict(svc.policy.settings))
        today = now.astimezone(calendar.zone).date()
        if calendar.is_school_day(today):
            found[school.id or 0] = _School(school, calendar, today)
    return found


async def _build(svc: Services, s: Any, now: datetime, report: DigestReport) -> None:
    open_ = await _open_schools(svc, s, now)
    people = [p for p in await reminder_repo.digest_recipients(s, roles=_rules(svc).get("to") or ["dsl"])
              if p.school_id in open_]
    if not people:
        return
    ids = [p.id or 0 for p in people]
    last = await reminder_repo.last_digests(s, recipient_ids=ids, kind=DAILY)
    people = [p for p in people if not _done(last.get(p.id or 0), open_[p.school_id].today.isoformat())]
    if not people:
        return
    school_ids = sorted({p.school_id for p in people})
    cases = await reminder_repo.open_cases(s, school_ids=school_ids)
    since = {p.id: last[p.id].built_at if p.id in last else now - timedelta(days=1) for p in people}
    closed = await reminder_repo.closed_since(s, school_ids=school_ids, since=min(since.values()))
    assignees = await reminder_repo.rows_by_id(s, Staff, (c.assignee_id for c in cases if c.assignee_id))
    folded = await _fold(svc, s, people, now)
    report.folded += sum(len(v) for v in folded.values())
    by_school, closed_by_school = _group(cases), _group(closed)
    for person in people:
        where = open_[person.school_id]
        lines = daily_lines(svc, by_school[person.school_id], assignees, where.calendar, now,
                            closed=[c for c in closed_by_school[person.school_id] if c.updated_at >= since[person.id]],
                            folded=folded.get(person.id or 0, set()))
        report.messages.append((Recipient.of(person), _digest_row(person, lines, f"{DAILY}:{person.id}:{where.today}",
                                                                  now)))
    await _weekly(svc, s, people, open_, now, report)
    await _record(s, report, people, open_, now)


def _done(run: DigestRun | None, period: str) -> bool:
    return run is not None and run.period == period


def _group(cases: list[Case]) -> dict[int, list[Case]]:
    grouped: dict[int, list[Case]] = defaultdict(list)
    for case in cases:
        grouped[case.school_id].append(case)
    return grouped


async def _fold(svc: Services, s: Any, people: list[Staff], now: datetime) -> dict[int, set[int]]:
    """Routine reminders to these DSLs due soon after now go out in the digest instead."""
    until = now + timedelta(minutes=int(_rules(svc).get("fold_minutes", 0)))
    pairs = await reminder_repo.fold_into_digest(s, recipient_ids=[p.id or 0 for p in people],
                                                 kinds=[notify.OUTCOME_REMINDER], until=until, now=now)
    folded: dict[int, set[int]] = defaultdict(set)
    for recipient_id, case_id in pairs:
        folded[recipient_id].add(case_id)
    return folded


def _local(when: datetime | None, calendar: SchoolCalendar) -> str:
    return when.astimezone(calendar.zone).strftime("%Y-%m-%d %H:%M") if when else "-"


def daily_lines(svc: Services, cases: list[Case], staff: dict[int, Staff], calendar: SchoolCalendar, now: datetime,
                *, closed: list[Case], folded: set[int]) -> list[str]:
    """The daily digest's text: one section per heading, one line per case reference."""
    follow_steps = set(_rules(svc).get("follow_up_steps") or ["follow_up"])
    soon = now + timedelta(hours=float(_rules(svc).get("due_soon_hours", 24)))
    outcome = [c for c in cases if c.status == "awaiting_outcome" and c.due_at is not None]

    def assigned(c: Case) -> str:
        who = staff.get(c.assignee_id or 0)
        flag = " (reminder)" if c.id in folded else ""
        return f"{c.ref} due {_local(c.due_at, calendar)}, assigned to {who.display_name if who else '-'}{flag}"

    sections = [
        ("Awaiting decision", [f"{c.ref} since {_local(c.created_at, calendar)}" for c in cases
                               if c.status == "awaiting_decision" and c.step not in follow_steps]),
        ("Outcomes overdue", [assigned(c) for c in outcome if c.due_at and c.due_at <= now]),
        ("Outcomes due soon", [assigned(c) for c in outcome if c.due_at and now < c.due_at <= soon]),
        ("Follow-ups due", [f"{c.ref} ({svc.policy.steps[c.step].title if c.step in svc.policy.steps else c.step})"
                            for c in cases if c.status == "awaiting_decision" and c.step in follow_steps]),
        ("Closed since the last digest", [f"{c.ref} at {_local(c.updated_at, calendar)}" for c in closed]),
    ]
    lines = []
    for title, items in sections:
        lines.append(f"{title}: {len(items)}")
        lines.extend(f"  {item}" for item in items)
    return lines


def _digest_row(person: Staff, lines: list[str], key: str, now: datetime) -> OutboxMessage:
    message = Message(kind=Kind.DIGEST, case_ref="", lines=tuple(lines))
    return OutboxMessage(school_id=person.school_id, case_id=None, recipient_id=person.id or 0,
                         platform=notify.platform_of(person), kind=Kind.DIGEST.value, payload=message.to_json(),
                         dedupe_key=f"digest:{key}", next_attempt_at=now, created_at=now)


def _week(day: date) -> str:
    year, week, _ = day.isocalendar()
    return f"{year}-W{week:02d}"


async def _weekly(svc: Services, s: Any, people: list[Staff], open_: dict[int, _School], now: datetime,
                  report: DigestReport) -> None:
    """On the first school day of each ISO week, a summary of the seven days before."""
    last = await reminder_repo.last_digests(s, recipient_ids=[p.id or 0 for p in people], kind=WEEKLY)
    due = [p for p in people if not _done(last.get(p.id or 0), _week(open_[p.school_id].today))]
    if not due:
        return
    school_ids = sorted({p.school_id for p in due})
    raised = await reminder_repo.cases_created_since(s, school_ids=school_ids, since=now - WEEK)
    closed = await reminder_repo.closed_since(s, school_ids=school_ids, since=now - WEEK)
    still_open = await reminder_repo.open_cases(s, school_ids=school_ids)
    decided = await _decision_hours(svc, s, raised)
    raised_in, closed_in, open_in = _group(raised), _group(closed), _group(still_open)
    for person in due:
        sid = person.school_id
        lines = weekly_lines(raised_in[sid], closed_in[sid], open_in[sid], decided, now)
        key = f"{WEEKLY}:{person.id}:{_week(open_[sid].today)}"
        report.messages.append((Recipient.of(person), _digest_row(person, lines, key, now)))


async def _decision_hours(svc: Services, s: Any, cases: list[Case]) -> dict[int, float]:
    """Hours from raising each case to its first DSL answer, for the cases decided so far."""
    created = {c.id: c.created_at for c in cases}
    hours: dict[int, float] = {}
    for event in await reminder_repo.answer_events(s, case_ids=[c.id or 0 for c in cases]):
        step = svc.policy.steps.get(json.loads(event.payload).get("step", ""))
        if event.case_id not in hours and step is not None and step.actor is Actor.DSL:
            hours[event.case_id] = (event.at - created[event.case_id]).total_seconds() / 3600
    return hours


def weekly_lines(raised: list[Case], closed: list[Case], still_open: list[Case], decided: dict[int, float],
                 now: datetime) -> list[str]:
    """The weekly summary: counts and time-to-decision figures, no references."""
    times = [decided[c.id] for c in raised if c.id in decided]
    overdue = sum(1 for c in still_open if c.status == "awaiting_outcome" and c.due_at and c.due_at <= now)
    lines = [f"Week to {now:%Y-%m-%d}: raised {len(raised)}, decided {len(times)}, closed {len(closed)}",
             f"Open now: {len(still_open)}, outcomes overdue: {overdue}"]
    if times:
        lines.append(f"Time to first DSL decision: median {statistics.median(times):.1f} h, "
                     f"longest {max(times):.1f} h")
    else:
        lines.append("Time to first DSL decision: no cases decided")
    return lines


async def _record(s: Any, report: DigestReport, people: list[Staff], open_: dict[int, _School],
                  now: datetime) -> None:
    await reminder_repo.enqueue_rows(s, [row.model_dump(exclude={"id"}) for _, row in report.messages])
    runs = [DigestRun(school_id=p.school_id, recipient_id=p.id or 0, kind=DAILY,
                      period=open_[p.school_id].today.isoformat(), built_at=now) for p in people]
    runs += [DigestRun(school_id=row.school_id, recipient_id=row.recipient_id, kind=WEEKLY,
                       period=_week(open_[row.school_id].today), built_at=now)
             for _, row in report.messages if row.dedupe_key.startswith(f"digest:{WEEKLY}:")]
    await reminder_repo.record_digests(s, runs)
