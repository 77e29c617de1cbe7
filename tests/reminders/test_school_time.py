"""School time through the sweep: each due reminder is checked against when it is actually sent."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from bot import reminders

from .conftest import add_reminder, london, make_case, outbox_rows, reminder_rows, utc

CALENDAR_CSV = "kind,start,end,label\nclosure,2026-10-26,2026-10-30,Half term\n"


async def sent_at(svc, tick, oak, *, due: datetime, start: datetime, end: datetime, step=timedelta(minutes=30),
                  urgent=False, kind="outcome", to=None) -> list[datetime]:
    """Sweep every `step` from `start` to `end`; return when the reminder (to `to`, else Tom Teacher) went out."""
    case = await make_case(svc, oak.teacher, urgent=urgent)
    await add_reminder(svc, case, to or oak.teacher2, due=due, kind=kind)
    tick.now = start
    while tick.now <= end:
        await reminders.sweep(svc)
        # The next sweep: `step` later, or sooner if a deferred row falls due first (30 s sweeps in real life).
        waiting = [r.due_at for r in await reminder_rows(svc) if r.status == "pending" and r.due_at > tick.now]
        tick.now = min([tick.now + step, *waiting])
    return [row.created_at for row in await outbox_rows(svc)]


@pytest.mark.parametrize(("name", "due", "start", "end", "expected"), [
    ("friday afternoon, in hours", london(2026, 11, 27, 16, 30), london(2026, 11, 27, 16, 30),
     london(2026, 11, 27, 18, 0), utc(2026, 11, 27, 16, 30)),
    ("friday after hours waits for monday", london(2026, 11, 27, 17, 10), london(2026, 11, 27, 17, 10),
     london(2026, 11, 30, 9, 0), utc(2026, 11, 30, 8, 0)),
    ("good friday and easter monday are bank holidays", london(2026, 4, 2, 18, 0), london(2026, 4, 2, 18, 0),
     london(2026, 4, 7, 9, 0), utc(2026, 4, 7, 7, 0)),
    ("clocks go forward: last sunday of march", london(2026, 3, 28, 23, 30), utc(2026, 3, 28, 23, 30),
     utc(2026, 3, 30, 9, 0), utc(2026, 3, 30, 7, 0)),
    ("clocks go back: last sunday of october", utc(2026, 10, 25, 0, 15), utc(2026, 10, 24, 23, 45),
     utc(2026, 10, 26, 9, 0), utc(2026, 10, 26, 8, 0)),
])
async def test_routine_reminders_go_at_the_next_working_time(svc, oak, tick, name, due, start, end, expected):
    assert await sent_at(svc, tick, oak, due=due, start=start, end=end) == [expected], name


async def test_a_half_term_closure_imported_for_the_school_is_skipped(svc, oak, tick):
    await reminders.import_calendar(svc, school="oak", text=CALENDAR_CSV, ics=False)
    sent = await sent_at(svc, tick, oak, due=london(2026, 10, 23, 17, 30), start=london(2026, 10, 23, 17, 30),
                         end=london(2026, 11, 2, 9, 0), step=timedelta(hours=2))
    assert sent == [utc(2026, 11, 2, 8, 0)]


async def test_an_urgent_case_at_22_00_reaches_a_dsl_at_once(svc, oak, tick):
    sent = await sent_at(svc, tick, oak, due=london(2026, 11, 24, 22, 0), start=london(2026, 11, 24, 21, 45),
                         end=london(2026, 11, 24, 22, 30), step=timedelta(minutes=15), urgent=True, to=oak.dsl)
    assert sent == [utc(2026, 11, 24, 22, 0)]


async def test_an_urgent_case_at_22_00_reaches_classroom_staff_only_in_working_hours(svc, oak, tick):
    sent = await sent_at(svc, tick, oak, due=london(2026, 11, 24, 22, 0), start=london(2026, 11, 24, 21, 45),
                         end=london(2026, 11, 25, 9, 0), step=timedelta(minutes=15), urgent=True)
    assert sent == [utc(2026, 11, 25, 8, 0)]


async def test_an_unacknowledged_alert_escalates_in_the_night_and_during_the_dst_change(svc, oak, tick):
    # 01:30 GMT on the last Sunday of March does not exist locally; an urgent escalation still goes once.
    sent = await sent_at(svc, tick, oak, due=utc(2026, 3, 29, 1, 15), start=utc(2026, 3, 29, 0, 45),
                         end=utc(2026, 3, 29, 3, 0), step=timedelta(minutes=15), kind="urgent_ack")
    assert sent == [utc(2026, 3, 29, 1, 15)]


async def test_nothing_routine_is_ever_scheduled_in_the_small_hours(svc, oak, tick):
    case = await make_case(svc, oak.teacher)
    for hour in range(0, 24):
        await add_reminder(svc, case, oak.teacher2, due=utc(2026, 10, 25, hour, 0), level=hour)
    tick.now = utc(2026, 10, 25, 23, 59)
    await reminders.sweep(svc)
    for row in await reminder_rows(svc):
        local = row.due_at.astimezone(london(2026, 1, 1).tzinfo)
        assert not 1 <= local.hour < 3 and row.status == "pending"
        assert local == london(2026, 10, 26, 8, 0)
