"""Issue 7 in the use cases: every concern reaches a DSL, and the teacher is told the truth.

Real database (SQLite, and PostgreSQL when configured); what each answer queues is read back
from the outbox, the reminder rows and the access log.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update

from bot import cases, people
from bot.cases import CaseView, Person, Services
from storage.models import AccessLog, OutboxMessage, Reminder, School
from tests.test_cases import RAISE, answer, raised, rows

People = dict[str, Person]


async def set_school(svc: Services, slug: str, **values: object) -> None:
    async with svc.db.transaction() as s:
        await s.execute(update(School).where(School.slug == slug).values(**values))


async def outbox(svc: Services) -> list[OutboxMessage]:
    async with svc.db.transaction() as s:
        return list((await s.execute(select(OutboxMessage).order_by(OutboxMessage.id))).scalars())


async def danger(svc: Services, who: Person) -> CaseView:
    return await cases.raise_concern(svc, actor=who, values={"immediate_danger": "yes"}, platform="test")


async def test_yes_to_danger_queues_the_urgent_alert_with_the_answer_and_says_so(services: Services,
                                                                                 school: People) -> None:
    view = await danger(services, school["teacher"])
    assert view.version == 1 and view.step is not None and view.step.id == "emergency_contact"
    assert view.notices[0].startswith("Call 999")  # the 999 notice first, never buried
    assert view.notices[1] == "The Designated Safeguarding Lead has been alerted as urgent."
    alerts = [m for m in await outbox(services) if m.kind == "urgent_alert"]
    assert sorted(m.recipient_id for m in alerts) == sorted([school["dsl"].id, school["deputy"].id])
    assert all(json.loads(m.payload)["can_acknowledge"] for m in alerts)


async def test_a_school_with_no_reachable_dsl_gets_the_fallback_contacts_not_alerted(services: Services) -> None:
    teacher = await people.add(services, email="t@ash.sch.uk", role="staff", name="Tess", school="ash",
                               slack_user_id="U0TESS0001")
    head = await people.add(services, email="h@ash.sch.uk", role="admin", name="Hana Head", school="ash",
                            slack_user_id="U0HANA0001")
    await people.add(services, email="d@ash.sch.uk", role="dsl", name="Dora", school="ash")  # no chat id
    await set_school(services, "ash", dsl_phone="01632 960 001", front_door_phone="0300 123 4567",
                     escalation_staff_id=head.id)

    view = await danger(services, teacher)

    told = " ".join(view.notices)
    assert "alerted as urgent" not in told and "nobody has been alerted" in told
    assert "01632 960 001" in told and "0300 123 4567" in told and "call 999" in told
    assert view.told is not None and not view.told.reachable
    [escalated] = [m for m in await outbox(services) if m.kind == "unreachable"]
    assert escalated.recipient_id == head.id and escalated.platform == "slack"
    assert "Dora" not in escalated.payload and view.ref in escalated.payload
    [logged] = [a for a in await rows(services, AccessLog) if a.action == "alert_unreachable"]
    assert json.loads(logged.detail) == {"deciders": 1, "urgent": True}


async def test_a_dsl_on_a_platform_the_deployment_does_not_send_on_is_not_counted(services: Services,
                                                                                  school: People) -> None:
    services.delivering = frozenset({"teams"})  # Slack is not configured: nobody with only a Slack id is reached
    view = await danger(services, school["teacher"])
    assert view.told is not None and not view.told.reachable
    assert "(number not set in the bot: ask the school office)" in " ".join(view.notices)  # no phone numbers set yet


async def test_an_urgent_concern_sends_one_message_per_dsl(services: Services, school: People) -> None:
    view = await raised(services, school, view="significant_harm")  # urgent in the teacher's view, no danger
    messages = await outbox(services)
    per_dsl = [m for m in messages if m.recipient_id == school["dsl"].id]
    assert [m.kind for m in per_dsl] == ["decision_needed"]
    assert json.loads(per_dsl[0].payload)["urgent"] and view.urgent


async def test_after_an_urgent_alert_the_decision_message_rewrites_it_in_place(services: Services,
                                                                               school: People) -> None:
    await raised(services, school, danger="yes")
    mine = [m for m in await outbox(services) if m.recipient_id == school["dsl"].id]
    assert [m.kind for m in mine] == ["urgent_alert", "decision_needed"]
    assert json.loads(mine[1].payload)["supersedes"] == mine[0].dedupe_key  # an update, not a second DM


async def test_urgency_follows_the_dsl_once_the_threshold_is_confirmed(services: Services, school: People) -> None:
    view = await raised(services, school, view="significant_harm")
    assert view.urgent
    view = await answer(services, school["dsl"], view, {"threshold": "early_help"})
    assert not view.urgent
    async with services.db.transaction() as s:
        from storage import repo
        assert not (await repo.case_by_ref(s, view.ref)).urgent  # the projection, re-derived by audit verify


async def test_a_case_waiting_on_a_decision_climbs_its_own_ladder(services: Services, school: People) -> None:
    head = await people.add(services, email="hal@oak.sch.uk", role="admin", name="Hal Head", school="oak",
                            slack_user_id="U0HAL00001")
    view = await raised(services, school, view="early_help")
    ladder = sorted((r.level, r.recipient_id) for r in await rows(services, Reminder) if r.kind == "decision")
    assert ladder == [(0, school["dsl"].id), (1, school["deputy"].id), (2, head.id)]
    await answer(services, school["dsl"], view, {"threshold": "early_help"})
    assert {r.status for r in await rows(services, Reminder) if r.kind == "decision"} == {"cancelled"}


async def test_a_concern_left_unfinished_writes_a_draft_ladder_that_finishing_stops(services: Services,
                                                                                  school: People) -> None:
    view = await cases.raise_concern(services, actor=school["teacher"], values={"immediate_danger": "no"},
                                     platform="test")
    drafts = [r for r in await rows(services, Reminder) if r.kind == "draft"]
    assert sorted(r.recipient_id for r in drafts) == sorted([school["teacher"].id, school["dsl"].id])
    assert {(r.due_at - services.clock()).total_seconds() for r in drafts} == {15 * 60}
    view = await answer(services, school["teacher"], view, RAISE)
    assert {r.status for r in await rows(services, Reminder) if r.kind == "draft"} == {"pending"}  # still a draft
    await answer(services, school["teacher"], view, {"staff_threshold": "unsure"})
    assert {r.status for r in await rows(services, Reminder) if r.kind == "draft"} == {"cancelled"}


async def test_the_review_date_reminds_the_dsl_that_morning_and_the_referrer_hears_of_the_close(
        services: Services, school: People) -> None:
    view = await raised(services, school, view="unsure")
    view = await answer(services, school["dsl"], view, {"threshold": "no_further_action"})
    view = await answer(services, school["dsl"], view, {"decision_reasons": "Support in school", "understanding": "yes",
                                                        "child_views": "Wants help at school",
                                                        "review_date": "2026-12-08"})
    assert view.outcome == "no_further_action"
    [review] = [r for r in await rows(services, Reminder) if r.kind == "review"]
    assert review.recipient_id == school["dsl"].id
    assert review.due_at == datetime(2026, 12, 8, 8, 0, tzinfo=UTC)  # 08:00 in London in December
    [closed] = [m for m in await outbox(services) if m.kind == "closed"]
    assert closed.recipient_id == school["teacher"].id
    payload = json.loads(closed.payload)
    assert payload["by"] == "Dee DSL" and "Support" not in closed.payload  # who closed it, no outcome detail


async def test_an_urgent_outcome_left_to_its_default_falls_due_in_working_hours(services: Services, clock: object,
                                                                                school: People) -> None:
    view = await raised(services, school, view="significant_harm")
    view = await answer(services, school["dsl"], view, {"threshold": "significant_harm"})
    view = await answer(services, school["dsl"], view, {})
    clock.now = datetime(2026, 11, 24, 21, 0, tzinfo=UTC)  # type: ignore[attr-defined] # assigned at 21:00
    view = await answer(services, school["dsl"], view, {"assignee": "tina@oak.sch.uk"})
    assert view.due_at == datetime(2026, 11, 25, 8, 0, tzinfo=UTC)  # not 01:00: the next morning, 08:00


async def test_a_case_the_dsl_lowers_to_early_help_sends_nothing_on_saturday_and_nothing_urgent(
        services: Services, clock: object, school: People) -> None:
    from bot import reminders

    clock.now = datetime(2026, 11, 27, 15, 0, tzinfo=UTC)  # type: ignore[attr-defined] # Friday afternoon
    view = await raised(services, school, view="significant_harm")
    view = await answer(services, school["dsl"], view, {"threshold": "early_help"})
    await answer(services, school["dsl"], view, {"assignee": "tina@oak.sch.uk",
                                                 "due_at": "2026-11-27T16:00:00+00:00"})
    decided = max(m.id or 0 for m in await outbox(services))
    for hour in range(0, 48, 2):  # all of Saturday and Sunday
        clock.now = datetime(2026, 11, 28, 0, 0, tzinfo=UTC) + timedelta(hours=hour)  # type: ignore[attr-defined]
        await reminders.sweep(services)
    weekend = [m for m in await outbox(services) if (m.id or 0) > decided]
    assert weekend == []
    assert not any(json.loads(m.payload)["urgent"] for m in await outbox(services) if (m.id or 0) > decided)
    clock.now = datetime(2026, 11, 30, 8, 1, tzinfo=UTC)  # type: ignore[attr-defined] # Monday morning
    await reminders.sweep(services)
    monday = [json.loads(m.payload) for m in await outbox(services) if (m.id or 0) > decided]
    assert monday and not any(p["urgent"] for p in monday)


async def test_a_crafted_value_cannot_assign_someone_whose_role_the_policy_does_not_allow(
        services: Services, school: People) -> None:
    from bot.errors import InvalidAnswer

    await people.add(services, email="hal@oak.sch.uk", role="admin", name="Hal Head", school="oak")
    view = await raised(services, school, view="early_help")
    view = await answer(services, school["dsl"], view, {"threshold": "early_help"})
    try:
        await answer(services, school["dsl"], view, {"assignee": "hal@oak.sch.uk"})
        raise AssertionError("an admin was assigned")
    except InvalidAnswer as refused:
        assert "role cannot be assigned" in str(refused)
    assert not [r for r in await rows(services, Reminder) if r.kind == "outcome"]
