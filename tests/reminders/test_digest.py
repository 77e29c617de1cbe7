"""The DSL's daily digest and weekly summary: content, references only, folding, idempotence."""

from __future__ import annotations

from datetime import time, timedelta

from sqlalchemy import update

from bot import reminders
from bot.digest import run_digests
from bot.messages import Message
from storage.models import School

from .conftest import add_ladder, add_reminder, london, make_case, outbox_rows, reminder_rows, utc

MORNING = london(2026, 11, 24, 7, 30)  # Tuesday


async def scene(svc, oak, tick):
    """A school's open cases the morning after a busy Monday."""
    monday = london(2026, 11, 23, 9, 0)
    waiting = await make_case(svc, oak.teacher, status="awaiting_decision", step="dsl_threshold", created_at=monday)
    overdue = await make_case(svc, oak.teacher, assignee=oak.teacher2, due_at=london(2026, 11, 23, 11, 0))
    soon = await make_case(svc, oak.teacher, assignee=oak.teacher, due_at=london(2026, 11, 24, 12, 0))
    follow = await make_case(svc, oak.teacher, status="awaiting_decision", step="follow_up")
    closed = await make_case(svc, oak.teacher, status="closed", step="end_shared",
                             created_at=london(2026, 11, 23, 15, 0))
    urgent = await make_case(svc, oak.teacher, urgent=True, assignee=oak.teacher2, due_at=monday)
    await add_reminder(svc, overdue, oak.dsl, due=london(2026, 11, 24, 8, 0), level=2)  # folded into the digest
    await add_reminder(svc, urgent, oak.dsl, due=london(2026, 11, 24, 8, 0), level=2)  # urgent: never folded
    tick.now = MORNING
    return waiting, overdue, soon, follow, closed, urgent


def lines_of(row) -> list[str]:
    return list(Message.from_json(row.payload).lines)


async def test_the_daily_digest_lists_references_and_assignees_by_section(svc, oak, tick):
    waiting, overdue, soon, follow, closed, urgent = await scene(svc, oak, tick)

    report = await run_digests(svc)

    daily = {row.recipient_id: row for _, row in report.messages if row.dedupe_key.startswith("digest:daily:")}
    assert set(daily) == {oak.dsl.id, oak.other_dsl.id}
    assert all(line.endswith(": 0") for line in lines_of(daily[oak.other_dsl.id]))  # another school's cases: none
    lines = lines_of(daily[oak.dsl.id])
    assert lines == [
        "Awaiting decision: 1", f"  {waiting.ref} since Mon 23 Nov 2026, 09:00",
        "Outcomes overdue: 2",
        f"  {overdue.ref} due Mon 23 Nov 2026, 11:00, assigned to Tom Teacher (reminder)",
        f"  {urgent.ref} due Mon 23 Nov 2026, 09:00, assigned to Tom Teacher",
        "Outcomes due soon: 1", f"  {soon.ref} due Tue 24 Nov 2026, 12:00, assigned to Tina Teacher",
        "Follow-ups due: 1", f"  {follow.ref} (Follow up the referral)",
        "Not finished by the person raising it: 0",
        "Closed since the last digest: 1", f"  {closed.ref} at Mon 23 Nov 2026, 15:00",
    ]
    assert daily[oak.dsl.id].dedupe_key == f"digest:daily:{oak.dsl.id}:2026-11-24"


async def test_every_dsl_of_an_open_school_gets_one_even_with_nothing_to_report(svc, oak, tick):
    tick.now = MORNING
    report = await run_digests(svc)
    assert sorted(p.email for p, row in report.messages if "daily" in row.dedupe_key) == [
        "dee@oak.sch.uk", "olu@elm.sch.uk"]


async def test_routine_reminders_to_the_dsl_are_folded_in_and_not_sent_again(svc, oak, tick):
    _, overdue, _, _, _, urgent = await scene(svc, oak, tick)

    report = await run_digests(svc)
    tick.now = london(2026, 11, 24, 8, 0)
    sweep = await reminders.sweep(svc)

    assert report.folded == 1 and sweep.sent == 1
    by_case = {r.case_id: r.status for r in await reminder_rows(svc)}
    assert by_case == {overdue.id: "sent_by_digest", urgent.id: "sent"}
    assert [r.case_id for r in await outbox_rows(svc, kind="escalation")] == [urgent.id]


async def test_the_digest_goes_once_per_dsl_per_day(svc, oak, tick):
    await scene(svc, oak, tick)
    first = await run_digests(svc)
    tick.now += timedelta(minutes=5)
    again = await run_digests(svc)  # another replica, or a restart
    assert len(first.messages) == 4 and again.messages == []
    assert len(await outbox_rows(svc, kind="digest")) == 4  # daily + weekly, two DSLs


async def test_closed_since_the_last_digest_means_since_yesterdays(svc, oak, tick):
    await scene(svc, oak, tick)
    await run_digests(svc)
    later = await make_case(svc, oak.teacher, status="closed", created_at=london(2026, 11, 24, 14, 0))
    tick.now = london(2026, 11, 25, 7, 30)
    [(_, row)] = [(p, r) for p, r in (await run_digests(svc)).messages if p.id == oak.dsl.id]
    lines = lines_of(row)
    assert lines[lines.index("Closed since the last digest: 1") + 1] == f"  {later.ref} at Tue 24 Nov 2026, 14:00"
    assert "weekly" not in row.dedupe_key  # the weekly summary went on Tuesday, the week's first


async def test_the_weekly_summary_gives_counts_and_time_to_decision(svc, oak, tick):
    from .test_ladder import early_help_case

    tick.now = london(2026, 11, 23, 9, 0)
    await early_help_case(svc, oak, london(2026, 11, 24, 9, 0))  # decided at once: 0.0 h
    tick.now = MORNING

    report = await run_digests(svc)

    [row] = [r for p, r in report.messages if p.id == oak.dsl.id and "weekly" in r.dedupe_key]
    assert row.dedupe_key == f"digest:weekly:{oak.dsl.id}:2026-W48"
    assert lines_of(row) == ["Week to Tue 24 Nov 2026: raised 1, decided 1, closed 0",
                             "Open now: 1, outcomes overdue: 0",
                             "Time to first DSL decision: median 0.0 h, longest 0.0 h"]
    for _, r in report.messages:
        assert "Ada" not in r.payload and "Bruise" not in r.payload


async def test_no_digest_on_a_saturday(svc, oak, tick):
    tick.now = london(2026, 11, 28, 7, 30)
    assert (await run_digests(svc)).messages == []


async def test_the_dry_run_shows_the_digests_and_changes_nothing(svc, oak, tick):
    await scene(svc, oak, tick)
    report = await run_digests(svc, dry_run=True)
    assert len(report.messages) == 4 and report.folded == 1
    assert await outbox_rows(svc) == []
    assert {r.status for r in await reminder_rows(svc)} == {"pending"}


def section(lines: list[str], title: str) -> list[str]:
    """A section's heading line and its items."""
    start = next(i for i, line in enumerate(lines) if line.startswith(f"{title}: "))
    end = next((i for i in range(start + 1, len(lines)) if not lines[i].startswith("  ")), len(lines))
    return lines[start:end]


async def test_review_dates_due_today_are_follow_ups_and_unfinished_concerns_have_their_own_section(svc, oak, tick):
    last_week = london(2026, 11, 16, 9, 0)
    follow = await make_case(svc, oak.teacher, status="awaiting_decision", step="follow_up")
    review = {name: await make_case(svc, oak.teacher, status="closed", created_at=last_week)
              for name in ("yesterday", "this_morning", "this_afternoon", "tomorrow")}
    for name, due in (("yesterday", london(2026, 11, 23, 8, 0)), ("this_morning", london(2026, 11, 24, 8, 0)),
                      ("this_afternoon", london(2026, 11, 24, 16, 0)), ("tomorrow", london(2026, 11, 25, 8, 0))):
        await add_ladder(svc, review[name], [(0, oak.dsl), (0, oak.deputy)], start=due, kind="review")
    tick.now = london(2026, 11, 23, 8, 0)
    await reminders.sweep(svc)  # yesterday's went yesterday
    tick.now = london(2026, 11, 24, 8, 0)
    await reminders.sweep(svc)  # this morning's went this morning
    old_draft = await make_case(svc, oak.teacher, status="draft", step="concern", created_at=london(2026, 11, 24, 8, 45))
    await make_case(svc, oak.teacher, status="draft", step="concern", created_at=london(2026, 11, 24, 8, 55))
    tick.now = london(2026, 11, 24, 9, 5)

    [row] = [r for p, r in (await run_digests(svc)).messages if p.id == oak.dsl.id and "daily" in r.dedupe_key]

    lines = lines_of(row)
    assert section(lines, "Follow-ups due") == [
        "Follow-ups due: 3", f"  {follow.ref} (Follow up the referral)",
        f"  {review['this_morning'].ref} (review date)", f"  {review['this_afternoon'].ref} (review date)"]
    assert section(lines, "Not finished by the person raising it") == [
        "Not finished by the person raising it: 1", f"  {old_draft.ref} started Tue 24 Nov 2026, 08:45"]


async def set_school(svc, slug: str, **values: str) -> None:
    async with svc.db.transaction() as s:
        await s.execute(update(School).where(School.slug == slug).values(**values))


async def daily_to(svc, when) -> set[int]:
    return {p.id for p, row in (await run_digests(svc, now=when)).messages if "daily" in row.dedupe_key}


async def test_a_school_with_its_own_digest_time_gets_its_digest_then_and_only_once(svc, oak, tick):
    await set_school(svc, "oak", digest_time="09:00")

    assert await daily_to(svc, london(2026, 11, 24, 7, 0)) == set()  # before every school's time
    assert await daily_to(svc, london(2026, 11, 24, 8, 0)) == {oak.other_dsl.id}  # elm: the default 07:30
    assert await daily_to(svc, london(2026, 11, 24, 9, 5)) == {oak.dsl.id}  # oak: 09:00
    assert await daily_to(svc, london(2026, 11, 24, 9, 10)) == set()


async def test_a_school_in_another_timezone_uses_its_own_clock(svc, oak, tick):
    await set_school(svc, "elm", timezone="Asia/Dubai", digest_time="07:00")  # UTC+4: 03:00 UTC

    assert await daily_to(svc, utc(2026, 11, 24, 2, 55)) == set()
    assert await daily_to(svc, utc(2026, 11, 24, 3, 5)) == {oak.other_dsl.id}
    [row] = [r for r in await outbox_rows(svc, kind="digest") if r.dedupe_key.startswith("digest:daily:")]
    assert row.dedupe_key == f"digest:daily:{oak.other_dsl.id}:2026-11-24"  # Dubai's date
    assert await daily_to(svc, utc(2026, 11, 24, 7, 35)) == {oak.dsl.id}  # London 07:30, its default


async def test_the_configured_default_time_applies_to_schools_without_their_own(svc, oak, tick):
    late = time(10, 0)
    assert {p.id for p, _ in (await run_digests(svc, now=london(2026, 11, 24, 9, 0), default_time=late)).messages} == set()
    found = await run_digests(svc, now=london(2026, 11, 24, 10, 0), default_time=late)
    assert {p.id for p, r in found.messages if "daily" in r.dedupe_key} == {oak.dsl.id, oak.other_dsl.id}


async def test_the_digest_queries_run_on_either_database(services, school, clock):
    """SQLite here, and PostgreSQL too when CONSENTBOT_TEST_DATABASE_URL is set."""
    dsl = school["dsl"]
    closed = await make_case(services, school["teacher"], status="closed", created_at=clock.now - timedelta(days=9))
    await add_ladder(services, closed, [(0, dsl)], start=clock.now + timedelta(hours=2), kind="review")

    first = await run_digests(services)
    again = await run_digests(services, now=clock.now + timedelta(minutes=5))

    [row] = [r for p, r in first.messages if p.id == dsl.id and "daily" in r.dedupe_key]
    assert section(lines_of(row), "Follow-ups due") == ["Follow-ups due: 1", f"  {closed.ref} (review date)"]
    assert again.messages == []


async def test_checking_for_digests_before_their_time_never_waits_for_a_writer(svc, oak, tick):
    import asyncio

    await scene(svc, oak, tick)
    async with svc.db.transaction():  # a writer holds SQLite's write lock (and this process's writer queue)
        report = await asyncio.wait_for(run_digests(svc, now=MORNING - timedelta(hours=1)), timeout=5)
    assert report.messages == [] and await outbox_rows(svc) == []


async def two_schools(svc, oak, tick, *, role_at_elm: str):
    """Dee, Oak's DSL, also joins Elm with `role_at_elm`; a case waits at each school."""
    from bot import people

    await people.join(svc, email=oak.dsl.email, school="elm", role=role_at_elm)
    monday = london(2026, 11, 23, 9, 0)
    at_oak = await make_case(svc, oak.teacher, status="awaiting_decision", step="dsl_threshold", created_at=monday)
    at_elm = await make_case(svc, oak.other_dsl, status="awaiting_decision", step="dsl_threshold", created_at=monday)
    tick.now = MORNING
    return at_oak, at_elm


def dailies_of(report, person) -> dict[int, list[str]]:
    """A person's daily digests in a report: their lines by school."""
    return {row.school_id: lines_of(row) for p, row in report.messages
            if p.id == person.id and row.dedupe_key.startswith("digest:daily:")}


async def test_a_dsl_of_two_schools_gets_each_schools_digest_with_its_cases_only_and_once(svc, oak, tick):
    at_oak, at_elm = await two_schools(svc, oak, tick, role_at_elm="dsl")
    oak_id, elm_id = oak.dsl.school_id, oak.other_dsl.school_id

    report = await run_digests(svc)

    dee = dailies_of(report, oak.dsl)
    assert set(dee) == {oak_id, elm_id}
    assert section(dee[oak_id], "Awaiting decision")[1:] == [f"  {at_oak.ref} since Mon 23 Nov 2026, 09:00"]
    assert section(dee[elm_id], "Awaiting decision")[1:] == [f"  {at_elm.ref} since Mon 23 Nov 2026, 09:00"]
    assert dailies_of(report, oak.other_dsl) == {elm_id: dee[elm_id]}  # Elm's own DSL: the same Elm digest
    keys = sorted(r.dedupe_key for r in await outbox_rows(svc, kind="digest") if r.recipient_id == oak.dsl.id)
    assert keys == [f"digest:daily:{oak.dsl.id}:2026-11-24", f"digest:daily:{oak.dsl.id}:2026-11-24:s{elm_id}",
                    f"digest:weekly:{oak.dsl.id}:2026-W48", f"digest:weekly:{oak.dsl.id}:2026-W48:s{elm_id}"]

    tick.now += timedelta(minutes=5)
    assert (await run_digests(svc)).messages == []  # another replica, or a restart
    assert len(await outbox_rows(svc, kind="digest")) == 6  # Dee's four, Olu's two


async def test_a_staff_membership_elsewhere_brings_no_digest_from_there(svc, oak, tick):
    at_oak, at_elm = await two_schools(svc, oak, tick, role_at_elm="staff")

    report = await run_digests(svc)

    assert list(dailies_of(report, oak.dsl)) == [oak.dsl.school_id]
    assert at_elm.ref not in str(dailies_of(report, oak.dsl))
    assert {row.school_id for p, row in report.messages if p.id == oak.dsl.id} == {oak.dsl.school_id}  # weekly too


async def test_a_removed_dsl_of_two_schools_gets_neither_digest(svc, oak, tick):
    from bot import people

    await two_schools(svc, oak, tick, role_at_elm="dsl")
    await people.remove(svc, email=oak.dsl.email)

    assert oak.dsl.id not in {p.id for p, _ in (await run_digests(svc)).messages}


async def test_each_schools_weekly_summary_counts_its_own_cases(svc, oak, tick):
    await two_schools(svc, oak, tick, role_at_elm="dsl")
    await make_case(svc, oak.other_dsl, status="closed", created_at=london(2026, 11, 23, 15, 0))

    report = await run_digests(svc)

    weekly = {row.school_id: lines_of(row)[0] for p, row in report.messages
              if p.id == oak.dsl.id and row.dedupe_key.startswith("digest:weekly:")}
    assert weekly == {oak.dsl.school_id: "Week to Tue 24 Nov 2026: raised 1, decided 0, closed 0",
                      oak.other_dsl.school_id: "Week to Tue 24 Nov 2026: raised 2, decided 0, closed 1"}


async def test_a_dsl_of_two_schools_gets_each_digest_at_that_schools_time_with_its_reminders(svc, oak, tick):
    await two_schools(svc, oak, tick, role_at_elm="dsl")
    await set_school(svc, "elm", digest_time="09:00")
    elm_id = oak.other_dsl.school_id
    elm_outcome = await make_case(svc, oak.other_dsl, due_at=london(2026, 11, 24, 12, 0))
    await add_reminder(svc, elm_outcome, oak.dsl, due=london(2026, 11, 24, 9, 30))

    at_eight = await run_digests(svc, now=london(2026, 11, 24, 8, 0))

    assert list(dailies_of(at_eight, oak.dsl)) == [oak.dsl.school_id]
    assert at_eight.folded == 0  # Oak's digest cannot list Elm's case, so it must not swallow its reminder
    assert {r.status for r in await reminder_rows(svc)} == {"pending"}

    at_nine = await run_digests(svc, now=london(2026, 11, 24, 9, 5))

    assert list(dailies_of(at_nine, oak.dsl)) == [elm_id] and at_nine.folded == 1
    assert f"  {elm_outcome.ref} due Tue 24 Nov 2026, 12:00, assigned to - (reminder)" in dailies_of(
        at_nine, oak.dsl)[elm_id]
    assert {p.id for p, row in at_nine.messages if "daily" in row.dedupe_key} == {oak.dsl.id, oak.other_dsl.id}
