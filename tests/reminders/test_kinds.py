"""Each reminder kind through the sweep: who hears what, when, and when the ladder stops.

Rows are seeded the way bot.notify writes them (conftest.add_ladder), so these tests hold the
sweep's side of the contract: review dates, decisions waiting, unfinished concerns, outcomes.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import update

from bot import reminders
from bot.messages import Kind, Message
from storage.models import Case

from .conftest import add_ladder, london, make_case, outbox_rows, reminder_rows, sweep_through, utc


async def sent(svc) -> list[tuple[int, Message, object]]:
    return [(row.recipient_id, Message.from_json(row.payload), row.created_at) for row in await outbox_rows(svc)]


async def set_status(svc, case, status: str) -> None:
    async with svc.db.transaction() as s:
        await s.execute(update(Case).where(Case.id == case.id).values(status=status))


@pytest.mark.parametrize(("review_day", "goes_at"), [
    (london(2026, 12, 2, 8, 0), utc(2026, 12, 2, 8, 0)),  # a Wednesday: that morning
    (london(2026, 12, 5, 8, 0), utc(2026, 12, 7, 8, 0)),  # a Saturday: Monday morning
])
async def test_a_review_date_reminds_the_dsl_on_its_school_day_though_the_case_is_closed(svc, oak, tick, review_day,
                                                                                         goes_at):
    case = await make_case(svc, oak.teacher, status="closed", step="end_not_shared", urgent=True)
    await add_ladder(svc, case, [(0, oak.dsl)], start=review_day, kind="review")

    await sweep_through(svc, tick, review_day + timedelta(days=4))

    [(who, message, at)] = await sent(svc)
    assert (who, at) == (oak.dsl.id, goes_at)  # never urgent: not at 08:00 on the Saturday
    assert (message.kind, message.step_title, message.urgent) == (Kind.REMINDER, "Review date: review this case", False)


async def decision_scene(svc, oak, tick):
    """A routine case waiting on a DSL since Tuesday 09:00, with the decision ladder's three rungs."""
    tick.now = london(2026, 11, 24, 9, 0)
    case = await make_case(svc, oak.teacher, status="awaiting_decision", step="dsl_threshold")
    await add_ladder(svc, case, [(120, oak.dsl), (240, oak.deputy), (480, oak.head)], start=tick.now, kind="decision")
    return case


async def test_a_decision_waiting_reaches_the_dsl_then_the_deputies_then_the_escalation_contact(svc, oak, tick):
    case = await decision_scene(svc, oak, tick)

    await sweep_through(svc, tick, london(2026, 11, 26, 9, 0))

    found = await sent(svc)
    assert [(who, at) for who, _, at in found] == [
        (oak.dsl.id, utc(2026, 11, 24, 11, 0)), (oak.deputy.id, utc(2026, 11, 24, 13, 0)),
        (oak.head.id, utc(2026, 11, 25, 8, 0))]  # 17:00 is after hours: the next morning
    assert {(m.kind, m.step_title, m.case_ref) for _, m, _ in found} == {
        (Kind.ESCALATION, "waiting for a DSL decision: Confirm the threshold", case.ref)}


async def test_the_decision_ladder_stops_once_the_case_leaves_awaiting_decision(svc, oak, tick):
    case = await decision_scene(svc, oak, tick)
    await sweep_through(svc, tick, london(2026, 11, 24, 13, 0))
    await set_status(svc, case, "awaiting_outcome")  # the DSL decided

    await sweep_through(svc, tick, london(2026, 11, 26, 9, 0))

    assert [who for who, _, _ in await sent(svc)] == [oak.dsl.id, oak.deputy.id]
    assert [r.status for r in await reminder_rows(svc)] == ["sent", "sent", "cancelled"]


async def draft_scene(svc, oak, tick, *, urgent: bool):
    """A concern started at 16:50 on a Tuesday and left at the threshold question."""
    tick.now = london(2026, 11, 24, 16, 50)
    case = await make_case(svc, oak.teacher, status="draft", step="staff_threshold", urgent=urgent)
    await add_ladder(svc, case, [(15, oak.teacher), (15, oak.dsl)], start=tick.now, kind="draft")
    return case


async def test_an_unfinished_concern_nudges_the_raiser_and_tells_the_dsl_where_it_waits(svc, oak, tick):
    await draft_scene(svc, oak, tick, urgent=False)

    await sweep_through(svc, tick, london(2026, 11, 25, 9, 0))

    found = {who: (m.kind, m.step_title, m.urgent, at) for who, m, at in await sent(svc)}
    assert found == {
        oak.teacher.id: (Kind.REMINDER, "Finish raising this concern", False, utc(2026, 11, 25, 8, 0)),
        oak.dsl.id: (Kind.DRAFT_WAITING, "What is your view of the level of concern?", False, utc(2026, 11, 25, 8, 0))}


async def test_an_urgent_unfinished_concern_reaches_the_dsl_at_night_and_the_raiser_in_the_morning(svc, oak, tick):
    await draft_scene(svc, oak, tick, urgent=True)

    await sweep_through(svc, tick, london(2026, 11, 25, 9, 0))

    found = {who: (m.kind, m.urgent, at) for who, m, at in await sent(svc)}
    assert found == {oak.dsl.id: (Kind.DRAFT_WAITING, True, utc(2026, 11, 24, 17, 5)),
                     oak.teacher.id: (Kind.REMINDER, True, utc(2026, 11, 25, 8, 0))}


async def test_draft_reminders_stop_once_the_concern_is_finished(svc, oak, tick):
    case = await draft_scene(svc, oak, tick, urgent=False)
    await set_status(svc, case, "awaiting_decision")

    await sweep_through(svc, tick, london(2026, 11, 25, 9, 0))

    assert await sent(svc) == []
    assert {r.status for r in await reminder_rows(svc)} == {"cancelled"}


async def test_an_urgent_outcome_reminder_cannot_be_snoozed_from_the_message(svc, oak, tick):
    case = await make_case(svc, oak.teacher, assignee=oak.teacher2, urgent=True, due_at=tick.now)
    await add_ladder(svc, case, [(0, oak.teacher2), (0, oak.dsl)], start=tick.now)

    await reminders.sweep(svc)

    found = {who: (m.kind, m.can_snooze, m.urgent) for who, m, _ in await sent(svc)}
    assert found == {oak.teacher2.id: (Kind.REMINDER, False, True), oak.dsl.id: (Kind.ESCALATION, False, True)}


async def test_only_a_review_outlives_the_case_closing(svc, oak, tick):
    case = await make_case(svc, oak.teacher, status="closed")
    for kind in ("outcome", "urgent_ack", "draft", "decision", "review"):
        await add_ladder(svc, case, [(0, oak.dsl)], start=tick.now, kind=kind)

    report = await reminders.sweep(svc)

    assert (report.sent, report.cancelled) == (1, 4)
    assert [m.step_title for _, m, _ in await sent(svc)] == ["Review date: review this case"]


@pytest.mark.parametrize(("due", "expected"), [
    (london(2026, 11, 24, 10, 0), utc(2026, 11, 24, 10, 0)),  # Tuesday, in hours: unchanged
    (london(2026, 11, 24, 18, 30), utc(2026, 11, 25, 8, 0)),  # after hours: the next morning
    (london(2026, 11, 27, 16, 59), utc(2026, 11, 27, 16, 59)),  # Friday, a minute before the end
    (london(2026, 11, 28, 11, 0), utc(2026, 11, 30, 8, 0)),  # Saturday: Monday
    (london(2026, 12, 24, 9, 0), utc(2027, 1, 4, 8, 0)),  # the imported Christmas closure
    (london(2026, 6, 5, 6, 0), utc(2026, 6, 5, 7, 0)),  # summer time: 08:00 BST
])
async def test_working_due_moves_a_due_time_to_the_schools_next_working_time(svc, oak, due, expected):
    await reminders.import_calendar(svc, school="oak", text="kind,start,end\nclosure,2026-12-19,2027-01-03\n", ics=False)
    async with svc.db.transaction() as s:
        assert await reminders.working_due(svc, s, school_id=oak.teacher.school_id, due=due) == expected


async def test_working_due_leaves_the_time_of_an_unknown_school_alone(svc, oak):
    async with svc.db.transaction() as s:
        assert await reminders.working_due(svc, s, school_id=999, due=london(2026, 11, 28, 11, 0)) == london(
            2026, 11, 28, 11, 0)
