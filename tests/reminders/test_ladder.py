"""The escalation ladders, driven through the real use cases: each rung fires once, to the right
people, and stops when the outcome is recorded or a DSL acknowledges the urgent alert."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bot import ack, cases, reminders
from bot.errors import Conflict, InvalidAnswer, NotAuthorised, NotFound
from bot.messages import Kind, Message
from storage.models import AccessLog

from .conftest import london, outbox_rows, reminder_rows

DETAILS = {"child": "Ada Lovelace (Y4)", "year_group": "year_4", "concern": "Bruise on the arm",
           "seen_at": "2026-11-22T08:30:00+00:00"}


async def answer(svc, actor, ref, step, values):
    view = await cases.answer(svc, actor=actor, case_ref=ref, version=(await _version(svc, actor, ref)), step=step,
                              values=values, platform="console")
    return view


async def _version(svc, actor, ref):
    from storage import repo

    async with svc.db.transaction() as s:
        return (await repo.case_by_ref(s, ref)).version


async def early_help_case(svc, oak, due) -> str:
    view = await cases.raise_concern(svc, actor=oak.teacher, values={"immediate_danger": "no"}, platform="console")
    await answer(svc, oak.teacher, view.ref, "concern", DETAILS)
    await answer(svc, oak.teacher, view.ref, "staff_threshold", {"staff_threshold": "early_help"})
    await answer(svc, oak.dsl, view.ref, "dsl_threshold", {"threshold": "early_help"})
    await answer(svc, oak.dsl, view.ref, "eh_assign", {"assignee": str(oak.teacher2.id), "due_at": due.isoformat()})
    return view.ref


async def sweep_at(svc, tick, when, ladder=":"):
    """Sweep at `when`; every reminder queued so far whose reminder key has `ladder` in it (e.g. ':urgent_ack:')."""
    tick.now = when
    await reminders.sweep(svc)
    return [(r.recipient_id, Message.from_json(r.payload)) for r in await outbox_rows(svc)
            if r.dedupe_key.startswith("reminder:") and ladder in r.dedupe_key]


OUTCOME = ":outcome:eh_outcome:"  # the outcome ladder of the eh_outcome step (its first visit)


async def test_each_rung_of_the_outcome_ladder_fires_once_to_its_people(svc, oak, tick):
    due = london(2026, 11, 24, 11, 0)  # Tuesday
    ref = await early_help_case(svc, oak, due)

    assert await sweep_at(svc, tick, london(2026, 11, 24, 10, 59), OUTCOME) == []
    rung0 = await sweep_at(svc, tick, due, OUTCOME)
    assert [(who, m.kind, m.can_snooze) for who, m in rung0] == [(oak.teacher2.id, Kind.REMINDER, True)]
    assert rung0[0][1].case_ref == ref and rung0[0][1].due_at == "2026-11-24T11:00+00:00"
    rung1 = await sweep_at(svc, tick, due + timedelta(minutes=240), OUTCOME)
    assert [(who, m.kind) for who, m in rung1[1:]] == [(oak.teacher2.id, Kind.REMINDER)]
    rung2 = await sweep_at(svc, tick, due + timedelta(days=1), OUTCOME)
    assert [(who, m.kind, m.can_snooze) for who, m in rung2[2:]] == [(oak.dsl.id, Kind.ESCALATION, False)]
    rung3 = await sweep_at(svc, tick, due + timedelta(days=2), OUTCOME)
    assert [(who, m.kind) for who, m in rung3[3:]] == [(oak.deputy.id, Kind.ESCALATION)]
    assert len(await sweep_at(svc, tick, due + timedelta(days=9), OUTCOME)) == 4  # nothing more, ever


async def test_recording_the_outcome_stops_the_ladder(svc, oak, tick):
    due = london(2026, 11, 24, 11, 0)
    ref = await early_help_case(svc, oak, due)
    await sweep_at(svc, tick, due)
    await answer(svc, oak.teacher2, ref, "eh_outcome", {
        "asked_who": "Mother", "asked_how": "phone", "asked_at": "2026-11-24T10:30:00+00:00",
        "consent_outcome": "given", "understanding": "no", "child_views": "Not asked: age"})

    assert len(await sweep_at(svc, tick, due + timedelta(days=3), OUTCOME)) == 1
    assert sorted({r.status for r in await reminder_rows(svc) if OUTCOME in f":{r.unique_key}"}) == ["cancelled", "sent"]


ACK = ":urgent_ack:"


async def urgent_case(svc, oak) -> str:
    view = await cases.raise_concern(svc, actor=oak.teacher, values={"immediate_danger": "yes"}, platform="console")
    await answer(svc, oak.teacher, view.ref, "emergency_contact", {"emergency_contact": "police_999"})
    await answer(svc, oak.teacher, view.ref, "concern", DETAILS)
    return view.ref


async def test_an_unacknowledged_urgent_alert_goes_to_the_deputies_then_the_head_at_night(svc, oak, tick):
    tick.now = london(2026, 11, 24, 22, 0)
    ref = await urgent_case(svc, oak)

    assert await sweep_at(svc, tick, london(2026, 11, 24, 22, 14), ACK) == []
    deputies = await sweep_at(svc, tick, london(2026, 11, 24, 22, 15), ACK)
    assert [(who, m.kind, m.urgent, m.case_ref, m.can_acknowledge) for who, m in deputies] == [
        (oak.deputy.id, Kind.ESCALATION, True, ref, True)]
    head = await sweep_at(svc, tick, london(2026, 11, 24, 22, 30), ACK)
    assert [(who, m.can_acknowledge) for who, m in head] == [(oak.deputy.id, True), (oak.head.id, False)]


async def test_a_dsl_acknowledging_stops_the_urgent_ladder_and_is_logged(svc, oak, tick):
    ref = await urgent_case(svc, oak)

    assert await ack.acknowledge(svc, actor=oak.dsl, case_ref=ref) == 2
    assert await sweep_at(svc, tick, tick.now + timedelta(hours=1), ACK) == []
    async with svc.db.transaction() as s:
        from sqlmodel import select

        logged = list((await s.execute(select(AccessLog).where(AccessLog.action == ack.ACKNOWLEDGED))).scalars())
    assert [(e.actor_id, e.detail) for e in logged] == [(oak.dsl.id, '{"cancelled":2}')]


async def test_only_a_dsl_or_deputy_of_the_same_school_can_acknowledge(svc, oak, tick):
    ref = await urgent_case(svc, oak)

    with pytest.raises(NotAuthorised):
        await ack.acknowledge(svc, actor=oak.teacher, case_ref=ref)
    with pytest.raises(NotFound):
        await ack.acknowledge(svc, actor=oak.other_dsl, case_ref=ref)
    assert await ack.acknowledge(svc, actor=oak.deputy, case_ref=ref) == 2
    async with svc.db.transaction() as s:
        from sqlmodel import select

        refused = list((await s.execute(select(AccessLog).where(AccessLog.action == "refused"))).scalars())
    assert [e.actor_id for e in refused] == [oak.teacher.id]


async def test_snoozing_needs_a_reason_has_a_cap_and_is_audited(svc, oak, tick):
    due = london(2026, 11, 24, 11, 0)
    ref = await early_help_case(svc, oak, due)

    with pytest.raises(InvalidAnswer):
        await ack.snooze(svc, actor=oak.teacher2, case_ref=ref, reason="", minutes=60)
    with pytest.raises(InvalidAnswer):
        await ack.snooze(svc, actor=oak.teacher2, case_ref=ref, reason="staff_absent", minutes=1441)
    with pytest.raises(NotAuthorised):
        await ack.snooze(svc, actor=oak.teacher, case_ref=ref, reason="staff_absent", minutes=60)
    assert await ack.snooze(svc, actor=oak.teacher2, case_ref=ref, reason="awaiting_parent_reply", minutes=60) == 4
    assert await sweep_at(svc, tick, due, OUTCOME) == []
    assert len(await sweep_at(svc, tick, due + timedelta(minutes=60), OUTCOME)) == 1
    await ack.snooze(svc, actor=oak.dsl, case_ref=ref, reason="staff_absent", minutes=30)
    with pytest.raises(Conflict):
        await ack.snooze(svc, actor=oak.dsl, case_ref=ref, reason="staff_absent", minutes=30)
    async with svc.db.transaction() as s:
        from sqlmodel import select

        logged = list((await s.execute(select(AccessLog).where(AccessLog.action == ack.SNOOZED))).scalars())
    assert [e.detail for e in logged] == ['{"minutes":60,"moved":4,"reason":"awaiting_parent_reply"}',
                                          '{"minutes":30,"moved":3,"reason":"staff_absent"}']


async def test_an_urgent_case_cannot_be_snoozed(svc, oak, tick):
    ref = await urgent_case(svc, oak)
    with pytest.raises(Conflict):
        await ack.snooze(svc, actor=oak.dsl, case_ref=ref, reason="staff_absent", minutes=30)


async def test_no_reminder_carries_the_childs_details(svc, oak, tick):
    due = london(2026, 11, 24, 11, 0)
    await early_help_case(svc, oak, due)
    await sweep_at(svc, tick, due + timedelta(days=3))
    for row in await outbox_rows(svc):
        assert "Ada" not in row.payload and "Bruise" not in row.payload
