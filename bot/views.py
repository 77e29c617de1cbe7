"""Reading cases: what a person may act on, the details (decrypted, logged), the export."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from bot.cases import CaseView, Person, Services, answers_of, at_case, case_for, policy_for, refusals_logged, view_of
from bot.checklist import advance
from bot.crypto import is_encrypted
from bot.errors import NotAuthorised, NotFound
from bot.notify import URGENT_ACK_REMINDER
from bot.people import Operator, os_operator
from bot.record import decision_record
from storage import reminder_repo, repo
from storage.audit import append_access
from storage.models import Case, School

INTERNAL = "_"


@dataclass(frozen=True)
class CaseDetails:
    """A case's decrypted facts, for an authorised person only. Never put in chat history."""

    view: CaseView
    facts: dict[str, Any]
    record: dict[str, Any]


@dataclass(frozen=True)
class Export:
    """A case's record as a file, for the one person it was made for."""

    case_ref: str
    filename: str
    data: bytes


def may_see(actor: Person, case: Case) -> bool:
    """DSLs and deputies see their schools' cases; staff see cases they raised or were assigned
    (the role that counts is the person's role at the case's school).
    """
    acting = actor.in_school(case.school_id)
    if acting is None:
        return False
    return acting.is_decider or actor.id in (case.raised_by, case.assignee_id)


async def my_cases(svc: Services, *, actor: Person) -> list[CaseView]:
    """Open cases this person can see, with the one waiting for them first."""
    async with svc.db.read() as s:
        cases = [c for sid in actor.school_ids for c in await repo.open_cases(s, school_id=sid) if may_see(actor, c)]
        return [view_of(c, advance(policy_for(svc, c), await answers_of(s, c))) for c in cases]


async def status_of(svc: Services, *, actor: Person, case_ref: str) -> CaseView:
    """Where a case stands (reference and step only, nothing decrypted), for someone who may see
    it: a card refreshing itself shows this. Others are refused, and the attempt logged.
    """
    async with refusals_logged(svc), svc.db.read() as s:
        case = await case_for(s, actor, case_ref)
        actor = at_case(actor, case)
        if not may_see(actor, case):
            raise NotAuthorised(f"You are not authorised to see case {case.ref}. This attempt has been recorded.",
                                audit={"actor_id": actor.id, "school_id": actor.school_id, "case_id": case.id,
                                       "detail": {"step": "status", "role": actor.role}})
        return view_of(case, advance(policy_for(svc, case), await answers_of(s, case)))


async def open_details(svc: Services, *, actor: Person, case_ref: str, purpose: str = "viewed") -> CaseDetails:
    """Decrypt a case for an authorised person, and log that they did (before they are given it)."""
    async with refusals_logged(svc), svc.db.read() as s:  # reading never holds up someone answering
        case = await case_for(s, actor, case_ref)
        actor = at_case(actor, case)
        if not may_see(actor, case):
            raise NotAuthorised(f"You are not authorised to see the details of case {case.ref}. "
                                "This attempt has been recorded.",
                                audit={"actor_id": actor.id, "school_id": actor.school_id, "case_id": case.id,
                                       "detail": {"step": "details", "role": actor.role}})
        details = await _details(s, svc, case)
    async with svc.db.transaction() as s:  # the write is its own short transaction
        await append_access(s, action=purpose, at=svc.clock(), actor_id=actor.id, school_id=case.school_id,
                            case_id=case.id, detail={"role": actor.role})
        if actor.is_decider and case.urgent:
            await _acknowledge(s, svc, actor, case)
    return details


async def _acknowledge(s: AsyncSession, svc: Services, actor: Person, case: Case) -> None:
    """A DSL or deputy opening an urgent case has seen it: the escalation to others stops."""
    stopped = await reminder_repo.cancel(s, case_id=case.id or 0, kinds=[URGENT_ACK_REMINDER])
    if stopped:
        await append_access(s, action="urgent_acknowledged", at=svc.clock(), actor_id=actor.id,
                            school_id=case.school_id, case_id=case.id, detail={"cancelled": stopped, "by": "opened"})


async def export_as_operator(svc: Services, *, case_ref: str, format: str = "json",  # noqa: A002
                             operator: Operator | None = None) -> CaseDetails:
    """The record for `consentbot export`, run by whoever runs the server: logged as the CLI, with
    the format and the operator (their staff id with `--as`, else the OS user).
    """
    async with svc.db.read() as s:
        case = await repo.case_by_ref(s, case_ref)
        if case is None:
            raise NotFound(f"No case {case_ref.strip().upper()}.")
        details = await _details(s, svc, case)
    async with svc.db.transaction() as s:
        who = operator or os_operator()
        await append_access(s, action="exported", at=svc.clock(), actor_id=who.staff_id, school_id=case.school_id,
                            case_id=case.id, detail={"by": "cli", "format": format, **who.detail})
    return details


async def export_for(svc: Services, *, actor: Person, case_ref: str, platform: str) -> Export:
    """The record as a PDF for a DSL or deputy of the case's school, asking from a chat platform: the
    file goes to them alone. Anyone else is refused, and the attempt logged; the request is logged
    (action "exported", with the platform and format) before the file is made.
    """
    async with refusals_logged(svc), svc.db.read() as s:
        case = await case_for(s, actor, case_ref)
        actor = at_case(actor, case)
        if not actor.is_decider:
            raise NotAuthorised(f"Only the {svc.policy.role_label('dsl')} or a deputy can download the record of "
                                f"case {case.ref}. This attempt has been recorded.",
                                audit={"actor_id": actor.id, "school_id": actor.school_id, "case_id": case.id,
                                       "detail": {"step": "export", "role": actor.role, "platform": platform}})
        details = await _details(s, svc, case)
    async with svc.db.transaction() as s:
        await append_access(s, action="exported", at=svc.clock(), actor_id=actor.id, school_id=case.school_id,
                            case_id=case.id, detail={"role": actor.role, "platform": platform, "format": "pdf"})
    from bot.pdf import render_pdf  # fpdf2 loads only when a PDF is asked for

    return Export(case_ref=case.ref, filename=f"{case.ref}.pdf", data=render_pdf(details.record))


async def _details(s: AsyncSession, svc: Services, case: Case) -> CaseDetails:
    answers = await answers_of(s, case)
    progress = advance(policy_for(svc, case), answers)
    facts = {k: _decrypt(svc, case, k, v) for k, v in progress.facts.items() if not k.startswith(INTERNAL)}
    school = await s.get(School, case.school_id)
    names = await names_at_the_time(s, case)
    meta = {"ref": case.ref, "school": school.name if school else "", "status": case.status,
            "timezone": school.timezone if school else None}
    return CaseDetails(view=view_of(case, progress), facts=facts, record=decision_record(svc.policy, meta, facts, names))


async def names_at_the_time(s: AsyncSession, case: Case) -> dict[str, str]:
    """Who did what, by staff id: the names frozen into the case's events as they were at the time,
    so a later edit of the staff table cannot change the record. The staff table (everyone who
    ever was, so people who have left stay named) only for events from before names were frozen.
    """
    frozen = {pid: who["name"] for e in await repo.case_events(s, case.id or 0)
              for pid, who in json.loads(e.payload).get("people", {}).items()}
    staff = await repo.list_staff(s, school_id=case.school_id, include_inactive=True)
    return {**{str(p.id): p.display_name for p in staff}, **frozen}


def _decrypt(svc: Services, case: Case, key: str, value: Any) -> Any:
    return svc.keyring.decrypt(value, context=f"case:{case.id}:{key}") if is_encrypted(value) else value
