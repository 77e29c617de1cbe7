"""Adaptive Card rendering of the bot's screens and messages, and reading card submissions back.

Every step of the real policy is rendered; answers are filled in as Teams sends them (input
values merged into the action's data, a multi-select as "a,b") and must come back as values
the bot's own validator accepts.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from bot import screens
from bot.checklist import IllegalAnswer, text_limit, validate_answer
from bot.messages import Kind, Message, render_text
from bot.policy.model import FieldType, Step, StepKind
from bot.screens import CARRIED_LEAD, Detail, FieldError, Question, Screen
from handlers.teams import cards
from handlers.teams.parse import card_data, parse_reply, parse_snooze, quoted_from_message
from tests.conftest import england

POLICY = england()
COLLEAGUES = [("a.teacher@school.example", "A Teacher (staff)"), ("dsl@school.example", "D Lead (dsl)")]
ASK_STEPS = [s for s in POLICY.steps.values() if s.kind is StepKind.ASK]
STEP_DATA_KEYS = {"consentbot", "step", "case", "version", "nonce", "quoted"}
INPUT_TYPES = {"Input.Text", "Input.ChoiceSet", "Input.Date", "Input.Time", "Input.Toggle"}
MOBILE_TYPES = INPUT_TYPES | {"TextBlock", "FactSet", "Container", "ActionSet"}


def elements(card: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every element of a card's body, containers opened, in reading order."""
    stack = list(reversed(card["body"]))
    while stack:
        element = stack.pop()
        yield element
        stack.extend(reversed(element.get("items") or []))


def inputs(card: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for e in elements(card) if e["type"] in INPUT_TYPES]


def screen_for(step: Step, **kwargs: Any) -> Screen:
    return screens.step_screen(POLICY, step, colleagues=COLLEAGUES, **kwargs)


def submitted(card: dict[str, Any], answers: dict[str, str]) -> dict[str, Any]:
    """What Teams posts back: the Next action's data with the inputs' values merged in."""
    [action] = card["actions"]
    ids = {i["id"] for i in inputs(card)}
    assert set(answers) <= ids, set(answers) - ids
    return {**action["data"], **answers}


@pytest.mark.parametrize("step", ASK_STEPS, ids=lambda s: s.id)
@pytest.mark.parametrize("submit", ["execute", "dialog"])
def test_every_step_renders_labelled_inputs_for_its_questions_and_a_next_button(step: Step, submit: Any) -> None:
    screen = screen_for(step, quoted="She said she is scared")
    card = cards.render_card(screen, submit=submit, nonce="n1")

    assert card["type"] == "AdaptiveCard" and card["version"] == "1.5"
    assert {e["type"] for e in elements(card)} <= MOBILE_TYPES
    expected = {f.key for f in step.fields if f.type not in cards.TIMES}  # a date and time is two pickers
    expected |= {f"{f.key}.{part}" for f in step.fields if f.type in cards.TIMES for part in ("date", "time")}
    ids = [i["id"] for i in inputs(card)]
    assert sorted(ids) == sorted(expected)  # one input per question, no strays, no duplicates
    for i in inputs(card):
        assert i["label"].strip(), i
        assert i.get("isRequired", False) is not screen.question(i["id"].split(".")[0]).optional  # type: ignore[union-attr]
        if i.get("isRequired"):
            assert i["errorMessage"] == "This answer is required."
    [action] = card["actions"]
    assert action["title"] == "Next"
    assert set(action["data"]) <= STEP_DATA_KEYS
    assert action["data"]["step"] == step.id and action["data"]["version"] == -1 and action["data"]["case"] == ""
    if submit == "execute":
        assert action["type"] == "Action.Execute" and action["verb"] == "step" and "quoted" not in action["data"]


def test_no_question_key_of_the_policy_could_overwrite_the_action_data() -> None:
    keys = {f.key for s in POLICY.steps.values() for f in s.fields}
    assert keys and not keys & set(cards.RESERVED)


def test_the_limit_shown_is_the_limit_the_bot_enforces() -> None:
    checked = 0
    for step in ASK_STEPS:
        by_id = {i["id"]: i for i in inputs(cards.render_card(screen_for(step), submit="dialog", nonce="n"))}
        for f in step.fields:
            if f.type in (FieldType.TEXT, FieldType.LONGTEXT):
                assert by_id[f.key]["type"] == "Input.Text"
                assert by_id[f.key]["maxLength"] == text_limit(f), (step.id, f.key)
                assert by_id[f.key].get("isMultiline", False) is (f.type is FieldType.LONGTEXT)
                checked += 1
    assert checked >= 20


def test_choices_are_the_allowed_ones_radio_buttons_when_few_and_multi_select_for_codes() -> None:
    share = cards.render_card(screen_for(POLICY.steps["share"]), submit="dialog", nonce="n")
    by_id = {i["id"]: i for i in inputs(share)}

    assert by_id["shared_with"]["style"] == "expanded" and "isMultiSelect" not in by_id["shared_with"]
    agencies = [o.value for o in POLICY.steps["share"].fields[0].options]
    assert [c["value"] for c in by_id["shared_with"]["choices"]] == agencies
    legal = by_id["legal_refs"]
    assert legal["isMultiSelect"] is True and legal["style"] == "expanded"  # ten current references
    assert [c["value"] for c in legal["choices"]] == [c.code for c in screens.current_legal_refs(POLICY)]
    assert all(c["title"] for c in legal["choices"])
    legal_at = [e.get("id") for e in elements(share)].index("legal_refs")
    assert list(elements(share))[legal_at + 1]["text"] == POLICY.disclaimer  # the hint sits right below


def test_many_choices_become_a_drop_down() -> None:
    staff = [(f"t{n}@school.example", f"Teacher {n} (staff)") for n in range(11)]
    screen = screens.step_screen(POLICY, POLICY.steps["eh_assign"], colleagues=staff)
    [assignee] = [i for i in inputs(cards.render_card(screen, submit="dialog", nonce="n")) if i["id"] == "assignee"]

    assert assignee["type"] == "Input.ChoiceSet" and assignee["style"] == "compact" and len(assignee["choices"]) == 11
    assert assignee["placeholder"] == "Choose a member of staff"


def test_an_assignee_with_no_colleagues_listed_is_typed_as_an_email() -> None:
    screen = screens.step_screen(POLICY, POLICY.steps["eh_assign"])
    [assignee] = [i for i in inputs(cards.render_card(screen, submit="dialog", nonce="n")) if i["id"] == "assignee"]

    assert assignee["type"] == "Input.Text" and assignee["maxLength"] == screen.question("assignee").max_length  # type: ignore[union-attr]


def test_notices_come_first_then_details_then_the_step_and_the_carried_quote_last() -> None:
    step = screen_for(POLICY.steps["immediate_danger"], quoted="She said <b>she</b> is scared")
    screen = Screen(title=step.title, questions=step.questions, step_id=step.step_id, carried=step.carried,
                    notices=("Call 999 now.", "The DSL has been alerted."), urgent=True, case_ref="C-7", version=3,
                    details=(Detail("What was seen", "A bruise"),))
    card = cards.render_card(screen, submit="dialog", nonce="n9")
    body = card["body"]

    assert [b["text"] for b in body[:2]] == ["Call 999 now.", "The DSL has been alerted."]
    assert all(b["color"] == "attention" and b["weight"] == "bolder" and b["wrap"] for b in body[:2])
    assert body[2]["text"] == "Details (shown here only; not kept in chat history)"
    texts = [e.get("text") for e in elements(card)]
    assert texts.index("A bruise") < texts.index("Case C-7") < texts.index(step.title)
    assert "Urgent case." not in texts  # said by the notices already
    assert body[-1]["text"] == CARRIED_LEAD + "She said <b>she</b> is scared"
    data = card["actions"][0]["data"]
    assert data == {"consentbot": "step", "step": "immediate_danger", "case": "C-7", "version": 3, "nonce": "n9",
                    "quoted": "She said <b>she</b> is scared"}
    assert card_data(data).quoted == "She said <b>she</b> is scared" and card_data(data).version == 3


def test_an_urgent_case_without_notices_says_so_at_the_top() -> None:
    screen = Screen(title="Decide", step_id="dsl_threshold", urgent=True, case_ref="C-1", version=0)
    top = cards.render_card(screen, submit="execute", nonce="n")["body"][0]

    assert top["text"] == "Urgent case." and top["color"] == "attention"


def test_a_note_has_no_submit_button() -> None:
    for note in (screens.note_screen("You are not registered."),
                 screens.note_screen("Case C-1 is saved.", details=(Detail("Child", "Sam"),))):
        for submit in ("execute", "dialog"):
            card = cards.render_card(note, submit=submit, nonce="n")
            assert card["actions"] == [] and not inputs(card)
            assert note.text in [e.get("text") for e in elements(card)]


def test_a_round_trip_gives_values_the_bot_accepts() -> None:
    answers = {
        "concern": {"child": "Sam Smith ", "child_dob": "2016-05-01", "year_group": "year_4",
                    "concern": "Said she was hit.\nBruise on arm.", "seen_at.date": "2026-11-23", "seen_at.time": "10:15"},
        "share": {"shared_with": "police", "agency_ref": "REF-1", "shared_at.date": "2026-11-23",
                  "shared_at.time": "16:00", "shared_how": "phone",
                  "what_shared": "Concern summary", "decision": "partial", "necessity": "To protect her",
                  "legal_refs": "gdpr_6_1_e,ca1989_s47"},
        "sh_reasons": {"reasons_not_to_ask": "risk_of_harm,undue_delay", "reasons_text": "Father is the risk",
                       "understanding": "yes", "child_views": "Wants Gran told"},
        "eh_assign": {"assignee": "a.teacher@school.example", "due_at.date": "2026-12-08", "due_at.time": "14:30"},
        "nfa_record": {"decision_reasons": "Below threshold", "understanding": "not_sure",
                       "child_views": "Too upset to talk today", "review_date": "2027-01-15"},
        "immediate_danger": {"immediate_danger": "no"},
    }
    for step_id, typed in answers.items():
        step = POLICY.steps[step_id]
        card = cards.render_card(screen_for(step), submit="execute", nonce=f"nonce-{step_id}")
        reply = parse_reply(POLICY, submitted(card, typed))

        assert (reply.step_id, reply.case_ref, reply.version) == (step_id, None, -1)
        assert reply.idempotency_key == f"teams:card:nonce-{step_id}"
        clean = validate_answer(POLICY, step, reply.values, {})
        assert set(clean) == {f.key for f in step.fields if f.key in typed or f"{f.key}.date" in typed}, step_id
    share = parse_reply(POLICY, submitted(cards.render_card(screen_for(POLICY.steps["share"]), submit="execute",
                                                            nonce="n"), answers["share"]))
    assert share.values["legal_refs"] == ["gdpr_6_1_e", "ca1989_s47"]
    concern = parse_reply(POLICY, {"consentbot": "step", "step": "concern", **answers["concern"]})
    assert concern.values["child"] == "Sam Smith "  # as typed: the bot trims and checks


def test_only_the_steps_fields_are_read_and_empty_answers_are_left_out() -> None:
    data = {"consentbot": "step", "step": "dsl_threshold", "case": "C-2", "version": "4", "nonce": "x",
            "threshold": "significant_harm", "consulted": "", "child": "not on this step", "reasons_not_to_ask": "a"}
    reply = parse_reply(POLICY, data)

    assert reply.values == {"threshold": "significant_harm"}
    assert (reply.case_ref, reply.version) == ("C-2", 4)
    assert parse_reply(POLICY, {"step": "no_such_step", "child": "Sam"}).values == {}
    assert parse_reply(POLICY, {"step": "sh_reasons", "reasons_not_to_ask": ""}).values == {}


@pytest.mark.parametrize(("day", "at", "expected"), [
    ("2026-07-08", "14:30", "2026-07-08T14:30:00+01:00"),  # British Summer Time
    ("2026-12-08", "14:30", "2026-12-08T14:30:00+00:00"),  # Greenwich Mean Time
    ("2026-10-25", "09:00", "2026-10-25T09:00:00+00:00"),  # the day the clocks go back
    ("2026-03-29", "09:00:00", "2026-03-29T09:00:00+01:00"),  # the day they go forward; seconds tolerated
])
def test_a_due_date_and_time_combine_in_uk_time(day: str, at: str, expected: str) -> None:
    reply = parse_reply(POLICY, {"step": "sh_assign_seek", "assignee": "a@b.example", "due_at.date": day,
                                 "due_at.time": at})

    assert reply.values["due_at"] == expected
    assert validate_answer(POLICY, POLICY.steps["sh_assign_seek"], reply.values, {})["due_at"] == expected


def test_a_due_date_without_a_time_is_the_end_of_that_working_day_and_an_unreadable_one_goes_as_typed() -> None:
    step = POLICY.steps["sh_assign_seek"]
    no_time = parse_reply(POLICY, {"step": step.id, "assignee": "a@b.example", "due_at.date": "2026-12-08"})
    garbled = parse_reply(POLICY, {"step": step.id, "assignee": "a@b.example", "due_at.date": "8/12/2026",
                                   "due_at.time": "14:30"})

    assert no_time.values["due_at"] == "2026-12-08T17:00:00+00:00"  # the date picked is kept, never dropped
    assert garbled.values["due_at"] == "8/12/2026 14:30"
    with pytest.raises(IllegalAnswer, match="date and time"):
        validate_answer(POLICY, step, garbled.values, {})


def test_a_card_shown_again_keeps_what_was_typed_and_shows_the_error_under_its_input() -> None:
    step = POLICY.steps["concern"]
    typed = {"child": "Sam", "child_dob": "2016-05-01", "year_group": "year_4", "concern": "x" * 10,
             "seen_at.date": "2026-11-23", "seen_at.time": "10:15"}
    card = cards.render_card(screen_for(step), submit="dialog", nonce="n2",
                             error=FieldError("concern", "This answer is required."), values=typed)
    body = list(elements(card))
    at = [e.get("id") for e in body].index("concern")

    assert {i["id"]: i.get("value") for i in inputs(card)} == typed
    parsed = parse_reply(POLICY, {"step": step.id, **typed}).values
    again = cards.render_card(screen_for(step), submit="dialog", nonce="n3", values=parsed)
    assert {i["id"]: i.get("value") for i in inputs(again)} == typed  # parsed back to its two pickers
    assert body[at + 1] == {"type": "TextBlock", "text": "This answer is required.", "wrap": True, "color": "attention"}
    assert sum(e.get("color") == "attention" for e in body) == 1


def test_a_re_shown_card_keeps_due_date_time_and_multi_selects_whether_raw_or_parsed() -> None:
    assign = POLICY.steps["sh_assign_seek"]
    raw = {"assignee": "dsl@school.example", "due_at.date": "2026-07-08", "due_at.time": "09:15"}
    parsed = parse_reply(POLICY, {"step": assign.id, **raw}).values
    for values in (raw, parsed):
        card = cards.render_card(screen_for(assign), submit="execute", nonce="n", values=values,
                                 error=FieldError("due_at", "This answer must be in the future."))
        body = list(elements(card))
        assert {i["id"]: i.get("value") for i in inputs(card)} == raw
        assert body[[e.get("id") for e in body].index("due_at.time") + 1]["text"] == "This answer must be in the future."
    reasons = POLICY.steps["sh_reasons"]
    for values in ({"reasons_not_to_ask": "risk_of_harm,undue_delay"},
                   {"reasons_not_to_ask": ["risk_of_harm", "undue_delay"]}):
        card = cards.render_card(screen_for(reasons), submit="dialog", nonce="n", values=values)
        assert inputs(card)[0]["value"] == "risk_of_harm,undue_delay"


def test_an_error_about_no_question_shown_is_still_said() -> None:
    card = cards.render_card(screen_for(POLICY.steps["concern"]), submit="dialog", nonce="n",
                             error=FieldError("", "This form is out of date."))

    assert "This form is out of date." in [e.get("text") for e in elements(card) if e.get("color") == "attention"]


def test_long_text_is_clipped_in_text_blocks() -> None:
    card = cards.render_card(screens.note_screen("word " * 2000), submit="dialog", nonce="n")

    assert all(len(e["text"]) <= 3000 for e in elements(card) if e["type"] == "TextBlock")


def test_a_decision_message_carries_the_reference_and_buttons_but_no_details() -> None:
    m = Message(kind=Kind.DECISION_NEEDED, case_ref="C-42", step_title="Decide the threshold")
    card = cards.render_message_card(m)
    dumped = json.dumps(card)

    assert card["body"][0]["text"] == render_text(m) and "C-42" in card["body"][0]["text"]
    assert [a["title"] for a in card["actions"]] == ["Open and decide", "Show details"]
    assert card["actions"][0] == {"type": "Action.Execute", "title": "Open and decide", "verb": "open",
                                  "data": {"consentbot": "open", "case": "C-42"}}
    assert card["actions"][1]["data"] == {"msteams": {"type": "task/fetch"}, "consentbot": "details", "case": "C-42"}
    assert "Details (shown here only" not in dumped and "refresh" not in card


@pytest.mark.parametrize("kind", list(Kind))
def test_every_message_kind_has_titled_buttons_carrying_only_the_reference(kind: Kind) -> None:
    m = Message(kind=kind, case_ref="C-5", urgent=kind is Kind.URGENT_ALERT, step_title="Record outcome",
                by="A Teacher", at="10:00", lines=("C-5: 1 overdue",), can_acknowledge=kind is Kind.URGENT_ALERT,
                can_snooze=kind is Kind.REMINDER)
    card = cards.render_message_card(m, refresh_user_ids=["29:abc"])

    for action in card["actions"]:
        assert action["title"].strip()
        assert set(action["data"]) <= {"consentbot", "case", "msteams"} and action["data"]["case"] == "C-5"
    if kind in (Kind.DECIDED, Kind.CLOSED, Kind.DIGEST, Kind.UNREACHABLE):
        assert card["actions"] == []
    else:
        assert card["actions"][0]["verb"] == "open" and card["actions"][1]["title"] == "Show details"
    assert card["refresh"] == {"action": {"type": "Action.Execute", "title": "Refresh", "verb": "refresh",
                                          "data": {"consentbot": "refresh", "case": "C-5"}}, "userIds": ["29:abc"]}


def test_urgent_alerts_offer_acknowledge_and_reminders_offer_snooze() -> None:
    urgent = cards.render_message_card(Message(kind=Kind.URGENT_ALERT, case_ref="C-9", urgent=True, can_acknowledge=True))
    reminder = cards.render_message_card(Message(kind=Kind.REMINDER, case_ref="C-9", step_title="Outcome",
                                                 can_snooze=True))

    assert urgent["body"][0]["weight"] == "bolder" and urgent["body"][0]["color"] == "attention"
    assert urgent["actions"][-1] == {"type": "Action.Execute", "title": "Acknowledge: I have it", "verb": "acknowledge",
                                     "data": {"consentbot": "acknowledge", "case": "C-9"}}
    assert reminder["actions"][-1] == {"type": "Action.Execute", "title": "Snooze", "verb": "snooze",
                                       "data": {"consentbot": "snooze", "case": "C-9"}}
    assert "weight" not in reminder["body"][0]


def test_a_digest_is_one_line_each() -> None:
    card = cards.render_message_card(Message(kind=Kind.DIGEST, case_ref="", lines=("C-1: overdue", "C-2: waiting")))

    assert [b["text"] for b in card["body"]] == ["Safeguarding digest", "C-1: overdue", "C-2: waiting"]
    assert card["actions"] == []


def test_the_snooze_card_asks_a_reason_and_a_duration_and_reads_back() -> None:
    rules = POLICY.settings["snooze"]
    card = cards.render_snooze_card("C-3", list(rules["reasons"].items()), [60, 240, 1440], "n5")
    by_id = {i["id"]: i for i in inputs(card)}

    assert all(i["label"] and i["isRequired"] for i in by_id.values())
    assert [c["value"] for c in by_id["reason"]["choices"]] == list(rules["reasons"])
    assert [c["title"] for c in by_id["minutes"]["choices"]] == ["1 hour", "4 hours", "1 day"]
    [action] = card["actions"]
    assert (action["type"], action["title"], action["verb"]) == ("Action.Execute", "Snooze", "snooze_save")
    assert action["data"] == {"consentbot": "snooze_save", "case": "C-3", "nonce": "n5"}
    answer = parse_snooze({**action["data"], "reason": "staff_absent", "minutes": "240"})
    assert (answer.case_ref, answer.reason, answer.minutes) == ("C-3", "staff_absent", 240)
    assert parse_snooze("junk").minutes == 0
    assert cards.render_snooze_card("C-3", [], [60], "n")["actions"] == []


def test_envelopes_for_attachments_invokes_and_dialogs() -> None:
    card = cards.render_card(screens.note_screen("Saved."), submit="dialog", nonce="n")

    assert cards.card_attachment(card) == {"contentType": "application/vnd.microsoft.card.adaptive", "content": card}
    assert cards.invoke_card_response(card) == {"statusCode": 200, "type": "application/vnd.microsoft.card.adaptive",
                                                "value": card}
    assert cards.dialog_response(card)["task"] == {"type": "continue", "value": {
        "title": "Safeguarding concern", "card": cards.card_attachment(card)}}


@pytest.mark.parametrize("junk", [None, "text", 7, [], {"version": True}, {"version": "1e3"}, {"consentbot": 5}])
def test_card_data_tolerates_anything(junk: Any) -> None:
    data = card_data(junk)

    assert data.action == "" and data.version == -1 and data.case_ref is None and data.step_id == ""
    assert card_data({"nonce": "n" * 5000}).nonce == "n" * 200


def test_the_quoted_message_is_plain_text() -> None:
    html_body: dict[str, Any] = {"value": {"messagePayload": {"body": {"contentType": "html", "content":
                 "<p>She said <b>he</b> hits her &amp; <i>her</i>&nbsp;brother's <b>Mum</b>'s friend.</p>"
                 "<p>Seen&nbsp;at 10:15<br>today</p>"
                 "<script>alert(1)</script>"}}}}

    assert quoted_from_message(html_body) == ("She said he hits her & her brother's Mum's friend. "
                                                "Seen at 10:15 today")
    value = html_body["value"]
    assert quoted_from_message(value) == quoted_from_message(value["messagePayload"]) == quoted_from_message(html_body)
    assert quoted_from_message({"messagePayload": {"body": {"contentType": "text", "content": " a \n b "}}}) == "a b"
    assert quoted_from_message({"messagePayload": {"body": {"content": "&lt;ok&gt;", "contentType": "html"}}}) == "<ok>"
    junk: Any
    for junk in (None, "x", {"value": None}, {"messagePayload": {"body": None}}, {"messagePayload": {"body": {}}}):
        assert quoted_from_message(junk) == ""


def test_a_choice_with_every_option_ruled_out_is_still_a_choice_never_free_text() -> None:
    asked = Question("threshold", "Threshold", FieldType.CHOICE)
    screen = Screen(title="Decide", step_id="dsl_threshold", questions=(asked,))
    [only] = inputs(cards.render_card(screen, submit="execute", nonce="n"))

    assert only["type"] == "Input.ChoiceSet" and only["choices"] == []


def test_the_school_question_of_someone_of_several_schools_is_a_labelled_choice_read_back() -> None:
    start = screens.start_screen(POLICY, schools=(("3", "Oak Primary"), ("7", "Elm Academy")))
    card = cards.render_card(start, submit="dialog", nonce="n1")
    [which] = [e for e in elements(card) if e.get("id") == screens.SCHOOL]
    assert which["type"] == "Input.ChoiceSet"
    assert [c["title"] for c in which["choices"]] == ["Oak Primary", "Elm Academy"]
    assert "Which school is this concern about?" in json.dumps(card)
    reply = parse_reply(POLICY, submitted(card, {"school": "7", "immediate_danger": "no"}))
    assert reply.values == {"school": "7", "immediate_danger": "no"}
