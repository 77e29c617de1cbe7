"""The whole story in Slack, from the teacher's /concern to the DSL's phone and the export."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select

from bot.cases import Person
from bot.views import export_as_operator
from storage.models import AccessLog
from tests.slack.conftest import USERS, Driver, decision_dm
from tests.slack.test_raise import ABOUT, CHILD, input_ids, texts

WORDS = f"{CHILD} told me her stepfather hits her"


async def start(slack: Driver, entry: str) -> dict[str, Any]:
    if entry == "command":
        await slack.command("teacher")
        view = (await slack.submit("teacher", slack.last_opened_view(), {"immediate_danger": "no"})).json()["view"]
        return (await slack.submit("teacher", view, {**ABOUT, "concern": WORDS})).json()
    await slack.shortcut("teacher", "concern_from_message", message={"type": "message", "text": WORDS},
                         channel={"id": "C0STAFFROOM"})
    view = (await slack.submit("teacher", slack.last_opened_view(), {"immediate_danger": "no"})).json()["view"]
    [concern] = [b for b in view["blocks"] if b.get("block_id") == "concern"]
    assert concern["element"]["initial_value"] == WORDS  # prefilled: the teacher adds the child and the time
    filled = {**ABOUT, "concern": WORDS}
    return (await slack.submit("teacher", view, filled)).json()


def at(hour: int, minute: int) -> int:
    """24 November 2026 at this UTC time, as Slack's date and time picker sends it."""
    return int(datetime(2026, 11, 24, hour, minute, tzinfo=UTC).timestamp())


async def answer(slack: Driver, who: str, view: dict[str, Any], answers: dict[str, Any]) -> dict[str, Any]:
    reply = await slack.submit(who, view, answers)
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["response_action"] == "update", body
    return dict(body["view"])


async def open_from_dm(slack: Driver, who: str, ref: str) -> dict[str, Any]:
    [*_, dm] = [m for m in slack.fake.messages_to(USERS[who]) if ref in m["text"]]  # the latest
    button = dm["blocks"][1]["elements"][0]
    response = await slack.click(who, button["value"], channel="D" + USERS[who])
    assert response.status_code == 200
    return slack.last_opened_view()


@pytest.mark.parametrize("entry", ["command", "message_shortcut"])
async def test_the_whole_story(slack: Driver, entry: str, caplog: pytest.LogCaptureFixture,
                               staff: dict[str, Person]) -> None:
    caplog.set_level(logging.DEBUG)
    view = (await start(slack, entry))["view"]
    ref = view["private_metadata"].split(":")[0]
    view = await answer(slack, "teacher", view, {"staff_threshold": "significant_harm"})
    assert "submit" not in view  # the teacher's part is done
    assert set((await slack.drain()).counts) == {"sent"}

    # The deputy opens the case first but the DSL decides first: the deputy's screen is stale.
    deputy_view = await open_from_dm(slack, "deputy", ref)
    assert deputy_view["callback_id"] == "step:dsl_threshold"
    dsl_view = await open_from_dm(slack, "dsl", ref)
    assert CHILD in texts(dsl_view)  # details are in the modal, for the DSL
    view = await answer(slack, "dsl", dsl_view, {"threshold": "significant_harm", "consulted": "nobody"})
    view = await answer(slack, "dsl", view, {"reasons_not_to_ask": []})
    assert input_ids(view) == ["assignee", "due_at"]
    view = await answer(slack, "dsl", view, {"assignee": "sam@oak.sch.uk"})
    assert "member of staff assigned" in texts(view)

    late = await answer(slack, "deputy", deputy_view, {"threshold": "early_help"})
    assert "moved on" in texts(late) and "submit" not in late
    assert "Dee DSL answered 'Confirm the threshold' (Significant harm" in texts(late)  # who decided, and what
    assert await logged(slack, "stale_answer") == [staff["deputy"].id]  # the lost race, naming the deputy

    report = await slack.drain()
    assert report.counts["updated"] == 2 and report.counts["sent"] >= 1 and "failed" not in report.counts
    for who in ("dsl", "deputy"):
        dm = decision_dm(slack.fake, who)
        assert dm["text"].startswith(f"Concern {ref}: decided by Dee DSL at ")
        assert len(dm["blocks"]) == 2 and dm["blocks"][1]["type"] == "context"  # no button left
    [assigned] = slack.fake.messages_to(USERS["assignee"])
    assert assigned["blocks"][1]["elements"][0]["text"]["text"] == "Record outcome"

    # The assigned member of staff records a refusal.
    view = await open_from_dm(slack, "assignee", ref)
    assert view["callback_id"] == "step:sh_seek_outcome"
    view = await answer(slack, "assignee", view, {
        "asked_who": "Mother", "asked_how": "phone", "asked_at": at(15, 0), "consent_outcome": "refused",
        "parent_views": "Does not want social care involved", "understanding": "yes",
        "child_views": "Wants to feel safe"})
    assert "Designated Safeguarding Lead" in texts(view)
    await slack.drain()

    # The DSL approves sharing without consent, records the sharing and the follow-up.
    view = await open_from_dm(slack, "dsl", f"{ref} needs your decision (Approve")
    assert view["callback_id"] == "step:sh_approve"
    view = await answer(slack, "dsl", view, {"decision_reasons": "Risk of significant harm", "approve": "approve"})
    view = await answer(slack, "dsl", view, {
        "shared_with": "childrens_social_care", "agency_ref": "CSC-778", "shared_at": at(16, 0),
        "shared_how": "referral_form", "what_shared": "The disclosure", "decision": "share",
        "necessity": "Child at risk", "legal_refs": ["gdpr_6_1_e", "ca1989_s47"]})
    view = await answer(slack, "dsl", view, {"ack_received": "2026-11-25", "referral_outcome": "s47 enquiry",
                                             "review_date": "2026-12-08"})
    assert "complete" in texts(view)
    await slack.drain()
    [closed] = [m for m in slack.fake.messages_to(USERS["teacher"]) if "has been closed" in m["text"]]
    assert closed["text"] == f"Concern {ref}, which you raised, has been closed by Dee DSL. Thank you for raising it."

    record = (await export_as_operator(slack.svc, case_ref=ref)).record
    assert record["child"] == CHILD and record["concern"] == WORDS
    assert record["threshold"]["confirmed"]["code"] == "significant_harm"
    assert record["threshold"]["decided"]["by"] == "Dee DSL"
    assert record["assigned"]["to"] == "Sam Staff" and record["assigned"]["due_at"]
    assert record["consent"]["outcome"]["code"] == "refused" and record["consent"]["asked"]["by"] == "Sam Staff"
    assert record["decision"]["approval"]["by"] == "Dee DSL" and record["decision"]["approval"]["platform"] == "Slack"
    assert record["shared"]["agency_ref"] == "CSC-778"
    assert [r["code"] for r in record["legal_references"]] == ["gdpr_6_1_e", "ca1989_s47"]
    assert record["follow_up"]["referral_outcome"] == "s47 enquiry"
    assert record["follow_up"]["review_date"]["iso"] == "2026-12-08"
    assert record["outcome"]["code"] == "shared" and record["missing"] == []
    assert_no_canary_in_chat_or_logs(slack, caplog)


async def logged(slack: Driver, action: str) -> list[int | None]:
    """Who the access log names for `action`, oldest first."""
    async with slack.svc.db.read() as s:
        return list((await s.execute(select(AccessLog.actor_id).where(AccessLog.action == action)
                                     .order_by(AccessLog.seq))).scalars())


def assert_no_canary_in_chat_or_logs(slack: Driver, caplog: pytest.LogCaptureFixture) -> None:
    outward = [c for c in slack.fake.calls if c.method in ("chat.postMessage", "chat.update", "views.publish",
                                                           "chat.postEphemeral")]
    assert outward
    for call in outward:
        assert CHILD not in json.dumps(call.params), call.method
        assert "stepfather" not in json.dumps(call.params), call.method
    assert caplog.records
    for record in caplog.records:
        line = record.getMessage()
        assert CHILD not in line and "stepfather" not in line, record.name


async def test_a_double_submit_of_one_screen_changes_nothing(slack: Driver) -> None:
    await slack.command("teacher")
    first = slack.last_opened_view()
    answers = {"immediate_danger": "no"}
    shown = {**first, "id": "V0DOUBLE01"}
    one = await slack.submit("teacher", shown, answers, view_id="V0DOUBLE01")
    slack.views -= 1  # the same hash again: Slack delivers the same screen twice
    two = await slack.submit("teacher", shown, answers, view_id="V0DOUBLE01")

    assert one.json()["view"]["private_metadata"] == two.json()["view"]["private_metadata"]
    view = one.json()["view"]
    again = {**view, "id": "V0DOUBLE02"}
    details = {**ABOUT, "concern": "x"}
    a = await slack.submit("teacher", again, details, view_id="V0DOUBLE02")
    slack.views -= 1
    b = await slack.submit("teacher", again, details, view_id="V0DOUBLE02")
    assert a.json()["view"]["private_metadata"] == b.json()["view"]["private_metadata"]
    assert a.json()["view"]["private_metadata"].endswith(":2")


async def test_a_stranger_to_the_case_is_refused_ephemerally_and_audited(slack: Driver) -> None:
    from bot.audit import access_entries

    await slack.command("teacher")
    reply = await slack.submit("teacher", slack.last_opened_view(), {"immediate_danger": "no"})
    ref = reply.json()["view"]["private_metadata"].split(":")[0]

    response = await slack.click("bystander", ref, channel="D" + USERS["bystander"])

    assert response.status_code == 200
    [ephemeral] = slack.fake.calls_to("chat.postEphemeral")
    assert ephemeral.params["user"] == USERS["bystander"] and "not authorised" in ephemeral.params["text"]
    assert not slack.fake.calls_to("views.open")[1:]  # only the teacher's modal was ever opened
    assert any("refused" in line for line in await access_entries(slack.svc, case_ref=ref))


async def test_a_non_dsl_submitting_a_dsl_step_is_refused_and_audited(slack: Driver) -> None:
    from bot.audit import access_entries
    from tests.slack.test_raise import raise_concern

    ref, _ = await raise_concern(slack)
    await slack.click("dsl", ref, channel="D" + USERS["dsl"])
    dsl_view = slack.last_opened_view()

    late = await slack.submit("teacher", dsl_view, {"threshold": "early_help"})

    assert "Only a DSL or deputy" in texts(late.json()["view"])
    assert any("refused" in line for line in await access_entries(slack.svc, case_ref=ref))
