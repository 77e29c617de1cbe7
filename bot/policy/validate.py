"""Checks a built policy: the graph is sound, every id is covered, and every path through
the checklist records what GUIDANCE.md requires and never ends unshared on the
significant-harm branch (S2). The path checks drive the real checklist engine.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from bot.checklist import (
    Answer,
    IllegalAnswer,
    Progress,
    advance,
    allowed_options,
    next_step_id,
    resolve,
    validate_answer,
)
from bot.policy.loader import covered_ids
from bot.policy.model import (
    FREE_TEXT,
    READ_BY_THE_BOT,
    RESERVED_KEYS,
    Actor,
    Field,
    FieldType,
    Policy,
    Step,
    StepKind,
    Switch,
)
from bot.policy.requirements import CONTEXT_FACTS, REQUIREMENT_IDS, required_records

Problems = list[tuple[int, str]]
SETTING_VALUES = {"consent_model": ("seek", "inform", "dsl_choice")}
KNOWN_ROLES = frozenset({"staff", "dsl", "deputy", "admin"})
FIELD_KEY = re.compile(r"[a-z][a-z0-9_]{0,63}")  # a form input's id on every platform
MAX_VISITS = 2  # a step may repeat once on a path; longer loops add no new outcomes


def validate_policy(policy: Policy, settings_lines: dict[str, int]) -> Problems:
    """Every problem with the policy, as (line, message)."""
    problems = _settings_problems(policy, settings_lines)
    for step in policy.steps.values():
        problems += _step_problems(policy, step)
    if policy.start not in policy.steps:
        problems.append((settings_lines.get("start", 1), f"start {policy.start!r} is not a step"))
    else:
        problems += _danger_first_problems(policy, settings_lines.get("start", 1))
    missing = [rid for rid in REQUIREMENT_IDS if rid not in covered_ids(policy)]
    if missing:
        problems.append((settings_lines.get("steps", 1), f"requirement ids not covered by any rule: {', '.join(missing)}"))
    if problems:
        return problems  # the graph checks below assume a well-formed graph
    problems += _reachability_problems(policy)
    return problems or _path_problems(policy)


def _danger_first_problems(policy: Policy, line: int) -> Problems:
    """G1: the first thing a teacher sees is one question, is the child in immediate danger?
    Its urgent answer carries the 999 / front-door notice, shown before anything is typed.
    """
    first = policy.steps[policy.start]
    if not first.danger_question:
        return [(line, f"start {policy.start!r} must be the immediate-danger question "
                       "(a step with danger_question: true), asked before anything else (G1)")]
    choices = [f for f in first.fields if f.type is FieldType.CHOICE]
    if first.actor is not Actor.STAFF or len(first.fields) != 1 or len(choices) != 1:
        return [(first.line, f"step {first.id!r}: the immediate-danger question must be one choice "
                             "answered by the member of staff (G1)")]
    if not any(o.urgent and o.notice for o in choices[0].options):
        return [(first.line, f"step {first.id!r}: the immediate-danger question needs an urgent option "
                             "with a notice (999 / front door) (G1)")]
    return []


def _settings_problems(policy: Policy, lines: dict[str, int]) -> Problems:
    s, problems = policy.settings, []
    if s.get("consent_model") not in SETTING_VALUES["consent_model"]:
        problems.append((lines.get("consent_model", lines["settings"]),
                         "settings.consent_model must be seek, inform or dsl_choice"))
    problems += _encryption_problems(policy, lines.get("encrypted_field_types", lines["settings"]))
    problems += _every_path_problems(policy, lines.get("every_path_records", lines["settings"]))
    labels = s.get("role_labels") or {}
    for role in ("dsl", "deputy", "staff"):
        if role not in labels:
            problems.append((lines.get("role_labels", lines["settings"]), f"settings.role_labels has no label for {role!r}"))
    for name, hours in (s.get("due_times") or {}).items():
        if not isinstance(hours, int | float) or hours <= 0:
            line = lines.get("due_times", lines["settings"])
            problems.append((line, f"settings.due_times.{name} must be a positive number"))
    return problems


def _encryption_problems(policy: Policy, line: int) -> Problems:
    """Free text may identify a child, a family or an agency's case: it is always encrypted. What
    the bot reads to route, project or schedule a case (choices, codes, the assignee, a due time)
    never is, so an encrypted value can never decide where a case goes.
    """
    listed = policy.settings.get("encrypted_field_types")
    if not isinstance(listed, list):
        return [(line, "settings.encrypted_field_types must list the field types stored encrypted "
                       "(at least text and longtext)")]
    known = {t.value for t in FieldType}
    problems = [(line, f"settings.encrypted_field_types: unknown field type {t!r}") for t in listed if t not in known]
    if missing := sorted(t.value for t in FREE_TEXT if t.value not in listed):
        problems.append((line, f"settings.encrypted_field_types leaves free text unencrypted: add {', '.join(missing)}"))
    if read := sorted(t.value for t in READ_BY_THE_BOT if t.value in listed):
        problems.append((line, f"settings.encrypted_field_types: {', '.join(read)} cannot be encrypted "
                               "(the bot reads them to route the case and schedule its reminders)"))
    return problems


def _every_path_problems(policy: Policy, line: int) -> Problems:
    listed = policy.settings.get("every_path_records", [])
    if not isinstance(listed, list):
        return [(line, "settings.every_path_records must be a list of field keys")]
    keys = {f.key for s in policy.steps.values() for f in s.fields}
    return [(line, f"settings.every_path_records: no step asks {k!r}") for k in listed if k not in keys]


def _step_problems(policy: Policy, step: Step) -> Problems:
    where, problems = f"step {step.id!r}", []
    for target in step.targets():
        if target not in policy.steps:
            problems.append((step.line_of("next"), f"{where}: next {target!r} is not a step"))
    if step.kind is StepKind.ASK and step.next is None:
        problems.append((step.line, f"{where}: has no next step"))
    if step.kind is StepKind.ASK and step.actor is Actor.DSL and not step.signs:
        # Every DSL decision records who made it, when and where: a path through an unsigned one
        # would reach its outcome with a decision nobody can be held to.
        problems.append((step.line, f"{where}: a DSL decision must be signed (signs: FACT, e.g. decided_by)"))
    if isinstance(step.next, Switch):
        problems += _switch_problems(policy, step, step.next)
    for f in step.fields:
        problems += _field_problems(policy, step, f)
    return problems


def _switch_problems(policy: Policy, step: Step, switch: Switch) -> Problems:
    where = f"step {step.id!r}"
    if step.kind is StepKind.ROUTE:
        known = set(SETTING_VALUES.get(switch.by, ()))
        if not known:
            return [(step.line, f"{where}: cannot route on setting {switch.by!r}")]
        # A route needs a case for the policy's own setting; cases for the other values may stay.
        expected = {str(policy.settings.get(switch.by))} | (set(switch.cases) & known)
    else:
        f = step.field(switch.by)
        if f is None or f.type not in (FieldType.CHOICE, FieldType.REASONS):
            return [(step.line, f"{where}: next.by {switch.by!r} must name a choice or reasons field of the step")]
        if f.sensitive:
            return [(step.line, f"{where}: cannot route on sensitive field {f.key!r}")]
        expected = {o.value for o in f.options} if f.type is FieldType.CHOICE else {"any", "none"}
    problems = []
    if missing := expected - set(switch.cases):
        setting = f" (settings.{switch.by})" if step.kind is StepKind.ROUTE else ""
        problems.append((step.line, f"{where}: no next step for {sorted(missing)}{setting}"))
    if extra := set(switch.cases) - expected:
        problems.append((step.line, f"{where}: next names values that cannot occur: {sorted(extra)}"))
    return problems


def _field_problems(policy: Policy, step: Step, f: Field) -> Problems:
    where, problems = f"step {step.id!r} field {f.key!r}", []
    all_keys = {g.key for s in policy.steps.values() for g in s.fields}
    if not FIELD_KEY.fullmatch(f.key) or f.key in RESERVED_KEYS:
        problems.append((f.line, f"{where}: a field key must be lower-case letters, digits and _ (starting with a "
                                 f"letter), and not one of {', '.join(sorted(RESERVED_KEYS))}"))
    if f.type is FieldType.DUE and f.due_hours not in (policy.settings.get("due_times") or {}):
        problems.append((f.line, f"{where}: due_hours must name a settings.due_times entry"))
    if f.roles and (f.type is not FieldType.ASSIGNEE or not set(f.roles) <= KNOWN_ROLES):
        problems.append((f.line, f"{where}: roles belong on an assignee field and must be among "
                                 f"{', '.join(sorted(KNOWN_ROLES))}"))
    problems += _type_problems(f, where)
    if f.required_if_any and step.field(f.required_if_any) is None:
        problems.append((f.line, f"{where}: required_if_any names no field of this step"))
    for o in f.options:
        for key in o.unless:
            if key not in all_keys:
                problems.append((o.line, f"{where}: option {o.value!r} unless names unknown field {key!r}"))
    twins = {g.sensitive for s in policy.steps.values() for g in s.fields if g.key == f.key}
    if len(twins) > 1:
        problems.append((f.line, f"{where}: sensitive in one step and not in another"))
    return problems


def _type_problems(f: Field, where: str) -> Problems:
    """What a field of this type may say: never encrypted if the bot reads it; dates may be past-only or remind."""
    problems = []
    if f.sensitive and f.type in READ_BY_THE_BOT:
        problems.append((f.line, f"{where}: a {f.type} field cannot be sensitive (encrypted): the bot reads it "
                                 "to route the case or schedule its reminders"))
    if f.no_future and f.type not in (FieldType.DATE, FieldType.DATETIME):
        problems.append((f.line, f"{where}: no_future belongs on a date or datetime field"))
    if f.reminds and f.type is not FieldType.DATE:
        problems.append((f.line, f"{where}: reminds belongs on a date field"))
    return problems


def _reachability_problems(policy: Policy) -> Problems:
    reachable, frontier = {policy.start}, [policy.start]
    while frontier:
        for target in policy.steps[frontier.pop()].targets():
            if target not in reachable:
                reachable.add(target)
                frontier.append(target)
    problems = [(s.line, f"step {s.id!r} is unreachable from start") for s in policy.steps.values() if s.id not in reachable]
    ends = {s.id for s in policy.steps.values() if s.kind is StepKind.END}
    leads_to_end = set(ends)
    changed = True
    while changed:
        changed = False
        for s in policy.steps.values():
            if s.id not in leads_to_end and any(t in leads_to_end for t in s.targets()):
                leads_to_end.add(s.id)
                changed = True
    problems += [(s.line, f"step {s.id!r}: no path from here reaches an outcome")
                 for s in policy.steps.values() if s.id in reachable and s.id not in leads_to_end]
    return problems


def _path_problems(policy: Policy) -> Problems:
    """Path problems, one line per kind of problem with a count of the states where it occurs
    and the shortest example path found (see PathState: polynomial in the policy's size).
    """
    found: dict[tuple[int, str], str] = {}
    for model in _models(policy):
        variant = dataclasses.replace(policy, settings={**policy.settings, "consent_model": model})
        for state, recorded in _outcome_states(variant).items():
            for (line, problem), missing in _state_problems(variant, state, recorded):
                if (line, problem) not in found:
                    found[(line, problem)] = _example(variant, state, missing)
    return [(line, f"{problem} (e.g. {example})") for (line, problem), example in found.items()]


def _models(policy: Policy) -> list[str]:
    """The consent models every route on the setting has a case for: a school may switch between them."""
    routes = [s.next.cases for s in policy.steps.values()
              if s.kind is StepKind.ROUTE and isinstance(s.next, Switch) and s.next.by == "consent_model"]
    return [m for m in SETTING_VALUES["consent_model"] if all(m in cases for cases in routes)]


@dataclass(frozen=True)
class PathState:
    """Where a path is, and the little about its history that requirements and routing depend
    on: whether it chose a significant-harm option, the values of the choices other steps rule
    options out by (`unless`) or requirements depend on, and whether any reason was given.

    Every path through the same state records at least the intersection of what the paths to
    it recorded (what is recorded only grows along a path), so a must-analysis over states
    finds exactly the problems that walking every path would, in time polynomial in the
    number of steps, however many yes/no steps are chained.
    """

    step: str
    significant_harm: bool
    context: frozenset[tuple[str, str]]


def _context_keys(policy: Policy) -> frozenset[str]:
    keys = {k for s in policy.steps.values() for f in s.fields for o in f.options for k in o.unless}
    return frozenset(keys | CONTEXT_FACTS)


def _outcome_states(policy: Policy) -> dict[PathState, frozenset[str]]:
    """For each state a path can end in, the facts every path ending there has recorded."""
    keys = _context_keys(policy)
    start = PathState(resolve(policy, policy.start).id, False, frozenset())
    must: dict[PathState, frozenset[str]] = {start: frozenset()}
    work = [start]
    while work:
        state = work.pop()
        step = policy.steps[state.step]
        if step.kind is StepKind.END:
            continue
        for nxt, gained, _ in _moves(policy, state, step, keys):
            recorded = must[state] | gained
            known = must.get(nxt)
            if known is None or not known <= recorded:  # meet: keep what every path has recorded
                must[nxt] = recorded if known is None else known & recorded
                work.append(nxt)
    return {s: r for s, r in must.items() if policy.steps[s.step].kind is StepKind.END}


Move = tuple[PathState, frozenset[str], str]  # where an answer leads, what it records, how to describe it


def _moves(policy: Policy, state: PathState, step: Step, keys: frozenset[str]) -> Iterator[Move]:
    facts = dict(state.context)
    for values in sample_answers(policy, step, facts):
        clean = validate_answer(policy, step, values, facts)
        chosen = [f.option(str(clean.get(f.key))) for f in step.fields if f.type is FieldType.CHOICE]
        harm = state.significant_harm or any(o is not None and o.significant_harm for o in chosen)
        context = {**facts, **{k: _context_value(v) for k, v in clean.items() if k in keys}}
        gained = {*clean, *step.sets, *([step.signs] if step.signs else [])}
        target = resolve(policy, next_step_id(step, clean))
        routed = step.next.by if isinstance(step.next, Switch) else None
        label = step.id + (f"[{routed}={_context_value(clean.get(routed))}]" if routed else "")
        yield PathState(target.id, harm, frozenset(context.items())), frozenset(gained), label


def _context_value(value: Any) -> str:
    return ("any" if value else "none") if isinstance(value, list) else str(value)


def _state_problems(policy: Policy, state: PathState, recorded: frozenset[str]) -> list[tuple[tuple[int, str], str | None]]:
    """Each problem of a path ending in `state`, with a fact some such path misses (None for S2)."""
    end = policy.steps[state.step]
    facts: dict[str, Any] = {k: "recorded" for k in recorded}
    facts.update({k: ([v] if v == "any" else []) if v in ("any", "none") else v for k, v in state.context})
    required = dict.fromkeys((*required_records(str(end.end), facts), *policy.every_path_records))
    missing = [k for k in required if k not in recorded]
    where = f"outcome {end.id!r}"
    problems: list[tuple[tuple[int, str], str | None]] = []
    if missing:
        problems.append(((end.line, _unrecorded(policy, where, missing)), missing[0]))
    if not end.shared and state.significant_harm:
        problems.append(((end.line, f"{where} is reached on the significant-harm branch but is not shared (S2)"), None))
    return problems


def _unrecorded(policy: Policy, where: str, missing: Sequence[str]) -> str:
    """"outcome X is reached without recording: a, b", naming the setting that asks for any of them on every path."""
    text = f"{where} is reached without recording: {', '.join(missing)}"
    if every := [k for k in missing if k in policy.every_path_records]:
        text += f"; every path must record {', '.join(every)} (settings.every_path_records)"
    return text


def _example(policy: Policy, target: PathState, missing: str | None) -> str:
    """The shortest path to `target` (never recording `missing`): a breadth-first walk of states."""
    keys = _context_keys(policy)
    start = PathState(resolve(policy, policy.start).id, False, frozenset())
    came: dict[PathState, tuple[PathState | None, str]] = {start: (None, "")}
    queue = [start]
    for state in queue:
        if state == target:
            break
        step = policy.steps[state.step]
        if step.kind is StepKind.END:
            continue
        for nxt, gained, label in _moves(policy, state, step, keys):
            if nxt not in came and (missing is None or missing not in gained):
                came[nxt] = (state, label)
                queue.append(nxt)
    labels, at = [], came.get(target, (None, ""))
    while at[0] is not None:
        labels.append(at[1])
        at = came[at[0]]
    return " > ".join(reversed(labels)) + f" > {target.step}"


def _outcome_problems(policy: Policy, progress: Progress, significant_harm: bool) -> Problems:
    outcome = progress.outcome
    assert outcome is not None  # noqa: S101 - enumerate_paths yields finished paths
    where = f"outcome {outcome.step.id!r}"
    problems = []
    if outcome.missing:
        problems.append((outcome.step.line, _unrecorded(policy, where, outcome.missing)))
    if not outcome.shared and significant_harm:
        problems.append((outcome.step.line, f"{where} is reached on the significant-harm branch but is not shared (S2)"))
    return problems


def is_significant_harm(policy: Policy, answers: list[Answer]) -> bool:
    """True when an answer chose an option marked significant_harm (a staff member's urgent view is not enough:
    the DSL confirms the threshold).
    """
    for a in answers:
        step = policy.steps[a.step]
        for f in step.fields:
            option = f.option(str(a.values.get(f.key))) if f.type is FieldType.CHOICE else None
            if option and option.significant_harm:
                return True
    return False


def describe_path(answers: list[Answer]) -> str:
    """A short readable form of a path, for error messages."""
    parts = []
    for a in answers:
        routed = [f"{k}={v}" for k, v in a.values.items() if k == a.step or k in ("threshold", "consent_outcome")]
        parts.append(a.step + (f"[{','.join(routed)}]" if routed else ""))
    return " > ".join(parts)


def enumerate_paths(policy: Policy) -> Iterator[tuple[list[Answer], Progress]]:
    """Every finished path through the checklist, with optional fields left empty."""
    stack: list[list[Answer]] = [[]]
    while stack:
        answers = stack.pop()
        progress = advance(policy, answers)
        if progress.done:
            yield answers, progress
            continue
        step = progress.step
        assert step is not None  # noqa: S101 - not done means a step waits
        if sum(a.step == step.id for a in answers) >= MAX_VISITS:
            continue
        for values in sample_answers(policy, step, progress.facts):
            stack.append([*answers, Answer(step=step.id, values=values, by="validator", at="validator")])


def sample_answers(policy: Policy, step: Step, facts: Any) -> list[dict[str, Any]]:
    """One answer per way the step can route; other fields get the least they accept."""
    routing = step.next.by if isinstance(step.next, Switch) else None
    per_field = []
    for f in step.fields:
        choices = _sample_values(policy, f, facts)
        per_field.append([(f.key, v) for v in (choices if f.key == routing else choices[:1])])
    answers = []
    for combo in itertools.product(*per_field):
        values = {k: v for k, v in combo if v is not None}
        try:
            validate_answer(policy, step, values, facts)
        except IllegalAnswer:
            values = _with_conditionals(policy, step, values)
        answers.append(values)
    return answers


def _with_conditionals(policy: Policy, step: Step, values: dict[str, Any]) -> dict[str, Any]:
    for f in step.fields:
        if f.required_if_any and values.get(f.required_if_any) and f.key not in values:
            values[f.key] = f.options[0].value if f.options else "recorded"
    return values


def _sample_values(policy: Policy, f: Field, facts: Any) -> list[Any]:
    if f.optional:
        return [None]
    if f.type is FieldType.CHOICE:
        return [o.value for o in allowed_options(f, facts)]
    if f.type is FieldType.REASONS:
        return [[], [policy.reason_codes[0].code]] if policy.reason_codes else [[]]
    if f.type is FieldType.LEGAL_REFS:
        return [[next(c.code for c in policy.legal_references if not c.historical)]]
    if f.type is FieldType.DUE:
        return ["2030-01-01T09:00:00+00:00"]
    if f.type is FieldType.DATE:
        return ["2020-01-01" if f.no_future else "2030-01-01"]
    if f.type is FieldType.DATETIME:
        return ["2020-01-01T09:00:00+00:00"]
    return ["recorded"]
