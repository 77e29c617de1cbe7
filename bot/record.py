"""The consent decision record, built from a case's decrypted facts. Pure: no I/O.

Everything in it reads as words: people by name, choices by the policy's labels, times in the
school's timezone. A machine keeps what it needs beside the words: a code as {"code", "label"},
a time or date as {"iso", "label"} (bot.readable). Its `referral_form` section is the consent part
of a social care referral form (S10): the policy's `referral_form` labels with their answers, and
the same as sentences a social worker can paste.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bot.checklist import missing_at_end
from bot.policy.model import Policy
from bot.readable import DEFAULT_ZONE, Labels, coded, mid_sentence, on_day, platform_label, when, words

MODELS = {"seek": "Seek the parents' consent", "inform": "Inform the parents"}  # a policy without the choice
DECISIONS = {"not_share": "Not shared"}
STATUSES = {"draft": "Being raised", "awaiting_decision": "Waiting for a decision",
            "awaiting_outcome": "Waiting for the parents' answer to be recorded", "closed": "Closed"}
UNKNOWN_PERSON = "Unknown person"


class _Reader:
    """Reads one case's facts as words: names, labels and the school's time."""

    def __init__(self, policy: Policy, facts: Mapping[str, Any], names: Mapping[str, str], zone: str) -> None:
        self.policy, self.facts, self.names, self.zone = policy, facts, names, zone
        taken = [str(v.get("step")) for v in facts.values() if isinstance(v, Mapping) and v.get("step")]
        self.labels = Labels(policy, taken)

    def text(self, key: str) -> Any:
        value = self.facts.get(key)
        return None if value in (None, "") else value

    def choice(self, key: str, fallback: Mapping[str, str] | None = None) -> dict[str, str] | None:
        return self.labels.of(key, self.facts.get(key), fallback)

    def time(self, key: str) -> dict[str, str | None] | None:
        return when(self.facts.get(key), self.zone)

    def day(self, key: str) -> dict[str, str | None] | None:
        return on_day(self.facts.get(key))

    def person(self, person_id: Any) -> str | None:
        return None if person_id in (None, "") else self.names.get(str(person_id), UNKNOWN_PERSON)

    def signed(self, key: str) -> dict[str, Any] | None:
        sig = self.facts.get(key)
        if not isinstance(sig, Mapping) or not sig:
            return None
        return {"by": self.person(sig.get("by")), "at": when(sig.get("at"), self.zone),
                "platform": platform_label(sig.get("platform"))}

    def codes(self, key: str, table: Any) -> list[dict[str, str]]:
        by_code = {c.code: c.label for c in table}
        return [c for c in (coded(code, by_code.get(code)) for code in self.facts.get(key) or []) if c]


def decision_record(policy: Policy, case: Mapping[str, Any], facts: Mapping[str, Any],
                    names: Mapping[str, str]) -> dict[str, Any]:
    """Everything GUIDANCE.md says is recorded per decision, in one mapping, as words.

    `case` holds ref, school, status and (optionally) the school's timezone; `names` maps a
    person's id (as text) to their name.
    """
    zone = str(case.get("timezone") or DEFAULT_ZONE)
    r, f = _Reader(policy, facts, names, zone), facts
    record = {
        "case_ref": case["ref"], "school": case["school"], "timezone": zone,
        "status": coded(case["status"], STATUSES.get(str(case["status"]))), "outcome": r.labels.outcome(f.get("outcome")),
        "policy": {"id": policy.id, "version": policy.version, "sha256": policy.sha256},
        "child": r.text("child"), "child_dob": r.day("child_dob"), "year_group": r.choice("year_group"),
        "understanding": r.choice("understanding"), "child_views": r.text("child_views"),
        "concern": r.text("concern"), "seen_at": r.time("seen_at"), "raised": r.signed("raised_by"),
        "immediate_danger": r.choice("immediate_danger"), "emergency_contact": r.choice("emergency_contact"),
        "threshold": {"staff_view": r.choice("staff_threshold"), "confirmed": r.choice("threshold"),
                      "decided": r.signed("decided_by"), "consulted": r.text("consulted")},
        "consent_model": r.choice("consent_model", MODELS), "model_chosen": r.signed("model_chosen_by"),
        "assigned": {"to": r.person(f.get("assignee")), "due_at": r.time("due_at"), "by": r.signed("assigned_by")},
        "consent": {"asked_who": r.text("asked_who"), "asked_how": r.choice("asked_how"), "asked_at": r.time("asked_at"),
                    "asked": r.signed("asked_by"), "outcome": r.choice("consent_outcome"),
                    "parent_views": r.text("parent_views")},
        "reasons_not_to_ask": r.codes("reasons_not_to_ask", policy.reason_codes),
        "reasons_text": r.text("reasons_text"), "reasons_decided": r.signed("reasons_decided_by"),
        "decision": {"decision": r.choice("decision", DECISIONS), "reasons": r.text("decision_reasons"),
                     "necessity": r.text("necessity"), "approval": r.signed("approval")},
        "legal_references": r.codes("legal_refs", policy.legal_references),
        "legal_disclaimer": policy.disclaimer,
        "shared": {"with": r.choice("shared_with"), "agency_ref": r.text("agency_ref"), "at": r.time("shared_at"),
                   "how": r.choice("shared_how"), "what": r.text("what_shared"), "recorded": r.signed("shared_by")},
        "not_shared": r.signed("not_shared_by"),
        "follow_up": {"ack_received": r.day("ack_received"), "referral_outcome": r.text("referral_outcome"),
                      "review_date": r.day("review_date"), "recorded": r.signed("followed_up_by")},
        "signatures": signatures(policy, f, names, zone),
        "missing": _missing(policy, f),
    }
    record["referral_form"] = referral_form(policy, record)
    return record


def _missing(policy: Policy, facts: Mapping[str, Any]) -> list[dict[str, str]] | None:
    """What a closed case still lacks, by the policy's field labels."""
    if not facts.get("outcome"):
        return None
    labels = {fl.key: fl.label for s in policy.steps.values() for fl in s.fields}
    return [c for c in (coded(k, labels.get(k)) for k in missing_at_end(policy, str(facts["outcome"]), facts)) if c]


def signatures(policy: Policy, facts: Mapping[str, Any], names: Mapping[str, str],
               zone: str = DEFAULT_ZONE) -> list[dict[str, Any]]:
    """Every signed step the case went through, in the policy's order: the step as people read it,
    who answered it, when and on which platform (every DSL decision is signed: the validator says so).
    """
    reader = _Reader(policy, facts, names, zone)
    signed: list[dict[str, Any]] = []
    for fact in dict.fromkeys(step.signs for step in policy.steps.values() if step.signs):
        sig = reader.signed(str(fact))
        step = policy.steps.get(str((facts.get(str(fact)) or {}).get("step", "")))
        if sig:
            signed.append({"step": step.title if step else fact, "fact": fact, **sig})
    return signed


def referral_form(policy: Policy, r: Mapping[str, Any]) -> dict[str, Any]:
    """The referral form's consent section (S10): `fields`, label -> words, in the policy's order,
    and `text`, the same as sentences to paste into a form's free-text box.
    """
    consent, reasons = r["consent"], r["reasons_not_to_ask"]
    asked = bool(consent["asked_who"] or consent["asked"])
    values = {
        "consent_model": words(r["consent_model"], empty="Not asked or told" if reasons else "Not yet decided"),
        "parent_consulted": "No" if reasons else ("Yes" if asked else "Not yet"),
        "asked_who": words(consent["asked_who"], empty="Not asked"),
        "asked_how": words(consent["asked_how"], empty="Not asked"),
        "asked_at": words(consent["asked_at"], empty="Not asked"),
        "consent_outcome": words(consent["outcome"], empty="Not asked"),
        "parent_views": words(consent["parent_views"], empty="None recorded"),
        "child_views": words(r["child_views"], empty="None recorded"),
        "reasons_not_to_ask": words(reasons, empty="None"),
        "decision_reasons": words(r["decision"]["reasons"], empty="None recorded"),
        "approval": words(r["decision"]["approval"], empty="None"),
        "understanding": words(r["understanding"], empty="Not recorded"),
        "year_group": words(r["year_group"], empty="Not recorded"),
        "child_dob": words(r["child_dob"], empty="Not recorded"),
    }
    fields = {label: values.get(key, words(_lookup(r, key), empty="Not recorded"))
              for key, label in policy.referral_form.items()}
    return {"fields": fields, "text": " ".join(_sentences(policy, r))}


def _lookup(r: Mapping[str, Any], key: str) -> Any:
    """A referral-form key the code does not know: a record field of that name, at any depth."""
    for value in r.values():
        if isinstance(value, Mapping) and key in value:
            return value[key]
    return r.get(key)


def _sentences(policy: Policy, r: Mapping[str, Any]) -> list[str]:
    """Sentences: "The parents were asked for consent by phone on Tue 24 Nov 2026, 12:00 by Tina Teacher." ..."""
    form, consent = policy.referral_form, r["consent"]
    said = [_parents_sentence(r)]
    if consent["outcome"]:
        said.append(_said(form.get("consent_outcome", "Their response"), words(consent["outcome"])))
    if consent["parent_views"]:
        said.append(_said(form.get("parent_views", "Parent's views"), consent["parent_views"]))
    if r["understanding"]:
        said.append(_said(form.get("understanding", "Is the child of sufficient understanding"),
                          words(r["understanding"])))
    said.append(_said(form.get("child_views", "Child's views"), words(r["child_views"], empty="none recorded")))
    approval = r["decision"]["approval"]
    if r["decision"]["reasons"]:
        said.append(_said(form.get("decision_reasons", "Reasons"), r["decision"]["reasons"]))
    if approval:
        said.append(f"Sharing without consent was approved by {approval['by']} ({policy.role_label('dsl')}) "
                    f"on {words(approval['at'])}.")
    return said


def _parents_sentence(r: Mapping[str, Any]) -> str:
    consent, reasons = r["consent"], r["reasons_not_to_ask"]
    if reasons:
        why = "; ".join(mid_sentence(x["label"]) for x in reasons)
        details = f" Details: {_stop(r['reasons_text'])}" if r["reasons_text"] else ""
        return f"The parents were not asked or told because: {why}.{details}"
    if not (consent["asked_who"] or consent["asked"]):
        return "The parents have not yet been asked or told."
    model = (r["consent_model"] or {}).get("code")
    verb = "informed" if model == "inform" else "asked for consent"
    who = consent["asked_who"] or "The parents"
    how = words(consent["asked_how"], empty="")
    how = (" " + (mid_sentence(how) if how.lower().startswith("in ") else "by " + mid_sentence(how))) if how else ""
    at = f" on {words(consent['asked_at'])}" if consent["asked_at"] else ""
    by = f" by {consent['asked']['by']}" if consent["asked"] else ""
    return f"{who} {'were' if who == 'The parents' else 'was'} {verb}{how}{at}{by}."


def _said(label: str, text: str) -> str:
    return f"{label.rstrip('?:. ')}: {_stop(text)}"


def _stop(text: str) -> str:
    text = str(text).strip()
    return text if text.endswith((".", "!", "?")) else text + "."


def flatten(record: Mapping[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """Rows of (dotted key, words) for CSV: a code, time or date as its label, a list joined."""
    rows: list[tuple[str, str]] = []
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and "label" not in value and value:
            rows += flatten(value, name + ".")
        else:
            rows.append((name, words(value, empty="")))
    return rows

