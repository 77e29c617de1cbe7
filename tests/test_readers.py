"""Readers do not block writers: `audit verify`, exports and details reads run in read-only
transactions, so answers keep finishing while a long verify runs (issue 8, defect 6)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import insert, select, text
from sqlalchemy.exc import DBAPIError

from bot import audit, cases, people
from bot.cases import CaseView, Person, Services
from bot.crypto import Keyring, generate_key
from storage.audit import CASE_OPENED, GENESIS, Sealer, access_fields, canonical
from storage.db import create_database
from storage.migrate import upgrade
from storage.models import AccessLog, Case, CaseEvent, School
from tests.conftest import Clock, england

SEEDED = 2000
RAISE = {"child": "Ada Canary", "year_group": "year_4", "concern": "Ada said X", "seen_at": "2026-11-24T08:40:00+00:00"}


@pytest.fixture
async def sqlite_services(sqlite_url: str, clock: Clock) -> AsyncIterator[Services]:
    """Services on a fresh, migrated SQLite file (the backend whose one writer a reader could block)."""
    db = create_database(sqlite_url)
    await upgrade(db)
    yield Services(db=db, keyring=Keyring.parse(generate_key("t1")), policy=england(), clock=clock)
    await db.dispose()


async def raise_case(svc: Services, who: Person) -> CaseView:
    return await cases.raise_concern(svc, actor=who, values={"immediate_danger": "no"}, platform="test")


async def answer(svc: Services, who: Person, view: CaseView, values: dict[str, Any]) -> CaseView:
    assert view.step is not None
    return await cases.answer(svc, actor=who, case_ref=view.ref, version=view.version, step=view.step.id,
                              values=values, platform="test")


async def seed_copies(svc: Services, template_ref: str, copies: int) -> None:
    """`copies` valid cases cloned from one real case, in bulk inserts (each chain sealed with the
    key, and each case entered in the chained index of cases).
    """
    sealer, kid = Sealer(svc.keyring), svc.keyring.active
    async with svc.db.transaction() as s:
        case = (await s.execute(select(Case).where(Case.ref == template_ref))).scalar_one()
        events = list((await s.execute(select(CaseEvent).where(CaseEvent.case_id == case.id)
                                       .order_by(CaseEvent.seq))).scalars())
        first = case.id + 1 if case.id else 1
        case_rows, event_rows = [], []
        for n in range(copies):
            head = GENESIS
            for e in events:
                fields = {"case_id": first + n, "seq": e.seq, "kind": e.kind, "actor_id": e.actor_id,
                          "at": e.at.isoformat(), "payload": e.payload}
                digest = sealer.seal(head, fields, kid=kid)
                event_rows.append({**fields, "at": e.at, "prev_hash": head, "hash": digest, "key_id": kid})
                head = digest
            row = case.model_dump()
            case_rows.append({**row, "id": first + n, "ref": f"S-{n:06d}", "head_hash": head})
        await s.execute(insert(Case), case_rows)
        await s.execute(insert(CaseEvent), event_rows)
        await s.execute(insert(AccessLog), await index_rows(s, sealer, kid, case_rows))


async def index_rows(s: Any, sealer: Sealer, kid: str, case_rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The access-log rows entering the seeded cases in the index of cases, chained on from the last."""
    last = (await s.execute(select(AccessLog).order_by(AccessLog.seq.desc()).limit(1))).scalars().first()
    seq, head, rows = last.seq if last else 0, last.hash if last else GENESIS, []
    for case in case_rows:
        seq += 1
        row = AccessLog(seq=seq, at=case["created_at"], school_id=case["school_id"], case_id=case["id"],
                        action=CASE_OPENED, detail=canonical({"case_id": case["id"], "ref": case["ref"]}),
                        prev_hash=head, hash="", key_id=kid)
        row.hash = head = sealer.seal(head, access_fields(row), kid=kid)
        rows.append(row.model_dump(exclude={"id"}))
    return rows


async def timed_answers(svc: Services, who: Person, views: list[CaseView], verifying: asyncio.Task[Any]) -> list[float]:
    """Answer one case after another while the verify runs; the seconds each answer took."""
    took = []
    for view in views:
        if verifying.done():
            break
        started = time.perf_counter()
        await answer(svc, who, view, RAISE)
        took.append(time.perf_counter() - started)
    return took


async def test_answers_keep_finishing_while_a_long_verify_runs(sqlite_services: Services) -> None:
    svc = sqlite_services
    teacher = await people.add(svc, email="tina@oak.sch.uk", role="staff", name="Tina", school="oak")
    template = await answer(svc, teacher, await raise_case(svc, teacher), RAISE)
    await seed_copies(svc, template.ref, SEEDED)
    waiting = [await raise_case(svc, teacher) for _ in range(40)]

    started = time.perf_counter()
    verifying = asyncio.create_task(audit.verify(svc))
    await asyncio.sleep(0.05)  # the verify has taken its snapshot and is working through the cases
    took = await timed_answers(svc, teacher, waiting, verifying)
    report = await verifying
    verify_seconds = time.perf_counter() - started

    print(f"\nverify of {report.cases} cases took {verify_seconds:.2f} s; {len(took)} answers meanwhile: "
          f"median {sorted(took)[len(took) // 2] * 1000:.0f} ms, max {max(took) * 1000:.0f} ms")
    assert report.cases == SEEDED + 1 + len(waiting) and report.problems == []
    assert len(took) >= 10, f"only {len(took)} answers finished during a {verify_seconds:.2f} s verify"
    assert max(took) < min(1.0, verify_seconds / 4), f"an answer waited on the verify: {max(took):.2f} s"


async def test_a_read_transaction_refuses_to_write_and_writers_still_write(db_url: str) -> None:
    db = create_database(db_url)
    await upgrade(db)
    try:
        with pytest.raises(DBAPIError):
            async with db.read() as s:
                await s.execute(insert(School).values(slug="oak", name="Oak"))
        async with db.transaction() as s:  # the same pooled connection writes again
            await s.execute(insert(School).values(slug="elm", name="Elm"))
        async with db.read() as s:
            assert list((await s.execute(text("SELECT slug FROM schools"))).scalars()) == ["elm"]
    finally:
        await db.dispose()
