"""The whole story in Teams, from the teacher's `concern` to the DSLs' cards and the export:
token validation on, replies on the fake Bot Connector, installs and pushes on the fake Graph.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import pytest
from sqlalchemy import select

from bot.cases import Person
from bot.views import export_as_operator
from storage.models import AccessLog
from tests.fakes import teams_connector as tc
from tests.teams.cardplay import CHILD, WORDS, action, dialog_card, filled, input_ids, invoke_card, text
from tests.teams.conftest import USERS, Driver


@pytest.fixture
def teams_db_url(db_url: str) -> str:
    """The story runs on SQLite, and on PostgreSQL when CONSENTBOT_TEST_DATABASE_URL is set."""
    return db_url


async def raise_in_dialog(teams: Driver, *, quoted: str = "") -> dict[str, Any]:
    """The teacher raises a concern in the dialog; returns the card after the staff threshold."""
    who = teams.who("teacher")
    if quoted:
        card = dialog_card(await teams.invoke(tc.message_action_fetch(f"<p>{quoted}</p>", **who)))
        submit = tc.message_action_submit
    else:
        assert (await teams.say("teacher", "concern")).status_code == 200
        [offer] = cards_of(teams, "teacher")
        start = action(offer, "Raise a concern")["data"]
        card = dialog_card(await teams.invoke(tc.task_fetch({k: v for k, v in start.items() if k != "msteams"}, **who)))
        submit = tc.task_submit
    assert input_ids(card) == ["immediate_danger"]  # danger first (G1)
    card = dialog_card(await teams.invoke(submit(filled(card, {"immediate_danger": "no"}), **who)))
    answers = {"child": CHILD, "year_group": "year_4", "seen_at": ("2026-11-24", "09:10")}  # a date and a time picker
    if not quoted:
        answers["concern"] = WORDS
    if quoted:
        [concern] = [i for i in card["body"] if i.get("id") == "concern"] or [None]
        assert concern is None or concern.get("value") == WORDS  # prefilled from the message
        answers["concern"] = WORDS
    card = dialog_card(await teams.invoke(submit(filled(card, answers), **who)))
    return dialog_card(await teams.invoke(submit(filled(card, {"staff_threshold": "significant_harm"}), **who)))


async def press(teams: Driver, who: str, card: dict[str, Any], title: str, answers: dict[str, Any] | None = None,
                trigger: str = "manual") -> dict[str, Any]:
    chosen = action(card, title)
    data = filled(card, answers or {}, title=title)
    return invoke_card(await teams.invoke(tc.card_action(chosen["verb"], data, trigger, **teams.who(who))))


def cards_of(teams: Driver, who: str) -> list[dict[str, Any]]:
    """Every card in the person's 1:1 chat with the bot, as it reads now."""
    user = USERS[who]
    opened = teams.fake.conversation_of(user.aad)
    conversations = [user.conversation] + ([opened] if opened and opened != user.conversation else [])
    return [a["content"] for c in conversations for m in teams.fake.activities_in(c)
            for a in m.get("attachments") or [] if a.get("contentType") == tc.ADAPTIVE_CARD]


def latest_card(teams: Driver, who: str, words: str) -> dict[str, Any]:
    [*_, card] = [c for c in cards_of(teams, who) if words in text(c)]
    return card


@pytest.mark.parametrize("entry", ["command", "message_action"])
async def test_the_whole_story(teams_driver: Driver, entry: str, caplog: pytest.LogCaptureFixture,
                               capfd: pytest.CaptureFixture[str], team: dict[str, Person]) -> None:
    teams = teams_driver
    caplog.set_level(logging.DEBUG)
    card = await raise_in_dialog(teams, quoted=WORDS if entry == "message_action" else "")
    assert "Next" not in [a.get("title") for a in card.get("actions", [])]  # the teacher's part is done
    ref = re.search(r"C-[0-9A-Z]{6}", text(card)).group(0)  # type: ignore[union-attr]
    report = await teams.drain()
    assert set(report.counts) == {"sent"}, report.counts
    assert {USERS["dsl"].aad, USERS["deputy"].aad} <= {u for u in (USERS[k].aad for k in USERS)
                                                        if teams.graph.installed_for(u)}  # they never wrote to the bot

    # Both DSLs have a card holding only the reference; the deputy opens it first, the DSL decides first.
    dsl_card, deputy_card = latest_card(teams, "dsl", ref), latest_card(teams, "deputy", ref)
    deputy_step = await press(teams, "deputy", deputy_card, "Open and decide")
    assert "threshold" in input_ids(deputy_step)
    details = dialog_card(await teams.invoke(tc.task_fetch({"consentbot": "details", "case": ref}, **teams.who("dsl"))))
    assert CHILD in text(details)  # details open in a dialog, for the DSL
    step = await press(teams, "dsl", dsl_card, "Open and decide")
    step = await press(teams, "dsl", step, "Next", {"threshold": "significant_harm", "consulted": "nobody"})
    step = await press(teams, "dsl", step, "Next", {})
    assert input_ids(step)[0] == "assignee"
    step = await press(teams, "dsl", step, "Next", {"assignee": "sam@oak.sch.uk"})
    assert "member of staff assigned" in text(step)
    late = await press(teams, "deputy", deputy_step, "Next", {"threshold": "early_help"})
    assert "moved on" in text(late) and not any(a.get("title") == "Next" for a in late.get("actions", []))
    assert "Dee DSL answered 'Confirm the threshold' (Significant harm" in text(late)  # who decided, and what
    async with teams.svc.db.read() as s:
        lost = (await s.execute(select(AccessLog.actor_id).where(AccessLog.action == "stale_answer"))).scalars().all()
    assert lost == [team["deputy"].id]  # the lost race is logged, naming the deputy

    report = await teams.drain()
    assert report.counts.get("updated") == 2 and "failed" not in report.counts, report.counts
    for who in ("dsl", "deputy"):
        [decided] = [c for c in cards_of(teams, who) if "decided by Dee DSL" in text(c)]
        assert not any(a.get("verb") == "open" for a in decided.get("actions", []))
    refreshed = await press(teams, "deputy", {"actions": [{"type": "Action.Execute", "title": "Refresh",
                                                            "verb": "refresh", "data": {"consentbot": "refresh",
                                                                                        "case": ref}}]},
                            "Refresh", trigger="automatic")
    assert ref in text(refreshed)  # an automatic refresh shows the decided state (not a 500)

    assigned = latest_card(teams, "assignee", ref)
    step = await press(teams, "assignee", assigned, "Record outcome")
    step = await press(teams, "assignee", step, "Next", {
        "asked_who": "Mother", "asked_how": "phone", "asked_at": ("2026-11-24", "15:00"), "consent_outcome": "refused",
        "parent_views": "Does not want social care involved", "understanding": "yes",
        "child_views": "Wants to feel safe"})
    await teams.drain()

    step = await press(teams, "dsl", latest_card(teams, "dsl", "Approve"), "Open and decide")
    step = await press(teams, "dsl", step, "Next", {"decision_reasons": "Risk of significant harm", "approve": "approve"})
    step = await press(teams, "dsl", step, "Next", {
        "shared_with": "childrens_social_care", "agency_ref": "CSC-778", "shared_at": ("2026-11-24", "16:00"),
        "shared_how": "referral_form", "what_shared": "The disclosure", "decision": "share",
        "necessity": "Child at risk", "legal_refs": ["gdpr_6_1_e", "ca1989_s47"]})
    step = await press(teams, "dsl", step, "Next", {"ack_received": "2026-11-25", "referral_outcome": "s47 enquiry",
                                                    "review_date": "2026-12-08"})
    assert "complete" in text(step)
    await teams.drain()
    assert any("has been closed by Dee DSL" in text(c) for c in cards_of(teams, "teacher"))

    record = (await export_as_operator(teams.svc, case_ref=ref)).record
    assert record["child"] == CHILD and record["concern"] == WORDS
    assert record["threshold"]["decided"]["by"] == "Dee DSL"
    assert record["decision"]["approval"]["by"] == "Dee DSL"
    assert record["decision"]["approval"]["platform"] == "Microsoft Teams"
    assert record["consent"]["outcome"]["code"] == "refused" and record["consent"]["asked"]["by"] == "Sam Staff"
    assert record["outcome"]["code"] == "shared" and record["missing"] == []

    sent = teams.fake.all_sent_text() + " ".join(str(c.json) for c in teams.graph.calls)
    assert ref in sent and CHILD not in sent and "stepfather" not in sent
    lines = [r.getMessage() for r in caplog.records] + capfd.readouterr().err.splitlines()
    assert lines and not [line for line in lines if CHILD in line or "stepfather" in line]


async def test_a_refused_answer_shows_the_same_form_with_what_was_typed(teams_driver: Driver) -> None:
    teams = teams_driver
    card = await raise_in_dialog(teams)
    ref = re.search(r"C-[0-9A-Z]{6}", text(card)).group(0)  # type: ignore[union-attr]
    await teams.drain()
    step = await press(teams, "dsl", latest_card(teams, "dsl", ref), "Open and decide")
    step = await press(teams, "dsl", step, "Next", {"threshold": "significant_harm", "consulted": "nobody"})
    step = await press(teams, "dsl", step, "Next", {})
    again = await press(teams, "dsl", step, "Next", {"assignee": "sam@oak.sch.uk", "due_at": ("2026-12-08", "25:99")})
    assert input_ids(again) == input_ids(step)  # the same form, at the same version
    assert "date and time" in text(again)  # the bot's objection, in words, under the due date
    [assignee] = [i for i in again["body"] if i.get("id") == "assignee"] or [
        i for c in again["body"] for i in c.get("items", []) if i.get("id") == "assignee"]
    assert assignee.get("value") == "sam@oak.sch.uk"  # what they chose is kept
    assert any(c["value"] == "sam@oak.sch.uk" for c in assignee["choices"])  # and the colleagues still listed
    assert action(again, "Next")["data"]["version"] == action(step, "Next")["data"]["version"]
