"""Load a policy YAML file into `Policy`, rejecting a bad file with file, line and problem."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from bot.policy.model import Actor, Code, Field, FieldType, Option, Policy, Step, StepKind, Switch
from bot.policy.requirements import REQUIREMENT_IDS

BUILTIN_DIR = Path(__file__).parent
DEFAULT_POLICY = BUILTIN_DIR / "england.yaml"


class PolicyError(ValueError):
    """A policy file is invalid. `problems` holds (line, message) pairs."""

    def __init__(self, source: str, problems: list[tuple[int, str]]) -> None:
        self.source = source
        self.problems = sorted(problems)
        lines = [f"{source}:{line}: {message}" for line, message in self.problems]
        super().__init__("\n".join(lines))


class _LineDict(dict[str, Any]):
    """A mapping that remembers the line of each key (1-based) and its own line."""

    line = 0
    lines: dict[str, int]


# libyaml's parser where PyYAML was built with it (its wheels are): the same documents, nodes and
# line marks, parsed 8x faster (england.yaml: 38 -> 4.4 ms), and every command and `serve` loads
# a policy when it starts. The constructor stays PyYAML's safe one, so what may be built is unchanged.
_SAFE_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _LineLoader(_SAFE_LOADER):  # type: ignore[valid-type,misc]
    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> _LineDict:
        mapping = _LineDict({str(k): v for k, v in super().construct_mapping(node, deep=True).items()})
        mapping.line = node.start_mark.line + 1
        mapping.lines = {k.value: k.start_mark.line + 1 for k, _ in node.value if hasattr(k, "value")}
        return mapping


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _LineLoader.construct_mapping)


def _line(mapping: Any, key: str | None = None) -> int:
    if isinstance(mapping, _LineDict):
        return mapping.lines.get(key, mapping.line) if key else mapping.line
    return 0


class _Builder:
    """Turns the raw YAML into model objects, collecting every problem found."""

    def __init__(self, source: str, settings: Mapping[str, Any]) -> None:
        self.source = source
        self.settings = settings
        self.problems: list[tuple[int, str]] = []

    def fail(self, line: int, message: str) -> None:
        self.problems.append((line, message))

    def ids(self, raw: Mapping[str, Any], where: str) -> tuple[str, ...]:
        ids = raw.get("ids") or []
        if not isinstance(ids, list):
            self.fail(_line(raw, "ids"), f"{where}: ids must be a list")
            return ()
        for rid in ids:
            if rid not in REQUIREMENT_IDS:
                self.fail(_line(raw, "ids"), f"{where}: unknown requirement id {rid!r}")
        return tuple(str(i) for i in ids)

    def option(self, raw: Any, where: str) -> Option | None:
        if not isinstance(raw, Mapping) or "value" not in raw or "label" not in raw:
            self.fail(_line(raw), f"{where}: an option needs a value and a label")
            return None
        unless = raw.get("unless") or {}
        if not isinstance(unless, Mapping):
            self.fail(_line(raw, "unless"), f"{where}: unless must map an earlier field to a value, e.g. "
                                            "{immediate_danger: \"yes\"}")
            unless = {}
        return Option(
            value=str(raw["value"]), label=str(raw["label"]), ids=self.ids(raw, where),
            urgent=bool(raw.get("urgent", False)), notice=raw.get("notice"),
            significant_harm=bool(raw.get("significant_harm", False)),
            unless={str(k): str(v) for k, v in unless.items()}, line=_line(raw),
        )

    def field(self, raw: Any, where: str) -> Field | None:
        if not isinstance(raw, Mapping) or "key" not in raw:
            self.fail(_line(raw), f"{where}: a field needs a key")
            return None
        where = f"{where} field {raw['key']!r}"
        try:
            ftype = FieldType(raw.get("type", "text"))
        except ValueError:
            self.fail(_line(raw, "type"), f"{where}: unknown type {raw.get('type')!r}")
            return None
        options = tuple(o for o in (self.option(r, where) for r in raw.get("options") or []) if o)
        if ftype is FieldType.CHOICE and not options:
            self.fail(_line(raw), f"{where}: a choice needs options")
        return Field(
            key=str(raw["key"]), type=ftype, label=str(raw.get("label", raw["key"])),
            sensitive=bool(raw.get("sensitive", False)) or ftype.value in self.encrypted_types(),
            optional=bool(raw.get("optional", False)),
            options=options, due_hours=raw.get("due_hours"), required_if_any=raw.get("required_if_any"),
            sets_urgency=bool(raw.get("sets_urgency", False)), roles=tuple(str(r) for r in raw.get("roles") or ()),
            no_future=bool(raw.get("no_future", False)), reminds=bool(raw.get("reminds", False)),
            ids=self.ids(raw, where), line=_line(raw),
        )

    def encrypted_types(self) -> frozenset[str]:
        """The field types the policy stores encrypted (settings.encrypted_field_types)."""
        listed = self.settings.get("encrypted_field_types") or ()
        return frozenset(str(t) for t in listed) if isinstance(listed, list) else frozenset()

    def next_of(self, raw: Any, where: str) -> str | Switch | None:
        if raw is None or isinstance(raw, str):
            return raw
        if isinstance(raw, Mapping) and "by" in raw:
            cases = {str(k): str(v) for k, v in raw.items() if k != "by"}
            return Switch(by=str(raw["by"]), cases=cases)
        self.fail(_line(raw), f"{where}: next must be a step id or a mapping with 'by'")
        return None

    def step(self, step_id: str, raw: Any, line: int) -> Step | None:
        where = f"step {step_id!r}"
        if not isinstance(raw, Mapping):
            self.fail(line, f"{where}: must be a mapping")
            return None
        common: dict[str, Any] = {"id": step_id, "ids": self.ids(raw, where), "line": line,
                  "key_lines": dict(raw.lines) if isinstance(raw, _LineDict) else {}}
        if "end" in raw:
            return Step(kind=StepKind.END, end=str(raw["end"]), shared=bool(raw.get("shared")),
                        title=str(raw.get("label", raw["end"])), **common)
        if "route" in raw:
            cases = {str(k): str(v) for k, v in (raw.get("cases") or {}).items()}
            return Step(kind=StepKind.ROUTE, next=Switch(by=str(raw["route"]), cases=cases), **common)
        return self.ask_step(step_id, raw, where, common)

    def ask_step(self, step_id: str, raw: Mapping[str, Any], where: str, common: dict[str, Any]) -> Step | None:
        try:
            actor = Actor(str(raw.get("actor")))
        except ValueError:
            self.fail(_line(raw, "actor"), f"{where}: actor must be one of {[a.value for a in Actor]}")
            return None
        title = str(raw.get("title", step_id))
        if "options" in raw:  # shorthand: one choice question whose options say where next
            options = tuple(o for o in (self.option(r, where) for r in raw["options"]) if o)
            fields: tuple[Field, ...] = (Field(key=step_id, type=FieldType.CHOICE, label=title, options=options),)
            targets = {str(r["value"]): str(r.get("next")) for r in raw["options"] if isinstance(r, Mapping)}
            nxt: str | Switch | None = Switch(by=step_id, cases=targets)
        else:
            fields = tuple(f for f in (self.field(r, where) for r in raw.get("fields") or []) if f)
            nxt = self.next_of(raw.get("next"), where)
        return Step(kind=StepKind.ASK, actor=actor, title=title, help=self.help(raw, where), fields=fields,
                    next=nxt, signs=raw.get("signs"), sets={str(k): str(v) for k, v in (raw.get("sets") or {}).items()},
                    approval=bool(raw.get("approval", False)),
                    danger_question=bool(raw.get("danger_question", False)), **common)

    def help(self, raw: Mapping[str, Any], where: str) -> str | None:
        """Help text; `{name[key]}` is filled from the settings (e.g. the parental duty statement, S3)."""
        text = raw.get("help")
        if text is None:
            return None
        try:
            return str(text).format_map(self.settings)
        except (KeyError, IndexError, ValueError) as exc:
            self.fail(_line(raw, "help"), f"{where}: help names a setting that does not exist: {exc}")
            return str(text)

    def codes(self, raw: Any, section: str) -> tuple[Code, ...]:
        out = []
        for item in raw or []:
            if not isinstance(item, Mapping) or "code" not in item or "label" not in item:
                self.fail(_line(item), f"{section}: each entry needs a code and a label")
                continue
            out.append(Code(code=str(item["code"]), label=str(item["label"]),
                            ids=self.ids(item, f"{section} {item['code']!r}"),
                            historical=bool(item.get("historical", False))))
        return tuple(out)


def _read_yaml(path: Path) -> Any:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PolicyError(str(path), [(0, f"cannot read the file: {exc.strerror}")]) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise PolicyError(str(path), [(line, f"not UTF-8 text (byte {data[exc.start]:#04x}): save the file as UTF-8")]) \
            from None
    try:
        return yaml.load(text, Loader=_LineLoader), text  # noqa: S506 - _LineLoader is a SafeLoader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else 0
        raise PolicyError(str(path), [(line, f"not valid YAML: {getattr(exc, 'problem', exc)}")]) from None


def load_policy(path: str | Path = DEFAULT_POLICY) -> Policy:
    """Load, build and fully validate a policy file. Raises PolicyError naming every problem.

    A file that validated before (same text, same validator) is not walked again: see `_cache_mark`.
    """
    path = Path(path)
    raw, text = _read_yaml(path)
    if not isinstance(raw, Mapping):
        raise PolicyError(str(path), [(1, "the file must be a mapping with policy, settings and steps")])
    try:
        return _checked(path, raw, text)
    except PolicyError:
        raise
    except (AttributeError, TypeError, KeyError, ValueError, IndexError) as exc:
        # A value of an unexpected shape deep in the file: still one line, never a traceback.
        raise PolicyError(str(path), [(0, f"a value has the wrong shape for a policy ({type(exc).__name__}): "
                                          "compare the file with bot/policy/england.yaml")]) from None


def _checked(path: Path, raw: Mapping[str, Any], text: str) -> Policy:
    from bot.policy.validate import validate_policy  # the validator runs the checklist engine

    builder = _Builder(str(path), raw.get("settings") or {})
    policy = _build(builder, raw, str(path), hashlib.sha256(text.encode()).hexdigest())
    if builder.problems or policy is None:
        raise PolicyError(str(path), builder.problems)
    mark = _cache_mark(text)
    if mark is not None and mark.exists():
        return policy
    problems = validate_policy(policy, settings_lines=_settings_lines(raw))
    if problems:
        raise PolicyError(str(path), problems)
    _remember(mark)
    return policy


def _cache_mark(text: str) -> Path | None:
    """Where a validated policy is remembered, keyed by its text and the validator's own code,
    so a change to either validates again. None when there is no cache folder to use.
    """
    code = b"".join(p.read_bytes() for p in sorted(BUILTIN_DIR.glob("*.py")))
    code += (BUILTIN_DIR.parent / "checklist.py").read_bytes()
    key = hashlib.sha256(text.encode() + code).hexdigest()
    root = os.environ.get("XDG_CACHE_HOME") or (Path.home() / ".cache")
    return Path(root) / "consentbot" / "policies" / key


def _remember(mark: Path | None) -> None:
    if mark is None:
        return
    try:
        mark.parent.mkdir(parents=True, exist_ok=True)
        mark.touch()
    except OSError:
        pass  # a read-only home: validate each time (it takes a few milliseconds)


def _settings_lines(raw: Mapping[str, Any]) -> dict[str, int]:
    settings = raw.get("settings")
    lines = dict(settings.lines) if isinstance(settings, _LineDict) else {}
    lines["settings"] = _line(raw, "settings")
    lines["referral_form"] = _line(raw, "referral_form")
    lines["start"] = _line(raw, "start")
    lines["steps"] = _line(raw, "steps")
    return lines


def _build(builder: _Builder, raw: Mapping[str, Any], source: str, sha256: str) -> Policy | None:
    for key in ("policy", "settings", "steps", "start"):
        if key not in raw:
            builder.fail(1, f"missing top-level section {key!r}")
    for key in ("policy", "settings", "steps"):
        if key in raw and not isinstance(raw[key], Mapping):
            builder.fail(_line(raw, key), f"{key} must be a mapping (names with values beneath them), "
                                          f"not {type(raw[key]).__name__}")
    if builder.problems:
        return None
    meta, settings = raw["policy"], raw["settings"]
    raw_steps = raw["steps"]
    built = ((str(k), builder.step(str(k), v, _line(raw_steps, k))) for k, v in raw_steps.items())
    steps = {k: s for k, s in built if s}
    referral = raw.get("referral_form") or {}
    section_ids = {"settings": builder.ids(settings, "settings"), "referral_form": builder.ids(referral, "referral_form")}
    return Policy(
        id=str(meta.get("id", "")), version=str(meta.get("version", "")), nation=str(meta.get("nation", "")),
        title=str(meta.get("title", "")), disclaimer=str(meta.get("disclaimer", "")),
        settings=dict(settings), reason_codes=builder.codes(raw.get("reason_codes"), "reason_codes"),
        legal_references=builder.codes(raw.get("legal_references"), "legal_references"),
        referral_form=dict(referral.get("fields") or {}), start=str(raw["start"]), steps=steps,
        source=source, sha256=sha256, section_ids=section_ids,
    )


def covered_ids(policy: Policy) -> set[str]:
    """Every requirement id some part of the policy names."""
    ids = {rid for section in policy.section_ids.values() for rid in section}
    for step in policy.steps.values():
        ids.update(step.ids)
        for f in step.fields:
            ids.update(f.ids)
            for o in f.options:
                ids.update(o.ids)
    for code in (*policy.reason_codes, *policy.legal_references):
        ids.update(code.ids)
    return ids
