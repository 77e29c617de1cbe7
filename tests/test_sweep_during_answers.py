"""A long job never stalls request handling (issue 12): the reminder sweep over a table of a
million reminders runs while teachers answer, on a SQLite file. Every answer is recorded while
the sweep is still running (writers take turns: a sweep batch, then waiting answers), and the
event loop keeps turning throughout (nothing runs a long statement on it).
"""

from __future__ import annotations

import asyncio
import os
import time
from datetime import UTC, timedelta

import pytest
from sqlalchemy import text

from bot import cases, people, reminders
from bot.cases import Services
from bot.policy.model import Actor
from tests.completed_case import SIGNIFICANT_HARM_REFUSED, values_for
from tests.conftest import Clock

ROWS = int(os.environ.get("CONSENTBOT_SWEEP_TEST_ROWS", "1000000"))
DUE = 6_000  # twelve of the sweep's batches, each letting the answers waiting take their turn
ANSWERS = 12
STAMP = "%Y-%m-%d %H:%M:%S.%f"  # a time as SQLAlchemy stores it in SQLite (naive UTC text)


async def load_reminders(svc: Services, *, case_id: int, recipient_id: int, clock: Clock) -> None:
    """ROWS reminders for one case, DUE of them due now, the rest half later and half sent, in one statement."""
    now = clock().astimezone(UTC)
    past, later = (now - timedelta(minutes=5)).strftime(STAMP), (now + timedelta(days=3)).strftime(STAMP)
    async with svc.db.transaction() as s:
        await s.execute(text(
            "INSERT INTO reminders (case_id, recipient_id, kind, level, due_at, unique_key, status, created_at) "
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :rows) "
            "SELECT :case_id, :recipient_id, 'outcome', 0, CASE WHEN i <= :due THEN :past ELSE :later END, "
            "'bulk:' || i, CASE WHEN i <= :due OR i % 2 = 0 THEN 'pending' ELSE 'sent' END, :past FROM n"),
            {"rows": ROWS, "due": DUE, "case_id": case_id, "recipient_id": recipient_id, "past": past, "later": later})
        await s.execute(text("ANALYZE"))


async def count(svc: Services, sql: str, **params: object) -> int:
    async with svc.db.read() as s:
        return int((await s.execute(text(sql), params)).scalar_one())


@pytest.fixture
async def svc(file_services: Services) -> Services:
    return file_services


async def test_answers_are_recorded_while_a_sweep_over_a_million_reminders_runs(svc: Services, clock: Clock) -> None:
    teacher = await people.add(svc, email="tina@oak.sch.uk", role="staff", name="Tina", school="oak",
                               slack_user_id="U0TINA0000")
    dsl = await people.add(svc, email="dee@oak.sch.uk", role="dsl", name="Dee", school="oak",
                           slack_user_id="U0DEE00000")
    start = svc.policy.steps[svc.policy.start]
    waiting = [await cases.raise_concern(svc, actor=teacher, platform="slack",
                                         values=values_for(start, None, SIGNIFICANT_HARM_REFUSED, teacher))
               for _ in range(ANSWERS)]
    case_id = await count(svc, "SELECT id FROM cases WHERE ref = :ref", ref=waiting[0].ref)
    await load_reminders(svc, case_id=case_id, recipient_id=dsl.id, clock=clock)
    assert await count(svc, "SELECT count(*) FROM reminders") >= ROWS
    answered_before = await count(svc, "SELECT count(*) FROM case_events WHERE kind = 'answered'")

    gaps: list[float] = []
    sweeping = asyncio.create_task(reminders.sweep(svc, now=clock()))
    ticking = asyncio.create_task(heartbeat(gaps, until=sweeping))
    recorded_while_sweeping = []
    for view in waiting:
        assert view.step is not None and view.step.actor is Actor.STAFF
        await cases.answer(svc, actor=teacher, case_ref=view.ref, version=view.version, step=view.step.id,
                           values=values_for(view.step, view, SIGNIFICANT_HARM_REFUSED, teacher), platform="slack")
        recorded_while_sweeping.append(not sweeping.done())
    report = await sweeping
    await ticking

    assert all(recorded_while_sweeping), "an answer waited for the whole sweep"
    assert await count(svc, "SELECT count(*) FROM case_events WHERE kind = 'answered'") == answered_before + ANSWERS
    assert report.sent + report.deferred + report.cancelled + report.superseded >= DUE  # the sweep did its work
    assert await count(svc, "SELECT count(*) FROM reminders WHERE status = 'pending' AND due_at <= :now",
                       now=clock().astimezone(UTC).strftime(STAMP)) == 0
    # The loop was never held: a blocking 1M-row statement on it would show as a gap of seconds.
    assert max(gaps) < 1.0, f"the event loop stalled for {max(gaps):.2f} s"


async def heartbeat(gaps: list[float], *, until: asyncio.Task[object]) -> None:
    """How long each 10 ms sleep really took, while `until` runs."""
    while not until.done():
        began = time.perf_counter()
        await asyncio.sleep(0.01)
        gaps.append(time.perf_counter() - began)
