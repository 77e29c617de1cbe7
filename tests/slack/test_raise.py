"""Raising a concern from Slack: the modal walks the staff steps, then the DSLs get a DM."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text

from tests.slack.conftest import USERS, Driver, decision_dm

CHILD = "Zephyrine Quillfeather"  # canary: must never reach chat history or logs
SEEN = int(datetime(2026, 11, 24, 9, 10, tzinfo=UTC).timestamp())  # the date and time picker's answer
ABOUT = {"child": CHILD, "year_group": "year_4", "seen_at": SEEN}  # who, how old, when: all but what was seen


def input_ids(view: dict[str, Any]) -> list[str]:
    return [b["block_id"] for b in view["blocks"] if b["type"] == "input"]


def texts(view: dict[str, Any]) -> str:
    return " ".join(str(b.get("text", {}).get("text", "")) for b in view["blocks"])


async def raise_concern(slack: Driver, *, danger: str = "no") -> tuple[str, dict[str, Any]]:
    """Teacher: /concern, answers the staff steps. Returns the case ref and the last screen."""
    assert (await slack.command("teacher")).status_code == 200
    view = (await slack.submit("teacher", slack.last_opened_view(), {"immediate_danger": danger})).json()["view"]
    ref = view["private_metadata"].split(":")[0]
    if danger == "yes":
        view = (await slack.submit("teacher", view, {"emergency_contact": "police_999"})).json()["view"]
    view = (await slack.submit("teacher", view, {**ABOUT, "concern": f"{CHILD} said she is scared at home"})
            ).json()["view"]
    view = (await slack.submit("teacher", view, {"staff_threshold": "significant_harm"})).json()["view"]
    return ref, view


async def first_details(slack: Driver) -> dict[str, Any]:
    """/concern, then "No" to the danger question: the screen asking for the details."""
    await slack.command("teacher")
    return dict((await slack.submit("teacher", slack.last_opened_view(), {"immediate_danger": "no"})).json()["view"])


async def test_concern_command_first_asks_only_whether_the_child_is_in_immediate_danger(slack: Driver) -> None:
    response = await slack.command("teacher")

    assert response.status_code == 200
    view = slack.last_opened_view()
    assert view["callback_id"] == "step:immediate_danger"  # G1: one question, before anything is typed
    assert view["private_metadata"] == ""
    assert input_ids(view) == ["immediate_danger"]
    [danger] = [b for b in view["blocks"] if b["type"] == "input"]
    assert danger["label"]["text"] == "Is the child in immediate danger?"
    assert danger["element"]["type"] == "radio_buttons"
    assert [o["text"]["text"] for o in danger["element"]["options"]] == ["Yes", "No"]


async def test_each_answer_updates_the_modal_in_place_with_only_ref_and_version(slack: Driver) -> None:
    await slack.command("teacher")
    reply = await slack.submit("teacher", slack.last_opened_view(), {"immediate_danger": "no"})

    body = reply.json()
    assert reply.status_code == 200
    assert body["response_action"] == "update"
    ref, version = body["view"]["private_metadata"].split(":")
    assert ref.startswith("C-") and version == "1"
    assert body["view"]["callback_id"] == "step:concern"
    assert input_ids(body["view"]) == ["child", "child_dob", "year_group", "concern", "seen_at"]
    labels = [b["label"]["text"] for b in body["view"]["blocks"] if b["type"] == "input"]
    assert labels[0] == "Child (name or school id)"


async def test_a_missing_answer_is_shown_under_its_field(slack: Driver) -> None:
    reply = await slack.submit("teacher", await first_details(slack), ABOUT)

    assert reply.json() == {"response_action": "errors", "errors": {"concern": "This answer is required"}}


async def test_immediate_danger_says_call_999_at_the_top_at_once(slack: Driver) -> None:
    await slack.command("teacher")
    reply = await slack.submit("teacher", slack.last_opened_view(), {"immediate_danger": "yes"})
    view = reply.json()["view"]

    top, alerted = (b["text"]["text"] for b in view["blocks"][:2])
    assert "Call 999" in top and "front door" in top  # the notice before anything else on the screen
    assert "has been alerted as urgent" in alerted
    assert view["callback_id"] == "step:emergency_contact"
    queued = [m for m in slack.fake.calls_to("chat.postMessage")]
    assert not queued  # nothing sent inline: the alerts were queued with the answer, in its transaction
    async with slack.svc.db.transaction() as s:
        kinds = (await s.execute(text("SELECT kind FROM outbox"))).scalars().all()
    assert sorted(kinds) == ["urgent_alert", "urgent_alert"]
    await slack.drain()
    for who in ("dsl", "deputy"):
        [alert, *_] = slack.fake.messages_to(USERS[who])
        assert alert["text"].startswith("URGENT")
        buttons = [e["text"]["text"] for b in alert["blocks"] if b["type"] == "actions" for e in b["elements"]]
        assert "Acknowledge" in buttons


async def test_the_teacher_ends_on_a_note_and_both_dsls_get_a_dm_without_child_details(slack: Driver) -> None:
    ref, last = await raise_concern(slack)

    assert "callback_id" in last and "submit" not in last
    assert ref in texts(last) and "Designated Safeguarding Lead" in texts(last)
    report = await slack.drain()
    assert report.counts["sent"] >= 2 and set(report.counts) == {"sent"}
    for who in ("dsl", "deputy"):
        dm = decision_dm(slack.fake, who)
        assert dm["text"].endswith(f"Concern {ref} needs your decision (Confirm the threshold).")
        assert dm["blocks"][1]["elements"][0]["value"] == ref
    assert not slack.fake.messages_to(USERS["teacher"])


async def test_message_shortcut_prefills_the_concern_with_the_message(slack: Driver) -> None:
    await slack.shortcut("teacher", "concern_from_message", message={"type": "message", "text": f"{CHILD} cried"},
                         channel={"id": "C0STAFFROOM"})

    view = slack.last_opened_view()
    assert view["callback_id"] == "step:immediate_danger"  # danger first, even from a message
    view = (await slack.submit("teacher", view, {"immediate_danger": "no"})).json()["view"]
    [concern] = [b for b in view["blocks"] if b.get("block_id") == "concern"]
    assert concern["element"]["initial_value"] == f"{CHILD} cried"


async def test_an_unregistered_person_is_told_so_in_a_modal(slack: Driver) -> None:
    slack.fake.calls.clear()
    body = "command=%2Fconcern&user_id=U0NOBODY99&trigger_id=1.t&team_id=T0FAKE0001&text="
    response = await slack.post(body, "application/x-www-form-urlencoded")

    assert response.status_code == 200
    assert "not registered" in texts(slack.last_opened_view())


async def test_with_no_dsl_reachable_the_teacher_sees_the_fallback_contacts_not_alerted(slack: Driver) -> None:
    async with slack.svc.db.transaction() as s:  # the DSL and deputy were registered without a chat id
        await s.execute(text("UPDATE staff SET slack_user_id = NULL WHERE role IN ('dsl', 'deputy')"))
        await s.execute(text("UPDATE schools SET dsl_phone = '01632 960 001', front_door_phone = '0300 123 4567'"))
    await slack.command("teacher")
    view = (await slack.submit("teacher", slack.last_opened_view(), {"immediate_danger": "yes"})).json()["view"]

    top, told = (b["text"]["text"] for b in view["blocks"][:2])
    assert "Call 999" in top
    assert "nobody has been alerted" in told and "01632 960 001" in told and "0300 123 4567" in told
    assert "alerted as urgent" not in json.dumps(view)
    view = (await slack.submit("teacher", view, {"emergency_contact": "police_999"})).json()["view"]
    view = (await slack.submit("teacher", view, {**ABOUT, "concern": "x"})).json()["view"]
    last = (await slack.submit("teacher", view, {"staff_threshold": "significant_harm"})).json()["view"]
    assert "who have been notified" not in texts(last) and "nobody has been alerted" in json.dumps(last)


async def test_someone_of_two_schools_picks_the_school_first_and_the_case_is_filed_there(slack: Driver) -> None:
    from bot import people

    await people.add(slack.svc, email="olu@elm.sch.uk", role="dsl", name="Olu DSL", school="elm")
    await people.join(slack.svc, email="tina@oak.sch.uk", school="elm", role="staff")
    await slack.command("teacher")
    view = slack.last_opened_view()
    assert input_ids(view) == ["school", "immediate_danger"]
    [school] = [b for b in view["blocks"] if b["type"] == "input" and b["block_id"] == "school"]
    assert school["label"]["text"] == "Which school is this concern about?"
    assert [o["text"]["text"] for o in school["element"]["options"]] == ["oak", "elm"]  # every button labelled

    missing = await slack.submit("teacher", view, {"immediate_danger": "no"})
    assert missing.json() == {"response_action": "errors",
                              "errors": {"school": "Choose one of your schools"}}

    elm = next(o["value"] for o in school["element"]["options"] if o["text"]["text"] == "elm")
    reply = (await slack.submit("teacher", view, {"school": elm, "immediate_danger": "no"})).json()
    ref = reply["view"]["private_metadata"].split(":")[0]
    async with slack.svc.db.read() as s:
        filed = (await s.execute(text("select s.slug from cases c join schools s on s.id = c.school_id "
                                      "where c.ref = :ref"), {"ref": ref})).scalar_one()
    assert filed == "elm"


async def test_a_form_opened_before_joining_a_second_school_says_start_again(slack: Driver) -> None:
    from bot import people

    await people.add(slack.svc, email="olu@elm.sch.uk", role="dsl", name="Olu DSL", school="elm")
    await slack.command("teacher")
    view = slack.last_opened_view()
    assert "school" not in input_ids(view)
    await people.join(slack.svc, email="tina@oak.sch.uk", school="elm", role="staff")  # while the form is open

    reply = (await slack.submit("teacher", view, {"immediate_danger": "no"})).json()
    assert reply["response_action"] == "update"  # not errors for a block the form lacks (Slack refuses those)
    assert "Choose one of your schools: this form is out of date. Close it and start again." in texts(reply["view"])
