"""One screen model for every chat platform: what a step asks, which choices are allowed, the
notices, the errors, and which screen comes next for a person. Slack renders a `Screen` as
Block Kit (handlers/slack/modals.py), the terminal as prompts (handlers/console.py); Teams will
render it as an Adaptive Card. No platform SDK here: a renderer translates, it never decides.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any
from zoneinfo import ZoneInfo

from bot import cases, chronology, people, views
from bot.cases import CaseView, Person, Services
from bot.checklist import text_limit
from bot.errors import BotError, InvalidAnswer, NotFound
from bot.policy.model import Actor, Code, Field, FieldType, Option, Policy, Step
from bot.record_text import recorded
from storage.models import School

TYPED = (FieldType.TEXT, FieldType.LONGTEXT, FieldType.ASSIGNEE)  # free text the bot limits (an assignee may be an email)
CARRIED_LEAD = "Your concern will start from the message you chose: "  # before a quoted message carried along
# Options one search answers with: Slack shows at most 100
# (https://docs.slack.dev/reference/block-kit/block-elements/select-menu-element).
SEARCH_MAX = 100
# The question a person who belongs to several schools answers before the first step's: which
# school the concern is about (its DSLs are alerted, and only its people may see the case).
SCHOOL = "school"
SCHOOL_LABEL = "Which school is this concern about?"
Pairs = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Question:
    """One field as asked: its choices are the allowed ones now, its limit is the one the bot enforces."""

    key: str
    label: str
    kind: FieldType
    choices: Pairs = ()  # (value, label): options after `unless` rules, codes, or colleagues (email, "name (role)")
    max_length: int | None = None
    optional: bool = False  # the form may be sent with it blank
    initial: str | None = None
    hint: str | None = None  # a short line under it (the legal disclaimer under legal references)


@dataclass(frozen=True)
class Detail:
    """One recorded answer, labelled as the policy asks it (for authorised people only)."""

    label: str
    value: str


@dataclass(frozen=True)
class Screen:
    """A step to answer (`step_id` set) or a note. Carries the case reference and version, never answers."""

    title: str = ""
    help: str | None = None
    notices: tuple[str, ...] = ()  # in order: the option's notice (999) first, then who was alerted or whom to phone
    urgent: bool = False
    questions: tuple[Question, ...] = ()
    case_ref: str | None = None
    version: int | None = None
    step_id: str | None = None
    carried: str = ""  # a quoted message riding below the questions until a step can take it
    text: str = ""  # a note's one line
    details: tuple[Detail, ...] | None = None  # the case's details, above the step (None: not shown)
    raised_from: str | None = None  # a new concern raised from this earlier case (a re-escalation)

    @property
    def submittable(self) -> bool:
        """True when the screen asks a step (a note can only be closed)."""
        return self.step_id is not None

    def question(self, key: str | None) -> Question | None:
        """The question with this key, if the screen asks it."""
        return next((q for q in self.questions if q.key == key), None)


@dataclass(frozen=True)
class Reply:
    """A step answered on some platform: `case_ref` None raises a new concern."""

    step_id: str
    case_ref: str | None
    version: int
    values: dict[str, Any]
    idempotency_key: str | None = None
    quoted: str = ""
    raised_from: str | None = None  # raising a new concern from this earlier case


@dataclass(frozen=True)
class FieldError:
    """The bot's objection, under the question it is about."""

    key: str
    text: str


def _case(view: CaseView | None) -> dict[str, Any]:
    if view is None:
        return {}
    return {"notices": view.notices, "urgent": view.urgent, "case_ref": view.ref, "version": view.version}


def step_screen(policy: Policy, step: Step, view: CaseView | None = None, *, colleagues: Sequence[tuple[str, str]] = (),
                initial: Mapping[str, str] | None = None, quoted: str = "",
                details: tuple[Detail, ...] | None = None) -> Screen:
    """The screen asking `step`. A quoted message fills the first long answer, or rides below the questions."""
    into = next((f.key for f in step.fields if f.type is FieldType.LONGTEXT), None) if quoted else None
    initial = {**(initial or {}), **({into: quoted} if into else {})}
    allowed = view.choices if view else {}
    questions = tuple(question(policy, f, allowed.get(f.key, f.options), colleagues, initial.get(f.key))
                      for f in step.fields)
    return Screen(title=step.title, help=step.help, questions=questions, step_id=step.id,
                  carried="" if into else quoted, details=details, **_case(view))


def note_screen(text: str, view: CaseView | None = None, *, details: tuple[Detail, ...] | None = None) -> Screen:
    """A screen that only says something (a refusal, or where the case waits now)."""
    return Screen(text=text, details=details, **_case(view))


def start_screen(policy: Policy, *, quoted: str = "", schools: Pairs = ()) -> Screen:
    """The checklist's first step: the immediate-danger question, before anything is typed (G1);
    with `schools` ((id, name) of the person's schools, when more than one), which school first.
    """
    screen = step_screen(policy, policy.steps[policy.start], quoted=quoted)
    if not schools:
        return screen
    which = Question(key=SCHOOL, label=SCHOOL_LABEL, kind=FieldType.CHOICE, choices=schools)
    return replace(screen, questions=(which, *screen.questions))


async def school_choices(svc: Services, me: Person) -> Pairs:
    """(school id, name) of each school the person belongs to, home first; () for one school."""
    if len(me.school_ids) < 2:  # noqa: PLR2004 - a choice needs two
        return ()
    async with svc.db.read() as s:
        found = [(sid, await s.get(School, sid)) for sid in me.school_ids]
    return tuple((str(sid), school.name or school.slug) for sid, school in found if school is not None)


def acting_for_new_concern(policy: Policy, me: Person, values: Mapping[str, Any]) -> Person:
    """The person acting at the school they chose for a new concern (their only school, if one).
    Someone of several schools must choose: a concern filed under the wrong school would be read
    by that school's DSLs and not alert the right ones.
    """
    if len(me.school_ids) < 2:  # noqa: PLR2004
        return me
    chosen = str(values.get(SCHOOL) or "")
    acting = me.in_school(int(chosen)) if chosen.isdigit() else None
    if acting is None:
        raise InvalidAnswer(f"{SCHOOL_LABEL}: Choose one of your schools", step=policy.start, field=SCHOOL)
    return acting


def question(policy: Policy, f: Field, options: tuple[Option, ...], colleagues: Sequence[tuple[str, str]],
             initial: str | None) -> Question:
    """One field as asked now."""
    limit = text_limit(f) if f.type in TYPED else None
    optional = bool(f.optional or f.required_if_any or f.type is FieldType.REASONS
                    or (f.type is FieldType.DUE and f.due_hours))
    return Question(key=f.key, label=f.label, kind=f.type, choices=_choices(policy, f, options, colleagues),
                    max_length=limit, optional=optional, initial=initial[:limit] if initial and limit else initial,
                    hint=policy.disclaimer if f.type is FieldType.LEGAL_REFS else None)


def _choices(policy: Policy, f: Field, options: tuple[Option, ...], colleagues: Sequence[tuple[str, str]]) -> Pairs:
    if f.type is FieldType.CHOICE:
        return tuple((o.value, o.label) for o in options)
    if f.type is FieldType.ASSIGNEE:
        return tuple(colleagues)
    if f.type is FieldType.REASONS:
        return tuple((c.code, c.label) for c in policy.reason_codes)
    if f.type is FieldType.LEGAL_REFS:
        return tuple((c.code, c.label) for c in current_legal_refs(policy))
    return ()


async def school_zone(svc: Services, me: Person) -> ZoneInfo:
    """The person's school's timezone: a date and time typed without an offset is school time."""
    async with svc.db.read() as s:
        school = await s.get(School, me.school_id)
    return ZoneInfo(school.timezone if school and school.timezone else "Europe/London")


def current_legal_refs(policy: Policy) -> list[Code]:
    """The legal references a DSL may pick (historical ones stay in the record only)."""
    return [c for c in policy.legal_references if not c.historical]


def record_details(record: Mapping[str, Any]) -> tuple[Detail, ...]:
    """A case's record as people read it (names, labels, the school's time), headed by section."""
    return tuple(Detail(label=f"{heading}: {label}", value=value) for heading, rows in recorded(record)
                 for label, value in rows)


def reply_to(screen: Screen, values: dict[str, Any], *, idempotency_key: str | None = None) -> Reply:
    """The answer to `screen`, for the case and version it showed (none yet: a new concern)."""
    return Reply(step_id=str(screen.step_id), case_ref=screen.case_ref,
                 version=-1 if screen.version is None else screen.version, values=values,
                 idempotency_key=idempotency_key, quoted=screen.carried, raised_from=screen.raised_from)


def field_error(step: Step | None, problem: InvalidAnswer) -> FieldError:
    """The error under the field it is about (or the first field), in words a person reads."""
    keys = [f.key for f in step.fields] if step else []
    keys += [SCHOOL] if problem.field == SCHOOL else []
    key = problem.field if problem.field in keys else (keys[0] if keys else "")
    text = str(problem).split(": ", 1)[-1]
    return FieldError(key=key or "", text=f"This answer {text}" if re.match(r"(is|must) ", text) else text)


def where_now(policy: Policy, case: CaseView) -> str:
    """One sentence: where the case waits now (a reference and a step title only). Never says
    "notified" when no DSL could be reached.
    """
    if case.outcome:
        return f"Case {case.ref} is complete: {policy.outcome_label(case.outcome)}."
    if case.step is None:
        return f"Case {case.ref} is saved."
    if case.told is not None and not case.told.reachable:
        return f"Case {case.ref} is saved and waits for the {policy.role_label('dsl')}: {case.step.title}."
    if case.step.actor is Actor.DSL:
        who = f"the {policy.role_label('dsl')} (and deputies), who have been notified"
    elif case.step.actor is Actor.ASSIGNEE:
        who = "the member of staff assigned, who has been notified"
    else:
        who = "the member of staff who raised it"
    return f"Thank you. Case {case.ref} now waits for {who}: {case.step.title}."


def owns(me: Person, case: CaseView) -> bool:
    """True when the waiting step is this person's own to answer."""
    actor = case.step.actor if case.step else None
    if actor is Actor.DSL:
        return me.is_decider
    return me.id == (case.raised_by if actor is Actor.STAFF else case.assignee_id)


async def colleagues_for(svc: Services, me: Person, step: Step) -> list[tuple[str, str]]:
    """(email, "name (role)") choices of the roles the step's assignee field allows, only when it asks for one."""
    field = next((f for f in step.fields if f.type is FieldType.ASSIGNEE), None)
    if field is None:
        return []
    return [(email, f"{name} ({role})")
            for email, name, role in await people.colleagues(svc, actor=me, roles=field.assignable())]


async def assignee_search(svc: Services, *, actor: Person, case_ref: str, step_id: str, key: str,
                          typed: str) -> list[tuple[str, str]]:
    """At most SEARCH_MAX (email, "name (role)") whose name or email contains `typed`, from the case's
    school and the roles the assignee field `key` allows, for someone who may answer the step the
    case waits on; nothing otherwise (someone who may not see the case is refused and logged by
    views.status_of). The choice made is checked again when the answer is recorded.
    """
    step = svc.policy.steps.get(step_id)
    field = next((f for f in step.fields if f.key == key and f.type is FieldType.ASSIGNEE), None) if step else None
    if step is None or field is None:
        return []
    case = await views.status_of(svc, actor=actor, case_ref=case_ref)
    if case.step is None or case.step.id != step_id or not case.answerable_by(actor):
        return []
    needle = " ".join(typed.split()).casefold()
    found = await colleagues_for(svc, actor, step)
    return [(email, label) for email, label in found if needle in label.casefold() or needle in email][:SEARCH_MAX]


async def next_screen(svc: Services, me: Person, case: CaseView, *, owner_only: bool = False, quoted: str = "",
                      details: tuple[Detail, ...] | None = None) -> Screen:
    """The step waiting for `me`, or a note saying where the case is now.

    `owner_only`: after an answer, go on only to a step that is this person's own (a DSL who
    has just assigned someone is not walked into the assignee's form, though a DSL may fill it).
    """
    if case.replayed and case.step is None:  # a repeated first submission: show the case as it is now
        case = next((c for c in await views.my_cases(svc, actor=me) if c.ref == case.ref), case)
    me = me.in_school(case.school_id) or me  # colleagues and roles are those of the case's school
    if case.step is not None and case.answerable_by(me) and (not owner_only or owns(me, case)):
        colleagues = await colleagues_for(svc, me, case.step)
        return step_screen(svc.policy, case.step, case, colleagues=colleagues, quoted=quoted, details=details)
    return note_screen(where_now(svc.policy, case), case, details=details)


async def first_screen(svc: Services, *, quoted: str = "", raised_from: str | None = None, **identity: Any) -> Screen:
    """The first step for a registered person (`slack_user_id=`, `email=`...); anyone else is told why not,
    before they answer anything. Someone of several schools is asked which school, unless the
    concern is raised from an earlier case (whose school it is).
    """
    try:
        me = await cases.identify(svc, **identity)
    except NotFound as refusal:
        return note_screen(str(refusal))
    if raised_from:
        return replace(start_screen(svc.policy, quoted=quoted), raised_from=raised_from)
    return start_screen(svc.policy, quoted=quoted, schools=await school_choices(svc, me))


async def case_screen(svc: Services, *, actor: Person, case_ref: str) -> Screen:
    """An opened case: its details (views.open_details checks and logs) above the step waiting for `actor`, if any;
    a step that is not theirs is not offered: they are told whose it is (and the attempt is logged).
    """
    opened = await views.open_details(svc, actor=actor, case_ref=case_ref)
    linked = tuple(Detail(label, text) for label, text in await chronology.history(svc, actor=actor, case_ref=case_ref))
    shown = record_details(opened.record) + linked
    if (refusal := await cases.not_theirs(svc, actor=actor, view=opened.view)) is not None:
        return note_screen(refusal, opened.view, details=shown)
    return await next_screen(svc, actor, opened.view, details=shown)


async def record(svc: Services, *, reply: Reply, platform: str, actor: Person | None = None,
                 identity: Mapping[str, Any] | None = None) -> CaseView:
    """Raise the concern (no case yet) or answer the step the screen showed, at the version it showed,
    as `actor` or the person `identity` names (identified within the answer: see cases.answer).
    """
    if reply.step_id not in svc.policy.steps:
        raise BotError("This form is out of date. Close it and start again.")
    if reply.case_ref is None:
        actor = actor or await cases.identify(svc, **dict(identity or {}))
        values = {k: v for k, v in reply.values.items() if k != SCHOOL}
        if not reply.raised_from:  # a concern raised from an earlier case is at that case's school
            actor = acting_for_new_concern(svc.policy, actor, reply.values)
        raised = await cases.raise_concern(svc, actor=actor, values=values, platform=platform,
                                           idempotency_key=reply.idempotency_key, linked_to=reply.raised_from)
        return replace(raised, answered_by=actor)
    return await cases.answer(svc, actor=actor, identity=identity, case_ref=reply.case_ref, version=reply.version,
                              step=reply.step_id, values=reply.values, platform=platform,
                              idempotency_key=reply.idempotency_key)


async def again(svc: Services, *, actor: Person, reply: Reply) -> Screen:
    """The screen a reply answered, to show again under the bot's objection (for platforms whose
    forms do not stay open by themselves): the same choices and colleagues, at the version shown.
    """
    step = svc.policy.steps[reply.step_id]
    if reply.case_ref is None and step.id == svc.policy.start:
        schools = () if reply.raised_from else await school_choices(svc, actor)
        return replace(start_screen(svc.policy, quoted=reply.quoted, schools=schools), raised_from=reply.raised_from)
    case = await views.status_of(svc, actor=actor, case_ref=reply.case_ref or "")
    actor = actor.in_school(case.school_id) or actor
    shown = step_screen(svc.policy, step, case, colleagues=await colleagues_for(svc, actor, step), quoted=reply.quoted)
    return replace(shown, version=reply.version)


async def submit(svc: Services, *, reply: Reply, platform: str, actor: Person | None = None,
                 identity: Mapping[str, Any] | None = None) -> Screen:
    """Record the reply (as `actor`, or the person `identity` names), then the screen that follows
    for this person (their own next step, or a note).
    """
    case = await record(svc, actor=actor, identity=identity, reply=reply, platform=platform)
    me = case.answered_by or actor
    assert me is not None  # noqa: S101 - record identified them, or refused
    return await next_screen(svc, me, case, owner_only=True, quoted=reply.quoted)
