"""The sweep: exactly once, leases that survive a crash, cancellation, and the index it reads."""

from __future__ import annotations

from datetime import timedelta

from bot import reminders
from bot.messages import Kind, Message
from storage import reminder_repo

from .conftest import add_reminder, london, make_case, outbox_rows, reminder_rows, utc


async def test_a_due_reminder_is_sent_once_and_only_once(svc, oak, tick):
    case = await make_case(svc, oak.teacher, assignee=oak.teacher2, due_at=tick.now)
    key = await add_reminder(svc, case, oak.teacher2, due=tick.now)

    first = await reminders.sweep(svc)
    second = await reminders.sweep(svc)

    assert (first.sent, second.sent) == (1, 0)
    [row] = await outbox_rows(svc, kind="reminder")
    assert row.dedupe_key == f"reminder:{key}" and row.recipient_id == oak.teacher2.id
    message = Message.from_json(row.payload)
    assert message.kind is Kind.REMINDER and message.case_ref == case.ref
    [reminder] = await reminder_rows(svc)
    assert reminder.status == "sent" and reminder.sent_at == tick.now


async def test_a_reminder_not_yet_due_is_left_alone(svc, oak, tick):
    case = await make_case(svc, oak.teacher, assignee=oak.teacher2)
    await add_reminder(svc, case, oak.teacher2, due=tick.now + timedelta(minutes=1))

    assert (await reminders.sweep(svc)).sent == 0
    assert [r.status for r in await reminder_rows(svc)] == ["pending"]


async def test_a_claim_abandoned_by_a_crash_is_reclaimed_after_its_lease(svc, oak, tick):
    case = await make_case(svc, oak.teacher, assignee=oak.teacher2)
    await add_reminder(svc, case, oak.teacher2, due=tick.now)
    lease = timedelta(minutes=2)
    async with svc.db.transaction() as s:  # a sweep claims, then its process dies before enqueuing
        assert len(await reminder_repo.claim_due(s, now=tick.now, lease_until=tick.now + lease, limit=10)) == 1

    assert (await reminders.sweep(svc, lease=lease)).sent == 0  # the lease still holds
    tick.now += lease
    assert (await reminders.sweep(svc, lease=lease)).sent == 1
    assert len(await outbox_rows(svc, kind="reminder")) == 1


async def test_a_slow_sweep_that_lost_its_lease_sends_nothing_twice(svc, oak, tick):
    case = await make_case(svc, oak.teacher, assignee=oak.teacher2)
    await add_reminder(svc, case, oak.teacher2, due=tick.now)
    slow_lease = tick.now + timedelta(seconds=30)
    async with svc.db.transaction() as s:
        ids = await reminder_repo.claim_due(s, now=tick.now, lease_until=slow_lease, limit=10)
    tick.now += timedelta(minutes=1)
    assert (await reminders.sweep(svc)).sent == 1  # another replica re-claims and sends

    late = reminders.SweepReport()
    await reminders._finish(svc, ids, tick.now, slow_lease, late)  # the slow one wakes up

    assert late.sent == 0
    assert len(await outbox_rows(svc, kind="reminder")) == 1


async def test_the_outbox_dedupe_key_stops_a_second_enqueue_of_the_same_rung(svc, oak, tick):
    case = await make_case(svc, oak.teacher, assignee=oak.teacher2)
    await add_reminder(svc, case, oak.teacher2, due=tick.now)
    await reminders.sweep(svc)
    async with svc.db.transaction() as s:  # as if the 'sent' mark were lost: the row is due again
        await reminder_repo.finish(s, sent=[], cancelled=[], deferred=[(1, tick.now)], now=tick.now)

    assert (await reminders.sweep(svc)).sent == 1
    assert len(await outbox_rows(svc, kind="reminder")) == 1


async def test_reminders_of_a_closed_case_or_a_removed_person_are_cancelled(svc, oak, tick):
    from bot import people

    closed = await make_case(svc, oak.teacher, status="closed")
    open_ = await make_case(svc, oak.teacher, assignee=oak.teacher2)
    await add_reminder(svc, closed, oak.teacher2, due=tick.now)
    await add_reminder(svc, open_, oak.teacher2, due=tick.now)
    await people.remove(svc, email="tom@oak.sch.uk")

    report = await reminders.sweep(svc)

    assert (report.sent, report.cancelled) == (0, 2)
    assert await outbox_rows(svc, kind="reminder") == []


async def test_many_due_rows_go_in_batches(svc, oak, tick):
    for minutes in range(7):  # seven cases: rungs of one ladder to one person would collapse to one
        case = await make_case(svc, oak.teacher, assignee=oak.teacher2)
        await add_reminder(svc, case, oak.teacher2, due=tick.now - timedelta(minutes=minutes))

    report = await reminders.sweep(svc, batch=3)

    assert report.sent == 7
    assert len({r.dedupe_key for r in await outbox_rows(svc, kind="reminder")}) == 7


async def test_the_due_query_reads_the_status_due_at_index(svc):
    async with svc.db.transaction() as s:
        plan = await reminder_repo.due_query_plan(s, now=utc(2026, 1, 1))
    assert any("ix_reminders_due" in line for line in plan), plan


async def test_a_reminder_that_fell_due_while_down_goes_once_at_the_next_working_time(svc, oak, tick):
    case = await make_case(svc, oak.teacher, assignee=oak.teacher2)
    await add_reminder(svc, case, oak.teacher2, due=london(2026, 11, 28, 9, 0))  # Saturday
    tick.now = london(2026, 11, 29, 15, 0)  # the first process starts on Sunday afternoon

    assert (await reminders.sweep(svc)).deferred == 1
    [row] = await reminder_rows(svc)
    assert row.status == "pending" and row.due_at == london(2026, 11, 30, 8, 0)
    tick.now = london(2026, 11, 30, 8, 0, 20)
    assert (await reminders.sweep(svc)).sent == 1
    assert (await reminders.sweep(svc)).sent == 0
    assert len(await outbox_rows(svc, kind="reminder")) == 1


async def test_the_dry_run_says_what_would_happen_and_changes_nothing(svc, oak, tick):
    case = await make_case(svc, oak.teacher, assignee=oak.teacher2)
    await add_reminder(svc, case, oak.teacher2, due=tick.now)

    report = await reminders.preview(svc, now=tick.now)

    assert report.sent == 1 and report.names[oak.teacher2.id] == "Tom Teacher" and report.refs[case.id] == case.ref
    assert [r.status for r in await reminder_rows(svc)] == ["pending"]
    assert await outbox_rows(svc) == []
