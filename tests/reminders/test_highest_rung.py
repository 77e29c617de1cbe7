"""Highest rung only: after downtime, a weekend or a holiday each person hears once per case, at the
highest rung of the ladder that is due; the lower rungs are marked superseded, never sent."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bot import reminders
from storage import reminder_repo

from .conftest import add_ladder, add_reminder, london, make_case, outbox_rows, reminder_rows, sweep_through

# Friday 27 to Monday 30 November 2026, an imported closure; Good Friday to Easter Monday 2026, bank holidays.
CLOSURE = "kind,start,end,label\nclosure,2026-11-27,2026-11-30,Staff training and long weekend\n"
CLOSED_FOUR_DAYS = [
    pytest.param(CLOSURE, london(2026, 11, 26, 17, 30), london(2026, 12, 1, 8, 0), id="imported closure"),
    pytest.param(None, london(2026, 4, 2, 17, 30), london(2026, 4, 7, 8, 0), id="easter bank holidays"),
]


async def closure_scene(svc, oak, tick, calendar, due):
    """An outcome due on the evening before four closed days, with the policy's four rungs."""
    if calendar:
        await reminders.import_calendar(svc, school="oak", text=calendar, ics=False)
    case = await make_case(svc, oak.teacher, assignee=oak.teacher2, due_at=due)
    keys = await add_ladder(svc, case, [(0, oak.teacher2), (240, oak.teacher2), (1440, oak.dsl), (2880, oak.deputy)],
                            start=due)
    tick.now = due
    return case, keys


def outcome(keys, statuses):
    return {key.split(":")[3]: statuses[key] for key in keys}


@pytest.mark.parametrize("batch", [500, 1])
@pytest.mark.parametrize(("calendar", "due", "first_morning"), CLOSED_FOUR_DAYS)
async def test_sweeping_through_a_four_day_closure_each_person_hears_once_on_the_first_morning(
        svc, oak, tick, calendar, due, first_morning, batch):
    case, keys = await closure_scene(svc, oak, tick, calendar, due)

    await sweep_through(svc, tick, first_morning + timedelta(days=3), batch=batch)

    sent = [(row.recipient_id, row.created_at, row.dedupe_key) for row in await outbox_rows(svc)]
    assert sorted(sent) == sorted([(oak.teacher2.id, first_morning, f"reminder:{keys[1]}"),
                                   (oak.dsl.id, first_morning, f"reminder:{keys[2]}"),
                                   (oak.deputy.id, first_morning, f"reminder:{keys[3]}")])
    statuses = {r.unique_key: r.status for r in await reminder_rows(svc)}
    assert outcome(keys, statuses) == {"0": "superseded", "1": "sent", "2": "sent", "3": "sent"}


@pytest.mark.parametrize("batch", [500, 1])
@pytest.mark.parametrize(("calendar", "due", "first_morning"), CLOSED_FOUR_DAYS)
async def test_after_downtime_over_a_four_day_closure_each_person_hears_once(svc, oak, tick, calendar, due,
                                                                           first_morning, batch):
    case, keys = await closure_scene(svc, oak, tick, calendar, due)
    tick.now = first_morning + timedelta(minutes=20)  # nothing ran until the first school morning

    report = await reminders.sweep(svc, batch=batch)

    assert (report.sent, report.superseded) == (3, 1)
    assert sorted(row.recipient_id for row in await outbox_rows(svc)) == sorted(
        [oak.teacher2.id, oak.dsl.id, oak.deputy.id])
    statuses = {r.unique_key: r.status for r in await reminder_rows(svc)}
    assert outcome(keys, statuses) == {"0": "superseded", "1": "sent", "2": "sent", "3": "sent"}


async def test_a_rung_sent_supersedes_a_lower_rung_still_pending(svc, oak, tick):
    case = await make_case(svc, oak.teacher, assignee=oak.teacher2)
    low = await add_reminder(svc, case, oak.teacher2, due=tick.now + timedelta(hours=1), level=0)  # e.g. snoozed
    high = await add_reminder(svc, case, oak.teacher2, due=tick.now, level=1)

    report = await reminders.sweep(svc)

    assert (report.sent, report.superseded) == (1, 1)
    assert {r.unique_key: r.status for r in await reminder_rows(svc)} == {low: "superseded", high: "sent"}
    tick.now += timedelta(hours=2)
    assert (await reminders.sweep(svc)).sent == 0


async def test_a_lower_rung_claimed_by_another_sweep_is_superseded_once_the_higher_one_went(svc, oak, tick):
    case = await make_case(svc, oak.teacher, assignee=oak.teacher2)
    low = await add_reminder(svc, case, oak.teacher2, due=tick.now - timedelta(minutes=1), level=0)
    other_lease = tick.now + timedelta(minutes=2)
    async with svc.db.transaction() as s:  # another replica claims the lower rung, then is slow
        claimed = await reminder_repo.claim_due(s, now=tick.now, lease_until=other_lease, limit=1)
    high = await add_reminder(svc, case, oak.teacher2, due=tick.now, level=1)
    assert (await reminders.sweep(svc)).sent == 1  # this replica sends the higher rung

    late = reminders.SweepReport()
    await reminders._finish(svc, claimed, tick.now, other_lease, late)

    assert (late.sent, late.superseded) == (0, 1)
    assert {r.unique_key: r.status for r in await reminder_rows(svc)} == {low: "superseded", high: "sent"}
    assert [row.dedupe_key for row in await outbox_rows(svc)] == [f"reminder:{high}"]


async def test_a_lower_rung_yields_to_a_higher_one_due_in_another_sweeps_hands(svc, oak, tick):
    case = await make_case(svc, oak.teacher, assignee=oak.teacher2)
    high = await add_reminder(svc, case, oak.teacher2, due=tick.now - timedelta(minutes=1), level=1)
    lease = tick.now + timedelta(minutes=2)
    async with svc.db.transaction() as s:  # another replica holds the higher rung
        claimed = await reminder_repo.claim_due(s, now=tick.now, lease_until=lease, limit=1)
    low = await add_reminder(svc, case, oak.teacher2, due=tick.now, level=0)

    assert (await reminders.sweep(svc)).superseded == 1
    await reminders._finish(svc, claimed, tick.now, lease, reminders.SweepReport())

    assert {r.unique_key: r.status for r in await reminder_rows(svc)} == {high: "sent", low: "superseded"}


async def test_rungs_of_other_people_other_cases_and_other_visits_do_not_collapse(svc, oak, tick):
    first, second = [await make_case(svc, oak.teacher, assignee=oak.teacher2) for _ in range(2)]
    old = await add_ladder(svc, first, [(0, oak.teacher2), (0, oak.teacher2)], start=tick.now - timedelta(days=3),
                           scope="eh_outcome:0")
    went = [r.id for r in await reminder_rows(svc) if r.unique_key in old]
    async with svc.db.transaction() as s:  # the first visit's rungs went days ago
        await reminder_repo.finish(s, sent=went, cancelled=[], deferred=[], now=tick.now - timedelta(days=3))
    keys = await add_ladder(svc, first, [(0, oak.teacher2), (0, oak.dsl)], start=tick.now, scope="eh_outcome:1")
    keys += await add_ladder(svc, second, [(0, oak.teacher2), (0, oak.dsl)], start=tick.now, scope="eh_outcome:0")

    report = await reminders.sweep(svc)

    assert (report.sent, report.superseded) == (4, 0)
    assert sorted(r.dedupe_key for r in await outbox_rows(svc)) == sorted(f"reminder:{k}" for k in keys)


async def test_the_dry_run_counts_what_would_be_superseded_and_changes_nothing(svc, oak, tick):
    case = await make_case(svc, oak.teacher, assignee=oak.teacher2)
    await add_ladder(svc, case, [(0, oak.teacher2), (240, oak.teacher2)], start=tick.now - timedelta(hours=5))

    report = await reminders.preview(svc, now=tick.now)

    assert (report.sent, report.superseded) == (1, 1)
    assert [p.action for p, _ in report.plans] == ["supersede", "send"]
    assert {r.status for r in await reminder_rows(svc)} == {"pending"}


def test_a_ladder_is_its_key_without_the_level_and_odd_keys_stand_alone():
    from storage.models import Reminder

    def rung(key, level=1, recipient=7):
        return Reminder(case_id=5, recipient_id=recipient, kind="outcome", level=level, due_at=london(2026, 1, 1),
                        unique_key=key)

    assert reminders.ladder_of(rung("5:outcome:eh_outcome:0:1:7")) == reminders.ladder_of(
        rung("5:outcome:eh_outcome:0:3:7", level=3))
    assert reminders.ladder_of(rung("5:outcome:eh_outcome:1:1:7")) != reminders.ladder_of(
        rung("5:outcome:eh_outcome:0:1:7"))
    assert reminders.ladder_of(rung("tag:1")) == ("row", "tag:1")
    assert reminders.ladder_of(rung("5:outcome:x:1:8")) == ("row", "5:outcome:x:1:8")  # names another recipient


async def test_the_collapse_queries_run_on_either_database(services, school, clock):
    """SQLite here, and PostgreSQL too when CONSENTBOT_TEST_DATABASE_URL is set (FOR UPDATE SKIP LOCKED)."""
    tom = school["teacher2"]
    case = await make_case(services, school["teacher"], assignee=tom)
    # Level 0 snoozed past the others; levels 1 and 2 due now; level 3 due in an hour.
    keys = await add_ladder(services, case, [(180, tom), (0, tom), (30, tom), (120, tom)],
                            start=clock.now - timedelta(hours=1))

    report = await reminders.sweep(services)

    assert (report.sent, report.superseded) == (1, 2)
    statuses = {r.unique_key: r.status for r in await reminder_rows(services)}
    assert [statuses[k] for k in keys] == ["superseded", "superseded", "sent", "pending"]
    clock.now += timedelta(hours=1)
    assert (await reminders.sweep(services)).sent == 1
    assert [r.dedupe_key for r in await outbox_rows(services)] == [f"reminder:{keys[2]}", f"reminder:{keys[3]}"]
