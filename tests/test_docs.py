"""Docs that must stay true: the traceability table and the generated flow diagram."""

from __future__ import annotations

import re
from pathlib import Path

from bot.policy.diagram import render_markdown
from bot.policy.model import Policy
from bot.policy.requirements import REQUIREMENT_IDS
from tests.conftest import england

ROOT = Path(__file__).parents[1]
POLICY = england()


def table() -> dict[str, tuple[list[str], list[str]]]:
    rows = {}
    for line in (ROOT / "docs/traceability.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and re.fullmatch(r"[SG]\d+", cells[0]):
            rows[cells[0]] = ([r.strip() for r in cells[2].split(",")], [t.strip() for t in cells[3].split(",")])
    return rows


def rule_ids(policy: Policy, rule: str) -> set[str]:
    kind, _, name = rule.partition(".")
    if kind == "steps":
        step = policy.steps[name]
        return set(step.ids) | {i for f in step.fields for i in (*f.ids, *(x for o in f.options for x in o.ids))}
    if kind in ("reason_codes", "legal_references"):
        return set(next(c for c in getattr(policy, kind) if c.code == name).ids)
    return set(policy.section_ids[kind])


def test_every_requirement_is_traced_to_an_existing_rule_and_test() -> None:
    rows = table()
    assert sorted(rows) == sorted(REQUIREMENT_IDS)
    for rid, (rules, tests) in rows.items():
        for rule in rules:
            assert rid in rule_ids(POLICY, rule), f"{rid}: {rule} does not carry the id"
        for test in tests:
            path, _, name = test.partition("::")
            assert re.search(rf"^(async )?def {name}\(", (ROOT / path).read_text(), re.M), f"{rid}: no test {test}"


def test_the_flow_diagram_in_docs_is_current() -> None:
    assert (ROOT / "docs/checklist-flow.md").read_text() == render_markdown(POLICY), (
        "docs/checklist-flow.md is out of date: run `make diagram`")


def test_the_parental_duty_statement_is_shown_where_parents_are_asked() -> None:
    statement = POLICY.settings["parental_duty_statement"]["text"]
    assert statement in (POLICY.steps["sh_seek_outcome"].help or "")
    assert "does not replace asking" in (POLICY.steps["sh_seek_outcome"].help or "")
