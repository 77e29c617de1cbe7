"""Each DSL's morning digest on school days, and a weekly summary.

References, staff names and counts only: never a child's details.

Each school's digest goes at its own `digest_time` (else CONSENTBOT_DIGEST_TIME) in its own
timezone: the scheduler runs `run_digests` every few minutes and it builds for the schools whose
time has come. A digest goes to a *seat*, a person at one school: someone who is a DSL at two
schools (home role or membership) gets each school's digest, on that school's clock, with that
school's cases only. Idempotent per (seat, day): the outbox dedupe key is
`digest:daily:<staff id>:<date>` (with `:s<school id>` after it for a membership seat) and a
`digest_runs` row records it, so every replica may run it and a restart may run it again. The
digest folds in routine reminders to the DSL about that school's cases that fall due soon after
it: those rows are marked `sent_by_digest` in the same transaction, so the DSL gets one message,
not both.
"""

from __future__ import annotations

import json
import logging
import statistics
from collections import defaultdict
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta
from typing import Any

from bot import notify
from bot.cases import Services
from bot.messages import Kind, Message
from bot.policy.model import Actor
from bot.readable import date_label, local_label
from bot.reminders import calendar_for
from bot.schooltime import SchoolCalendar
from storage import reminder_repo
from storage.models import Case, DigestRun, OutboxMessage, School, Staff

logger = logging.getLogger(__name__)
DAILY, WEEKLY = "daily", "weekly"
WEEK = timedelta(days=7)
DEFAULT_TIME = time(7, 30)  # CONSENTBOT_DIGEST_TIME's default
DRAFT_MINUTES = 15


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


@dataclass(frozen=True)
class Seat:
    """A digest reader at one school: a person with a digest role there, at home or as a member."""

    staff: Staff
    school_id: int

    @property
    def key(self) -> tuple[int, int]:
        """(recipient id, school id), as digest_runs records it."""
        return (self.staff.id or 0, self.school_id)

    def dedupe_key(self, kind: str, period: str) -> str:
        """The outbox key of this seat's digest for a period.

        A home seat keeps the key digests had before memberships, so a deploy during the day does not
        send that day's digest again; a membership seat names its school, or it would clash with home's.
        """
        key = f"digest:{kind}:{self.staff.id}:{period}"
        return key if self.school_id == self.staff.school_id else f"{key}:s{self.school_id}"


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


@dataclass
class SchoolFacts:
    """What one school's daily digest reports: references, dates and assignees' names only."""

    cases: list[Case]  # open cases
    closed: list[Case]  # closed since the reader's last digest
    reviews: list[Case]  # cases (closed ones too) whose review-date reminder is due today
    staff: dict[int, Staff]  # assignees, by id


class _DryRun(Exception):
    """Raised to roll a dry run's transaction back: it then changes nothing."""


async def run_digests(svc: Services, *, now: datetime | None = None, default_time: time = DEFAULT_TIME,
                      dry_run: bool = False) -> DigestReport:
    """Build today's digests (and this week's summaries) for every DSL of each school open today whose
    digest time has come, in the school's own timezone: its `digest_time`, else `default_time`. A DSL
    of two schools gets one from each, when each school's time comes.

    Safe to run every few minutes: a DSL who has had today's digest from a school is skipped there.
    """
    now = now or svc.clock()
    report = DigestReport()
    if not dry_run and not await _anyone_due(svc, now, default_time):
        return report  # most runs (every few minutes) end here, without taking SQLite's write lock
    try:
        async with svc.db.transaction() as s:
            await _build(svc, s, now, default_time, report)
            if dry_run:
                raise _DryRun
    except _DryRun:
        pass
    if report.messages or dry_run:
        logger.info("digests built=%s folded=%s dry_run=%s", len(report.messages), report.folded, dry_run)
    return report


async def _anyone_due(svc: Services, now: datetime, default_time: time) -> bool:
    """Whether some DSL is owed today's digest: a read that never waits for writers nor blocks them."""
    async with svc.db.read() as s:
        open_ = await _due_schools(svc, s, now, default_time)
        return bool(open_) and bool((await _waiting(svc, s, open_, now))[0])


def _rules(svc: Services) -> dict[str, Any]:
    return dict(svc.policy.settings.get("digest") or {})


def digest_time_of(school: School, default: time) -> time:
    """The school's digest time (HH:MM, local), else the configured one."""
    if not school.digest_time:
        return default
    try:
        return time.fromisoformat(school.digest_time)
    except ValueError:
        # `consentbot school set` checks the value; a hand-edited row must not stop every digest.
        logger.warning("school=%s has an unreadable digest time: using the default", school.id)
        return default


async def _due_schools(svc: Services, s: Any, now: datetime, default_time: time) -> dict[int, _School]:
    """Schools open today whose digest time has passed, each in its own timezone."""
    schools = await reminder_repo.schools(s)
    entries = await reminder_repo.calendar_entries(s, (x.id or 0 for x in schools))
    found = {}
    for school in schools:
        calendar = calendar_for(school, entries[school.id or 0], dict(svc.policy.settings))
        local = now.astimezone(calendar.zone)
        if calendar.is_school_day(local.date()) and local.time() >= digest_time_of(school, default_time):
            found[school.id or 0] = _School(school, calendar, local.date())
    return found


async def _waiting(svc: Services, s: Any, open_: dict[int, _School],
                   now: datetime) -> tuple[list[Seat], dict[tuple[int, int], datetime]]:
    """The DSL seats at these schools without today's digest, and when each had its last one."""
    found = await reminder_repo.digest_recipients(s, roles=_rules(svc).get("to") or ["dsl"], school_ids=sorted(open_))
    seats = [Seat(staff, school_id) for staff, school_id in found]
    today = {seat.key: open_[seat.school_id].today.isoformat() for seat in seats}
    done = await reminder_repo.digested(s, seats=list(today), kind=DAILY, periods=list(today.values()))
    seats = [seat for seat in seats if (*seat.key, today[seat.key]) not in done]
    last = await reminder_repo.last_built(s, seats=[seat.key for seat in seats], kind=DAILY)
    return seats, {seat.key: last.get(seat.key, now - timedelta(days=1)) for seat in seats}


async def _build(svc: Services, s: Any, now: datetime, default_time: time, report: DigestReport) -> None:
    open_ = await _due_schools(svc, s, now, default_time)
    seats, since = await _waiting(svc, s, open_, now)
    if not seats:
        return
    facts = await _facts(s, sorted({seat.school_id for seat in seats}), open_, min(since.values()), now)
    folded = await _fold(svc, s, seats, now)
    report.folded += sum(len(v) for v in folded.values())
    for seat in seats:
        where, known = open_[seat.school_id], facts[seat.school_id]
        mine = replace(known, closed=[c for c in known.closed if c.updated_at >= since[seat.key]])
        lines = daily_lines(svc, mine, where.calendar, now, folded=folded.get(seat.key, set()))
        key = seat.dedupe_key(DAILY, where.today.isoformat())
        report.messages.append((Recipient.of(seat.staff), _digest_row(seat, lines, key, now)))
    await _weekly(svc, s, seats, open_, now, report)
    await notify.route(s, [row for _, row in report.messages], svc.delivering)
    await _record(s, report, seats, open_, now)


async def _facts(s: Any, school_ids: list[int], open_: dict[int, _School], since: datetime,
                 now: datetime) -> dict[int, SchoolFacts]:
    """Each school's open cases, cases closed since `since`, reviews due today, and the assignees."""
    cases = await reminder_repo.open_cases(s, school_ids=school_ids)
    closed = await reminder_repo.closed_since(s, school_ids=school_ids, since=since)
    assignees = await reminder_repo.rows_by_id(s, Staff, (c.assignee_id for c in cases if c.assignee_id))
    reviews = await reminder_repo.reminders_due_or_sent(s, school_ids=school_ids, kind=notify.REVIEW_REMINDER,
                                                        until=now + timedelta(days=1), since=now - timedelta(days=1))
    by_school, closed_by_school = _group(cases), _group(closed)
    due_today: dict[int, list[Case]] = defaultdict(list)
    seen: set[int] = set()  # a review reminder goes to each DSL: one line per case
    for row in reviews:
        if row.case.id not in seen and _due_today(row, open_[row.case.school_id].calendar, now):
            seen.add(row.case.id or 0)
            due_today[row.case.school_id].append(row.case)
    return {sid: SchoolFacts(by_school[sid], closed_by_school[sid], due_today[sid], assignees) for sid in school_ids}


def _due_today(row: reminder_repo.DueOrSent, calendar: SchoolCalendar, now: datetime) -> bool:
    """A reminder due by the end of the school's day and not yet sent, or sent since the day began."""
    start = datetime.combine(now.astimezone(calendar.zone).date(), time(0), tzinfo=calendar.zone)
    end = datetime.combine(start.date() + timedelta(days=1), time(0), tzinfo=calendar.zone)
    if row.status in reminder_repo.LIVE:
        return row.due_at < end
    return row.sent_at is not None and row.sent_at >= start


def _group(cases: list[Case]) -> dict[int, list[Case]]:
    grouped: dict[int, list[Case]] = defaultdict(list)
    for case in cases:
        grouped[case.school_id].append(case)
    return grouped


async def _fold(svc: Services, s: Any, seats: list[Seat], now: datetime) -> dict[tuple[int, int], set[int]]:
    """Routine reminders to these DSLs about their seat's school's cases, due soon after now, go out in
    that school's digest instead. Case ids by seat.
    """
    until = now + timedelta(minutes=int(_rules(svc).get("fold_minutes", 0)))
    by_school: dict[int, list[int]] = defaultdict(list)
    for seat in seats:
        by_school[seat.school_id].append(seat.staff.id or 0)
    folded: dict[tuple[int, int], set[int]] = defaultdict(set)
    for school_id, recipient_ids in sorted(by_school.items()):
        pairs = await reminder_repo.fold_into_digest(s, school_id=school_id, recipient_ids=recipient_ids,
                                                     kinds=[notify.OUTCOME_REMINDER], until=until, now=now)
        for recipient_id, case_id in pairs:
            folded[(recipient_id, school_id)].add(case_id)
    return folded


def _local(when: datetime | None, calendar: SchoolCalendar) -> str:
    """A time as people read it, in the school's time: "Mon 30 Nov 2026, 14:05"."""
    return local_label(when.astimezone(calendar.zone)) if when else "-"


def draft_minutes(svc: Services) -> int:
    """How long a concern may stay unfinished before it is chased: the draft ladder's first rung (default 15)."""
    ladder = (svc.policy.settings.get("reminders") or {}).get(notify.DRAFT_REMINDER) or []
    return int(ladder[0].get("after_minutes", DRAFT_MINUTES)) if ladder else DRAFT_MINUTES


def daily_lines(svc: Services, facts: SchoolFacts, calendar: SchoolCalendar, now: datetime, *,
                folded: set[int]) -> list[str]:
    """The daily digest's text: one section per heading, one line per case reference."""
    lines = []
    for title, items in _sections(svc, facts, calendar, now, folded):
        lines.append(f"{title}: {len(items)}")
        lines.extend(f"  {item}" for item in items)
    return lines


def _sections(svc: Services, facts: SchoolFacts, calendar: SchoolCalendar, now: datetime,
              folded: set[int]) -> list[tuple[str, list[str]]]:
    follow_steps = set(_rules(svc).get("follow_up_steps") or ["follow_up"])
    soon = now + timedelta(hours=float(_rules(svc).get("due_soon_hours", 24)))
    outcome = [c for c in facts.cases if c.status == "awaiting_outcome" and c.due_at is not None]
    unfinished = now - timedelta(minutes=draft_minutes(svc))

    def assigned(c: Case) -> str:
        who = facts.staff.get(c.assignee_id or 0)
        flag = " (reminder)" if c.id in folded else ""
        return f"{c.ref} due {_local(c.due_at, calendar)}, assigned to {who.display_name if who else '-'}{flag}"

    return [
        ("Awaiting decision", [f"{c.ref} since {_local(c.created_at, calendar)}" for c in facts.cases
                               if c.status == "awaiting_decision" and c.step not in follow_steps]),
        ("Outcomes overdue", [assigned(c) for c in outcome if c.due_at and c.due_at <= now]),
        ("Outcomes due soon", [assigned(c) for c in outcome if c.due_at and now < c.due_at <= soon]),
        ("Follow-ups due", _follow_ups(svc, facts, follow_steps)),
        ("Not finished by the person raising it", [f"{c.ref} started {_local(c.created_at, calendar)}"
                                                   for c in facts.cases
                                                   if c.status == "draft" and c.created_at <= unfinished]),
        ("Closed since the last digest", [f"{c.ref} at {_local(c.updated_at, calendar)}" for c in facts.closed]),
    ]


def _follow_ups(svc: Services, facts: SchoolFacts, follow_steps: set[str]) -> list[str]:
    """Cases at a follow-up step, then cases whose review date is today (G5, G9; closed ones too)."""
    at_step = [c for c in facts.cases if c.status == "awaiting_decision" and c.step in follow_steps]
    listed = {c.id for c in at_step}
    return ([f"{c.ref} ({svc.policy.steps[c.step].title if c.step in svc.policy.steps else c.step})" for c in at_step]
            + [f"{c.ref} (review date)" for c in facts.reviews if c.id not in listed])


def _digest_row(seat: Seat, lines: list[str], key: str, now: datetime) -> OutboxMessage:
    message = Message(kind=Kind.DIGEST, case_ref="", lines=tuple(lines))
    return OutboxMessage(school_id=seat.school_id, case_id=None, recipient_id=seat.staff.id or 0,
                         platform=notify.platform_of(seat.staff), kind=Kind.DIGEST.value, payload=message.to_json(),
                         dedupe_key=key, next_attempt_at=now, created_at=now)


def _week(day: date) -> str:
    year, week, _ = day.isocalendar()
    return f"{year}-W{week:02d}"


async def _weekly(svc: Services, s: Any, seats: list[Seat], open_: dict[int, _School], now: datetime,
                  report: DigestReport) -> None:
    """On the first school day of each ISO week, a summary of the seven days before, per seat."""
    weeks = {seat.key: _week(open_[seat.school_id].today) for seat in seats}
    done = await reminder_repo.digested(s, seats=list(weeks), kind=WEEKLY, periods=list(weeks.values()))
    due = [seat for seat in seats if (*seat.key, weeks[seat.key]) not in done]
    if not due:
        return
    school_ids = sorted({seat.school_id for seat in due})
    raised = await reminder_repo.cases_created_since(s, school_ids=school_ids, since=now - WEEK)
    closed = await reminder_repo.closed_since(s, school_ids=school_ids, since=now - WEEK)
    still_open = await reminder_repo.open_cases(s, school_ids=school_ids)
    decided = await _decision_hours(svc, s, raised)
    raised_in, closed_in, open_in = _group(raised), _group(closed), _group(still_open)
    for seat in due:
        sid = seat.school_id
        lines = weekly_lines(raised_in[sid], closed_in[sid], open_in[sid], decided, now)
        key = seat.dedupe_key(WEEKLY, weeks[seat.key])
        report.messages.append((Recipient.of(seat.staff), _digest_row(seat, lines, key, now)))


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
    lines = [f"Week to {date_label(now.date())}: raised {len(raised)}, decided {len(times)}, closed {len(closed)}",
             f"Open now: {len(still_open)}, outcomes overdue: {overdue}"]
    if times:
        lines.append(f"Time to first DSL decision: median {statistics.median(times):.1f} h, "
                     f"longest {max(times):.1f} h")
    else:
        lines.append("Time to first DSL decision: no cases decided")
    return lines


async def _record(s: Any, report: DigestReport, seats: list[Seat], open_: dict[int, _School],
                  now: datetime) -> None:
    await reminder_repo.enqueue_rows(s, [row.model_dump(exclude={"id"}) for _, row in report.messages])
    runs = [DigestRun(school_id=seat.school_id, recipient_id=seat.staff.id or 0, kind=DAILY,
                      period=open_[seat.school_id].today.isoformat(), built_at=now) for seat in seats]
    runs += [DigestRun(school_id=row.school_id, recipient_id=row.recipient_id, kind=WEEKLY,
                       period=_week(open_[row.school_id].today), built_at=now)
             for _, row in report.messages if row.dedupe_key.startswith(f"digest:{WEEKLY}:")]
    await reminder_repo.record_digests(s, runs)
