"""What the modal shows after a call into the bot: the next step for this person, or where
the case now waits. Reads only through bot/ (people, views).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bot import people, views
from bot.cases import CaseView, Person, Services
from bot.policy.model import Actor, FieldType, Step
from handlers.slack.blocks import Block
from handlers.slack.modals import note_modal, quoted_block, step_modal


async def colleagues_for(svc: Services, me: Person, step: Step) -> list[tuple[str, str]]:
    """(email, "name (role)") choices, only when the step asks for an assignee."""
    if not any(f.type is FieldType.ASSIGNEE for f in step.fields):
        return []
    return [(email, f"{name} ({role})") for email, name, role in await people.colleagues(svc, actor=me)]


async def next_screen(svc: Services, me: Person, case: CaseView, lead: Sequence[Block] = (), *,
                      owner_only: bool = False, quoted: str = "") -> dict[str, Any]:
    """The step waiting for `me`, or a note saying where the case is now.

    `owner_only`: after an answer, go on only to a step that is this person's own (a DSL who
    has just assigned someone is not walked into the assignee's form, though a DSL may fill it).
    """
    if case.replayed and case.step is None:  # a repeated first submission: show the case as it is now
        case = next((c for c in await views.my_cases(svc, actor=me) if c.ref == case.ref), case)
    if case.step is not None and case.answerable_by(me) and (not owner_only or owns(me, case)):
        colleagues = await colleagues_for(svc, me, case.step)
        initial, trail = carry_quote(case.step, quoted)
        return step_modal(case.step, view=case, policy=svc.policy, colleagues=colleagues, lead=lead,
                          initial=initial, trail=trail)
    return note_modal(where_now(svc, case), view=case, lead=lead)


def carry_quote(step: Step, quoted: str) -> tuple[dict[str, str], list[Block]]:
    """A quoted message fills the step's first long answer, or rides along until a step has one."""
    if not quoted:
        return {}, []
    key = next((f.key for f in step.fields if f.type is FieldType.LONGTEXT), None)
    return ({key: quoted}, []) if key else ({}, [quoted_block(quoted)])


def owns(me: Person, case: CaseView) -> bool:
    """True when the waiting step is this person's own to answer."""
    actor = case.step.actor if case.step else None
    if actor is Actor.DSL:
        return me.is_decider
    return me.id == (case.raised_by if actor is Actor.STAFF else case.assignee_id)


def where_now(svc: Services, case: CaseView) -> str:
    """One sentence: where the case waits now (a reference and a step title only)."""
    if case.outcome:
        return f"Case {case.ref} is complete: {case.outcome.replace('_', ' ')}."
    if case.step is None:
        return f"Case {case.ref} is saved."
    if case.told is not None and not case.told.reachable:
        return f"Case {case.ref} is saved and waits for the {svc.policy.role_label('dsl')}: {case.step.title}."
    if case.step.actor is Actor.DSL:
        who = f"the {svc.policy.role_label('dsl')} (and deputies), who have been notified"
    elif case.step.actor is Actor.ASSIGNEE:
        who = "the member of staff assigned, who has been notified"
    else:
        who = "the member of staff who raised it"
    return f"Thank you. Case {case.ref} now waits for {who}: {case.step.title}."
