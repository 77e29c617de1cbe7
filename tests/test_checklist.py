"""The pure state machine: table-driven paths, illegal answers, and properties (S2, records)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.checklist import Answer, IllegalAnswer, advance, allowed_options, validate_answer
from bot.policy.model import FieldType, Policy, Step
from bot.policy.requirements import required_records
from bot.policy.validate import enumerate_paths
from tests.conftest import england

POLICY = england()
INFORM = dataclasses.replace(POLICY, settings={**POLICY.settings, "consent_model": "inform"})
CHOICE = dataclasses.replace(POLICY, settings={**POLICY.settings, "consent_model": "dsl_choice"})
T = "recorded"
WHEN = "2026-11-24T08:45:00+00:00"
RAISE = {"child": "A", "year_group": "year_4", "concern": "B", "seen_at": WHEN}
ASSIGN = {"assignee": "7", "due_at": "2026-11-25T10:00:00+00:00"}
VOICE = {"understanding": "yes", "child_views": T}
ASKED = {"asked_who": T, "asked_how": "phone", "asked_at": WHEN, **VOICE}
SHARE = {"shared_with": "police", "agency_ref": T, "shared_at": WHEN, "shared_how": "phone", "what_shared": T,
         "decision": "share", "necessity": T, "legal_refs": ["gdpr_6_1_e"]}
FOLLOW = {"ack_received": "2026-11-25", "referral_outcome": T, "review_date": "2026-12-08"}


def walk(*steps: tuple[str, dict[str, Any]]) -> list[Answer]:
    return [Answer(step=s, values=v, by="1", at="t") for s, v in steps]


def start(danger: str = "no", threshold: str = "significant_harm") -> list[tuple[str, dict[str, Any]]]:
    head = [("immediate_danger", {"immediate_danger": danger})]
    if danger == "yes":
        head.append(("emergency_contact", {"emergency_contact": "front_door"}))
    return [*head, ("concern", RAISE), ("staff_threshold", {"staff_threshold": "unsure"}),
            ("dsl_threshold", {"threshold": threshold})]


NO_DANGER = ("immediate_danger", {"immediate_danger": "no"})
NOT_ASKED = [("sh_reasons", {"reasons_not_to_ask": ["risk_of_harm"], "reasons_text": T, "understanding": "no",
                            "child_views": T}),
             ("sh_approve", {"decision_reasons": T, "approve": "approve"})]
PATHS = [
    ("immediate danger, not asked", POLICY, start("yes") + NOT_ASKED + [("share", SHARE), ("follow_up", FOLLOW)], "shared"),
    ("significant harm, consent given", POLICY, start() + [
        ("sh_reasons", {}), ("sh_assign_seek", ASSIGN), ("sh_seek_outcome", {**ASKED, "consent_outcome": "given"}),
        ("share", SHARE), ("follow_up", FOLLOW)], "shared"),
    ("significant harm, refused, approved", POLICY, start() + [
        ("sh_reasons", {}), ("sh_assign_seek", ASSIGN), ("sh_seek_outcome", {**ASKED, "consent_outcome": "refused"}),
        ("sh_approve", {"decision_reasons": T, "approve": "approve"}), ("share", SHARE), ("follow_up", FOLLOW)], "shared"),
    ("significant harm, not reached, approved", POLICY, start() + [
        ("sh_reasons", {}), ("sh_assign_seek", ASSIGN),
        ("sh_seek_outcome", {**ASKED, "consent_outcome": "not_reached"}),
        ("sh_approve", {"decision_reasons": T, "approve": "approve"}), ("share", SHARE), ("follow_up", FOLLOW)], "shared"),
    ("inform, objected, approved", INFORM, start() + [
        ("sh_reasons", {}), ("sh_assign_inform", ASSIGN),
        ("sh_inform_outcome", {**ASKED, "consent_outcome": "informed_objected"}),
        ("sh_approve", {"decision_reasons": T, "approve": "approve"}), ("share", SHARE), ("follow_up", FOLLOW)], "shared"),
    ("DSL's choice: seek, given", CHOICE, start() + [
        ("sh_reasons", {}), ("sh_choose_model", {"consent_model": "seek"}), ("sh_assign_seek", ASSIGN),
        ("sh_seek_outcome", {**ASKED, "consent_outcome": "given"}), ("share", SHARE), ("follow_up", FOLLOW)], "shared"),
    ("DSL's choice: inform, objected, approved", CHOICE, start() + [
        ("sh_reasons", {}), ("sh_choose_model", {"consent_model": "inform"}), ("sh_assign_inform", ASSIGN),
        ("sh_inform_outcome", {**ASKED, "consent_outcome": "informed_objected"}),
        ("sh_approve", {"decision_reasons": T, "approve": "approve"}), ("share", SHARE), ("follow_up", FOLLOW)], "shared"),
    ("early help, agreed", POLICY, start(threshold="early_help") + [
        ("eh_assign", ASSIGN), ("eh_outcome", {**ASKED, "consent_outcome": "given"}), ("share", SHARE),
        ("follow_up", FOLLOW)], "shared"),
    ("early help, refused", POLICY, start(threshold="early_help") + [
        ("eh_assign", ASSIGN), ("eh_outcome", {**ASKED, "consent_outcome": "refused"}),
        ("eh_not_shared", {"decision_reasons": T, "review_date": "2026-12-08"})], "not_shared"),
    ("no further action", POLICY, start(threshold="no_further_action") + [
        ("nfa_record", {"decision_reasons": T, **VOICE, "review_date": "2026-12-08"})], "no_further_action"),
]


@pytest.mark.parametrize(("name", "policy", "steps", "outcome"), PATHS, ids=[p[0] for p in PATHS])
def test_each_path_ends_where_the_guidance_says(name: str, policy: Policy, steps: list[Any], outcome: str) -> None:
    answers = walk(*steps)
    for i in range(len(answers)):  # every prefix waits on the next step of the table
        assert advance(policy, answers[:i]).step.id == answers[i].step  # type: ignore[union-attr]
    final = advance(policy, answers)
    assert final.outcome is not None and final.outcome.code == outcome
    assert final.outcome.missing == ()
    assert final.outcome.shared == (outcome == "shared")
    assert final.facts["understanding"] and final.facts["child_views"]  # G4, on every path


def test_the_dsls_choice_of_model_is_recorded_and_signed() -> None:
    steps = start() + [("sh_reasons", {}), ("sh_choose_model", {"consent_model": "inform"})]
    after = advance(CHOICE, walk(*steps))
    assert after.step is not None and after.step.id == "sh_assign_inform"
    assert after.facts["consent_model"] == "inform"
    assert after.facts["model_chosen_by"]["step"] == "sh_choose_model"
    assert advance(POLICY, walk(*start(), ("sh_reasons", {}))).step.id == "sh_assign_seek"  # type: ignore[union-attr]


def test_a_case_recorded_before_the_childs_views_were_asked_replays_and_says_what_it_lacks() -> None:
    nfa = POLICY.steps["nfa_record"]
    with pytest.raises(IllegalAnswer, match="'understanding' in step 'nfa_record': is required"):
        validate_answer(POLICY, nfa, {"decision_reasons": T, "review_date": "2026-12-08"}, {})  # asked now
    old = dict(RAISE)
    del old["year_group"]  # raised before the year group was asked
    steps = start(threshold="no_further_action") + [("nfa_record", {"decision_reasons": T, "review_date": "2026-12-08"})]
    steps[1] = ("concern", old)
    outcome = advance(POLICY, walk(*steps)).outcome  # stored answers are not checked again
    assert outcome is not None and outcome.missing == ("understanding", "child_views")


def test_the_childs_views_are_required_on_the_reasons_step_only_when_a_reason_applies() -> None:
    reasons = POLICY.steps["sh_reasons"]
    assert validate_answer(POLICY, reasons, {"reasons_not_to_ask": []}, {}) == {"reasons_not_to_ask": []}
    given = {"reasons_not_to_ask": ["risk_of_harm"], "reasons_text": T}
    with pytest.raises(IllegalAnswer, match="'understanding' in step 'sh_reasons': is required"):
        validate_answer(POLICY, reasons, given, {})
    with pytest.raises(IllegalAnswer, match="'child_views' in step 'sh_reasons': is required"):
        validate_answer(POLICY, reasons, {**given, "understanding": "no"}, {})


PAST = [("child_dob", "concern", {**RAISE, "child_dob": "2016-05-01"}),
        ("seen_at", "concern", RAISE),
        ("asked_at", "sh_seek_outcome", {**ASKED, "consent_outcome": "given"}),
        ("ack_received", "follow_up", FOLLOW)]
NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize(("key", "step", "values"), PAST, ids=[p[0] for p in PAST])
def test_a_date_or_time_of_something_that_happened_cannot_be_in_the_future(key: str, step: str,
                                                                          values: dict[str, Any]) -> None:
    assert validate_answer(POLICY, POLICY.steps[step], values, {}, now=NOW)[key] == values[key]
    future = "2026-12-25" if POLICY.steps[step].field(key).type is FieldType.DATE else "2026-11-24T10:30:00+00:00"  # type: ignore[union-attr]
    with pytest.raises(IllegalAnswer, match=f"'{key}' in step '{step}': must not be in the future") as caught:
        validate_answer(POLICY, POLICY.steps[step], {**values, key: future}, {}, now=NOW)
    assert future not in str(caught.value)


@pytest.mark.parametrize(("step", "values", "message"), [
    ("concern", {"child": "A", "year_group": "year_4", "concern": "B"}, "'seen_at' in step 'concern': is required"),
    ("sh_reasons", {"reasons_not_to_ask": ["risk_of_harm"]}, "'reasons_text' in step 'sh_reasons': is required"),
], ids=["missing required field", "reason given without details"])
def test_a_missing_answer_is_refused_when_typed(step: str, values: dict[str, Any], message: str) -> None:
    with pytest.raises(IllegalAnswer, match=message):
        validate_answer(POLICY, POLICY.steps[step], values, {})


def test_a_review_date_may_be_in_the_future_and_a_time_needs_its_zone() -> None:
    nfa = {"decision_reasons": T, **VOICE, "review_date": "2027-01-08"}
    assert validate_answer(POLICY, POLICY.steps["nfa_record"], nfa, {}, now=NOW)["review_date"] == "2027-01-08"
    with pytest.raises(IllegalAnswer, match="must be a date and time, such as 2026-11-24 08:45"):
        validate_answer(POLICY, POLICY.steps["concern"], {**RAISE, "seen_at": "this morning"}, {}, now=NOW)
    with pytest.raises(IllegalAnswer, match="with its time zone"):
        validate_answer(POLICY, POLICY.steps["concern"], {**RAISE, "seen_at": "2026-11-24T08:45"}, {}, now=NOW)
    with pytest.raises(IllegalAnswer, match="must be a date such as"):
        validate_answer(POLICY, POLICY.steps["concern"], {**RAISE, "child_dob": "01/05/2016"}, {}, now=NOW)
    with pytest.raises(IllegalAnswer, match="must be a date such as") as caught:
        validate_answer(POLICY, POLICY.steps["nfa_record"], {**nfa, "review_date": "next week " + "x" * 30}, {})
    assert "x" * 20 not in str(caught.value)  # never echoed (a replay does not check it again: it is encrypted)


def test_encrypted_dates_and_times_replay_as_stored() -> None:
    token = "enc:v1:k:" + "A" * 60
    steps = start(threshold="no_further_action") + [("nfa_record", {"decision_reasons": token, **VOICE,
                                                                    "review_date": token})]
    steps[1] = ("concern", {**RAISE, "seen_at": token, "child_dob": token})
    outcome = advance(POLICY, walk(*steps)).outcome
    assert outcome is not None and outcome.missing == () and outcome.facts["review_date"] == token


@pytest.mark.parametrize("policy", [POLICY, INFORM, CHOICE], ids=["seek", "inform", "dsl_choice"])
def test_every_enumerated_path_records_everything_required(policy: Policy) -> None:
    paths = list(enumerate_paths(policy))
    assert len(paths) > 30
    for answers, progress in paths:
        assert progress.outcome is not None
        required = required_records(progress.outcome.code, progress.facts)
        assert all(progress.facts.get(k) not in (None, "", []) for k in required), answers


ILLEGAL = [
    ("answer to the wrong step", [("concern", RAISE)], "waiting for step 'immediate_danger'"),
    ("unknown option", [("immediate_danger", {"immediate_danger": "maybe"})], "not one of the allowed choices"),
    ("unknown field", [NO_DANGER, ("concern", {**RAISE, "colour": "red"})], "unknown field(s) ['colour']"),
    ("option ruled out by an earlier answer", start("yes", "early_help"), "not one of the allowed choices"),
    ("unknown reason code", start() + [("sh_reasons", {"reasons_not_to_ask": ["because"]})], "unknown code(s)"),
    ("historical legal reference", start() + NOT_ASKED + [("share", {**SHARE, "legal_refs": ["dpa1998_s29"]})],
     "unknown code(s) ['dpa1998_s29']"),
    ("due without offset", start() + [("sh_reasons", {}), ("sh_assign_seek", {**ASSIGN, "due_at": "2026-11-25T10:00"})],
     "must include a UTC offset"),
    ("answer after the end", start(threshold="no_further_action") + [
        ("nfa_record", {"decision_reasons": T, **VOICE, "review_date": "2026-12-08"}), ("nfa_record", {})],
     "already ended"),
]


@pytest.mark.parametrize(("name", "steps", "message"), ILLEGAL, ids=[i[0] for i in ILLEGAL])
def test_an_illegal_answer_raises_and_never_echoes_the_value(name: str, steps: list[Any], message: str) -> None:
    with pytest.raises(IllegalAnswer) as caught:
        advance(POLICY, walk(*steps))
    assert message in str(caught.value)
    assert "x" * 20 not in str(caught.value)


@st.composite
def answers_for(draw: st.DrawFn, policy: Policy) -> tuple[list[Answer], bool]:
    """A random legal walk to an outcome, and whether it took the significant-harm branch."""
    answers: list[Answer] = []
    significant = False
    while (progress := advance(policy, answers)).step is not None:
        step = progress.step
        values = {f.key: draw(value_for(policy, step, f, progress.facts)) for f in step.fields}
        values = {k: v for k, v in values.items() if v is not None}
        if values.get("reasons_not_to_ask"):  # the details and the child's views are then required
            values.setdefault("reasons_text", "because")
            values.setdefault("child_views", "not asked: too young")
        significant |= values.get("threshold") == "significant_harm" or values.get("immediate_danger") == "yes"
        answers.append(Answer(step=step.id, values=values, by="1", at="t"))
    return answers, significant


def value_for(policy: Policy, step: Step, f: Any, facts: Any) -> st.SearchStrategy[Any]:
    if f.type is FieldType.CHOICE:
        return st.sampled_from([o.value for o in allowed_options(f, facts)])
    if f.type is FieldType.REASONS:
        return st.lists(st.sampled_from([c.code for c in policy.reason_codes]), unique=True)
    if f.type is FieldType.LEGAL_REFS:
        return st.lists(st.sampled_from([c.code for c in policy.legal_references if not c.historical]),
                        min_size=1, unique=True)
    if f.type is FieldType.DUE:
        return st.just("2026-11-25T10:00:00+00:00")
    if f.type is FieldType.DATE:
        return st.dates().map(lambda d: d.isoformat())
    if f.type is FieldType.DATETIME:
        return st.just(WHEN)
    text = st.text(min_size=1, max_size=30).filter(lambda t: t.strip())
    return st.one_of(st.none(), text) if f.optional else text


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([POLICY, INFORM, CHOICE]).flatmap(lambda p: st.tuples(st.just(p), answers_for(p))))
def test_no_walk_on_the_significant_harm_branch_ends_unshared_and_every_outcome_is_fully_recorded(
        drawn: tuple[Policy, tuple[list[Answer], bool]]) -> None:
    policy, (answers, significant) = drawn
    outcome = advance(policy, answers).outcome
    assert outcome is not None
    if significant:
        assert outcome.shared, [a.step for a in answers]  # S2
    assert outcome.missing == ()


def test_once_the_dsl_confirms_the_threshold_urgency_follows_the_dsls_view() -> None:
    raised = [NO_DANGER, ("concern", RAISE), ("staff_threshold", {"staff_threshold": "significant_harm"})]
    assert advance(POLICY, walk(*raised)).urgent  # the teacher's view: a DSL must look now
    lowered = advance(POLICY, walk(*raised, ("dsl_threshold", {"threshold": "early_help"})))
    assert not lowered.urgent and not lowered.facts["urgent"]
    raised_up = [NO_DANGER, ("concern", RAISE), ("staff_threshold", {"staff_threshold": "early_help"}),
                 ("dsl_threshold", {"threshold": "significant_harm"})]
    assert advance(POLICY, walk(*raised_up)).urgent


def test_the_first_question_is_immediate_danger_and_yes_carries_the_999_notice() -> None:
    first = POLICY.steps[POLICY.start]
    assert first.danger_question and first.title == "Is the child in immediate danger?"
    after_yes = advance(POLICY, walk(("immediate_danger", {"immediate_danger": "yes"})))
    assert after_yes.urgent and after_yes.notices[0].startswith("Call 999")
    assert after_yes.step is not None and after_yes.step.id == "emergency_contact"


def test_text_is_checked_against_its_limit_when_typed_and_never_again_when_replayed() -> None:
    concern, too_long = POLICY.steps["concern"], {**RAISE, "child": "x" * 501}
    with pytest.raises(IllegalAnswer, match="longer than 500 characters") as caught:
        validate_answer(POLICY, concern, too_long, {})
    assert "x" * 20 not in str(caught.value)
    stored = advance(POLICY, walk(NO_DANGER, ("concern", {**RAISE, "child": "enc:v1:k:" + "A" * 900})))
    assert stored.step is not None and stored.step.id == "staff_threshold"  # a stored token is longer than typed


@pytest.mark.parametrize(("typed", "stored"), [
    ("2026-07-08 09:15", "2026-07-08T09:15:00+01:00"),  # British Summer Time
    ("2026-11-24 08:45", "2026-11-24T08:45:00+00:00"),  # Greenwich Mean Time
    ("2026-11-24T08:45:00+00:00", "2026-11-24T08:45:00+00:00"),  # an offset given is kept
    ("this morning", "this morning"),  # left for the bot to refuse, with an example of what it takes
])
def test_the_terminal_reads_a_date_and_time_as_school_time(typed: str, stored: str) -> None:
    from zoneinfo import ZoneInfo

    from handlers.console import to_school_time

    assert to_school_time(typed, ZoneInfo("Europe/London")) == stored


def test_a_teams_time_of_something_that_happened_needs_its_time_too() -> None:
    from handlers.teams.parse import parse_reply

    data = {"step": "concern", "child": "A", "year_group": "year_4", "concern": "B"}
    both = parse_reply(POLICY, {**data, "seen_at.date": "2026-07-08", "seen_at.time": "09:15"}).values
    assert both["seen_at"] == "2026-07-08T09:15:00+01:00"
    day_only = parse_reply(POLICY, {**data, "seen_at.date": "2026-07-08"}).values
    with pytest.raises(IllegalAnswer, match="must be a date and time"):
        validate_answer(POLICY, POLICY.steps["concern"], day_only, {}, now=NOW)
