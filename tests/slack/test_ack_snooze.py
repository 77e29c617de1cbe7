"""Acknowledge and Snooze in Slack: the buttons on the DMs, signed clicks and form submissions to
the real app, the bot's reminders and access log underneath, the fake Slack on loopback."""

from __future__ import annotations

import json
import re
import time
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from sqlmodel import col, select

from bot import cases, people
from bot.audit import access_entries
from bot.cases import CaseView, Person, Services
from bot.messages import Kind, Message
from bot.notify import OUTCOME_REMINDER, URGENT_ACK_REMINDER
from bot.policy.model import Actor
from handlers.slack import sender_platform
from storage import repo
from storage.models import Reminder
from tests.slack.conftest import USERS, Driver
from tests.slack.test_raise import texts

CHILD = "Oriel Thistlewaite"  # canary: must never reach Slack
ANSWERS = {"emergency_contact": "police_999", "child": CHILD, "concern": f"{CHILD} has a burn on her hand",
           "year_group": "year_4", "seen_at": "2026-11-24T09:10:00+00:00", "staff_threshold": "early_help",
           "threshold": "early_help",
           "assignee": "sam@oak.sch.uk"}
ELM_DSL = "U0ELMDSL01"  # a DSL of another school
PARENT_REPLY = "Waiting for the parent or carer to reply"  # the policy's label for awaiting_parent_reply


# ---------------------------------------------------------------- getting a case into the right state

async def drive(svc: Services, staff: dict[str, Person], *, danger: str, until: Any) -> CaseView:
    """Raise a concern and answer whatever step comes next (ids from the policy, not hard-coded)
    until `until(view)` holds: the teacher answers staff steps, the DSL the DSL's."""
    answers = {**ANSWERS, "immediate_danger": danger}
    start = svc.policy.steps[svc.policy.start]
    view = await cases.raise_concern(svc, actor=staff["teacher"], values=asked(start, answers), platform="slack")
    while not until(view):
        assert view.step is not None, f"the case ended before {until}"
        actor = staff["dsl"] if view.step.actor is Actor.DSL else staff["teacher"]
        view = await cases.answer(svc, actor=actor, case_ref=view.ref, version=view.version, step=view.step.id,
                                  values=asked(view.step, answers), platform="slack")
    return view


def asked(step: Any, answers: dict[str, Any]) -> dict[str, Any]:
    return {f.key: answers[f.key] for f in step.fields if f.key in answers}


async def urgent_case(svc: Services, staff: dict[str, Person]) -> str:
    return (await drive(svc, staff, danger="yes", until=lambda v: v.urgent)).ref


async def assigned_case(svc: Services, staff: dict[str, Person]) -> str:
    view = await drive(svc, staff, danger="no", until=lambda v: v.status == "awaiting_outcome")
    assert view.assignee_id == staff["assignee"].id
    return view.ref


async def reminders(svc: Services, ref: str, kind: str) -> list[Reminder]:
    async with svc.db.transaction() as s:
        case = await repo.case_by_ref(s, ref)
        assert case is not None
        query = select(Reminder).where(col(Reminder.case_id) == case.id, col(Reminder.kind) == kind)
        return list((await s.execute(query.order_by(col(Reminder.id)))).scalars())


async def logged(svc: Services, ref: str, action: str) -> list[tuple[str, str]]:
    """(staff id, detail) of each access log entry of `action` on the case."""
    rows = [line.split("\t") for line in await access_entries(svc, case_ref=ref)]
    return [(staff.removeprefix("staff="), detail) for _, _, act, staff, _, detail in rows if act == action]


# ---------------------------------------------------------------- playing Slack's side

async def deliver(slack: Driver, who: str, message: Message) -> dict[str, Any]:
    """Post `message` to `who`'s DM through the real Slack renderer; the DM as Slack now holds it."""
    user = USERS.get(who, who)
    await sender_platform(slack.settings).send(user, message, key=f"test:{who}:{message.kind}")
    return slack.fake.messages_to(user)[-1]


def buttons(dm: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for b in dm["blocks"] if b["type"] == "actions" for e in b["elements"]]


async def press(slack: Driver, who: str, dm: dict[str, Any], action_id: str) -> httpx.Response:
    """`who` (a key of USERS, or a Slack id) taps the button `action_id` on `dm`, in their DM with the app."""
    [button] = [b for b in buttons(dm) if b["action_id"] == action_id]
    user = USERS.get(who, who)
    channel = "D" + user
    return await slack.interact({
        "type": "block_actions", "trigger_id": slack.trigger(), "user": {"id": user},
        "team": {"id": "T0FAKE0001"}, "channel": {"id": channel}, "message": dm,
        "container": {"type": "message", "message_ts": dm["ts"], "channel_id": channel, "is_ephemeral": False},
        "actions": [{"type": "button", "action_id": action_id, "block_id": f"case:{button['value']}",
                     "value": button["value"], "text": button["text"], "action_ts": str(time.time())}]})


def urgent_alert(ref: str) -> Message:
    return Message(kind=Kind.URGENT_ALERT, case_ref=ref, urgent=True, can_acknowledge=True)


def outcome_reminder(ref: str) -> Message:
    return Message(kind=Kind.REMINDER, case_ref=ref, step_title="Record the outcome", due_at="2026-11-24T11:00",
                   can_snooze=True)


def assert_no_canary(slack: Driver) -> None:
    every_call = json.dumps([c.params for c in slack.fake.calls])
    assert CHILD.split()[0] not in every_call and CHILD.split()[1] not in every_call


# ---------------------------------------------------------------- Acknowledge

async def test_an_urgent_alert_has_an_acknowledge_button_beside_open_case(slack: Driver) -> None:
    alert = await deliver(slack, "dsl", urgent_alert("C-7QK2MX"))
    plain = await deliver(slack, "deputy", Message(kind=Kind.URGENT_ALERT, case_ref="C-7QK2MX", urgent=True))

    assert [(b["action_id"], b["text"]["text"], b["value"]) for b in buttons(alert)] == [
        ("open_case", "Open case", "C-7QK2MX"), ("acknowledge", "Acknowledge", "C-7QK2MX")]
    assert buttons(alert)[1]["confirm"]["confirm"]["text"] == "Acknowledge"  # a stray tap on a phone asks first
    assert [b["action_id"] for b in buttons(plain)] == ["open_case"]  # only a message that may be acknowledged


async def test_a_dsl_acknowledging_stops_the_escalation_and_their_dm_says_so(slack: Driver,
                                                                           staff: dict[str, Person]) -> None:
    ref = await urgent_case(slack.svc, staff)
    assert {r.status for r in await reminders(slack.svc, ref, URGENT_ACK_REMINDER)} == {"pending"}
    dm = await deliver(slack, "dsl", urgent_alert(ref))

    response = await press(slack, "dsl", dm, "acknowledge")

    assert response.status_code == 200
    assert {r.status for r in await reminders(slack.svc, ref, URGENT_ACK_REMINDER)} == {"cancelled"}
    assert [who for who, _ in await logged(slack.svc, ref, "urgent_acknowledged")] == [str(staff["dsl"].id)]
    [update] = slack.fake.calls_to("chat.update")
    assert (update.params["channel"], update.params["ts"]) == ("D" + USERS["dsl"], dm["ts"])
    now = slack.fake.messages_to(USERS["dsl"])[-1]
    assert now["text"] == dm["text"]
    assert [b["action_id"] for b in buttons(now)] == ["open_case"]  # Open case stays, Acknowledge goes
    line = now["blocks"][-1]["elements"][0]["text"]
    stamp = re.fullmatch(r"Acknowledged by Dee DSL at <!date\^(\d+)\^\{date_short_pretty\} \{time\}\|([^>]+)>\. "
                         r"The escalation to others has stopped\.", line)
    assert stamp, line
    at = datetime.fromtimestamp(int(stamp[1]), ZoneInfo("Europe/London"))
    assert abs(at.timestamp() - time.time()) < 60 and stamp[2] == f"{at:%a} {at.day} {at:%b %Y, %H:%M}"
    assert_no_canary(slack)


async def test_a_teacher_cannot_acknowledge_and_the_refusal_is_logged(slack: Driver, staff: dict[str, Person]) -> None:
    ref = await urgent_case(slack.svc, staff)
    dm = await deliver(slack, "teacher", urgent_alert(ref))  # whatever a teacher's screen shows, the bot decides

    response = await press(slack, "teacher", dm, "acknowledge")

    assert response.status_code == 200
    [ephemeral] = slack.fake.calls_to("chat.postEphemeral")
    assert ephemeral.params["user"] == USERS["teacher"]
    assert ephemeral.params["text"].startswith(f"Only a DSL or deputy of this school can acknowledge case {ref}")
    refused = await logged(slack.svc, ref, "refused")
    assert [(who, json.loads(detail)["action"]) for who, detail in refused] == [(str(staff["teacher"].id),
                                                                                "acknowledge")]
    assert {r.status for r in await reminders(slack.svc, ref, URGENT_ACK_REMINDER)} == {"pending"}
    assert not slack.fake.calls_to("chat.update")


async def test_another_schools_dsl_cannot_acknowledge(slack: Driver, staff: dict[str, Person]) -> None:
    await people.add(slack.svc, email="eve@elm.sch.uk", role="dsl", name="Eve Elm", school="elm",
                     slack_user_id=ELM_DSL)
    ref = await urgent_case(slack.svc, staff)
    dm = await deliver(slack, ELM_DSL, urgent_alert(ref))  # as if Oak's alert had reached Elm's DSL

    assert (await press(slack, ELM_DSL, dm, "acknowledge")).status_code == 200

    [ephemeral] = slack.fake.calls_to("chat.postEphemeral")
    assert ephemeral.params["user"] == ELM_DSL and ephemeral.params["text"] == f"No case {ref} that you can see."
    assert {r.status for r in await reminders(slack.svc, ref, URGENT_ACK_REMINDER)} == {"pending"}


# ---------------------------------------------------------------- Snooze

async def test_a_reminder_has_a_snooze_button_that_opens_the_form(slack: Driver, staff: dict[str, Person]) -> None:
    ref = await assigned_case(slack.svc, staff)
    dm = await deliver(slack, "assignee", outcome_reminder(ref))
    assert [(b["action_id"], b["text"]["text"]) for b in buttons(dm)] == [
        ("open_case", "Open case"), ("snooze", "Snooze reminders")]

    assert (await press(slack, "assignee", dm, "snooze")).status_code == 200

    form = slack.last_opened_view()
    assert (form["callback_id"], form["private_metadata"], form["title"]["text"]) == ("snooze", ref, "Snooze reminders")
    [reason, minutes] = [b for b in form["blocks"] if b["type"] == "input"]
    assert [o["text"]["text"] for o in reason["element"]["options"]] == list(
        slack.svc.policy.settings["snooze"]["reasons"].values())
    assert [(o["value"], o["text"]["text"]) for o in minutes["element"]["options"]] == [
        ("60", "1 hour"), ("240", "4 hours"), ("1440", "1 day")]  # the policy's cap is 1440 minutes


async def test_snoozing_moves_the_reminders_later_and_is_logged_with_its_reason(slack: Driver,
                                                                              staff: dict[str, Person]) -> None:
    ref = await assigned_case(slack.svc, staff)
    before = {r.id: r.due_at for r in await reminders(slack.svc, ref, OUTCOME_REMINDER) if r.status == "pending"}
    assert before
    await press(slack, "assignee", await deliver(slack, "assignee", outcome_reminder(ref)), "snooze")

    reply = await slack.submit("assignee", slack.last_opened_view(), {"reason": "awaiting_parent_reply",
                                                                      "minutes": "240"})

    assert reply.status_code == 200 and reply.json()["response_action"] == "update"
    assert texts(reply.json()["view"]) == f"Reminders for case {ref} are snoozed for 4 hours. Reason: {PARENT_REPLY}."
    after = {r.id: r.due_at for r in await reminders(slack.svc, ref, OUTCOME_REMINDER)}
    assert {rid: after[rid] - due for rid, due in before.items()} == {rid: timedelta(hours=4) for rid in before}
    [(who, detail)] = await logged(slack.svc, ref, "reminders_snoozed")
    assert who == str(staff["assignee"].id)
    assert json.loads(detail) == {"reason": "awaiting_parent_reply", "minutes": 240, "moved": len(before)}
    assert_no_canary(slack)


async def test_snoozing_past_the_cap_or_too_often_is_refused(slack: Driver, staff: dict[str, Person]) -> None:
    ref = await assigned_case(slack.svc, staff)
    dm = await deliver(slack, "assignee", outcome_reminder(ref))

    async def snooze(minutes: str, forged: bool = False) -> dict[str, Any]:
        await press(slack, "assignee", dm, "snooze")
        form = slack.last_opened_view()
        if forged:  # a payload Slack's form could not produce: a duration the form never offered
            [select_] = [b for b in form["blocks"] if b.get("block_id") == "minutes"]
            select_["element"]["options"].append({"text": {"type": "plain_text", "text": "2 days"}, "value": minutes})
        return dict((await slack.submit("assignee", form, {"reason": "staff_absent", "minutes": minutes})).json())

    assert await snooze("2880", forged=True) == {"response_action": "errors",
                                                 "errors": {"minutes": "Choose how long, at most 1 day."}}
    assert await logged(slack.svc, ref, "reminders_snoozed") == []
    first, second = await snooze("60"), await snooze("60")
    assert "snoozed for 1 hour" in texts(first["view"]) and "snoozed for 1 hour" in texts(second["view"])

    third = await snooze("60")

    assert third["response_action"] == "update"
    assert texts(third["view"]) == f"Case {ref} has been snoozed 2 times, the most the policy allows."
    assert len(await logged(slack.svc, ref, "reminders_snoozed")) == 2


async def test_only_the_assignee_or_a_dsl_can_snooze_and_a_refusal_is_logged(slack: Driver,
                                                                            staff: dict[str, Person]) -> None:
    ref = await assigned_case(slack.svc, staff)
    before = [r.due_at for r in await reminders(slack.svc, ref, OUTCOME_REMINDER)]
    await press(slack, "bystander", await deliver(slack, "bystander", outcome_reminder(ref)), "snooze")

    reply = await slack.submit("bystander", slack.last_opened_view(), {"reason": "staff_absent", "minutes": "60"})

    assert texts(reply.json()["view"]).startswith(f"Only a DSL or deputy of this school can snooze case {ref}")
    assert [who for who, _ in await logged(slack.svc, ref, "refused")] == [str(staff["bystander"].id)]
    assert [r.due_at for r in await reminders(slack.svc, ref, OUTCOME_REMINDER)] == before
