"""A case driven to its end through the bot's use cases, answering whatever the policy asks:
named answers where given, else a valid answer for the field's type. Steps come from the policy,
so a question added to it is answered too (tests of the record, the PDF and the chat export).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bot import cases
from bot.cases import CaseView, Person, Services
from bot.policy.model import Actor, Field, FieldType, Step

CANARY_CHILD = "Zebedee Canary-Quill"
# A significant-harm case: the parents asked for consent by phone, they refused, the DSL approved
# sharing, shared with children's social care and followed up.
SIGNIFICANT_HARM_REFUSED: dict[str, Any] = {
    "immediate_danger": "no", "child": CANARY_CHILD, "concern": "Bruise on arm; said 'dad did it'",
    "seen_at": "2026-06-24T08:45:00+00:00", "staff_threshold": "significant_harm", "threshold": "significant_harm",
    "consulted": "Police duty officer", "reasons_not_to_ask": [], "consent_model": "seek",
    "asked_who": "Mother (Jane)", "asked_how": "phone", "asked_at": "2026-11-24T12:00:00+00:00",
    "consent_outcome": "refused", "parent_views": "Angry; refuses", "child_views": "Wants Gran told",
    "decision_reasons": "Duty to refer overrides refusal", "approve": "approve",
    "shared_with": "childrens_social_care", "agency_ref": "CSC-4471", "shared_at": "2026-11-24T15:00:00+00:00",
    "shared_how": "referral_form", "what_shared": "Concern summary and attendance", "decision": "share",
    "necessity": "Risk of significant harm", "legal_refs": ["gdpr_6_1_e", "ca1989_s47"],
    "ack_received": "2026-11-25", "referral_outcome": "Strategy discussion held; s47 enquiry",
    "review_date": "2026-12-08", "child_dob": "2016-03-14",
}
BY_TYPE: dict[FieldType, Any] = {
    FieldType.TEXT: "Recorded", FieldType.LONGTEXT: "Recorded in full", FieldType.DATE: "2026-12-08",
    FieldType.DATETIME: "2026-11-24T10:00:00+00:00", FieldType.REASONS: [], FieldType.LEGAL_REFS: ["gdpr_6_1_e"],
}


def answer_for(f: Field, view: CaseView | None, answers: Mapping[str, Any], assignee: Person) -> Any:
    """The named answer, else one the field accepts (the first allowed option of a choice)."""
    if f.key in answers:
        return answers[f.key]
    if f.type is FieldType.CHOICE:
        allowed = (view.choices.get(f.key) if view else None) or f.options
        return allowed[0].value
    if f.type is FieldType.ASSIGNEE:
        return assignee.email
    return BY_TYPE.get(f.type)


def values_for(step: Step, view: CaseView | None, answers: Mapping[str, Any], assignee: Person) -> dict[str, Any]:
    return {f.key: v for f in step.fields if (v := answer_for(f, view, answers, assignee)) is not None}


async def complete(svc: Services, *, teacher: Person, dsl: Person, assignee: Person | None = None,
                   answers: Mapping[str, Any] = SIGNIFICANT_HARM_REFUSED, platform: str = "slack",
                   linked_to: str | None = None, until: Actor | None = None) -> CaseView:
    """Raise a concern as `teacher` (from the case `linked_to`, if given) and answer every step (the
    DSL's as `dsl`, the assigned person's as `assignee`, default the teacher) until the checklist
    ends, or until it waits on `until` (e.g. Actor.DSL: the teacher's part done).
    """
    assignee = assignee or teacher
    start = svc.policy.steps[svc.policy.start]
    view = await cases.raise_concern(svc, actor=teacher, values=values_for(start, None, answers, assignee),
                                     platform=platform, linked_to=linked_to)
    for _ in range(len(svc.policy.steps) * 2):
        if view.step is None or view.step.actor is until:
            return view
        actor = {Actor.DSL: dsl, Actor.ASSIGNEE: assignee}.get(view.step.actor or Actor.STAFF, teacher)
        view = await cases.answer(svc, actor=actor, case_ref=view.ref, version=view.version, step=view.step.id,
                                  values=values_for(view.step, view, answers, assignee), platform=platform)
    raise AssertionError(f"case {view.ref} did not end")
