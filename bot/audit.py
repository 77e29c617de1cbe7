"""`consentbot audit`: verify every chain, and re-derive each case's projection from its events."""

from __future__ import annotations

from dataclasses import dataclass, field

from bot.cases import Services, projection, to_answer
from bot.checklist import IllegalAnswer, advance
from storage import repo
from storage.audit import ChainProblem, verify_access_log, verify_events
from storage.models import Case, CaseEvent


@dataclass
class Report:
    """What was checked and what failed."""

    cases: int = 0
    events: int = 0
    access_entries: int = 0
    problems: list[ChainProblem] = field(default_factory=list)


async def verify(svc: Services) -> Report:
    """Check every case chain, every projection and the access log."""
    report = Report()
    # One read-only snapshot: a long verify never holds up answers (nor sees half of one).
    async with svc.db.read() as s:
        for case in await repo.all_cases(s):
            events = await repo.case_events(s, case.id or 0)
            report.cases += 1
            report.events += len(events)
            report.problems += verify_events(case, events)
            report.problems += _projection_problems(svc, case, events)
        rows = await repo.access_log(s)
        report.access_entries = len(rows)
        report.problems += verify_access_log(rows)
    return report


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
