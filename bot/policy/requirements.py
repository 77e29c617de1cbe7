"""What GUIDANCE.md requires, as data the loader and the tests check a policy against."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

REQUIREMENT_IDS: tuple[str, ...] = tuple(f"S{i}" for i in range(1, 11)) + tuple(
    f"G{i}" for i in range(1, 10)
)

# Recorded for every case, whatever the outcome ("What is recorded per decision").
ALWAYS = ("child", "concern", "seen_at", "raised_by", "immediate_danger", "threshold", "decided_by")
# S8 / G4: the request for consent (or the telling) and its outcome.
ASKED = ("consent_model", "asked_who", "asked_how", "asked_at", "asked_by", "consent_outcome", "child_views")
# S9 / G3: a decision to share without consent, or not to share, and its reasons.
DECIDED_WITHOUT_CONSENT = ("decision_reasons", "approval")
# G7: what was shared, with whom, when, how, the agency's reference; G6 the legal basis.
SHARED = ("shared_with", "agency_ref", "shared_at", "shared_how", "what_shared", "decision",
          "necessity", "legal_refs")
# G9: the referral is followed up before the case closes.
FOLLOWED_UP = ("ack_received", "referral_outcome", "review_date")
NOT_SHARED = ("decision_reasons", "review_date")

CONSENT_OUTCOMES_WITHOUT_CONSENT = frozenset({"refused", "not_reached", "informed_objected"})
# The facts whose values (not only presence) `required_records` reads: the validator tracks them per path state.
CONTEXT_FACTS = frozenset({"consent_outcome", "reasons_not_to_ask"})


def is_recorded(value: Any) -> bool:
    """A fact counts as recorded when it holds something (a list may be empty only for reasons)."""
    return value is not None and value != "" and value != []


def required_records(outcome: str, facts: Mapping[str, Any]) -> tuple[str, ...]:
    """Every fact GUIDANCE.md requires for a case that ended in `outcome` with these facts."""
    required = list(ALWAYS)
    if outcome == "no_further_action":
        return tuple(required + list(NOT_SHARED))
    not_asked = bool(facts.get("reasons_not_to_ask"))
    if not_asked:
        required += ["reasons_not_to_ask", "reasons_text", *DECIDED_WITHOUT_CONSENT]
    else:
        required += ASKED
    if outcome == "not_shared":
        return tuple(dict.fromkeys(required + list(NOT_SHARED)))
    if facts.get("consent_outcome") in CONSENT_OUTCOMES_WITHOUT_CONSENT:
        required += DECIDED_WITHOUT_CONSENT
    required += [*SHARED, *FOLLOWED_UP]
    return tuple(dict.fromkeys(required))


def missing_records(outcome: str, facts: Mapping[str, Any]) -> tuple[str, ...]:
    """The required facts that are not recorded."""
    return tuple(k for k in required_records(outcome, facts) if not is_recorded(facts.get(k)))
