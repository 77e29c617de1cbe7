"""Use cases: raise a concern, answer a step (the DSL's decisions, assignments, consent
outcomes, sharing and follow-up are all steps of the policy), view, export.

Each call is one transaction: it appends hash-chained events, moves the case's projection
on under a version check, and writes reminder rows and outbox messages. Nothing is sent
from here. Roles are checked here, whatever the interface did.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from bot import notify
from bot.checklist import Answer, IllegalAnswer, Progress, advance, allowed_options, validate_answer
from bot.crypto import Keyring
from bot.errors import BotError, Conflict, InvalidAnswer, NotAuthorised, NotFound
from bot.policy.model import Actor, FieldType, Option, Policy, Step
from storage import repo
from storage.audit import GENESIS, Sealer, append_access, index_case, new_case_event
from storage.db import Database
from storage.models import Case, CaseEvent, Child, ProcessedDelivery, School, Staff, utcnow

logger = logging.getLogger(__name__)
DECIDERS = frozenset({"dsl", "deputy"})
STATUS_BY_ACTOR = {Actor.STAFF: "draft", Actor.DSL: "awaiting_decision", Actor.ASSIGNEE: "awaiting_outcome"}
ANSWER_KINDS = ("raised", "answered")


@dataclass
class Services:
    """What the use cases need: the database, the key ring, the policy, a clock, and the chat
    platforms this deployment delivers on (an alert counts only if a DSL is reachable on one).
    """

    db: Database
    keyring: Keyring
    policy: Policy
    clock: Callable[[], datetime] = utcnow
    delivering: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        # The audit chains are keyed from this key ring (storage/audit.py): every transaction of
        # the database seals what it appends with it.
        self.db.sealer = Sealer(self.keyring)


@dataclass(frozen=True)
class Person:
    """A member of staff acting through some platform, at one school (`school_id`, with their
    `role` there). Someone who belongs to several schools (a trust's DSL) has a role in each, in
    `memberships`; `in_school` gives them acting at another.
    """

    id: int
    school_id: int
    role: str
    name: str
    email: str
    memberships: tuple[tuple[int, str], ...] = ()  # (school id, role) for every school, the home one first

    @property
    def is_decider(self) -> bool:
        """DSLs and deputies decide and approve (at the school they act at)."""
        return self.role in DECIDERS

    @property
    def school_ids(self) -> tuple[int, ...]:
        """Every school the person belongs to, the home one first."""
        return tuple(sid for sid, _ in self.memberships) or (self.school_id,)

    def role_in(self, school_id: int) -> str | None:
        """Their role at `school_id`; None when they do not belong to it."""
        if school_id == self.school_id:
            return self.role
        return dict(self.memberships).get(school_id)

    def in_school(self, school_id: int) -> Person | None:
        """The same person acting at `school_id` with their role there; None when not a member."""
        role = self.role_in(school_id)
        return None if role is None else replace(self, school_id=school_id, role=role)

    @classmethod
    def of(cls, staff: Staff, elsewhere: Sequence[tuple[int, str]] = ()) -> Person:
        """From a staff row, acting at their home school; `elsewhere`: their other memberships."""
        assert staff.id is not None  # noqa: S101 - rows come from the database
        return cls(id=staff.id, school_id=staff.school_id, role=staff.role, name=staff.display_name, email=staff.email,
                   memberships=((staff.school_id, staff.role), *elsewhere))

    @classmethod
    async def load(cls, s: AsyncSession, staff: Staff) -> Person:
        """From a staff row, with their memberships of other schools."""
        return cls.of(staff, await repo.memberships_of(s, staff.id or 0))


@dataclass(frozen=True)
class Told:
    """What the person who answered is told about the DSLs: reachable or not, and the words."""

    reachable: bool
    text: str | None  # "alerted as urgent", the fallback contacts, or nothing to add


@dataclass(frozen=True)
class CaseView:
    """A case as a chat may show it: references and steps, never sensitive values."""

    ref: str
    version: int
    status: str
    urgent: bool
    step: Step | None
    outcome: str | None
    assignee_id: int | None
    due_at: datetime | None
    raised_by: int
    school_id: int = 0
    notices: tuple[str, ...] = field(default_factory=tuple)
    choices: Mapping[str, tuple[Option, ...]] = field(default_factory=dict)  # allowed options per choice field
    replayed: bool = False  # the idempotency key was seen before: nothing changed
    told: Told | None = None  # after an answer that needed a DSL: whether one can be reached, and what to say
    answered_by: Person | None = None  # who answered (identified within the answer, when asked to)

    def answerable_by(self, actor: Person) -> bool:
        """True when `actor` may answer the step the case is waiting on."""
        return self.step is not None and may_answer(actor, self.step, school_id=self.school_id,
                                                    raised_by=self.raised_by, assignee_id=self.assignee_id)

    def waits_on(self, actor: Person) -> bool:
        """True when the step is this person's own to answer (a DSL may also answer for others)."""
        if self.step is None or not self.answerable_by(actor):
            return False
        owner = {Actor.STAFF: self.raised_by, Actor.ASSIGNEE: self.assignee_id}.get(self.step.actor)  # type: ignore[arg-type]
        return actor.id == owner if owner is not None else actor.role_in(self.school_id) in DECIDERS


NOT_REGISTERED = "You are not registered with consentbot. Ask your DSL or administrator to add you."


async def identify(svc: Services, **criteria: Any) -> Person:
    """The active member of staff matching `email=` or `slack_user_id=` (etc.). Anyone else is
    refused, and the attempt logged with the id they came with (a removed person by their record).
    """
    # A read: identifying writes nothing, so it never queues behind (or holds up) the writers.
    async with refusals_logged(svc):
        return await svc.db.quick_read(lambda s: _identified(s, criteria))


async def _identified(s: AsyncSession, criteria: dict[str, Any]) -> Person:
    """The active member of staff matching `criteria`, with their memberships; NotFound (audited) otherwise."""
    found = await repo.staff_and_memberships(s, **criteria)
    if found is None:
        raise await _unknown(s, criteria)
    return Person.of(*found)


async def _unknown(s: AsyncSession, criteria: dict[str, Any]) -> NotFound:
    gone = await repo.staff_by(s, include_inactive=True, **criteria)
    if gone is not None:
        refusal = NotFound("Your access to consentbot has been removed. Ask your DSL or administrator if this is "
                           "a mistake.", audit={"actor_id": gone.id, "school_id": gone.school_id,
                                                "detail": {"by": sorted(criteria)}})
        refusal.action = "refused_removed"
        return refusal
    refusal = NotFound(NOT_REGISTERED, audit={"detail": {"by": {k: str(v)[:64] for k, v in criteria.items()}}})
    refusal.action = "refused_unregistered"
    return refusal


async def claim_delivery(svc: Services, *, key: str) -> bool:
    """Record that a platform delivery (e.g. a Slack event_id) was handled. False if it was seen before."""
    async with svc.db.transaction() as s:
        return await repo.claim_delivery(s, key, None)


async def raise_concern(svc: Services, *, actor: Person, values: dict[str, Any], platform: str,
                        idempotency_key: str | None = None, linked_to: str | None = None) -> CaseView:
    """Open a case with the answer to the policy's first step; `linked_to`: raised from that
    earlier case (a re-escalation: the same child, and both cases show the link).
    """
    from bot.children import earlier_case, note_link  # bot.children builds on this module

    start = svc.policy.steps[svc.policy.start]
    clean = _validate(svc.policy, start, values, {}, now=svc.clock())
    now = svc.clock()

    async def work(s: AsyncSession) -> CaseView:
        if idempotency_key and (seen := await _seen_case(s, idempotency_key)):
            return seen
        earlier = await earlier_case(s, actor, linked_to) if linked_to else None
        acting = at_case(actor, earlier) if earlier else actor  # the same child: the earlier case's school
        case = await repo.insert_case(s, Case(
            ref="", school_id=acting.school_id, raised_by=acting.id, policy_id=svc.policy.id,
            policy_version=svc.policy.version, step=start.id, status="draft", created_at=now, updated_at=now,
            child_id=earlier.child_id if earlier else None, linked_case_id=earlier.id if earlier else None))
        if idempotency_key:
            await repo.claim_delivery(s, idempotency_key, case.id)
        await index_case(s, case, at=now, actor_id=acting.id)
        if earlier:
            await note_link(svc, s, case, earlier)
        return await _apply(svc, s, case, [], start, clean, actor=acting, platform=platform, kind="raised")

    try:
        async with refusals_logged(svc):
            return await svc.db.unit(work)
    except IntegrityError:
        raise Conflict("That request was already received.") from None


async def answer(svc: Services, *, case_ref: str, version: int, step: str, values: dict[str, Any], platform: str,
                 actor: Person | None = None, identity: Mapping[str, Any] | None = None,
                 idempotency_key: str | None = None) -> CaseView:
    """Answer the step the case is waiting on. `version` is the one the person saw. A refusal, a
    lost race and a stale form are logged, naming the person. The person is `actor`, or the one
    `identity` names (`slack_user_id=...`), identified inside the answer's own transaction: one
    transaction per answer. The view says who answered.
    """
    from bot.children import join_child  # bot.children builds on this module

    who: list[Person] = [actor] if actor else []

    async def work(s: AsyncSession) -> CaseView:
        if actor is None:  # who it is, and the case, in one read
            person, (case, answers, fresh) = await _person_and_case(s, dict(identity or {}), case_ref,
                                                                    claim=idempotency_key, who=who)
        else:
            person, who[:] = actor, [actor]
            case, answers, fresh = await _case_and_answers(s, actor, case_ref, claim=idempotency_key)
        acting = at_case(person, case)
        if not fresh:  # the delivery was seen before: the case as it is, unchanged
            return replace(view_of(case, advance(svc.policy, answers), replayed=True), answered_by=person)
        progress = advance(policy_for(svc, case), answers)
        current = await _waiting_step(s, svc.policy, case, answers, progress, actor=acting, version=version,
                                      step=step)
        _authorise(acting, case, current)
        given = await _default_due(svc, s, case, current, values)
        clean = _validate(svc.policy, current, given, progress.facts, now=svc.clock())
        clean = await _resolve_assignee(s, case, current, clean)
        child = await join_child(svc, s, case, current, clean)
        view = await _apply(svc, s, case, answers, current, clean, actor=acting, platform=platform, kind="answered",
                            before=progress, child=child)
        return replace(view, answered_by=person)

    async with refusals_logged(svc):
        try:
            return await svc.db.unit(work)
        except (IntegrityError, repo.StaleVersion):
            person = who[0] if who else None
            raise Conflict(f"Case {case_ref} was changed by someone else at the same moment. Reload it.",
                           audit={"actor_id": person.id if person else None,
                                  "school_id": person.school_id if person else None,
                                  "detail": {"ref": case_ref, "step": step, "seen_version": version}}) from None


def policy_for(svc: Services, case: Case) -> Policy:
    """The loaded policy, if it is the one the case was raised under (else Conflict)."""
    if (case.policy_id, case.policy_version) != (svc.policy.id, svc.policy.version):
        raise Conflict(f"Case {case.ref} follows policy {case.policy_id} {case.policy_version}, "
                       f"but {svc.policy.id} {svc.policy.version} is loaded.")
    return svc.policy


async def _waiting_step(s: AsyncSession, policy: Policy, case: Case, answers: list[Answer], progress: Progress, *,
                        actor: Person, version: int, step: str) -> Step:
    """The step the person answered, if the case still waits on it at the version they saw;
    else Conflict saying who answered last, what and when (the attempt is logged).
    """
    if progress.step is not None and version == case.version and step == progress.step.id:
        return progress.step
    where = "is closed" if progress.step is None else "has moved on since you opened it (someone else answered first)"
    said = await answer_said(s, policy, case, answers, step)
    raise Conflict(f"Case {case.ref} {where}. {said} Reload it to see where it is now.",
                   audit={"actor_id": actor.id, "school_id": case.school_id, "case_id": case.id,
                          "detail": {"step": step, "seen_version": version, "version": case.version}})


async def answer_said(s: AsyncSession, policy: Policy, case: Case, answers: list[Answer], step: str) -> str:
    """"Dee DSL answered 'Confirm the threshold' (Significant harm) on Mon 30 Nov, 14:05.": who
    answered `step` (else the latest step), the choices made (labels of non-sensitive choices
    only) and when, in the school's time.
    """
    if not answers:
        return ""
    last = next((a for a in reversed(answers) if a.step == step), answers[-1])
    who = await repo.get_staff(s, int(last.by)) if last.by.isdigit() else None
    answered = policy.steps.get(last.step)
    chosen = [o.label for f in (answered.fields if answered else ()) if f.type is FieldType.CHOICE and not f.sensitive
              for o in f.options if o.value == last.values.get(f.key)]
    school = await s.get(School, case.school_id)
    when = datetime.fromisoformat(last.at).astimezone(ZoneInfo(school.timezone if school else "Europe/London"))
    what = f"'{answered.title}'" if answered else "a step"
    return (f"{who.display_name if who else 'Someone'} answered {what}"
            f"{' (' + '; '.join(chosen) + ')' if chosen else ''} on {when:%a} {when.day} {when:%b, %H:%M}.")


def may_answer(actor: Person, step: Step, *, school_id: int, raised_by: int, assignee_id: int | None) -> bool:
    """Only a DSL or deputy of the same school decides; staff answer their own or assigned steps."""
    role = actor.role_in(school_id)
    if role is None:
        return False
    decider = role in DECIDERS
    if step.actor is Actor.DSL:
        return decider
    owner = raised_by if step.actor is Actor.STAFF else assignee_id
    return actor.id == owner or decider


async def not_theirs(svc: Services, *, actor: Person, view: CaseView) -> str | None:
    """When a person opens a case waiting on a step they may not answer (a teacher, on a DSL
    decision): the words saying whose step it is, and the attempt logged. None when it is theirs.
    """
    step = view.step
    if step is None or view.answerable_by(actor):
        return None
    who = (f"a {svc.policy.role_label('dsl')} or {svc.policy.role_label('deputy')}" if step.actor is Actor.DSL
           else "the person assigned, or a DSL")
    await log_refusal(svc, NotAuthorised("", audit={"actor_id": actor.id, "school_id": actor.school_id,
                                                    "case_id": await _case_id(svc, view.ref),
                                                    "detail": {"step": step.id, "role": actor.role,
                                                               "why": "opened a step that is not theirs"}}))
    return (f"Case {view.ref} is waiting for '{step.title}', which only {who} can answer, so it is not offered "
            "to you here. This attempt has been recorded.")


async def _case_id(svc: Services, ref: str) -> int | None:
    async with svc.db.read() as s:
        case = await repo.case_by_ref(s, ref)
    return case.id if case else None


def _authorise(actor: Person, case: Case, step: Step) -> None:
    if not may_answer(actor, step, school_id=case.school_id, raised_by=case.raised_by, assignee_id=case.assignee_id):
        who = "a DSL or deputy of this school" if step.actor is Actor.DSL else "the person assigned, or a DSL"
        raise NotAuthorised(f"Only {who} can answer '{step.title}' on case {case.ref}. This attempt has been recorded.",
                            audit={"actor_id": actor.id, "school_id": actor.school_id, "case_id": case.id,
                                   "detail": {"step": step.id, "role": actor.role}})


async def log_refusal(svc: Services, refusal: BotError) -> None:
    """Write a refused attempt to the access log, in its own transaction (the refused one rolled
    back): who (actor_id), what (case, step or action, in `detail`) and when.
    """
    audit = refusal.audit
    if audit:
        async with svc.db.transaction() as s:
            await append_access(s, action=refusal.action, at=svc.clock(), **audit)
        logger.warning("%s actor=%s case=%s detail=%s", refusal.action, audit.get("actor_id"), audit.get("case_id"),
                       sorted((audit.get("detail") or {}).keys()))


@asynccontextmanager
async def refusals_logged(svc: Services) -> AsyncIterator[None]:
    """Log any refusal that carries an audit record, once its transaction has rolled back."""
    try:
        yield
    except BotError as refusal:
        await log_refusal(svc, refusal)
        raise


def _validate(policy: Policy, step: Step, values: dict[str, Any], facts: Any, *, now: datetime) -> dict[str, Any]:
    """The answer checked against the step, by the service's clock ("not in the future")."""
    try:
        return validate_answer(policy, step, values, facts, now=now)
    except IllegalAnswer as exc:
        raise InvalidAnswer(str(exc), step=exc.step, field=exc.field) from None


async def _default_due(svc: Services, s: AsyncSession, case: Case, step: Step, values: dict[str, Any]) -> dict[str, Any]:
    """A due field left empty defaults to now plus the policy's due time for it, moved into the
    school's working hours: a classroom teacher is not given an outcome due at 01:00.
    """
    from bot.reminders import working_due  # bot.reminders builds on this module

    values = dict(values)
    for f in step.fields:
        if f.type is FieldType.DUE and not values.get(f.key) and f.due_hours:
            due = svc.clock() + timedelta(hours=svc.policy.due_hours(f.due_hours))
            values[f.key] = (await working_due(svc, s, school_id=case.school_id, due=due)).isoformat()
    return values


async def _resolve_assignee(s: AsyncSession, case: Case, step: Step, clean: dict[str, Any]) -> dict[str, Any]:
    """An assignee is an active member of staff of the case's school (given by id or email), stored as their id."""
    for f in step.fields:
        if f.type is FieldType.ASSIGNEE and f.key in clean:
            raw = str(clean[f.key])
            staff = await (repo.get_staff(s, int(raw)) if raw.isdigit() else repo.staff_by(s, email=raw))
            role = await repo.role_at(s, staff, case.school_id) if staff is not None and staff.active else None
            if staff is None or role is None:
                raise InvalidAnswer(f"{f.label}: that person is not an active member of staff of this school",
                                    step=step.id, field=f.key)
            if role not in f.assignable():  # the form offers only these; a crafted value is refused too
                raise InvalidAnswer(f"{f.label}: that person's role cannot be assigned this", step=step.id, field=f.key)
            clean[f.key] = str(staff.id)
    return clean


async def case_for(s: AsyncSession, actor: Person, ref: str) -> Case:
    """The case, if the person may know of it; another school's case is 'not found' (and the
    attempt is logged with the case it was, for that school's audit).
    """
    return _visible(actor, ref, await repo.case_by_ref(s, ref))


async def _case_and_answers(s: AsyncSession, actor: Person, ref: str, *,
                            claim: str | None = None) -> tuple[Case, list[Answer], bool]:
    """case_for, with the case's answers in order (read with it: one query for an answer's both),
    and the idempotency key `claim` claimed for it (on PostgreSQL in the same query): False when
    the key was seen before. A case that is not the person's is refused, and the claim rolled
    back with the refusal.
    """
    if claim:
        claimed = await repo.case_with_events_claimed(s, ref, claim)
        found, fresh = (claimed[:2], claimed[2]) if claimed else (None, False)
    else:
        found, fresh = await repo.case_with_events(s, ref), True
    case = _visible(actor, ref, found[0] if found else None)
    return case, [to_answer(e) for e in found[1] if e.kind in ANSWER_KINDS] if found else [], fresh


async def _person_and_case(s: AsyncSession, criteria: dict[str, Any], ref: str, *, claim: str | None,
                           who: list[Person]) -> tuple[Person, tuple[Case, list[Answer], bool]]:
    """_identified and _case_and_answers, read together (repo.person_and_case): the person, into
    `who` as soon as known (a refusal names them), then their case.
    """
    person_read, case_read = await repo.person_and_case(s, criteria, ref, claim)
    if person_read is None:
        raise await _unknown(s, criteria)
    person = Person.of(*person_read)
    who[:] = [person]
    case = _visible(person, ref, case_read[0] if case_read else None)
    answers = [to_answer(e) for e in case_read[1] if e.kind in ANSWER_KINDS] if case_read else []
    return person, (case, answers, case_read[2] if case_read else False)


def _visible(actor: Person, ref: str, case: Case | None) -> Case:
    """`case`, if the person may know of it; else NotFound, audited (case_for)."""
    if case is None or actor.role_in(case.school_id) is None:
        why = "no such case" if case is None else "another school's case"
        raise NotFound(f"No case {ref.strip().upper()} that you can see.",
                       audit={"actor_id": actor.id, "school_id": actor.school_id, "case_id": case.id if case else None,
                              "detail": {"ref": ref.strip().upper()[:20], "why": why}})
    return case


def at_case(actor: Person, case: Case) -> Person:
    """The person acting at the case's school, with their role there (case_for has checked they belong to it)."""
    acting = actor.in_school(case.school_id)
    assert acting is not None  # noqa: S101 - case_for refuses another school's case
    return acting


async def answers_of(s: AsyncSession, case: Case) -> list[Answer]:
    """The case's answers in order, as the checklist replays them."""
    assert case.id is not None  # noqa: S101
    return [to_answer(e) for e in await repo.case_events(s, case.id) if e.kind in ANSWER_KINDS]


def to_answer(event: CaseEvent) -> Answer:
    """An answer event as the checklist replays it (sensitive values stay encrypted)."""
    payload = json.loads(event.payload)
    return Answer(step=payload["step"], values=payload["values"], by=str(event.actor_id or ""),
                  at=event.at.isoformat(), platform=payload.get("platform", ""))


async def _seen_case(s: AsyncSession, key: str) -> CaseView | None:
    seen = await s.get(ProcessedDelivery, key)
    if seen is None or seen.case_id is None:
        return None
    case = await s.get(Case, seen.case_id)
    assert case is not None  # noqa: S101 - foreign key
    return view_of(case, None, replayed=True)


def _encrypt(keyring: Keyring, policy: Policy, case: Case, values: dict[str, Any]) -> dict[str, Any]:
    sensitive = policy.sensitive_keys()
    return {k: keyring.encrypt(v, context=f"case:{case.id}:{k}") if k in sensitive else v for k, v in values.items()}


async def _apply(svc: Services, s: AsyncSession, case: Case, answers: list[Answer], step: Step,
                 clean: dict[str, Any], *, actor: Person, platform: str, kind: str, before: Progress | None = None,
                 child: Child | None = None) -> CaseView:
    """Append the answer as an event, move the projection on, queue what follows from it.
    `before`: the progress of `answers`, if known; `child`: the child record the answer joins
    the case to (bot.children.join_child), set once with the projection and named in the event.
    The join is in the case's own chain, not on the access log: every appender of that log
    waits for the one before, and a join on it serialised answers (issue 12).
    """
    now = svc.clock()
    stored = _encrypt(svc.keyring, svc.policy, case, clean)
    before = before or advance(svc.policy, answers)
    after = advance(svc.policy, [*answers, Answer(step=step.id, values=stored, by=str(actor.id), at=now.isoformat(),
                                                  platform=platform)])
    event = new_case_event(s, case, seq=case.version + 1, prev_hash=case.head_hash or GENESIS, kind=kind,
                           actor_id=actor.id, at=now, payload={"step": step.id, "values": stored, "platform": platform,
                                                               "people": await people_named(s, actor, step, clean),
                                                               **({"child": child.ref} if child else {})})
    await repo.append_and_project(s, event, case, expected_version=case.version, version=case.version + 1,
                                  head_hash=event.hash, updated_at=now, **projection(after),
                                  **({"child_id": child.id} if child else {}))
    prior = svc.policy.steps[answers[-1].step] if answers else None
    answered = notify.Answered(step=step, prior=prior, before=before, after=after, actor_id=actor.id,
                               visit=sum(a.step == step.id for a in answers), values=clean)
    reach = await notify.follow_up(s, svc.policy, case, answered, now=now, delivering=svc.delivering)
    logger.info("case=%s step=%s answered by=%s version=%s", case.ref, step.id, actor.id, case.version)
    urgent_now = after.urgent and not before.urgent
    return view_of(case, after, reach=told(svc.policy, reach, alerted=urgent_now and step.actor is not Actor.DSL))


async def people_named(s: AsyncSession, actor: Person, step: Step, clean: dict[str, Any]) -> dict[str, dict[str, str]]:
    """The people an answer mentions (the actor; anyone it assigns), by id, with their names and
    roles as they are now: frozen into the event, so a later edit of the staff table cannot
    change what the record says about who did what.
    """
    named = {str(actor.id): {"name": actor.name, "role": actor.role}}
    for f in step.fields:
        if f.type is FieldType.ASSIGNEE and str(clean.get(f.key, "")).isdigit():
            staff = await repo.get_staff(s, int(clean[f.key]))
            if staff is not None:
                named[str(staff.id)] = {"name": staff.display_name, "role": staff.role}
    return named


def told(policy: Policy, reach: notify.Reach | None, *, alerted: bool) -> Told | None:
    """What the person answering is told about who knows: never "alerted" unless a DSL can receive it."""
    if reach is None:
        return None
    if reach.deciders == 0:
        return Told(reachable=False, text=fallback_text(policy, reach.school))
    text = f"The {policy.role_label('dsl')} has been alerted as urgent." if alerted else None
    return Told(reachable=True, text=text)


def fallback_text(policy: Policy, school: School | None) -> str:
    """The policy's fallback contacts, with the school's phone numbers (G1, G8)."""
    template = str(policy.settings.get("fallback_contacts") or
                   "No DSL or deputy can be reached through the bot. Phone the DSL on {dsl_phone}, or the local "
                   "authority front door on {front_door_phone}. If the child is in immediate danger, call 999.")
    unknown = "(number not set in the bot: ask the school office)"
    return template.format(dsl_phone=(school.dsl_phone if school else None) or unknown,
                           front_door_phone=(school.front_door_phone if school else None) or unknown)


def projection(progress: Progress) -> dict[str, Any]:
    """The case row's columns that follow from its answers (re-derived by `audit verify`)."""
    facts = progress.facts
    due = facts.get("due_at")
    return {
        "step": progress.step.id if progress.step else progress.outcome.step.id,  # type: ignore[union-attr]
        "status": "closed" if progress.done else STATUS_BY_ACTOR[progress.step.actor],  # type: ignore[union-attr,index]
        "urgent": progress.urgent,
        "assignee_id": int(facts["assignee"]) if facts.get("assignee") else None,
        "due_at": datetime.fromisoformat(due) if due else None,
    }


def view_of(case: Case, progress: Progress | None, *, replayed: bool = False, reach: Told | None = None) -> CaseView:
    """What a chat may show of a case at `progress`; the notices put what was just said about the DSL
    (alerted, or the fallback contacts) right under the option's own notice (999 first).
    """
    step = progress.step if progress else None
    choices = {f.key: allowed_options(f, progress.facts) for f in step.fields if f.options} if step and progress else {}
    notices = (progress.notices if progress else ()) + ((reach.text,) if reach and reach.text else ())
    return CaseView(ref=case.ref, version=case.version, status=case.status, urgent=case.urgent, step=step,
                    outcome=progress.outcome.code if progress and progress.outcome else None,
                    assignee_id=case.assignee_id, due_at=case.due_at, raised_by=case.raised_by,
                    school_id=case.school_id, notices=notices, choices=choices, replayed=replayed, told=reach)
