"""The consent decision record as headed sections of (label, words): what the terminal, Slack's
case window and the PDF show. Every field GUIDANCE.md records per decision is here, in words;
nothing recorded reads "Not recorded" (or "Not asked" where the parents were not asked). Pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bot.readable import words

Row = tuple[str, str]
Section = tuple[str, list[Row]]
NOT_RECORDED = "Not recorded"
SIGNATURES, REFERRAL_FORM = "Signatures", "Referral form: consent section"


def _row(label: str, value: Any, empty: str = NOT_RECORDED) -> Row:
    return label, words(value, empty=empty)


def sections(r: Mapping[str, Any]) -> list[Section]:
    """The whole record, section by section, in the order a reader follows the case."""
    return [_case(r), _child(r), _concern(r), _threshold(r), _parents(r), _decision(r), _shared(r),
            _follow_up(r),
            (SIGNATURES, [(s["step"], words(s)) for s in r["signatures"]] or [("Signed so far", "Nobody yet")]),
            (REFERRAL_FORM, [*r["referral_form"]["fields"].items(), ("As text", r["referral_form"]["text"])])]


def recorded(r: Mapping[str, Any]) -> list[Section]:
    """The sections with only what is recorded, for a details view (the referral form is left to
    the export; signatures show beside what each person did).
    """
    shown = [(heading, [(label, value) for label, value in rows if value != NOT_RECORDED])
             for heading, rows in sections(r) if heading not in (REFERRAL_FORM, SIGNATURES)]
    return [(heading, rows) for heading, rows in shown if rows]


def _case(r: Mapping[str, Any]) -> Section:
    policy = r["policy"]
    return ("Case", [_row("Case reference", r["case_ref"]), _row("School", r["school"]), _row("Status", r["status"]),
                     _row("Outcome", r["outcome"], "Open"),
                     _row("Still to record", r["missing"], "Nothing" if r["missing"] is not None else "Case open"),
                     _row("Policy", f"{policy['id']} version {policy['version']}"),
                     _row("Times shown in", r.get("timezone"))])


def _child(r: Mapping[str, Any]) -> Section:
    return ("Child", [_row("Child", r["child"]), _row("Date of birth", r["child_dob"]),
                      _row("Year group", r["year_group"]),
                      _row("Of sufficient understanding", r["understanding"]),
                      _row("Child's views (or why the child was not asked)", r["child_views"])])


def _concern(r: Mapping[str, Any]) -> Section:
    return ("Concern", [_row("What was seen or heard", r["concern"]), _row("When it happened", r["seen_at"]),
                        _row("Raised by", r["raised"]), _row("Immediate danger", r["immediate_danger"]),
                        _row("Who was contacted at once", r["emergency_contact"], "Nobody (no immediate danger)")])


def _threshold(r: Mapping[str, Any]) -> Section:
    t = r["threshold"]
    return ("Threshold", [_row("Staff member's view", t["staff_view"]), _row("Threshold confirmed", t["confirmed"]),
                          _row("Decided by", t["decided"]), _row("Consulted", t["consulted"], "Nobody recorded")])


def _parents(r: Mapping[str, Any]) -> Section:
    c, a = r["consent"], r["assigned"]
    not_asked = "Not asked (see the reasons)" if r["reasons_not_to_ask"] else NOT_RECORDED
    return ("Parents: consent or informing", [
        _row("Consent model used", r["consent_model"], not_asked), _row("Consent model chosen by", r["model_chosen"],
                                                                        "The school's policy"),
        _row("Assigned to", a["to"], "Nobody"), _row("Due by", a["due_at"], "No due time"),
        _row("Assigned by", a["by"], "Nobody"),
        _row("Who was asked or told", c["asked_who"], not_asked), _row("How", c["asked_how"], not_asked),
        _row("When", c["asked_at"], not_asked), _row("Recorded by", c["asked"], not_asked),
        _row("Outcome", c["outcome"], not_asked), _row("Parents' views", c["parent_views"], "None recorded"),
        _row("Reasons not to ask or tell", r["reasons_not_to_ask"], "None"),
        _row("Details of the reasons", r["reasons_text"], "None"),
        _row("Reasons decided by", r["reasons_decided"], "Not decided")])


def _decision(r: Mapping[str, Any]) -> Section:
    d = r["decision"]
    return ("Decision", [_row("Decision", d["decision"]), _row("Reasons", d["reasons"], "None recorded"),
                         _row("Why necessary and proportionate", d["necessity"]),
                         _row("Sharing without consent approved by (DSL)", d["approval"], "Not needed or not given"),
                         _row("Decision not to share recorded by", r["not_shared"], "Not applicable"),
                         _row("Legal basis", r["legal_references"], "None recorded"),
                         ("Note", r["legal_disclaimer"])])


def _shared(r: Mapping[str, Any]) -> Section:
    s = r["shared"]
    return ("What was shared", [_row("Shared with", s["with"], "Not shared"), _row("Agency reference", s["agency_ref"]),
                                _row("When", s["at"]), _row("How", s["how"]), _row("What was shared", s["what"]),
                                _row("Recorded by", s["recorded"])])


def _follow_up(r: Mapping[str, Any]) -> Section:
    f = r["follow_up"]
    return ("Follow-up", [_row("Acknowledgement received", f["ack_received"]),
                          _row("Outcome of the referral", f["referral_outcome"]),
                          _row("Review date", f["review_date"], "None set"), _row("Recorded by", f["recorded"])])
