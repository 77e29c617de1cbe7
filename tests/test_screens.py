"""The platform-neutral screen model (bot.screens): what every renderer (Block Kit, the terminal,
Adaptive Cards) is given. Danger first, notices in order, only allowed choices, the enforced
limits, and an honest line about where the case waits."""

from __future__ import annotations

import pytest

from bot import screens
from bot.cases import Person, Services
from bot.checklist import text_limit
from bot.errors import BotError, InvalidAnswer, NotAuthorised
from bot.policy.model import FieldType
from bot.screens import Reply, Screen
from tests.conftest import england
from tests.test_cases import RAISE

POLICY = england()
People = dict[str, Person]


async def submit(svc: Services, who: Person, screen: Screen, values: dict[str, object]) -> Screen:
    return await screens.submit(svc, actor=who, reply=screens.reply_to(screen, values), platform="test")


def test_the_first_screen_asks_one_yes_no_question_about_immediate_danger() -> None:
    screen = screens.start_screen(POLICY)

    assert screen.submittable and screen.step_id == POLICY.start
    assert (screen.case_ref, screen.version, screen.notices) == (None, None, ())
    [danger] = screen.questions
    assert danger.kind is FieldType.CHOICE and danger.label == "Is the child in immediate danger?"
    assert [label for _, label in danger.choices] == ["Yes", "No"]
    assert not danger.optional


def test_a_quoted_message_rides_below_until_a_step_has_a_long_answer_to_fill() -> None:
    first = screens.start_screen(POLICY, quoted="She said she is scared")
    concern = screens.step_screen(POLICY, POLICY.steps["concern"], quoted="She said she is scared")

    assert first.carried == "She said she is scared" and all(q.initial is None for q in first.questions)
    assert concern.carried == "" and concern.question("concern").initial == "She said she is scared"  # type: ignore[union-attr]


def test_every_text_question_has_the_limit_the_bot_enforces() -> None:
    checked = 0
    for step in POLICY.steps.values():
        screen = screens.step_screen(POLICY, step)
        for f in step.fields:
            q = screen.question(f.key)
            assert q is not None
            if f.type in (FieldType.TEXT, FieldType.LONGTEXT):
                assert q.max_length == text_limit(f), (step.id, f.key)
                checked += 1
    assert checked >= 20


def test_legal_references_carry_the_disclaimer_and_only_current_codes() -> None:
    step = next(s for s in POLICY.steps.values() if any(f.type is FieldType.LEGAL_REFS for f in s.fields))
    [refs] = [q for q in screens.step_screen(POLICY, step).questions if q.kind is FieldType.LEGAL_REFS]

    assert refs.hint == POLICY.disclaimer
    assert [code for code, _ in refs.choices] == [c.code for c in POLICY.legal_references if not c.historical]


async def test_danger_puts_999_first_then_who_was_alerted(services: Services, school: People) -> None:
    screen = await submit(services, school["teacher"], screens.start_screen(services.policy), {"immediate_danger": "yes"})

    assert screen.step_id == "emergency_contact" and screen.urgent
    assert screen.notices[0].startswith("Call 999")
    assert screen.notices[1] == "The Designated Safeguarding Lead has been alerted as urgent."
    assert screen.case_ref and screen.version == 1


async def test_an_option_ruled_out_by_an_earlier_answer_is_not_offered(services: Services, school: People) -> None:
    screen = await submit(services, school["teacher"], screens.start_screen(services.policy), {"immediate_danger": "yes"})
    screen = await submit(services, school["teacher"], screen, {"emergency_contact": "police_999"})
    screen = await submit(services, school["teacher"], screen, RAISE)
    await submit(services, school["teacher"], screen, {"staff_threshold": "significant_harm"})

    opened = await screens.case_screen(services, actor=school["dsl"], case_ref=screen.case_ref or "")

    threshold = opened.question("threshold")
    assert opened.step_id == "dsl_threshold" and threshold is not None
    offered = [value for value, _ in threshold.choices]
    assert "significant_harm" in offered and "early_help" not in offered and "no_further_action" not in offered
    calm = screens.step_screen(services.policy, services.policy.steps["dsl_threshold"]).question("threshold")
    assert calm is not None and "early_help" in [value for value, _ in calm.choices]  # offered without the danger answer


async def test_after_the_teachers_last_step_a_note_says_the_dsls_were_notified(services: Services,
                                                                                 school: People) -> None:
    screen = await submit(services, school["teacher"], screens.start_screen(services.policy), {"immediate_danger": "no"})
    screen = await submit(services, school["teacher"], screen, RAISE)
    note = await submit(services, school["teacher"], screen, {"staff_threshold": "significant_harm"})

    assert not note.submittable and not note.questions
    assert note.text == (f"Thank you. Case {note.case_ref} now waits for the Designated Safeguarding Lead "
                         "(and deputies), who have been notified: Confirm the threshold.")


async def test_with_no_dsl_reachable_the_note_never_says_notified(services: Services, school: People) -> None:
    services.delivering = frozenset({"teams"})  # the DSLs have Slack ids only: nobody can be reached
    screen = await submit(services, school["teacher"], screens.start_screen(services.policy), {"immediate_danger": "no"})
    screen = await submit(services, school["teacher"], screen, RAISE)
    note = await submit(services, school["teacher"], screen, {"staff_threshold": "significant_harm"})

    assert not note.submittable
    assert "notified" not in note.text
    assert note.text == (f"Case {note.case_ref} is saved and waits for the Designated Safeguarding Lead: "
                         "Confirm the threshold.")
    assert any("nobody has been alerted" in n for n in note.notices)  # the fallback contacts, at the top


async def test_an_opened_case_shows_labelled_details_above_the_dsls_step(services: Services, school: People) -> None:
    screen = await submit(services, school["teacher"], screens.start_screen(services.policy), {"immediate_danger": "no"})
    screen = await submit(services, school["teacher"], screen, RAISE)
    await submit(services, school["teacher"], screen, {"staff_threshold": "significant_harm"})

    opened = await screens.case_screen(services, actor=school["dsl"], case_ref=screen.case_ref or "")

    assert opened.step_id == "dsl_threshold" and opened.details is not None
    shown = {d.label: d.value for d in opened.details}
    assert shown["Child: Child"] == RAISE["child"]
    assert shown["Concern: Immediate danger"] == "No"  # the option's label, not its code
    assert shown["Concern: Raised by"].startswith("Tina Teacher, ")  # a name, not an id
    with pytest.raises(NotAuthorised):
        await screens.case_screen(services, actor=school["teacher2"], case_ref=screen.case_ref or "")


async def test_a_missing_answer_is_put_under_its_question(services: Services, school: People) -> None:
    first = await submit(services, school["teacher"], screens.start_screen(services.policy), {"immediate_danger": "no"})
    with pytest.raises(InvalidAnswer) as refused:
        await submit(services, school["teacher"], first, {"child": "A", "year_group": "year_4",
                                                           "seen_at": "2026-11-24T09:10:00+00:00"})

    error = screens.field_error(services.policy.steps["concern"], refused.value)
    assert (error.key, error.text) == ("concern", "This answer is required")


async def test_a_reply_to_an_unknown_step_is_refused_as_out_of_date(services: Services, school: People) -> None:
    with pytest.raises(BotError, match="out of date"):
        await screens.submit(services, actor=school["teacher"], platform="test",
                             reply=Reply(step_id="gone", case_ref=None, version=-1, values={}))


async def test_an_unregistered_person_gets_a_note_before_any_question(services: Services) -> None:
    screen = await screens.first_screen(services, slack_user_id="U0NOBODY")

    assert not screen.submittable and "not registered" in screen.text
