"""The reminder sweep: claim due rows, send, defer to school time, or cancel each.

Reminders are database rows, never scheduler jobs, so a reminder that fell due while no
process ran is found by the next sweep after a restart.

Exactly once, across replicas and crashes: a batch is claimed in one short transaction
(FOR UPDATE SKIP LOCKED on PostgreSQL; BEGIN IMMEDIATE on SQLite) with a lease, then the
outbox rows are enqueued and the reminders marked sent in a second transaction. If a process
dies between the two, its lease runs out and another sweep re-claims the rows; the outbox
dedupe key (`reminder:<unique_key>`) makes a repeated enqueue a no-op.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import Any, Literal

from bot import notify
from bot.cases import Services
from bot.errors import NotFound
from bot.messages import Kind, Message
from bot.schooltime import NoSchoolDayError, SchoolCalendar, parse_calendar_csv, parse_calendar_ics
from storage import reminder_repo, repo
from storage.audit import append_access
from storage.models import Case, Reminder, School, SchoolCalendarEntry, Staff

logger = logging.getLogger(__name__)
Action = Literal["send", "defer", "cancel"]
DEFAULT_BATCH = 500
DEFAULT_LEASE = timedelta(minutes=2)
URGENT_KINDS = frozenset({notify.URGENT_ACK_REMINDER})


_Planned = tuple[list["Plan"], dict[int, Staff], dict[int, Case]]


@dataclass(frozen=True)
class Plan:
    """What the sweep does with one due reminder."""

    reminder_id: int
    action: Action
    reason: str
    due_at: datetime | None = None  # the new due time, when deferred
    outbox: dict[str, Any] | None = None  # the outbox row's column values, when sent


@dataclass
class SweepReport:
    """What one sweep did (or, in a dry run, would do)."""

    sent: int = 0
    deferred: int = 0
    cancelled: int = 0
    plans: list[tuple[Plan, Reminder]] = field(default_factory=list)
    names: dict[int, str] = field(default_factory=dict)  # recipients' display names (dry run)
    refs: dict[int, str] = field(default_factory=dict)  # case references (dry run)


def calendar_for(school: School, entries: list[SchoolCalendarEntry], settings: dict[str, Any]) -> SchoolCalendar:
    """A school's calendar: its timezone and nation, imported dates, the policy's working hours."""
    hours = settings.get("school_time") or {}
    return SchoolCalendar(
        timezone=school.timezone, nation=school.nation,
        working_start=time.fromisoformat(str(hours.get("working_start", "08:00"))),
        working_end=time.fromisoformat(str(hours.get("working_end", "17:00"))),
        terms=tuple((e.start_date, e.end_date) for e in entries if e.kind == "term"),
        closures=tuple((e.start_date, e.end_date) for e in entries if e.kind == "closure"))


def is_urgent(reminder: Reminder, case: Case) -> bool:
    """Urgent reminders ignore working hours and quiet hours: an unacknowledged alert, an urgent case."""
    return reminder.kind in URGENT_KINDS or case.urgent


def send_time(calendar: SchoolCalendar, now: datetime, *, urgent: bool) -> datetime:
    """When a reminder seen due at `now` may go: now if permissible, else the next working time."""
    try:
        return calendar.next_send_time(now, urgent=urgent)
    except NoSchoolDayError:
        # A calendar with no school day for 400 days is a mistake; silence would be worse.
        logger.warning("no school day in calendar tz=%s: sending now", calendar.timezone)
        return now


def to_message(svc: Services, reminder: Reminder, case: Case, recipient: Staff, calendar: SchoolCalendar) -> Message:
    """The reminder as a message: a nudge to the assignee, an escalation to anyone else."""
    step = svc.policy.steps.get(case.step)
    due = case.due_at.astimezone(calendar.zone).isoformat(timespec="minutes") if case.due_at else None
    if reminder.kind in URGENT_KINDS:
        return Message(kind=Kind.ESCALATION, case_ref=case.ref, urgent=True,
                       step_title="urgent alert not yet acknowledged by a DSL", due_at=due)
    kind = Kind.REMINDER if recipient.id == case.assignee_id else Kind.ESCALATION
    return Message(kind=kind, case_ref=case.ref, urgent=case.urgent, step_title=step.title if step else case.step,
                   due_at=due)


def plan(svc: Services, reminder: Reminder, *, case: Case | None, recipient: Staff | None,
         calendar: SchoolCalendar | None, now: datetime) -> Plan:
    """Decide one due reminder (pure: no I/O)."""
    rid = reminder.id or 0
    if case is None or case.status == "closed":
        return Plan(rid, "cancel", "case closed")
    if recipient is None or not recipient.active or calendar is None:
        return Plan(rid, "cancel", "recipient gone")
    when = send_time(calendar, now, urgent=is_urgent(reminder, case))
    if when > now:
        return Plan(rid, "defer", "outside school time", due_at=when)
    message = to_message(svc, reminder, case, recipient, calendar)
    return Plan(rid, "send", "due", outbox=outbox_values(case, recipient, message, reminder, now))


def outbox_values(case: Case, recipient: Staff, message: Message, reminder: Reminder, now: datetime) -> dict[str, Any]:
    """The outbox row for a reminder, as column values (bulk-inserted; see reminder_repo.enqueue_rows)."""
    return {"school_id": case.school_id, "case_id": case.id, "recipient_id": recipient.id,
            "platform": notify.platform_of(recipient), "kind": message.kind.value, "payload": message.to_json(),
            "dedupe_key": f"reminder:{reminder.unique_key}", "status": "pending", "attempts": 0,
            "next_attempt_at": now, "lease_until": None, "sent_ref": None, "last_error": None, "created_at": now,
            "sent_at": None}


async def _plans(svc: Services, s: Any, rows: list[Reminder], now: datetime) -> _Planned:
    """Plans for some rows, with the people and the cases they name (by id)."""
    cases = await reminder_repo.rows_by_id(s, Case, (r.case_id for r in rows))
    staff = await reminder_repo.rows_by_id(s, Staff, (r.recipient_id for r in rows if r.recipient_id))
    schools = await reminder_repo.rows_by_id(s, School, (c.school_id for c in cases.values()))
    entries = await reminder_repo.calendar_entries(s, schools)
    calendars = {sid: calendar_for(school, entries[sid], dict(svc.policy.settings)) for sid, school in schools.items()}
    plans = []
    for r in rows:
        case = cases.get(r.case_id)
        plans.append(plan(svc, r, case=case, recipient=staff.get(r.recipient_id or 0),
                          calendar=calendars.get(case.school_id) if case else None, now=now))
    return plans, staff, cases


async def _claim(svc: Services, now: datetime, lease_until: datetime, batch: int) -> list[int]:
    async with svc.db.transaction() as s:
        return await reminder_repo.claim_due(s, now=now, lease_until=lease_until, limit=batch)


async def _finish(svc: Services, ids: list[int], now: datetime, lease_until: datetime, report: SweepReport) -> None:
    """Enqueue and mark, in one transaction, the claimed rows that are still ours."""
    async with svc.db.transaction() as s:
        rows = await reminder_repo.owned(s, ids=ids, lease_until=lease_until)
        plans, _, _ = await _plans(svc, s, rows, now)
        await reminder_repo.enqueue_rows(s, [p.outbox for p in plans if p.outbox is not None])
        await reminder_repo.finish(s, now=now, sent=[p.reminder_id for p in plans if p.action == "send"],
                                   cancelled=[p.reminder_id for p in plans if p.action == "cancel"],
                                   deferred=[(p.reminder_id, p.due_at) for p in plans if p.due_at is not None])
    _count(report, plans)
    if len(rows) < len(ids):
        logger.warning("sweep lost %s claimed reminders to another sweep (lease ran out)", len(ids) - len(rows))


_TALLY = {"send": "sent", "defer": "deferred", "cancel": "cancelled"}


def _count(report: SweepReport, plans: list[Plan]) -> None:
    for p in plans:
        setattr(report, _TALLY[p.action], getattr(report, _TALLY[p.action]) + 1)


async def sweep(svc: Services, *, now: datetime | None = None, batch: int = DEFAULT_BATCH,
                lease: timedelta = DEFAULT_LEASE, max_batches: int = 10_000) -> SweepReport:
    """Claim and act on every reminder due by `now` (default: the clock), batch by batch."""
    report = SweepReport()
    for _ in range(max_batches):
        at = now or svc.clock()
        lease_until = at + lease
        ids = await _claim(svc, at, lease_until, batch)
        if not ids:
            break
        await _finish(svc, ids, at, lease_until, report)
    if report.sent or report.deferred or report.cancelled:
        logger.info("sweep sent=%s deferred=%s cancelled=%s", report.sent, report.deferred, report.cancelled)
    return report


async def preview(svc: Services, *, now: datetime, limit: int = 10_000) -> SweepReport:
    """What a sweep at `now` would do, changing nothing (the dry run)."""
    report = SweepReport()
    async with svc.db.transaction() as s:
        rows = await reminder_repo.due_now(s, now=now, limit=limit)
        plans, staff, cases = await _plans(svc, s, rows, now)
    _count(report, plans)
    report.plans = list(zip(plans, rows, strict=True))
    report.names = {sid: person.display_name for sid, person in staff.items()}
    report.refs = {cid: case.ref for cid, case in cases.items()}
    return report


async def import_calendar(svc: Services, *, school: str, text: str, ics: bool) -> tuple[int, int]:
    """Replace a school's term and closure dates with a CSV or iCalendar file's. Returns (terms, closures)."""
    terms, closures = (parse_calendar_ics if ics else parse_calendar_csv)(text)
    async with svc.db.transaction() as s:
        home = await repo.get_school(s, school)
        if home is None:
            raise NotFound(f"No school {school!r}.")
        await reminder_repo.replace_calendar(s, school_id=home.id or 0, terms=terms, closures=closures,
                                             now=svc.clock())
        await append_access(s, action="calendar_imported", at=svc.clock(), school_id=home.id,
                            detail={"terms": len(terms), "closures": len(closures)})
    logger.info("calendar imported school=%s terms=%s closures=%s", home.id, len(terms), len(closures))
    return len(terms), len(closures)
