"""Adopting history written before keyed chains, once, under the key (`consentbot db upgrade`).

Rows from before migration 0006 carry plain SHA-256 and no key id. Nothing is rewritten: they are
anchored instead, by keyed access-log entries appended after them: one `chain_adopted` per case
(its id, reference, version and head: it also enters the case in the index of cases), one
`staff_sealed` per staff row (its fingerprint), and one `audit_adopted` naming how many legacy
access-log entries there were and the last one's hash. From then on `audit verify` accepts an
unkeyed row only inside an adopted prefix, ending at the adopted head. It happens once: only
while the access log holds no keyed entry at all.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from bot.audit import AUDIT_ADOPTED, CHAIN_ADOPTED
from bot.cases import Services
from bot.people import Operator
from storage import repo
from storage.audit import GENESIS, append_access, append_staff_change
from storage.models import AccessLog, Case


@dataclass(frozen=True)
class Adoption:
    """What was adopted: counts only."""

    cases: int
    staff: int
    access_entries: int


async def adopt_legacy(svc: Services, *, by: Operator) -> Adoption | None:
    """Anchor the legacy chains under the key; None when there is nothing to adopt (a new
    database, or one adopted before).
    """
    async with svc.db.transaction() as s:
        rows = await repo.access_log(s)
        cases = await repo.all_cases(s)
        if any(r.key_id for r in rows) or not (rows or await _has_legacy_events(s, cases)):
            return None
        for case in cases:
            await _adopt_case(svc, s, case, by)
        staff = await repo.list_staff(s, include_inactive=True)
        for person in staff:
            await append_staff_change(s, staff=person, action="staff_sealed", at=svc.clock(), actor_id=by.staff_id,
                                      detail={"by": "db upgrade", **by.detail})
        await append_access(s, action=AUDIT_ADOPTED, at=svc.clock(), actor_id=by.staff_id,
                            detail={**_legacy_access(rows), "cases": len(cases), "staff": len(staff), **by.detail})
    return Adoption(cases=len(cases), staff=len(staff), access_entries=len(rows))


async def _has_legacy_events(s: AsyncSession, cases: list[Case]) -> bool:
    for case in cases:
        if any(e.key_id is None for e in await repo.case_events(s, case.id or 0)):
            return True
    return False


async def _adopt_case(svc: Services, s: AsyncSession, case: Case, by: Operator) -> None:
    events = await repo.case_events(s, case.id or 0)
    await append_access(s, action=CHAIN_ADOPTED, at=svc.clock(), actor_id=by.staff_id, school_id=case.school_id,
                        case_id=case.id, detail={"case_id": case.id, "ref": case.ref, "version": len(events),
                                                 "head": events[-1].hash if events else GENESIS})


def _legacy_access(rows: list[AccessLog]) -> dict[str, object]:
    return {"legacy_access_entries": len(rows), "legacy_head": rows[-1].hash if rows else GENESIS}
