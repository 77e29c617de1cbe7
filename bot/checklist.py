"""The checklist as a pure state machine: (policy, answers so far) -> next step or outcome.

No I/O. `cases.py` persists every answer as an event and replays them through `advance`.
Routing never depends on a sensitive field (the validator enforces it), so answers can be
replayed with their sensitive values still encrypted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from bot.policy.model import Field, FieldType, Option, Policy, Step, StepKind
from bot.policy.requirements import is_recorded, missing_records

# The limits every form shows and the bot enforces, on what the person typed (Slack's
# plain_text_input allows 3000 characters at most, so a long answer is 3000 everywhere).
TEXT_LIMITS = {FieldType.TEXT: 500, FieldType.LONGTEXT: 3000}
# How far ahead of the bot's clock a "has happened" time may be: a phone's clock runs a little
# fast, and a date is a calendar day somewhere (UTC+14 at most).
CLOCK_SKEW, DAY_AHEAD = timedelta(minutes=5), timedelta(hours=14)
NOT_FUTURE = "must not be in the future"


class IllegalAnswer(ValueError):
    """An answer the policy does not allow. The message never repeats the value given."""

    def __init__(self, step: str, problem: str, field: str | None = None) -> None:
        self.step, self.field, self.problem = step, field, problem
        where = f"{field!r} in step {step!r}" if field else f"step {step!r}"
        super().__init__(f"{where}: {problem}")


@dataclass(frozen=True)
class Answer:
    """One answered step: who answered, when, from which platform, and the values."""

    step: str
    values: Mapping[str, Any]
    by: str = ""
    at: str = ""
    platform: str = ""


@dataclass(frozen=True)
class Outcome:
    """Where the checklist ended, and everything it recorded on the way."""

    step: Step
    code: str
    shared: bool
    facts: Mapping[str, Any]
    missing: tuple[str, ...]


@dataclass(frozen=True)
class Progress:
    """The state after replaying the answers: a step waiting for an answer, or an outcome."""

    step: Step | None
    outcome: Outcome | None
    facts: Mapping[str, Any]
    urgent: bool = False
    notices: tuple[str, ...] = field(default_factory=tuple)

    @property
    def done(self) -> bool:
        """True once the checklist has reached an outcome."""
        return self.outcome is not None


def advance(policy: Policy, answers: Sequence[Answer]) -> Progress:
    """Replay `answers` from the start. Raises IllegalAnswer on the first illegal one."""
    facts: dict[str, Any] = {}
    current = resolve(policy, policy.start)
    urgent, notices = False, tuple[str, ...]()
    for answer in answers:
        if current.kind is StepKind.END:
            raise IllegalAnswer(answer.step, "the checklist has already ended")
        if answer.step != current.id:
            raise IllegalAnswer(answer.step, f"the checklist is waiting for step {current.id!r}")
        values = validate_answer(policy, current, answer.values, facts, replay=True)
        urgent = urgency_after(current, values, urgent)
        chosen = chosen_options(current, values)
        notices = tuple(o.notice for o in chosen if o.notice)
        _record(facts, current, values, answer)
        current = resolve(policy, next_step_id(current, values))
    facts["urgent"] = urgent
    return Progress(step=None if current.kind is StepKind.END else current,
                    outcome=_outcome(policy, current, facts) if current.kind is StepKind.END else None,
                    facts=facts, urgent=urgent, notices=notices)


def urgency_after(step: Step, values: Mapping[str, Any], urgent: bool) -> bool:
    """A case becomes urgent when an urgent option is chosen. Once a field that `sets_urgency`
    is answered (the DSL confirming the threshold), urgency follows that answer alone.
    """
    for f in step.fields:
        option = f.option(str(values.get(f.key))) if f.type is FieldType.CHOICE else None
        if option is None:
            continue
        urgent = option.urgent if f.sets_urgency else urgent or option.urgent
    return urgent


def _record(facts: dict[str, Any], step: Step, values: Mapping[str, Any], answer: Answer) -> None:
    facts.update(values)
    facts.update(step.sets)
    visits = f"_visits.{step.id}"  # how often each step was answered: keys repeat visits apart
    facts[visits] = facts.get(visits, 0) + 1
    if step.signs:
        facts[step.signs] = {"by": answer.by, "at": answer.at, "platform": answer.platform, "step": step.id}


def _outcome(policy: Policy, end: Step, facts: dict[str, Any]) -> Outcome:
    facts["outcome"] = end.end
    if not end.shared:
        facts["decision"] = "not_share"
    code = str(end.end)
    return Outcome(step=end, code=code, shared=end.shared, facts=facts, missing=missing_at_end(policy, code, facts))


def missing_at_end(policy: Policy, code: str, facts: Mapping[str, Any]) -> tuple[str, ...]:
    """What a case that reached outcome `code` still lacks: the records every outcome of its kind
    needs, and the facts the policy says every path records (the child's views, G4).
    """
    missing = missing_records(code, facts)
    return missing + tuple(k for k in policy.every_path_records if k not in missing and not is_recorded(facts.get(k)))


def resolve(policy: Policy, step_id: str) -> Step:
    """The step with this id, following route steps (which route on a policy setting)."""
    step = policy.steps[step_id]
    seen = set()
    while step.kind is StepKind.ROUTE:
        if step.id in seen:
            raise IllegalAnswer(step.id, "route steps form a loop")
        seen.add(step.id)
        assert step.next is not None and not isinstance(step.next, str)  # noqa: S101 - loader guarantees
        step = policy.steps[step.next.cases[str(policy.settings[step.next.by])]]
    return step


def next_step_id(step: Step, values: Mapping[str, Any]) -> str:
    """Where an answered step leads."""
    if isinstance(step.next, str):
        return step.next
    if step.next is None:
        raise IllegalAnswer(step.id, "the step has no next step")
    value = values.get(step.next.by)
    key = ("any" if value else "none") if isinstance(value, list) else str(value)
    return step.next.cases[key]


def chosen_options(step: Step, values: Mapping[str, Any]) -> list[Option]:
    """The options picked in a validated answer."""
    picked = []
    for f in step.fields:
        if f.type is FieldType.CHOICE and (option := f.option(str(values.get(f.key)))):
            picked.append(option)
    return picked


def allowed_options(f: Field, facts: Mapping[str, Any]) -> tuple[Option, ...]:
    """A choice field's options, less those an earlier answer rules out (`unless`)."""
    return tuple(o for o in f.options if not any(facts.get(k) == v for k, v in o.unless.items()))


def validate_answer(policy: Policy, step: Step, values: Mapping[str, Any], facts: Mapping[str, Any], *,
                    replay: bool = False, now: datetime | None = None) -> dict[str, Any]:
    """Check and normalise the values for `step`. Returns only recorded (non-empty) values.

    `replay`: the values were stored after being checked, so they are not checked again (a
    sensitive value is stored encrypted: its token is longer than what was typed, and is no
    date), nor is a field the policy has made required since (a case keeps replaying when its
    policy asks more; the outcome's `missing` says what it lacks). `now` (default: the system
    clock) is what "not in the future" means.
    """
    if not isinstance(values, Mapping):
        raise IllegalAnswer(step.id, "an answer must be a mapping of field to value")
    unknown = set(values) - {f.key for f in step.fields}
    if unknown:
        raise IllegalAnswer(step.id, f"unknown field(s) {sorted(unknown)}")
    clean: dict[str, Any] = {}
    for f in step.fields:
        value = _normalise(policy, step, f, values.get(f.key), facts, replay)
        if value not in (None, "") and f.no_future and not replay:
            _not_future(step, f, value, now or datetime.now(UTC))
        if value not in (None, ""):
            clean[f.key] = value
    for f in step.fields:
        if f.key not in clean and _is_required(f, clean) and not replay:
            raise IllegalAnswer(step.id, "is required", f.key)
    return clean


def _is_required(f: Field, clean: Mapping[str, Any]) -> bool:
    if f.type is FieldType.REASONS:
        return False  # "none of these applies" is a valid answer
    if f.required_if_any:
        return bool(clean.get(f.required_if_any))
    return not f.optional


def _normalise(policy: Policy, step: Step, f: Field, raw: Any, facts: Mapping[str, Any], replay: bool) -> Any:
    if raw is None:
        return [] if f.type is FieldType.REASONS else None
    if replay and f.sensitive:  # an encrypted token, checked before it was stored
        return _text(step, f, raw, limit=None)
    if f.type in TEXT_LIMITS or f.type is FieldType.ASSIGNEE:
        return _text(step, f, raw, limit=None if replay else text_limit(f))
    if f.type is FieldType.CHOICE:
        if str(raw) not in {o.value for o in allowed_options(f, facts)}:
            raise IllegalAnswer(step.id, "is not one of the allowed choices", f.key)
        return str(raw)
    if f.type is FieldType.DUE:
        return _due(step, f, raw)
    if f.type is FieldType.DATE:
        return _date(step, f, raw)
    if f.type is FieldType.DATETIME:
        return _datetime(step, f, raw)
    codes = policy.reason_codes if f.type is FieldType.REASONS else [c for c in policy.legal_references if not c.historical]
    return _codes(step, f, raw, {c.code for c in codes})


def text_limit(f: Field) -> int:
    """How many characters a text field takes (an assignee is an id or an email)."""
    return TEXT_LIMITS.get(f.type, 254)


def _text(step: Step, f: Field, raw: Any, *, limit: int | None) -> str:
    if not isinstance(raw, str):
        raise IllegalAnswer(step.id, "must be text", f.key)
    text = raw.strip()
    if limit is not None and len(text) > limit:
        raise IllegalAnswer(step.id, f"is longer than {limit} characters", f.key)
    return text


def _due(step: Step, f: Field, raw: Any) -> str:
    try:
        when = datetime.fromisoformat(str(raw))
    except ValueError:
        raise IllegalAnswer(step.id, "must be a date and time (ISO 8601)", f.key) from None
    if when.tzinfo is None:
        raise IllegalAnswer(step.id, "must include a UTC offset", f.key)
    return when.isoformat()


def _datetime(step: Step, f: Field, raw: Any) -> str:
    problem = "must be a date and time, such as 2026-11-24 08:45"
    try:
        when = datetime.fromisoformat(str(raw).strip())
    except ValueError:
        raise IllegalAnswer(step.id, problem, f.key) from None
    if when.tzinfo is None:  # each front end says whose time it is (the school's, or the picker's UTC)
        raise IllegalAnswer(step.id, problem + " with its time zone", f.key)
    return when.isoformat()


def _not_future(step: Step, f: Field, value: str, now: datetime) -> None:
    """A birth or an event has happened: a date after today (anywhere), or a time ahead of the clock, is refused."""
    if f.type is FieldType.DATE:
        late = date.fromisoformat(value) > (now + DAY_AHEAD).date()
    else:
        late = datetime.fromisoformat(value) > now + CLOCK_SKEW
    if late:
        raise IllegalAnswer(step.id, NOT_FUTURE, f.key)


def _date(step: Step, f: Field, raw: Any) -> str:
    try:
        return date.fromisoformat(str(raw).strip()).isoformat()
    except ValueError:
        raise IllegalAnswer(step.id, "must be a date such as 2026-12-08 (year-month-day)", f.key) from None


def _codes(step: Step, f: Field, raw: Any, known: set[str]) -> list[str]:
    items = [raw] if isinstance(raw, str) else raw
    if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
        raise IllegalAnswer(step.id, "must be a list of codes", f.key)
    unknown = sorted(set(items) - known)
    if unknown:
        raise IllegalAnswer(step.id, f"unknown code(s) {unknown}", f.key)
    return list(dict.fromkeys(items))
