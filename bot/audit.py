"""`consentbot audit`: verify every keyed chain, the chained index of cases and the staff
fingerprints (optionally against a checkpoint of chain heads, bot/checkpoint.py), and re-derive
each case's projection from its events. docs/audit.md says what each check catches.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bot.cases import Services, projection, to_answer
from bot.checklist import IllegalAnswer, advance
from storage import repo
from storage.audit import CASE_OPENED, Adopted, ChainProblem, Sealer, verify_access_log, verify_events
from storage.models import AccessLog, Case, CaseEvent, Staff

if TYPE_CHECKING:
    from bot.checkpoint import Checkpoint

CHAIN_ADOPTED = "chain_adopted"  # a legacy case chain adopted under the key (bot/audit_adopt.py)
AUDIT_ADOPTED = "audit_adopted"  # the legacy access log adopted, once


@dataclass
class Report:
    """What was checked and what failed."""

    cases: int = 0
    events: int = 0
    access_entries: int = 0
    problems: list[ChainProblem] = field(default_factory=list)


@dataclass(frozen=True)
class Trail:
    """The access log, read once: each entry with its detail parsed (an unreadable detail is
    empty here; the chain check reports the altered entry).
    """

    rows: list[AccessLog]
    details: list[dict[str, Any]]

    @classmethod
    def of(cls, rows: list[AccessLog]) -> Trail:
        """Parse each entry's detail."""
        return cls(rows=rows, details=[_parsed(row.detail) for row in rows])

    def entries(self, *actions: str) -> list[tuple[AccessLog, dict[str, Any]]]:
        """Keyed entries of these actions (an unkeyed one proves nothing), oldest first."""
        return [(r, d) for r, d in zip(self.rows, self.details, strict=True) if r.action in actions and r.key_id]

    def adopted_access(self) -> Adopted | None:
        """The legacy prefix of the access log that `db upgrade` adopted, if any."""
        for _row, detail in self.entries(AUDIT_ADOPTED):
            return Adopted(version=_id(detail, "legacy_access_entries"), head=str(detail.get("legacy_head")))
        return None

    def adopted_cases(self) -> dict[int, Adopted]:
        """Case id -> the legacy events adopted for it."""
        return {_id(d, "case_id"): Adopted(version=_id(d, "version"), head=str(d.get("head")))
                for _r, d in self.entries(CHAIN_ADOPTED)}

    def indexed_cases(self) -> dict[int, str]:
        """The chained index of cases: case id -> reference."""
        return {_id(d, "case_id"): str(d.get("ref")) for _r, d in self.entries(CASE_OPENED, CHAIN_ADOPTED)}

    def fingerprints(self) -> dict[int, tuple[str, str]]:
        """Staff id -> (key id, fingerprint) of the latest change consentbot made to that row."""
        return {_id(d, "staff_id"): (r.key_id, str(d["fingerprint"]))
                for r, d in zip(self.rows, self.details, strict=True) if r.key_id and "fingerprint" in d}


def _id(detail: dict[str, Any], key: str) -> int:
    """An id from a detail; -1 when missing or not a number (an altered entry, reported by the chain check)."""
    value = detail.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else -1


def _parsed(detail: str) -> dict[str, Any]:
    try:
        parsed = json.loads(detail)
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


async def verify(svc: Services, *, checkpoint: Checkpoint | None = None) -> Report:
    """Check every case chain and projection, the access log, the index of cases and the staff
    fingerprints; with `checkpoint`, also that no chain lost what it held then.
    """
    report, sealer = Report(), Sealer(svc.keyring)
    # One read-only snapshot: a long verify never holds up answers (nor sees half of one).
    async with svc.db.read() as s:
        trail = Trail.of(await repo.access_log(s))
        cases = await repo.all_cases(s)
        adopted, chains = trail.adopted_cases(), {}
        for case in cases:
            events = await repo.case_events(s, case.id or 0)
            report.cases, report.events = report.cases + 1, report.events + len(events)
            report.problems += verify_events(sealer, case, events, adopted.get(case.id or 0))
            report.problems += _projection_problems(svc, case, events)
            chains[case.ref] = [e.hash for e in events]
        staff = await repo.list_staff(s, include_inactive=True)
        elsewhere = await repo.all_memberships(s)
    report.access_entries = len(trail.rows)
    report.problems += verify_access_log(sealer, trail.rows, trail.adopted_access())
    report.problems += index_problems(cases, trail)
    report.problems += staff_problems(sealer, staff, trail, elsewhere)
    if checkpoint is not None:
        report.problems += checkpoint.problems(access=[r.hash for r in trail.rows], chains=chains)
    return report


def index_problems(cases: Sequence[Case], trail: Trail) -> list[ChainProblem]:
    """Every case is in the chained index, and every indexed case still exists under its reference."""
    indexed, problems = trail.indexed_cases(), []
    for case in cases:
        ref = indexed.pop(case.id or 0, None)
        if ref is None:
            problems.append(ChainProblem(case.ref, 0, "not in the index of cases (added outside consentbot)"))
        elif ref != case.ref:
            problems.append(ChainProblem(case.ref, 0, f"its reference was changed outside consentbot (indexed as {ref})"))
    problems += [ChainProblem(ref, 0, "deleted outside consentbot (in the index of cases, not in the database)")
                 for ref in indexed.values()]
    return problems


def staff_problems(sealer: Sealer, staff: Sequence[Staff], trail: Trail,
                   elsewhere: Mapping[int, Sequence[tuple[int, str]]] | None = None) -> list[ChainProblem]:
    """Each staff row, with its memberships of other schools, matches the fingerprint consentbot
    logged when it last changed either.
    """
    elsewhere = elsewhere or {}
    logged, problems = trail.fingerprints(), []
    for person in staff:
        subject = f"staff record {person.id}"
        kid, fingerprint = logged.pop(person.id or 0, (None, None))
        if kid is None:
            problems.append(ChainProblem(None, 0, "not in the access log (added outside consentbot)", subject))
        elif not sealer.holds(kid) or fingerprint != sealer.fingerprint(person, kid=kid,
                                                                        elsewhere=elsewhere.get(person.id or 0, ())):
            problems.append(ChainProblem(None, 0, "changed outside consentbot (differs from its logged fingerprint)",
                                         subject))
    problems += [ChainProblem(None, 0, "deleted outside consentbot", f"staff record {sid}") for sid in logged]
    return problems


def _projection_problems(svc: Services, case: Case, events: list[CaseEvent]) -> list[ChainProblem]:
    try:
        expected = projection(advance(svc.policy, [to_answer(e) for e in events if e.kind in ("raised", "answered")]))
    except (IllegalAnswer, KeyError, ValueError):
        return [ChainProblem(case.ref, case.version, "its events do not replay through the policy")]
    wrong = sorted(k for k, v in expected.items() if getattr(case, k) != v)
    if not wrong:
        return []
    return [ChainProblem(case.ref, case.version, f"case row differs from its events in: {', '.join(wrong)}")]


async def access_entries(svc: Services, *, case_ref: str | None) -> list[str]:
    """Access log lines (ids and actions only)."""
    async with svc.db.read() as s:
        entries = await repo.access_log_with_refs(s, case_ref=case_ref)
    return [f"{a.seq}\t{a.at.isoformat(timespec='seconds')}\t{a.action}\tstaff={a.actor_id or '-'}\t"
            f"case={ref or '-'}\t{a.detail}" for a, ref in entries]
