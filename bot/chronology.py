"""A child's chronology: every case and decision about one child, in time order (G5: a DSL
handling a new concern sees the history). Reading it decrypts the child's name, so it is for a
DSL or deputy of the child's school, or the operator, and every reading is logged.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from bot.cases import Person, Services, answers_of, at_case, case_for, refusals_logged
from bot.checklist import Answer
from bot.children import child_born, child_name, link_kind
from bot.errors import NotAuthorised, NotFound
from bot.policy.model import Actor, FieldType, Policy, StepKind
from storage import children as store
from storage import repo
from storage.audit import append_access
from storage.models import Case, Child, School

LINK_WORDS = {"re_escalation": "re-escalation of", "linked": "raised from"}


@dataclass(frozen=True)
class Entry:
    """One line of the chronology: when, which case, what happened (labels and names only)."""

    at: datetime
    case_ref: str
    text: str


@dataclass(frozen=True)
class Chronology:
    """A child and everything recorded about them, oldest first."""

    child_ref: str
    name: str
    born: str | None
    timezone: str
    cases: tuple[str, ...]
    entries: tuple[Entry, ...]

    def lines(self) -> list[str]:
        """As printed: the child, then one line per entry in the school's time."""
        zone = ZoneInfo(self.timezone)
        head = f"Child {self.child_ref}: {self.name}" + (f", born {self.born}" if self.born else "")
        return [head, f"{len(self.cases)} case(s): {', '.join(self.cases)}"] + [
            f"{shown_at(e.at, zone)}  {e.case_ref}  {e.text}" for e in self.entries]


def shown_at(at: datetime, zone: ZoneInfo) -> str:
    """A time as people read it, in the school's time: "Mon 30 Nov 2026, 14:05"."""
    local = at.astimezone(zone)
    return f"{local:%a} {local.day} {local:%b %Y, %H:%M}"


async def chronology(svc: Services, *, ref: str, actor: Person | None = None, operator: str | None = None) -> Chronology:
    """The chronology of a child (`CH-...`), or of the child a case (`C-...`) is about. `actor`: a
    DSL or deputy of the child's school (anyone else is refused, and that is logged); None: the
    operator at the server, named by `operator`. The reading is logged.
    """
    async with refusals_logged(svc), svc.db.read() as s:
        child, school_id = await _child_of(s, ref, actor)
        actor = actor.in_school(school_id) if actor is not None else None  # _child_of refuses another school's
        if actor is not None and not actor.is_decider:
            raise NotAuthorised("Only a DSL or deputy can see a child's chronology. This attempt has been recorded.",
                                audit={"actor_id": actor.id, "school_id": actor.school_id,
                                       "detail": {"step": "chronology", "role": actor.role}})
        found = await _build(svc, s, child)
    async with svc.db.transaction() as s:
        await append_access(s, action="chronology_viewed", at=svc.clock(), actor_id=actor.id if actor else None,
                            school_id=school_id, detail={"child": child.ref, "cases": len(found.cases),
                                                         **({"operator": operator} if operator else {})})
    return found


async def _child_of(s: AsyncSession, ref: str, actor: Person | None) -> tuple[Child, int]:
    ref = ref.strip().upper()
    if ref.startswith("CH-"):
        child = await store.child_by_ref(s, ref)
        if child is None or (actor is not None and actor.role_in(child.school_id) is None):
            raise NotFound(f"No child {ref} that you can see.", audit=None if actor is None else {
                "actor_id": actor.id, "school_id": actor.school_id,
                "detail": {"ref": ref[:20], "why": "no such child" if child is None else "another school's child"}})
        return child, child.school_id
    case = await (case_for(s, actor, ref) if actor else repo.case_by_ref(s, ref))
    if case is None:
        raise NotFound(f"No case {ref}.")
    if case.child_id is None:
        raise NotFound(f"Case {case.ref} does not name a child yet (the concern has not been described).")
    child = await s.get(Child, case.child_id)
    assert child is not None  # noqa: S101 - foreign key
    return child, child.school_id


async def _build(svc: Services, s: AsyncSession, child: Child) -> Chronology:
    from bot.views import names_at_the_time  # bot.views builds on the use cases this module does

    school = await s.get(School, child.school_id)
    cases = await store.cases_of_child(s, child.id or 0)
    by_id = {c.id: c for c in cases}
    entries: list[Entry] = []
    for case in cases:  # each case names people as they were when it happened
        entries += _case_entries(svc.policy, case, await answers_of(s, case), await names_at_the_time(s, case), by_id)
    entries.sort(key=lambda e: e.at)
    return Chronology(child_ref=child.ref, name=child_name(svc, child), born=child_born(svc, child),
                      timezone=school.timezone if school else "Europe/London",
                      cases=tuple(c.ref for c in cases), entries=tuple(entries))


def _case_entries(policy: Policy, case: Case, answers: list[Answer], names: dict[str, str],
                  by_id: dict[int | None, Case]) -> list[Entry]:
    who = names.get(str(case.raised_by), "someone")
    raised = f"Concern raised by {who}"
    if case.linked_case_id is not None and (earlier := by_id.get(case.linked_case_id)) is not None:
        raised += f" ({LINK_WORDS[link_kind(policy, earlier)]} {earlier.ref})"
    entries = [Entry(case.created_at, case.ref, raised)]
    entries += [Entry(datetime.fromisoformat(a.at), case.ref, said) for a in answers
                if (said := _decision(policy, a, names))]
    end = policy.steps.get(case.step)
    if case.status == "closed" and end is not None and end.kind is StepKind.END:
        entries.append(Entry(case.updated_at, case.ref, f"Closed: {end.title or end.end}"))
    return entries


def _decision(policy: Policy, a: Answer, names: dict[str, str]) -> str | None:
    """A signed step as one line: who, the step, and the labels of its non-sensitive choices."""
    step = policy.steps.get(a.step)
    if step is None or not step.signs or step.actor is Actor.STAFF:  # the raising is its own line
        return None
    chosen = [o.label for f in step.fields if f.type is FieldType.CHOICE and not f.sensitive
              for o in f.options if o.value == a.values.get(f.key)]
    assigned = [names.get(str(a.values.get(f.key)), "someone") for f in step.fields if f.type is FieldType.ASSIGNEE]
    said = "; ".join(chosen + [f"assigned {n}" for n in assigned])
    return f"{names.get(a.by, 'someone')}: {step.title}" + (f" ({said})" if said else "")


async def history(svc: Services, *, actor: Person, case_ref: str) -> list[tuple[str, str]]:
    """What a case's details show of its links and its child's other cases, as (label, text):
    the case it was raised from and those raised from it, for anyone who may see the case; the
    child's whole chronology for a DSL or deputy (that reading is logged).
    """
    async with svc.db.read() as s:
        case = await case_for(s, actor, case_ref)
        actor = at_case(actor, case)
        earlier = await s.get(Case, case.linked_case_id) if case.linked_case_id else None
        later = await store.raised_from(s, case.id or 0)
    shown: list[tuple[str, str]] = []
    if earlier is not None:
        kind = "a re-escalation" if link_kind(svc.policy, earlier) == "re_escalation" else "linked"
        shown.append(("Raised from", f"{earlier.ref} ({kind})"))
    if later:
        shown.append(("Concerns raised from this case", ", ".join(c.ref for c in later)))
    if actor.is_decider and case.child_id is not None:
        found = await chronology(svc, ref=case.ref, actor=actor)
        shown.append((f"Every concern about this child ({found.child_ref}), oldest first", "\n".join(found.lines()[2:])))
    return shown
