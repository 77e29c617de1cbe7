"""The consent decision record, built from a case's decrypted facts. Pure: no I/O.

Its `referral_form` section is the consent part of a social care referral form (S10),
labelled as the policy's `referral_form` says.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bot.policy.model import Policy
from bot.policy.requirements import missing_records


def _signed(facts: Mapping[str, Any], key: str, names: Mapping[str, str]) -> dict[str, Any] | None:
    sig = facts.get(key)
    if not sig:
        return None
    return {"by": names.get(str(sig["by"]), str(sig["by"])), "at": sig["at"], "platform": sig["platform"]}


def _labels(codes: list[str] | None, table: Any) -> list[dict[str, str]]:
    by_code = {c.code: c.label for c in table}
    return [{"code": c, "label": by_code.get(c, c)} for c in codes or []]


def decision_record(policy: Policy, case: Mapping[str, Any], facts: Mapping[str, Any],
                    names: Mapping[str, str]) -> dict[str, Any]:
    """Everything GUIDANCE.md says is recorded per decision, in one mapping."""
    f = facts
    record = {
        "case_ref": case["ref"], "school": case["school"], "status": case["status"],
        "outcome": f.get("outcome"), "policy": {"id": policy.id, "version": policy.version, "sha256": policy.sha256},
        "child": f.get("child"), "concern": f.get("concern"), "seen_at": f.get("seen_at"),
        "raised": _signed(f, "raised_by", names),
        "immediate_danger": f.get("immediate_danger") == "yes", "emergency_contact": f.get("emergency_contact"),
        "threshold": {"staff_view": f.get("staff_threshold"), "confirmed": f.get("threshold"),
                      "decided": _signed(f, "decided_by", names), "consulted": f.get("consulted")},
        "consent_model": f.get("consent_model"),
        "assigned": {"to": names.get(str(f.get("assignee")), f.get("assignee")), "due_at": f.get("due_at"),
                     "by": _signed(f, "assigned_by", names)},
        "consent": {"asked_who": f.get("asked_who"), "asked_how": f.get("asked_how"), "asked_at": f.get("asked_at"),
                    "asked": _signed(f, "asked_by", names), "outcome": f.get("consent_outcome"),
                    "parent_views": f.get("parent_views"), "child_views": f.get("child_views")},
        "reasons_not_to_ask": _labels(f.get("reasons_not_to_ask"), policy.reason_codes),
        "reasons_text": f.get("reasons_text"), "reasons_decided": _signed(f, "reasons_decided_by", names),
        "decision": {"decision": f.get("decision"), "reasons": f.get("decision_reasons"), "necessity": f.get("necessity"),
                     "approval": _signed(f, "approval", names)},
        "legal_references": _labels(f.get("legal_refs"), policy.legal_references),
        "legal_disclaimer": policy.disclaimer,
        "shared": {"with": f.get("shared_with"), "agency_ref": f.get("agency_ref"), "at": f.get("shared_at"),
                   "how": f.get("shared_how"), "what": f.get("what_shared"), "recorded": _signed(f, "shared_by", names)},
        "not_shared": _signed(f, "not_shared_by", names),
        "follow_up": {"ack_received": f.get("ack_received"), "referral_outcome": f.get("referral_outcome"),
                      "review_date": f.get("review_date"), "recorded": _signed(f, "followed_up_by", names)},
        "signatures": signatures(policy, f, names),
        "missing": list(missing_records(str(f.get("outcome") or "shared"), f)) if f.get("outcome") else None,
    }
    record["referral_form"] = referral_form(policy, record)
    return record


def signatures(policy: Policy, facts: Mapping[str, Any], names: Mapping[str, str]) -> list[dict[str, Any]]:
    """Every signed step the case went through, in the policy's order: the step as people read it,
    who answered it, when and on which platform (every DSL decision is signed: the validator says so).
    """
    signed: list[dict[str, Any]] = []
    for fact in dict.fromkeys(step.signs for step in policy.steps.values() if step.signs):
        sig = _signed(facts, str(fact), names)
        step = policy.steps.get(str((facts.get(str(fact)) or {}).get("step", "")))
        if sig:
            signed.append({"step": step.title if step else fact, "fact": fact, **sig})
    return signed


def referral_form(policy: Policy, r: Mapping[str, Any]) -> dict[str, Any]:
    """The referral form's consent section (S10): label -> value."""
    consent, approval = r["consent"], r["decision"]["approval"]
    values = {
        "consent_model": r["consent_model"] or "not asked",
        "parent_consulted": "no" if r["reasons_not_to_ask"] else ("yes" if consent["asked_who"] else "not yet"),
        "asked_who": consent["asked_who"], "asked_how": consent["asked_how"], "asked_at": consent["asked_at"],
        "consent_outcome": consent["outcome"], "parent_views": consent["parent_views"],
        "child_views": consent["child_views"],
        "reasons_not_to_ask": "; ".join(x["label"] for x in r["reasons_not_to_ask"]) or None,
        "decision_reasons": r["decision"]["reasons"],
        "approval": f"{approval['by']} at {approval['at']}" if approval else None,
    }
    return {label: values.get(key) for key, label in policy.referral_form.items()}


def flatten(record: Mapping[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """Rows of (dotted key, value) for CSV."""
    rows: list[tuple[str, str]] = []
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            rows += flatten(value, name + ".")
        elif isinstance(value, list):
            rows.append((name, "; ".join(v["label"] if isinstance(v, Mapping) and "label" in v else str(v) for v in value)))
        else:
            rows.append((name, "" if value is None else str(value)))
    return rows
