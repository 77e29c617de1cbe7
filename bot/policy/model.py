"""The checklist policy as typed, immutable data. Built by `loader.load_policy`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

ASSIGNABLE = ("staff", "dsl", "deputy")
# A form's own data beside the answers: Teams merges each input's value into its button's data
# under the input's id, so a field named like one of these would overwrite it.
# "school": the question a person of several schools is asked first (bot/screens.py SCHOOL).
RESERVED_KEYS = frozenset({"consentbot", "step", "case", "version", "nonce", "quoted", "msteams", "school"})


class Actor(StrEnum):
    """Who answers a step."""

    STAFF = "staff"  # the member of staff who raised the concern
    DSL = "dsl"  # a DSL or deputy of the case's school
    ASSIGNEE = "assignee"  # the person assigned to contact the parents (or a DSL)


class FieldType(StrEnum):
    """What kind of value a field takes."""

    TEXT = "text"
    LONGTEXT = "longtext"
    CHOICE = "choice"
    REASONS = "reasons"  # several of the policy's reason codes (may be none)
    LEGAL_REFS = "legal_refs"  # one or more of the policy's current legal references
    ASSIGNEE = "assignee"  # a member of staff of the same school (their id)
    DUE = "due"  # an ISO 8601 date-time with an offset (a deadline: read by reminders, so never encrypted)
    DATE = "date"  # a calendar date, YYYY-MM-DD
    DATETIME = "datetime"  # when something happened: an ISO 8601 date-time with an offset


# Types the bot itself reads to route a case, project it or schedule its reminders: a value of
# one of these is never encrypted (the validator refuses a policy that asks for it).
READ_BY_THE_BOT = frozenset({FieldType.CHOICE, FieldType.REASONS, FieldType.LEGAL_REFS, FieldType.ASSIGNEE,
                             FieldType.DUE})
FREE_TEXT = frozenset({FieldType.TEXT, FieldType.LONGTEXT})  # always encrypted (the validator insists)


class StepKind(StrEnum):
    """A step asks someone, routes on a setting, or ends the checklist."""

    ASK = "ask"
    ROUTE = "route"
    END = "end"


@dataclass(frozen=True)
class Option:
    """One choice of a choice field."""

    value: str
    label: str
    ids: tuple[str, ...] = ()
    urgent: bool = False
    notice: str | None = None
    significant_harm: bool = False
    unless: Mapping[str, str] = field(default_factory=dict)
    line: int = 0


@dataclass(frozen=True)
class Field:
    """One question inside a step."""

    key: str
    type: FieldType
    label: str
    sensitive: bool = False  # stored encrypted: its type is in settings.encrypted_field_types, or it says so
    optional: bool = False
    options: tuple[Option, ...] = ()
    due_hours: str | None = None
    required_if_any: str | None = None
    sets_urgency: bool = False  # the chosen option's `urgent` replaces the case's urgency (the DSL's view)
    roles: tuple[str, ...] = ()  # an assignee field: the roles that may be assigned (default ASSIGNABLE)
    no_future: bool = False  # a date or date-time of something that has happened (a birth, an event)
    reminds: bool = False  # a date the DSL is reminded of on that day (the review date)
    ids: tuple[str, ...] = ()
    line: int = 0

    def assignable(self) -> tuple[str, ...]:
        """The roles an assignee field allows: the policy's, else staff, DSLs and deputies (never admins)."""
        return self.roles or ASSIGNABLE

    def option(self, value: str) -> Option | None:
        """The option with this value, if there is one."""
        return next((o for o in self.options if o.value == value), None)


@dataclass(frozen=True)
class Switch:
    """Route on the value of a field of the step (or, for a route step, a setting)."""

    by: str
    cases: Mapping[str, str]


@dataclass(frozen=True)
class Step:
    """A node of the checklist graph."""

    id: str
    kind: StepKind
    title: str = ""
    actor: Actor | None = None
    help: str | None = None
    fields: tuple[Field, ...] = ()
    next: str | Switch | None = None
    signs: str | None = None  # fact that records who answered this step, and when
    sets: Mapping[str, str] = field(default_factory=dict)
    approval: bool = False
    danger_question: bool = False  # G1: the immediate-danger question every policy must ask first
    end: str | None = None
    shared: bool = False
    ids: tuple[str, ...] = ()
    line: int = 0  # the line of the step's id
    key_lines: Mapping[str, int] = field(default_factory=dict)  # the line of each of its keys

    def line_of(self, key: str) -> int:
        """The line of one of the step's keys (e.g. `next`), else of the step."""
        return self.key_lines.get(key, self.line)

    def field(self, key: str) -> Field | None:
        """The field with this key, if the step has one."""
        return next((f for f in self.fields if f.key == key), None)

    def targets(self) -> tuple[str, ...]:
        """Every step this one can lead to."""
        if self.next is None:
            return ()
        if isinstance(self.next, str):
            return (self.next,)
        return tuple(self.next.cases.values())


@dataclass(frozen=True)
class Code:
    """A reason code or a legal reference."""

    code: str
    label: str
    ids: tuple[str, ...] = ()
    historical: bool = False


@dataclass(frozen=True)
class Policy:
    """A validated checklist policy."""

    id: str
    version: str
    nation: str
    title: str
    disclaimer: str
    settings: Mapping[str, Any]
    reason_codes: tuple[Code, ...]
    legal_references: tuple[Code, ...]
    referral_form: Mapping[str, str]
    start: str
    steps: Mapping[str, Step]
    source: str = ""
    sha256: str = ""
    section_ids: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def consent_model(self) -> str:
        """`seek`, `inform` or `dsl_choice` (the DSL picks per case) on the significant-harm branch (G2)."""
        return str(self.settings["consent_model"])

    @property
    def every_path_records(self) -> tuple[str, ...]:
        """Facts every path to an outcome must record (e.g. the child's views, G4)."""
        return tuple(str(k) for k in self.settings.get("every_path_records") or ())

    def role_label(self, role: str) -> str:
        """The school's name for a role (Wales: Designated Safeguarding Person...)."""
        return str(self.settings["role_labels"].get(role, role))

    def outcome_label(self, code: str) -> str:
        """How people read an outcome: the label of the end step with this code ("Not shared
        (agreement refused); monitoring"), else the code in words.
        """
        end = next((s for s in self.steps.values() if s.kind is StepKind.END and s.end == code), None)
        return end.title if end is not None and end.title else code.replace("_", " ")

    def due_hours(self, name: str) -> float:
        """A due time from the settings, in hours."""
        return float(self.settings["due_times"][name])

    def sensitive_keys(self) -> frozenset[str]:
        """Keys of every field stored encrypted."""
        return frozenset(f.key for s in self.steps.values() for f in s.fields if f.sensitive)
