"""Use cases on a real database (SQLite, and PostgreSQL when configured): roles, version
checks, idempotency, encryption at rest, and what each transition queues."""

from __future__ import annotations

import asyncio
import json

import pytest
from sqlalchemy import select, text

from bot import cases, views
from bot.cases import CaseView, Person, Services
from bot.errors import Conflict, InvalidAnswer, NotAuthorised, NotFound
from storage.models import AccessLog, Case, CaseEvent, OutboxMessage, ProcessedDelivery, Reminder

People = dict[str, Person]
RAISE = {"child": "Ada Canary", "year_group": "year_4", "concern": "Ada said X", "seen_at": "2026-11-24T09:10:00+00:00"}


async def raised(svc: Services, people: People, *, danger: str = "no", view: str = "significant_harm") -> CaseView:
    """A concern raised the way every front end raises it: the danger question first (G1)."""
    case = await cases.raise_concern(svc, actor=people["teacher"], values={"immediate_danger": danger}, platform="test")
    if danger == "yes":
        case = await answer(svc, people["teacher"], case, {"emergency_contact": "police_999"})
    case = await answer(svc, people["teacher"], case, RAISE)
    return await answer(svc, people["teacher"], case, {"staff_threshold": view})


async def answer(svc: Services, who: Person, view: CaseView, values: dict, key: str | None = None) -> CaseView:
    assert view.step is not None
    return await cases.answer(svc, actor=who, case_ref=view.ref, version=view.version, step=view.step.id,
                              values=values, platform="test", idempotency_key=key)


async def rows(svc: Services, model: type) -> list:
    async with svc.db.transaction() as s:
        return list((await s.execute(select(model))).scalars())


async def test_sensitive_values_are_encrypted_at_rest(services: Services, school: People) -> None:
    await raised(services, school)
    async with services.db.transaction() as s:
        payloads = " ".join((await s.execute(text("SELECT payload FROM case_events"))).scalars())
    assert "Ada" not in payloads and "enc:v1:t1:" in payloads


async def test_staff_cannot_decide_and_the_refusal_is_audited(services: Services, school: People) -> None:
    view = await raised(services, school)
    with pytest.raises(NotAuthorised, match=r"Only a DSL or deputy of this school can answer 'Confirm the threshold'"):
        await answer(services, school["teacher"], view, {"threshold": "significant_harm"})
    refusals = [a for a in await rows(services, AccessLog) if a.action == "refused"]
    assert len(refusals) == 1 and refusals[0].actor_id == school["teacher"].id
    assert json.loads(refusals[0].detail) == {"role": "staff", "step": "dsl_threshold"}
    assert len(await rows(services, CaseEvent)) == 3  # nothing appended


async def test_another_schools_dsl_cannot_see_or_decide(services: Services, school: People) -> None:
    view = await raised(services, school)
    with pytest.raises(NotFound):
        await answer(services, school["other_dsl"], view, {"threshold": "significant_harm"})
    with pytest.raises(NotFound):
        await views.open_details(services, actor=school["other_dsl"], case_ref=view.ref)


async def test_a_colleague_who_did_not_raise_it_cannot_read_the_details(services: Services, school: People) -> None:
    view = await raised(services, school)
    with pytest.raises(NotAuthorised):
        await views.open_details(services, actor=school["teacher2"], case_ref=view.ref)
    details = await views.open_details(services, actor=school["deputy"], case_ref=view.ref)
    assert details.facts["child"] == "Ada Canary"
    actions = [a.action for a in await rows(services, AccessLog)]
    assert actions.count("refused") == 1 and actions.count("viewed") == 1


async def test_first_decision_wins_when_two_dsls_click_at_once(services: Services, school: People) -> None:
    view = await raised(services, school)
    results = await asyncio.gather(
        answer(services, school["dsl"], view, {"threshold": "significant_harm"}),
        answer(services, school["deputy"], view, {"threshold": "early_help"}),
        return_exceptions=True)
    assert sorted(type(r).__name__ for r in results) == ["CaseView", "Conflict"]
    assert len(await rows(services, CaseEvent)) == 4
    with pytest.raises(Conflict, match="has moved on"):  # a late click sees the decision, cannot overwrite it
        await answer(services, school["deputy"], view, {"threshold": "early_help"})


async def test_replaying_an_idempotency_key_changes_nothing(services: Services, school: People) -> None:
    view = await raised(services, school)
    first = await answer(services, school["dsl"], view, {"threshold": "significant_harm"}, key="slack:action:1")
    again = await answer(services, school["dsl"], view, {"threshold": "significant_harm"}, key="slack:action:1")
    assert again.replayed and again.version == first.version
    assert len(await rows(services, CaseEvent)) == 4


async def test_a_refused_answer_leaves_its_idempotency_key_unclaimed(services: Services, school: People) -> None:
    """The key is claimed with the case's read (one statement on PostgreSQL): when the case is
    another school's, or not at the step, the claim is rolled back with the refusal, so the key
    is still free for the answer that is accepted.
    """
    view = await raised(services, school)
    with pytest.raises(NotFound):
        await answer(services, school["other_dsl"], view, {"threshold": "significant_harm"}, key="slack:view:V1")
    with pytest.raises(NotAuthorised):
        await answer(services, school["teacher"], view, {"threshold": "significant_harm"}, key="slack:view:V1")
    accepted = await answer(services, school["dsl"], view, {"threshold": "significant_harm"}, key="slack:view:V1")
    assert not accepted.replayed and accepted.version == view.version + 1
    claims = [d for d in await rows(services, ProcessedDelivery) if d.key == "slack:view:V1"]
    assert [d.case_id for d in claims] == [c.id for c in await rows(services, Case) if c.ref == view.ref]


async def test_an_answer_identifies_its_person_with_the_case_in_one_read(services: Services, school: People) -> None:
    """answer(identity=...) reads the person (with memberships of other schools) and the case
    together (one round trip on PostgreSQL): an unknown id is refused and claims nothing; a
    trust's DSL answers at the school they joined; the same delivery again is a replay.
    """
    from bot import people

    view = await raised(services, school)

    async def by_slack(user: str, key: str) -> CaseView:
        assert view.step is not None
        return await cases.answer(services, identity={"slack_user_id": user}, case_ref=view.ref,
                                  version=view.version, step=view.step.id, values={"threshold": "significant_harm"},
                                  platform="slack", idempotency_key=key)

    with pytest.raises(NotFound, match="not registered"):
        await by_slack("U0NOBODY01", "slack:view:V9")
    with pytest.raises(NotFound, match="that you can see"):  # Olu is Elm's DSL, not yet Oak's
        await by_slack("U0OLU00000", "slack:view:V9")
    await people.join(services, email="olu@elm.sch.uk", school="oak", role="dsl")
    answered = await by_slack("U0OLU00000", "slack:view:V9")
    assert answered.answered_by is not None and answered.answered_by.id == school["other_dsl"].id
    assert (answered.version, answered.replayed) == (view.version + 1, False)
    again = await by_slack("U0OLU00000", "slack:view:V9")
    assert again.replayed and again.version == answered.version
    assert [d.key for d in await rows(services, ProcessedDelivery)].count("slack:view:V9") == 1


async def test_urgent_concern_alerts_every_decider_at_once(services: Services, school: People) -> None:
    await raised(services, school, danger="yes")
    urgent = [m for m in await rows(services, OutboxMessage) if m.kind == "urgent_alert"]
    assert sorted(m.recipient_id for m in urgent) == sorted([school["dsl"].id, school["deputy"].id])
    ack = [r for r in await rows(services, Reminder) if r.kind == "urgent_ack"]
    assert ack and all(r.status == "pending" for r in ack)


async def test_assignment_writes_reminders_and_recording_the_outcome_stops_them(services: Services,
                                                                              school: People) -> None:
    view = await raised(services, school)
    view = await answer(services, school["dsl"], view, {"threshold": "significant_harm"})
    view = await answer(services, school["dsl"], view, {})
    with pytest.raises(InvalidAnswer, match="not an active member of staff of this school"):
        await answer(services, school["dsl"], view, {"assignee": "olu@elm.sch.uk"})
    view = await answer(services, school["dsl"], view, {"assignee": "tina@oak.sch.uk"})
    assert view.assignee_id == school["teacher"].id and view.status == "awaiting_outcome"
    ladder = [r for r in await rows(services, Reminder) if r.kind == "outcome"]
    assert [r.level for r in ladder] == [0, 1, 2, 3]
    assert {r.recipient_id for r in ladder} == {school["teacher"].id, school["dsl"].id, school["deputy"].id}
    await answer(services, school["teacher"], view, {"asked_who": "Mum", "asked_how": "phone",
                                                      "asked_at": "2026-11-24T09:40:00+00:00",
                                                      "consent_outcome": "refused", "understanding": "yes",
                                                      "child_views": "scared"})
    assert {r.status for r in await rows(services, Reminder) if r.kind == "outcome"} == {"cancelled"}


async def test_every_copy_of_decision_needed_is_superseded_by_decided(services: Services, school: People) -> None:
    view = await raised(services, school)
    await answer(services, school["deputy"], view, {"threshold": "significant_harm"})
    messages = await rows(services, OutboxMessage)
    needed = {m.dedupe_key for m in messages if m.kind == "decision_needed"}
    decided = [json.loads(m.payload) for m in messages if m.kind == "decided"]
    assert len(needed) == 2 and {d["supersedes"] for d in decided} == needed
    assert {d["by"] for d in decided} == {"Pat Deputy"}
    assert all("Ada" not in m.payload for m in messages)


async def test_a_dsl_opening_an_urgent_case_acknowledges_it(services: Services, school: People) -> None:
    view = await raised(services, school, danger="yes")
    await views.open_details(services, actor=school["teacher"], case_ref=view.ref)  # the raiser is not a DSL
    assert {r.status for r in await rows(services, Reminder) if r.kind == "urgent_ack"} == {"pending"}
    await views.open_details(services, actor=school["deputy"], case_ref=view.ref)
    assert {r.status for r in await rows(services, Reminder) if r.kind == "urgent_ack"} == {"cancelled"}
    assert "urgent_acknowledged" in [a.action for a in await rows(services, AccessLog)]


async def test_a_lost_race_is_told_who_answered_what_and_logged_naming_the_loser(services: Services,
                                                                               school: People) -> None:
    view = await raised(services, school)
    await answer(services, school["dsl"], view, {"threshold": "significant_harm", "consulted": "nobody"})
    with pytest.raises(Conflict) as lost:
        await answer(services, school["deputy"], view, {"threshold": "early_help"})
    said = str(lost.value)
    assert said.startswith(f"Case {view.ref} has moved on since you opened it")
    assert "Dee DSL answered 'Confirm the threshold' (Significant harm" in said and " on Tue 24 Nov, 10:00." in said
    [entry] = [a for a in await rows(services, AccessLog) if a.action == "stale_answer"]
    assert entry.actor_id == school["deputy"].id and entry.case_id is not None
    assert json.loads(entry.detail) == {"seen_version": view.version, "step": "dsl_threshold",
                                        "version": view.version + 1}


async def test_another_schools_attempt_is_logged_with_the_case_it_was(services: Services, school: People) -> None:
    view = await raised(services, school)
    for attempt in (answer(services, school["other_dsl"], view, {"threshold": "significant_harm"}),
                    views.open_details(services, actor=school["other_dsl"], case_ref=view.ref)):
        with pytest.raises(NotFound, match="that you can see"):
            await attempt
    entries = [a for a in await rows(services, AccessLog) if a.action == "refused_not_found"]
    assert [e.actor_id for e in entries] == [school["other_dsl"].id] * 2
    assert {json.loads(e.detail)["why"] for e in entries} == {"another school's case"}


async def test_an_unregistered_or_removed_person_is_refused_and_logged(services: Services, school: People) -> None:
    from bot import people

    with pytest.raises(NotFound, match="not registered"):
        await cases.identify(services, slack_user_id="U0STRANGER")
    await people.remove(services, email="tom@oak.sch.uk")
    with pytest.raises(NotFound, match="access to consentbot has been removed"):
        await cases.identify(services, email="tom@oak.sch.uk")
    log = {a.action: a for a in await rows(services, AccessLog)}
    assert json.loads(log["refused_unregistered"].detail) == {"by": {"slack_user_id": "U0STRANGER"}}
    assert log["refused_removed"].actor_id == school["teacher2"].id
