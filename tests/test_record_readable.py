"""The decision record reads as words: names, the policy's labels, the school's time (DST right),
dates, empty things as words, and the referral form's consent section as sentences (S10)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

import pytest

from bot.policy.model import Policy
from bot.readable import code_values, on_day, time_label, when, words
from bot.record import decision_record, flatten
from bot.record_text import NOT_RECORDED, sections
from tests.conftest import england

NAMES = {"1": "Tina Teacher", "2": "Dee DSL"}
CASE = {"ref": "C-0042", "school": "Oak Primary", "status": "closed", "timezone": "Europe/London"}


@pytest.fixture(scope="module")
def policy() -> Policy:
    return england()


def sig(by: str, at: str, step: str, platform: str = "slack") -> dict[str, str]:
    return {"by": by, "at": at, "platform": platform, "step": step}


def refused_facts(**over: Any) -> dict[str, Any]:
    """A significant-harm case: consent refused, approved, shared and followed up (summer and winter times)."""
    facts: dict[str, Any] = {
        "immediate_danger": "no", "child": "Zeb", "concern": "Bruise", "seen_at": "2026-06-24T08:45:00+00:00",
        "raised_by": sig("1", "2026-06-24T09:45:12.123456+00:00", "concern", "console"),
        "staff_threshold": "significant_harm", "threshold": "significant_harm",
        "decided_by": sig("2", "2026-06-24T10:00:00+00:00", "dsl_threshold"),
        "reasons_not_to_ask": [], "reasons_decided_by": sig("2", "2026-06-24T10:01:00+00:00", "sh_reasons"),
        "consent_model": "seek", "assignee": 1, "due_at": "2026-06-24T14:00:00+00:00",
        "assigned_by": sig("2", "2026-06-24T10:02:00+00:00", "sh_assign_seek"),
        "asked_who": "Mother (Jane)", "asked_how": "phone", "asked_at": "2026-11-24T12:00:00+00:00",
        "consent_outcome": "refused", "parent_views": "Angry", "child_views": "Wants Gran told",
        "asked_by": sig("1", "2026-11-24T12:05:00+00:00", "sh_seek_outcome", "teams"),
        "decision_reasons": "Duty to refer", "approve": "approve",
        "approval": sig("2", "2026-11-24T13:00:00+00:00", "sh_approve"),
        "shared_with": "childrens_social_care", "agency_ref": "CSC-1", "shared_at": "2026-11-24T15:00:00+00:00",
        "shared_how": "referral_form", "what_shared": "Summary", "decision": "share", "necessity": "Risk",
        "legal_refs": ["gdpr_6_1_e"], "shared_by": sig("2", "2026-11-24T15:05:00+00:00", "share"),
        "ack_received": "2026-11-25", "referral_outcome": "s47", "review_date": "2026-12-08",
        "followed_up_by": sig("2", "2026-11-25T09:00:00+00:00", "follow_up"), "outcome": "shared",
    }
    return {**facts, **over}


def strings(value: Any, key: str = "") -> list[tuple[str, str]]:
    """(key, text) of every string a person reads (not a code, an ISO time, a hash or a fact name)."""
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in strings(v, k)]
    if isinstance(value, list):
        return [s for v in value for s in strings(v, key)]
    return [(key, value)] if isinstance(value, str) and key not in ("code", "iso", "sha256", "fact") else []


def test_times_are_the_schools_clock_in_words_summer_and_winter() -> None:
    assert time_label(datetime(2026, 6, 24, 13, 5, tzinfo=UTC)) == "Wed 24 Jun 2026, 14:05"  # BST: UTC + 1
    assert when("2026-11-30T14:05:59.123456+00:00") == {"iso": "2026-11-30T14:05:59+00:00",
                                                       "label": "Mon 30 Nov 2026, 14:05"}  # GMT, no microseconds
    assert when("2026-06-24T13:05:00+00:00") == {"iso": "2026-06-24T14:05:00+01:00", "label": "Wed 24 Jun 2026, 14:05"}
    assert when("2026-03-29T00:30:00+00:00")["label"] == "Sun 29 Mar 2026, 00:30"  # before the clocks go forward
    assert when("2026-03-29T01:30:00+00:00")["label"] == "Sun 29 Mar 2026, 02:30"  # after
    assert when("2026-06-24 14:05") == {"iso": "2026-06-24T14:05:00+01:00", "label": "Wed 24 Jun 2026, 14:05"}
    assert when("yesterday after lunch") == {"iso": None, "label": "yesterday after lunch"}  # old free text, as typed
    assert on_day("2026-12-08") == {"iso": "2026-12-08", "label": "Tue 8 Dec 2026"}
    assert on_day("next week") == {"iso": None, "label": "next week"}
    assert when(None) is None and on_day("") is None


def test_the_record_has_names_labels_and_the_schools_time(policy: Policy) -> None:
    r = decision_record(policy, CASE, refused_facts(), NAMES)
    assert r["raised"] == {"by": "Tina Teacher", "at": {"iso": "2026-06-24T10:45:12+01:00",
                                                        "label": "Wed 24 Jun 2026, 10:45"}, "platform": "Terminal"}
    assert r["seen_at"]["label"] == "Wed 24 Jun 2026, 09:45"
    assert r["assigned"]["to"] == "Tina Teacher" and r["assigned"]["due_at"]["label"] == "Wed 24 Jun 2026, 15:00"
    assert r["consent"]["asked"]["platform"] == "Microsoft Teams"
    assert r["consent"]["asked_how"] == {"code": "phone", "label": "Phone"}
    assert r["consent"]["outcome"] == {"code": "refused", "label": "Consent refused"}  # the step it was answered on
    assert r["threshold"]["confirmed"]["label"] == "Significant harm, or risk of it (must be shared)"
    assert r["immediate_danger"] == {"code": "no", "label": "No"}
    assert r["outcome"] == {"code": "shared", "label": "Shared, recorded and followed up"}
    assert r["follow_up"]["review_date"] == {"iso": "2026-12-08", "label": "Tue 8 Dec 2026"}
    assert r["follow_up"]["ack_received"]["label"] == "Wed 25 Nov 2026"
    assert r["status"] == {"code": "closed", "label": "Closed"}


def test_the_same_code_reads_as_the_step_it_was_answered_on(policy: Policy) -> None:
    facts = refused_facts(asked_by=sig("1", "2026-11-24T12:05:00+00:00", "eh_outcome"))
    assert decision_record(policy, CASE, facts, NAMES)["consent"]["outcome"]["label"] == "Agreement refused"


def test_no_field_shows_a_code_the_policy_labels_nor_a_raw_time_nor_an_id(policy: Policy) -> None:
    codes = code_values(policy)
    for facts in (refused_facts(), refused_facts(reasons_not_to_ask=["risk_of_harm"], reasons_text="Unsafe",
                                                 decision="partial", outcome="shared")):
        record = decision_record(policy, CASE, facts, NAMES)
        for key, text in strings(record):
            assert text not in codes, f"{key}: {text!r} is a code (label {codes[text]!r})"
            assert not re.match(r"\d{4}-\d\d-\d\dT", text), f"{key}: {text!r} is a raw time"
        assert "1" not in [t for _, t in strings(record)] and '"assignee"' not in json.dumps(record)


def test_someone_not_in_the_names_map_is_not_shown_by_id(policy: Policy) -> None:
    r = decision_record(policy, CASE, refused_facts(assignee=6), NAMES)
    assert r["assigned"]["to"] == "Unknown person"


def test_new_facts_are_recorded_and_absent_ones_are_none(policy: Policy) -> None:
    empty = decision_record(policy, CASE, refused_facts(), NAMES)
    assert [empty[k] for k in ("child_dob", "year_group", "understanding", "model_chosen")] == [None] * 4
    facts = refused_facts(child_dob="2016-03-14", year_group="year_4", understanding="yes",
                          model_chosen_by=sig("2", "2026-11-24T10:00:00+00:00", "sh_model_choice"))
    r = decision_record(policy, CASE, facts, NAMES)
    assert r["child_dob"] == {"iso": "2016-03-14", "label": "Mon 14 Mar 2016"}
    assert r["year_group"]["code"] == "year_4" and r["year_group"]["label"] != "year_4"
    assert r["understanding"]["code"] == "yes" and r["understanding"]["label"] != "yes"
    assert r["model_chosen"]["by"] == "Dee DSL" and r["consent_model"]["label"] == "Seek the parents' consent"
    assert r["child_views"] == "Wants Gran told"
    assert "sufficient understanding to be asked their views: Yes. Child's views: Wants Gran told." \
        in r["referral_form"]["text"]


def test_the_referral_form_reads_as_sentences(policy: Policy) -> None:
    form = decision_record(policy, CASE, refused_facts(), NAMES)["referral_form"]
    assert form["text"].startswith("Mother (Jane) was asked for consent by phone on Tue 24 Nov 2026, 12:00 by "
                                   "Tina Teacher. Their response: Consent refused. Parent's views: Angry.")
    assert "Sharing without consent was approved by Dee DSL (Designated Safeguarding Lead) on Tue 24 Nov 2026, " \
           "13:00." in form["text"]
    assert form["fields"]["How"] == "Phone" and form["fields"]["Their response"] == "Consent refused"
    assert form["fields"]["Approved by (DSL)"] == "Dee DSL, Tue 24 Nov 2026, 13:00 (Slack)"
    assert set(form["fields"]) == set(policy.referral_form.values())  # the policy's labels, in its order


def test_the_referral_form_says_why_the_parents_were_not_asked(policy: Policy) -> None:
    facts = refused_facts(reasons_not_to_ask=["risk_of_harm", "undue_delay"], reasons_text="Father is the risk",
                          asked_who=None, asked_how=None, asked_at=None, consent_outcome=None, asked_by=None,
                          parent_views=None, consent_model=None)
    form = decision_record(policy, CASE, facts, NAMES)["referral_form"]
    assert form["text"].startswith(
        "The parents were not asked or told because: asking would place a person (the child, a family member or "
        "another person) at increased risk of harm; asking would lead to an unjustifiable delay in making "
        "enquiries. Details: Father is the risk.")
    assert form["fields"]["Have parents / carers been asked or told?"] == "No"
    assert form["fields"]["Who was asked or told"] == "Not asked"
    assert form["fields"]["Consent model used (seek or inform)"] == "Not asked or told"


def test_csv_rows_and_the_details_view_are_words(policy: Policy) -> None:
    record = decision_record(policy, CASE, refused_facts(parent_views=None), NAMES)
    rows = dict(flatten(record))
    assert rows["consent.asked_how"] == "Phone" and rows["follow_up.review_date"] == "Tue 8 Dec 2026"
    assert rows["reasons_not_to_ask"] == "" and rows["legal_references"] == "UK GDPR Art 6(1)(e) public task"
    shown = {label: value for _, rows_ in sections(record) for label, value in rows_}
    assert shown["Reasons not to ask or tell"] == "None" and shown["Parents' views"] == "None recorded"
    assert shown["Immediate danger"] == "No" and shown["Assigned to"] == "Tina Teacher"
    assert NOT_RECORDED not in (shown["Decided by"], shown["Legal basis"])
    assert words([]) == "None" and words(None, empty="Not asked") == "Not asked" and words(True) == "Yes"


def test_a_closed_case_without_the_childs_voice_says_so_in_missing(policy: Policy) -> None:
    facts = refused_facts(understanding="yes")
    del facts["child_views"]  # e.g. a case recorded before every path asked (G4)
    missing = decision_record(policy, CASE, facts, NAMES)["missing"]
    assert [m["code"] for m in missing] == ["child_views"]
    assert missing[0]["label"].startswith("Child's views")
    assert decision_record(policy, CASE, refused_facts(understanding="yes"), NAMES)["missing"] == []
