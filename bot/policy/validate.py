"""Checks a built policy: the graph is sound, every id is covered, and every path through
the checklist records what GUIDANCE.md requires and never ends unshared on the
significant-harm branch (S2). The path checks drive the real checklist engine.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterator
from typing import Any

from bot.checklist import Answer, IllegalAnswer, Progress, advance, allowed_options, validate_answer
from bot.policy.loader import covered_ids
from bot.policy.model import Actor, Field, FieldType, Policy, Step, StepKind, Switch
from bot.policy.requirements import REQUIREMENT_IDS

Problems = list[tuple[int, str]]
SETTING_VALUES = {"consent_model": ("seek", "inform")}
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
        problems.append((lines.get("consent_model", lines["settings"]), "settings.consent_model must be seek or inform"))
    labels = s.get("role_labels") or {}
    for role in ("dsl", "deputy", "staff"):
        if role not in labels:
            problems.append((lines.get("role_labels", lines["settings"]), f"settings.role_labels has no label for {role!r}"))
    for name, hours in (s.get("due_times") or {}).items():
        if not isinstance(hours, int | float) or hours <= 0:
            line = lines.get("due_times", lines["settings"])
            problems.append((line, f"settings.due_times.{name} must be a positive number"))
    return problems


def _step_problems(policy: Policy, step: Step) -> Problems:
    where, problems = f"step {step.id!r}", []
    for target in step.targets():
        if target not in policy.steps:
            problems.append((step.line_of("next"), f"{where}: next {target!r} is not a step"))
    if step.kind is StepKind.ASK and step.next is None:
        problems.append((step.line, f"{where}: has no next step"))
    if isinstance(step.next, Switch):
        problems += _switch_problems(policy, step, step.next)
    for f in step.fields:
        problems += _field_problems(policy, step, f)
    return problems


def _switch_problems(policy: Policy, step: Step, switch: Switch) -> Problems:
    where = f"step {step.id!r}"
    if step.kind is StepKind.ROUTE:
        expected = set(SETTING_VALUES.get(switch.by, ()))
        if not expected:
            return [(step.line, f"{where}: cannot route on setting {switch.by!r}")]
    else:
        f = step.field(switch.by)
        if f is None or f.type not in (FieldType.CHOICE, FieldType.REASONS):
            return [(step.line, f"{where}: next.by {switch.by!r} must name a choice or reasons field of the step")]
        if f.sensitive:
            return [(step.line, f"{where}: cannot route on sensitive field {f.key!r}")]
        expected = {o.value for o in f.options} if f.type is FieldType.CHOICE else {"any", "none"}
    problems = []
    if missing := expected - set(switch.cases):
        problems.append((step.line, f"{where}: no next step for {sorted(missing)}"))
    if extra := set(switch.cases) - expected:
        problems.append((step.line, f"{where}: next names values that cannot occur: {sorted(extra)}"))
    return problems


def _field_problems(policy: Policy, step: Step, f: Field) -> Problems:
    where, problems = f"step {step.id!r} field {f.key!r}", []
    all_keys = {g.key for s in policy.steps.values() for g in s.fields}
    if f.type is FieldType.DUE and f.due_hours not in (policy.settings.get("due_times") or {}):
        problems.append((f.line, f"{where}: due_hours must name a settings.due_times entry"))
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
    """Path problems, one line per kind of problem with a count and the shortest example."""
    found: dict[tuple[int, str], list[str]] = {}
    for model in SETTING_VALUES["consent_model"]:
        variant = dataclasses.replace(policy, settings={**policy.settings, "consent_model": model})
        for answers, progress in enumerate_paths(variant):
            for line, problem in _outcome_problems(variant, progress, is_significant_harm(variant, answers)):
                found.setdefault((line, problem), []).append(describe_path(answers))
    return [(line, f"{problem} ({len(paths)} path(s), e.g. {min(paths, key=len)})")
            for (line, problem), paths in found.items()]


def _outcome_problems(policy: Policy, progress: Progress, significant_harm: bool) -> Problems:
    outcome = progress.outcome
    assert outcome is not None  # noqa: S101 - enumerate_paths yields finished paths
    where = f"outcome {outcome.step.id!r}"
    problems = []
    if outcome.missing:
        problems.append((outcome.step.line, f"{where} is reached without recording: {', '.join(outcome.missing)}"))
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
            values[f.key] = "recorded"
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
        return ["2030-01-01"]
    return ["recorded"]
