"""The reminder sweep: claim due rows, send, defer to school time, cancel, or supersede each.

Reminders are database rows, never scheduler jobs, so a reminder that fell due while no
process ran is found by the next sweep after a restart.

Exactly once, across replicas and crashes: a batch is claimed in one short transaction
(FOR UPDATE SKIP LOCKED on PostgreSQL; BEGIN IMMEDIATE on SQLite) with a lease, then the
outbox rows are enqueued and the reminders marked sent in a second transaction. If a process
dies between the two, its lease runs out and another sweep re-claims the rows; the outbox
dedupe key (`reminder:<unique_key>`) makes a repeated enqueue a no-op.

Highest rung only: when several rungs of one ladder fall due together (after downtime, a
weekend, a holiday), each person hears once per case, at the highest; see `collapse`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from datetime import datetime, time, timedelta
from typing import Any, Literal, Protocol
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from bot import notify
from bot.calendar_ics import parse_calendar_ics
from bot.cases import Services
from bot.errors import NotFound
from bot.messages import Kind, Message
from bot.schooltime import NoSchoolDayError, SchoolCalendar, parse_calendar_csv
from storage import reminder_repo, repo
from storage.audit import append_access
from storage.models import Case, Reminder, School, SchoolCalendarEntry, Staff

logger = logging.getLogger(__name__)
Action = Literal["send", "defer", "cancel", "supersede"]
DEFAULT_BATCH = 500
DEFAULT_LEASE = timedelta(minutes=2)
URGENT_KINDS = frozenset({notify.URGENT_ACK_REMINDER})
# A ladder that only makes sense while the case waits at one status stops when it moves on.
STATUS_NEEDED = {notify.DRAFT_REMINDER: "draft", notify.DECISION_REMINDER: "awaiting_decision"}
FINISH_DRAFT = "Finish raising this concern"
REVIEW_TITLE = "Review date: review this case"


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
    superseded: int = 0  # lower rungs not sent because a higher rung of their ladder went
    plans: list[tuple[Plan, Reminder]] = field(default_factory=list)
    names: dict[int, str] = field(default_factory=dict)  # recipients' display names (dry run)
    refs: dict[int, str] = field(default_factory=dict)  # case references (dry run)


@dataclass
class _Planned:
    plans: list[Plan]
    lower: list[int]  # pending lower rungs (outside the batch) that a rung sent now supersedes
    staff: dict[int, Staff]
    cases: dict[int, Case]


class _Rung(Protocol):
    @property
    def case_id(self) -> int: ...
    @property
    def kind(self) -> str: ...
    @property
    def level(self) -> int: ...
    @property
    def recipient_id(self) -> int | None: ...
    @property
    def unique_key(self) -> str: ...


def calendar_for(school: School, entries: list[SchoolCalendarEntry], settings: dict[str, Any]) -> SchoolCalendar:
    """A school's calendar: its timezone and nation, imported dates, the policy's working hours."""
    hours = settings.get("school_time") or {}
    return SchoolCalendar(
        timezone=school.timezone, nation=school.nation,
        working_start=time.fromisoformat(str(hours.get("working_start", "08:00"))),
        working_end=time.fromisoformat(str(hours.get("working_end", "17:00"))),
        terms=tuple((e.start_date, e.end_date) for e in entries if e.kind == "term"),
        closures=tuple((e.start_date, e.end_date) for e in entries if e.kind == "closure"))


def is_urgent(reminder: Reminder, case: Case, recipient: Staff) -> bool:
    """Urgent reminders ignore working hours: an unacknowledged alert, to anyone; an urgent case, to a DSL or deputy.

    Classroom staff are reminded in working hours only, even about an urgent case: out of hours the
    DSLs act on it, not they. A review date is never urgent.
    """
    if reminder.kind == notify.REVIEW_REMINDER:
        return False
    return reminder.kind in URGENT_KINDS or (case.urgent and recipient.role in notify.DECIDER_ROLES)


def send_time(calendar: SchoolCalendar, now: datetime, *, urgent: bool) -> datetime:
    """When a reminder seen due at `now` may go: now if permissible, else the next working time."""
    try:
        return calendar.next_send_time(now, urgent=urgent)
    except NoSchoolDayError:
        # A calendar with no school day for 400 days is a mistake; silence would be worse.
        logger.warning("no school day in calendar tz=%s: sending now", calendar.timezone)
        return now


async def working_due(svc: Services, session: AsyncSession, *, school_id: int, due: datetime) -> datetime:
    """`due`, or the school's next working time when `due` falls outside working hours or on a closed day.

    The calendar is the school's (timezone, nation), its imported terms and closures, and the
    policy's working hours. An unknown school leaves `due` as it is.
    """
    schools = await reminder_repo.rows_by_id(session, School, [school_id])
    if school_id not in schools:
        return due
    entries = await reminder_repo.calendar_entries(session, [school_id])
    calendar = calendar_for(schools[school_id], entries[school_id], dict(svc.policy.settings))
    return send_time(calendar, due, urgent=False)


def _step_title(svc: Services, case: Case) -> str:
    step = svc.policy.steps.get(case.step)
    return step.title if step else case.step


def _outcome_message(svc: Services, case: Case, recipient: Staff, calendar: SchoolCalendar) -> Message:
    due = case.due_at.astimezone(calendar.zone).isoformat(timespec="minutes") if case.due_at else None
    if recipient.id == case.assignee_id:
        return Message(kind=Kind.REMINDER, case_ref=case.ref, urgent=case.urgent, step_title=_step_title(svc, case),
                       due_at=due, can_snooze=not case.urgent)
    return Message(kind=Kind.ESCALATION, case_ref=case.ref, urgent=case.urgent, step_title=_step_title(svc, case),
                   due_at=due)


def _urgent_ack_message(svc: Services, case: Case, recipient: Staff, calendar: SchoolCalendar) -> Message:
    return Message(kind=Kind.ESCALATION, case_ref=case.ref, urgent=True,
                   step_title="urgent alert not yet acknowledged by a DSL",
                   can_acknowledge=recipient.role in notify.DECIDER_ROLES)


def _draft_message(svc: Services, case: Case, recipient: Staff, calendar: SchoolCalendar) -> Message:
    if recipient.id == case.raised_by:
        return Message(kind=Kind.REMINDER, case_ref=case.ref, urgent=case.urgent, step_title=FINISH_DRAFT)
    return Message(kind=Kind.DRAFT_WAITING, case_ref=case.ref, urgent=case.urgent, step_title=_step_title(svc, case))


def _decision_message(svc: Services, case: Case, recipient: Staff, calendar: SchoolCalendar) -> Message:
    return Message(kind=Kind.ESCALATION, case_ref=case.ref, urgent=case.urgent,
                   step_title=f"waiting for a DSL decision: {_step_title(svc, case)}")


def _review_message(svc: Services, case: Case, recipient: Staff, calendar: SchoolCalendar) -> Message:
    return Message(kind=Kind.REMINDER, case_ref=case.ref, step_title=REVIEW_TITLE)


_MESSAGES = {notify.OUTCOME_REMINDER: _outcome_message, notify.URGENT_ACK_REMINDER: _urgent_ack_message,
             notify.DRAFT_REMINDER: _draft_message, notify.DECISION_REMINDER: _decision_message,
             notify.REVIEW_REMINDER: _review_message}


def to_message(svc: Services, reminder: Reminder, case: Case, recipient: Staff, calendar: SchoolCalendar) -> Message:
    """The reminder as a message for its recipient (see each kind's builder above)."""
    return _MESSAGES.get(reminder.kind, _outcome_message)(svc, case, recipient, calendar)


def moot_reason(reminder: Reminder, case: Case | None) -> str | None:
    """Why a reminder no longer applies (then it is cancelled), or None.

    A review date is the one reminder that fires on a closed case: the DSL set it at closing (G5, G9).
    """
    if case is None:
        return "case gone"
    needed = STATUS_NEEDED.get(reminder.kind)
    if needed is not None and case.status != needed:
        return f"case no longer {needed}"
    if case.status == "closed" and reminder.kind != notify.REVIEW_REMINDER:
        return "case closed"
    return None


def plan(svc: Services, reminder: Reminder, *, case: Case | None, recipient: Staff | None,
         calendar: SchoolCalendar | None, now: datetime) -> Plan:
    """Decide one due reminder (pure: no I/O)."""
    rid = reminder.id or 0
    moot = moot_reason(reminder, case)
    if moot is not None or case is None:
        return Plan(rid, "cancel", moot or "case gone")
    if recipient is None or not recipient.active or calendar is None:
        return Plan(rid, "cancel", "recipient gone")
    when = send_time(calendar, now, urgent=is_urgent(reminder, case, recipient))
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


def ladder_of(rung: _Rung) -> tuple[Any, ...]:
    """The ladder and recipient a row belongs to: its unique key (`case:kind:scope:level:recipient`) minus the level.

    The scope keeps a second visit's ladder apart from the first's. A key of another shape is
    its own ladder, so such a row never supersedes nor is superseded.
    """
    head, _, tail = rung.unique_key.rpartition(f":{rung.level}:")
    if head.startswith(f"{rung.case_id}:{rung.kind}:") and tail == str(rung.recipient_id):
        return (rung.case_id, rung.kind, head, rung.recipient_id)
    return ("row", rung.unique_key)


def collapse(plans: list[Plan], rows: list[Reminder], others: list[reminder_repo.Rung],
             now: datetime) -> tuple[list[Plan], list[int]]:
    """Highest rung only: of the rungs of one ladder going to one person now, only the highest is sent.

    After downtime, a weekend or a holiday several rungs fall due together; the person hears once,
    at the highest. A lower rung is superseded when a higher one of its ladder is sent now, was
    sent before, or is due now in another sweep's hands. Returns the plans (lower sends become
    'supersede') and the ids of pending lower rungs, outside the batch, that a send now supersedes.
    """
    batch = {r.id for r in rows}
    sending = {r.id: r for r, p in zip(rows, plans, strict=True) if p.action == "send"}
    going: list[_Rung] = [*sending.values(), *(o for o in others if o.id not in batch and _outranks(o, now))]
    top: dict[tuple[Any, ...], int] = {}
    for rung in going:
        top[ladder_of(rung)] = max(rung.level, top.get(ladder_of(rung), rung.level))
    outranked = {rid for rid, r in sending.items() if r.level < top[ladder_of(r)]}
    kept = [replace(p, action="supersede", reason="a higher rung goes instead", outbox=None)
            if p.reminder_id in outranked else p for p in plans]
    sent_level = {ladder_of(r): r.level for rid, r in sending.items() if rid not in outranked}
    lower = [o.id for o in others if o.status == "pending" and o.id not in batch
             and o.level < sent_level.get(ladder_of(o), -1)]
    return kept, lower


def _outranks(rung: reminder_repo.Rung, now: datetime) -> bool:
    """A rung outside the batch that counts as going: sent already, or live and due now."""
    return rung.status in reminder_repo.SENT or (rung.status in reminder_repo.LIVE and rung.due_at <= now)


async def _plans(svc: Services, s: AsyncSession, rows: list[Reminder], now: datetime) -> _Planned:
    """Plans for some rows, with the people and the cases they name (by id), lower rungs collapsed."""
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
    sending = [r for r, p in zip(rows, plans, strict=True) if p.action == "send"]
    others = await reminder_repo.other_rungs(s, rows=sending)
    plans, lower = collapse(plans, rows, others, now)
    return _Planned(plans, lower, staff, cases)


async def _claim(svc: Services, now: datetime, lease_until: datetime, batch: int) -> list[int]:
    async with svc.db.transaction() as s:
        return await reminder_repo.claim_due(s, now=now, lease_until=lease_until, limit=batch)


async def _finish(svc: Services, ids: list[int], now: datetime, lease_until: datetime, report: SweepReport) -> None:
    """Enqueue and mark, in one transaction, the claimed rows that are still ours (and the rungs they supersede)."""
    async with svc.db.transaction() as s:
        rows = await reminder_repo.owned(s, ids=ids, lease_until=lease_until)
        planned = await _plans(svc, s, rows, now)
        plans = planned.plans
        outbox = [p.outbox for p in plans if p.outbox is not None]
        await notify.route(s, outbox, svc.delivering)
        await reminder_repo.enqueue_rows(s, outbox)
        await reminder_repo.finish(s, now=now, sent=_ids(plans, "send"), cancelled=_ids(plans, "cancel"),
                                   superseded=_ids(plans, "supersede"),
                                   deferred=[(p.reminder_id, p.due_at) for p in plans if p.due_at is not None])
        lower = await reminder_repo.supersede_pending(s, ids=planned.lower)
    _count(report, plans)
    report.superseded += lower
    if len(rows) < len(ids):
        logger.warning("sweep lost %s claimed reminders to another sweep (lease ran out)", len(ids) - len(rows))


def _ids(plans: list[Plan], action: Action) -> list[int]:
    return [p.reminder_id for p in plans if p.action == action]


_TALLY = {"send": "sent", "defer": "deferred", "cancel": "cancelled", "supersede": "superseded"}


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
    if report.sent or report.deferred or report.cancelled or report.superseded:
        logger.info("sweep sent=%s deferred=%s cancelled=%s superseded=%s", report.sent, report.deferred,
                    report.cancelled, report.superseded)
    return report


async def preview(svc: Services, *, now: datetime, limit: int = 10_000) -> SweepReport:
    """What a sweep at `now` would do, changing nothing (the dry run)."""
    report = SweepReport()
    async with svc.db.transaction() as s:
        rows = await reminder_repo.due_now(s, now=now, limit=limit)
        planned = await _plans(svc, s, rows, now)
    _count(report, planned.plans)
    report.superseded += len(planned.lower)
    report.plans = list(zip(planned.plans, rows, strict=True))
    report.names = {sid: person.display_name for sid, person in planned.staff.items()}
    report.refs = {cid: case.ref for cid, case in planned.cases.items()}
    return report


async def import_calendar(svc: Services, *, school: str, text: str, ics: bool) -> tuple[int, int]:
    """Replace a school's term and closure dates with a CSV or iCalendar file's. Returns (terms, closures)."""
    async with svc.db.read() as s:
        found = await repo.get_school(s, school)
    if found is None:
        raise NotFound(f"No school {school!r}.")
    # An .ics time is placed on the school's own dates (a 23:30 UTC start in summer is the next day).
    terms, closures = parse_calendar_ics(text, ZoneInfo(found.timezone)) if ics else parse_calendar_csv(text)
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
