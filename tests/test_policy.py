"""The policy loader rejects a bad file with its name, line and problem; `policy check`."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from bot.policy.loader import DEFAULT_POLICY, PolicyError, load_policy
from bot.policy.requirements import REQUIREMENT_IDS
from tests.cli.harness import run_in_process

SOURCE = DEFAULT_POLICY.read_text()
CONSENTBOT = str(Path(sys.executable).with_name("consentbot"))


def broken(tmp_path: Path, old: str, new: str) -> Path:
    assert old in SOURCE, f"fixture text not in the policy: {old!r}"
    path = tmp_path / "broken.yaml"
    path.write_text(SOURCE.replace(old, new, 1))
    return path


def line_of(path: Path, text: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line)


def test_the_england_policy_loads_and_covers_every_requirement() -> None:
    policy = load_policy()
    assert (policy.id, policy.version, policy.consent_model) == ("england", "2026.1", "seek")
    assert policy.role_label("dsl") == "Designated Safeguarding Lead"
    assert policy.due_hours("urgent_outcome_hours") == 4


CASES = [
    ("unknown next", "    next: staff_threshold\n", "    next: immediate_dangr\n",
     "step 'concern': next 'immediate_dangr' is not a step", "    next: immediate_dangr"),
    ("path with no outcome", "    next: end_no_further_action\n", "    next: nfa_record\n",
     "step 'nfa_record': no path from here reaches an outcome", "  nfa_record:"),
    ("unknown id", "    ids: [G1]\n    options:", "    ids: [G99]\n    options:", "unknown requirement id 'G99'",
     "    ids: [G99]"),
    ("significant harm not shared",
     "          - {value: approve, label: Approve sharing without consent, ids: [S2]}\n    next: share\n",
     "          - {value: approve, label: Approve sharing without consent, ids: [S2]}\n"
     "          - {value: decline, label: Do not share}\n    next: {by: approve, approve: share, decline: nfa_record}\n",
     "outcome 'end_no_further_action' is reached on the significant-harm branch but is not shared (S2)",
     "  end_no_further_action:"),
    ("outcome without a required record", "      - key: decision_reasons\n        type: longtext\n"
     "        label: Reasons for sharing without consent",
     "      - key: decision_reasons\n        type: longtext\n        optional: true\n"
     "        label: Reasons for sharing without consent",
     "outcome 'end_shared' is reached without recording: decision_reasons", "  end_shared:"),
    ("consent model not a setting value", "  consent_model: seek\n", "  consent_model: maybe\n",
     "settings.consent_model must be seek, inform or dsl_choice", "  consent_model: maybe"),
    ("free text left unencrypted", "  encrypted_field_types: [text, longtext, date, datetime]\n",
     "  encrypted_field_types: [text, date, datetime]\n",
     "settings.encrypted_field_types leaves free text unencrypted: add longtext", "  encrypted_field_types:"),
    ("a type the bot routes on encrypted", "  encrypted_field_types: [text, longtext, date, datetime]\n",
     "  encrypted_field_types: [text, longtext, choice]\n",
     "settings.encrypted_field_types: choice cannot be encrypted", "  encrypted_field_types:"),
    ("an unknown encrypted type", "  encrypted_field_types: [text, longtext, date, datetime]\n",
     "  encrypted_field_types: [text, longtext, photo]\n",
     "settings.encrypted_field_types: unknown field type 'photo'", "  encrypted_field_types:"),
    ("a due time marked sensitive", "        due_hours: urgent_outcome_hours\n",
     "        due_hours: urgent_outcome_hours\n        sensitive: true\n",
     "field 'due_at': a due field cannot be sensitive (encrypted)", "      - key: due_at"),
    ("no_future on a text field", "        label: Child (name or school id)\n",
     "        label: Child (name or school id)\n        no_future: true\n",
     "field 'child': no_future belongs on a date or datetime field", "      - key: child"),
    ("every_path_records names no field", "  every_path_records: [understanding, child_views]\n",
     "  every_path_records: [understanding, child_voice]\n",
     "settings.every_path_records: no step asks 'child_voice'", "  every_path_records:"),
    ("a path without the child's views (G4)",
     "      - *understanding\n      - *child_views\n      - *review_date\n", "      - *review_date\n",
     "outcome 'end_no_further_action' is reached without recording: understanding, child_views; every path must "
     "record understanding, child_views (settings.every_path_records) (e.g. immediate_danger[immediate_danger=no] > "
     "concern > staff_threshold[staff_threshold=significant_harm] > dsl_threshold[threshold=no_further_action] > "
     "nfa_record > end_no_further_action)", "  end_no_further_action:"),
    ("the reasons-given branch without the child's views (G4)",
     "        required_if_any: reasons_not_to_ask\n        label: \"If any reason applies: the child's views",
     "        label: \"If any reason applies: the child's views",
     "outcome 'end_shared' is reached without recording: child_views; every path must record child_views "
     "(settings.every_path_records)",
     "  end_shared:"),
    ("danger question not first (G1)", "start: immediate_danger\n", "start: concern\n",
     "start 'concern' must be the immediate-danger question", "start: concern"),
    ("danger question unmarked (G1)", "    danger_question: true\n", "", "must be the immediate-danger question",
     "start: immediate_danger"),
    ("danger question without its 999 notice (G1)", "        notice: >-\n          Call 999,",
     "        help: >-\n          Call 999,", "needs an urgent option with a notice", "  immediate_danger:"),
    ("unsigned DSL decision", "  eh_assign:\n    actor: dsl\n    signs: assigned_by\n",
     "  eh_assign:\n    actor: dsl\n", "step 'eh_assign': a DSL decision must be signed", "  eh_assign:"),
    ("field key a form's own data uses", "      - key: seen_at\n", "      - key: case\n",
     "a field key must be lower-case letters, digits and _", "      - key: case"),
    ("field key with a dot", "      - key: seen_at\n", "      - key: seen.at\n",
     "a field key must be lower-case letters, digits and _", "      - key: seen.at"),
    ("bad yaml", "    title: Raise a concern\n", "    title: [Raise a concern\n", "not valid YAML", None),
]


@pytest.mark.parametrize(("name", "old", "new", "message", "line_text"), CASES, ids=[c[0] for c in CASES])
def test_a_bad_policy_is_rejected_with_file_line_and_problem(tmp_path: Path, name: str, old: str, new: str,
                                                              message: str | None, line_text: str | None) -> None:
    path = broken(tmp_path, old, new)
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    text = str(caught.value)
    assert str(path) in text
    assert message in text, text
    if line_text:
        assert f"{path}:{line_of(path, line_text)}: " in text, text


def test_dsl_choice_needs_its_case_on_the_route(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(SOURCE.replace("  consent_model: seek\n", "  consent_model: dsl_choice\n", 1)
                    .replace("      dsl_choice: sh_choose_model\n", "", 1))
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    assert (f"{path}:{line_of(path, '  sh_model:')}: step 'sh_model': no next step for ['dsl_choice'] "
            "(settings.consent_model)") in str(caught.value)


def test_without_a_dsl_choice_route_the_choice_step_is_unreachable(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(SOURCE.replace("      dsl_choice: sh_choose_model\n", "", 1))
    with pytest.raises(PolicyError, match="step 'sh_choose_model' is unreachable from start"):
        load_policy(path)  # the DSL's choice step is then unused, and the validator says so


def test_fields_are_encrypted_by_their_type_and_routing_never_reads_an_encrypted_value() -> None:
    from bot.policy.model import READ_BY_THE_BOT

    policy = load_policy()
    fields = {f.key: f for s in policy.steps.values() for f in s.fields}
    assert policy.settings["encrypted_field_types"] == ["text", "longtext", "date", "datetime"]
    for key in ("agency_ref", "consulted", "seen_at", "asked_at", "shared_at", "ack_received", "review_date",
                "child", "child_dob", "child_views"):
        assert fields[key].sensitive, key
    assert all(not f.sensitive for f in fields.values() if f.type in READ_BY_THE_BOT)
    assert not fields["due_at"].sensitive  # the case row's due time and the reminders read it


def test_every_path_records_the_childs_views_and_understanding() -> None:
    import dataclasses

    from bot.policy.validate import SETTING_VALUES, enumerate_paths

    policy = load_policy()
    assert policy.every_path_records == ("understanding", "child_views")
    ends = set()
    for model in SETTING_VALUES["consent_model"]:
        variant = dataclasses.replace(policy, settings={**policy.settings, "consent_model": model})
        for answers, progress in enumerate_paths(variant):
            assert progress.outcome is not None
            facts = progress.outcome.facts
            assert facts.get("understanding") and facts.get("child_views"), [a.step for a in answers]
            ends.add((model, progress.outcome.code, bool(facts.get("reasons_not_to_ask")),
                      facts.get("immediate_danger")))
    assert ("seek", "no_further_action", False, "no") in ends  # no referral: the child's views still recorded
    assert ("seek", "shared", True, "yes") in ends  # immediate danger, parents not asked
    assert ("dsl_choice", "shared", False, "no") in ends


def test_a_requirement_id_left_uncovered_is_named(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(re.sub(r"\bG4,\s*|,\s*G4\b|\bG4\b", "", SOURCE))
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    assert f"{path}:{line_of(path, 'steps:')}: requirement ids not covered by any rule: G4" in str(caught.value)


def test_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match=r"nope\.yaml:0: cannot read the file"):
        load_policy(tmp_path / "nope.yaml")


def test_an_unreachable_step_is_named(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(SOURCE + "\n  stray:\n    end: stray\n    shared: true\n    ids: [S2]\n")
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    assert f"{path}:{line_of(path, '  stray:')}: step 'stray' is unreachable from start" in str(caught.value)


def test_policy_check_command(tmp_path: Path) -> None:
    ok = subprocess.run([CONSENTBOT, "policy", "check", str(DEFAULT_POLICY)], capture_output=True, text=True)
    assert ok.returncode == 0 and "ok: policy england 2026.1" in ok.stdout
    bad = broken(tmp_path, "    next: staff_threshold\n", "    next: nowhere\n")
    failed = subprocess.run([CONSENTBOT, "policy", "check", str(bad)], capture_output=True, text=True)
    assert failed.returncode == 1
    assert re.search(rf"{re.escape(str(bad))}:\d+: step 'concern': next 'nowhere' is not a step", failed.stderr)


def test_requirement_ids_are_those_of_the_guidance() -> None:
    guidance = (Path(__file__).parents[2] / "shared/GUIDANCE.md")
    if not guidance.exists():
        guidance = Path(__file__).parents[1].parent / "shared/GUIDANCE.md"
    ids = re.findall(r"^\| ([SG]\d+) \|", guidance.read_text(), flags=re.M)
    assert tuple(ids) == REQUIREMENT_IDS


def test_policy_diagram_of_a_bad_file_is_a_clear_error(tmp_path: Path) -> None:
    bad = broken(tmp_path, "    next: staff_threshold\n", "    next: nowhere\n")
    done = run_in_process("policy", "diagram", str(bad), env={}, cwd=tmp_path)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "step 'concern': next 'nowhere' is not a step" in done.stderr


def chained(n: int, *, hole: bool = False) -> str:
    """The England policy with `n` yes/no steps chained after the concern (2**n paths through them);
    with `hole`, the last one's "no" skips the threshold, so that path ends without a DSL decision.
    """
    if n == 0:
        return SOURCE
    steps = ""
    for i in range(1, n + 1):
        after = f"q{i + 1}" if i < n else "staff_threshold"
        skip = "nfa_record" if hole and i == n else after
        steps += (f"  q{i}:\n    actor: staff\n    title: Question {i}\n    options:\n"
                  f"      - {{value: \"yes\", label: \"Yes\", next: {after}}}\n"
                  f"      - {{value: \"no\", label: \"No\", next: {skip}}}\n")
    return SOURCE.replace("    next: staff_threshold\n\n", "    next: q1\n\n" + steps + "\n", 1)


def test_a_long_chain_of_yes_no_steps_validates_and_a_hole_at_its_end_is_found(tmp_path: Path) -> None:
    good = tmp_path / "chain.yaml"
    good.write_text(chained(30))
    assert len(load_policy(good).steps) == len(load_policy().steps) + 30  # 2**30 paths: only states are walked
    bad = tmp_path / "hole.yaml"
    bad.write_text(chained(30, hole=True))
    with pytest.raises(PolicyError, match=r"outcome 'end_no_further_action' is reached without recording: "
                                          r"threshold, decided_by"):
        load_policy(bad)


PATH_CASES = [c for c in CASES if c[3].startswith("outcome ")]  # the problems found by walking paths


@pytest.mark.parametrize("broken_case", PATH_CASES, ids=[c[0] for c in PATH_CASES])
def test_walking_states_finds_exactly_what_walking_every_path_finds(tmp_path: Path, broken_case: tuple) -> None:
    import dataclasses

    from bot.policy.validate import SETTING_VALUES, _outcome_problems, enumerate_paths, is_significant_harm

    _, old, new, _, _ = broken_case
    path = broken(tmp_path, old, new)
    try:
        load_policy(path)
        found = set()
    except PolicyError as exc:
        found = {(line, message.split(" (e.g. ")[0]) for line, message in exc.problems}
    assert found and all(m.startswith("outcome ") for _, m in found)
    policy = load_policy_unchecked(path)
    walked = set()
    for model in SETTING_VALUES["consent_model"]:
        variant = dataclasses.replace(policy, settings={**policy.settings, "consent_model": model})
        for answers, progress in enumerate_paths(variant):
            walked |= set(_outcome_problems(variant, progress, is_significant_harm(variant, answers)))
    assert found == walked


def load_policy_unchecked(path: Path):  # type: ignore[no-untyped-def]
    from bot.policy import loader

    raw, text = loader._read_yaml(path)
    builder = loader._Builder(str(path), raw.get("settings") or {})
    return loader._build(builder, raw, str(path), "")


SHAPES = [
    ("steps: 5", "steps:\n", "steps: 5\n", "steps must be a mapping"),
    ("unless: [1]", 'unless: {immediate_danger: "yes"}', "unless: [1]", "unless must map an earlier field"),
]


@pytest.mark.parametrize(("name", "old", "new", "message"), SHAPES, ids=[s[0] for s in SHAPES])
def test_a_value_of_the_wrong_shape_is_one_line_naming_the_line(tmp_path: Path, name: str, old: str, new: str,
                                                                  message: str) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(SOURCE.replace(old, new, 1) if name != "steps: 5" else SOURCE.split("steps:\n")[0] + "steps: 5\n")
    done = run_in_process("policy", "check", str(path), env={}, cwd=tmp_path)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert re.search(rf"{re.escape(str(path))}:\d+: .*{message}", done.stderr), done.stderr


def test_a_latin_1_file_is_refused_with_its_line_not_a_traceback(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(SOURCE.replace("title: Raise a concern", "title: Raise a concérn", 1).encode("latin-1"))
    done = run_in_process("policy", "check", str(path), env={}, cwd=tmp_path)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    line = next(i for i, text in enumerate(SOURCE.splitlines(), 1) if "title: Raise a concern" in text)
    assert f"{path}:{line}: not UTF-8 text (byte 0xe9)" in done.stderr


def test_a_validated_policy_is_remembered_by_its_text_so_commands_do_not_walk_it_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    path = tmp_path / "p.yaml"
    path.write_text(SOURCE)
    load_policy(path)
    [mark] = list((tmp_path / "cache" / "consentbot" / "policies").iterdir())
    path.write_text(SOURCE + "\n# an edit\n")  # another text: validated again, remembered apart
    load_policy(path)
    assert len(list(mark.parent.iterdir())) == 2
    bad = broken(tmp_path, "    next: staff_threshold\n", "    next: nowhere\n")
    with pytest.raises(PolicyError):
        load_policy(bad)
    assert len(list(mark.parent.iterdir())) == 2  # a refused policy is never remembered
