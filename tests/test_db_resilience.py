"""PostgreSQL without pre-ping: connections the server killed are replaced without losing an answer.
A connection killed while pooled is never seen by an answer; one killed mid-transaction fails that
transaction (nothing of it committed) and the resubmission, with the same idempotency key, commits
it once.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from bot import cases, people
from bot.cases import CaseView, Person, Services
from bot.crypto import Keyring, generate_key
from storage import repo
from storage.db import create_database
from tests.completed_case import SIGNIFICANT_HARM_REFUSED, values_for
from tests.conftest import _pg_database, england

KILLS = 5
KILL = ("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid()")


@pytest.fixture
def pg_url(pg_template: str | None) -> Iterator[str]:
    yield from _pg_database(template=pg_template)


@pytest.fixture
async def svc(pg_url: str) -> AsyncIterator[Services]:
    services = Services(db=create_database(pg_url), keyring=Keyring.parse(generate_key("r")), policy=england())
    yield services
    await services.db.dispose()


async def kill_others(url: str) -> int:
    import asyncpg  # type: ignore[import-untyped]

    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"), timeout=10)
    try:
        return int(await conn.fetchval(KILL))
    finally:
        await conn.close()


async def raised(svc: Services, teacher: Person, n: int) -> list[CaseView]:
    start = svc.policy.steps[svc.policy.start]
    values = values_for(start, None, SIGNIFICANT_HARM_REFUSED, teacher)
    return [await cases.raise_concern(svc, actor=teacher, values=values, platform="slack") for _ in range(n)]


async def answer(svc: Services, teacher: Person, view: CaseView, key: str) -> CaseView:
    assert view.step is not None
    return await cases.answer(svc, actor=teacher, case_ref=view.ref, version=view.version, step=view.step.id,
                              values=values_for(view.step, view, SIGNIFICANT_HARM_REFUSED, teacher),
                              platform="slack", idempotency_key=key)


async def count_events(svc: Services) -> int:
    async with svc.db.read() as s:
        return int((await s.execute(text("SELECT count(*) FROM case_events"))).scalar_one())


async def test_answers_after_the_pool_was_killed_all_succeed(svc: Services, pg_url: str) -> None:
    teacher = await people.add(svc, email="t@r.sch.uk", role="staff", name="T", school="r", slack_user_id="U0RESIL001")
    views = await raised(svc, teacher, 24)
    await asyncio.gather(*(count_events(svc) for _ in range(6)))  # several connections pooled
    before = await count_events(svc)

    assert await kill_others(pg_url) >= 1
    answered = await asyncio.gather(*(answer(svc, teacher, v, f"k{i}") for i, v in enumerate(views)))

    assert [a.version for a in answered] == [v.version + 1 for v in views]
    assert not any(a.replayed for a in answered)
    assert await count_events(svc) - before == len(views)


async def test_connections_killed_during_answers_lose_nothing(svc: Services, pg_url: str) -> None:
    teacher = await people.add(svc, email="t@r.sch.uk", role="staff", name="T", school="r", slack_user_id="U0RESIL001")
    views = await raised(svc, teacher, 60)
    before = await count_events(svc)
    failures: list[str] = []
    stop = asyncio.Event()

    async def killer() -> int:
        killed = 0
        for _ in range(KILLS):  # then stop, so that every answer can get through
            if stop.is_set():
                break
            killed += await kill_others(pg_url)
            await asyncio.sleep(0.1)
        return killed

    async def answered_once(i: int, view: CaseView) -> CaseView:
        for _ in range(KILLS + 1):  # as a person would: submit the same screen again (a kill fails it once at most)
            try:
                return await answer(svc, teacher, view, f"k{i}")
            except Exception as exc:  # noqa: BLE001 - any failure, resubmitted; counted below
                failures.append(f"{type(exc).__name__}: {str(exc)[:200]}")
        raise AssertionError(f"answer {i} never went through: {failures[-3:]}")

    killing = asyncio.create_task(killer())
    gate = asyncio.Semaphore(8)

    async def gated(i: int, view: CaseView) -> Any:
        async with gate:
            return await answered_once(i, view)

    answered = await asyncio.gather(*(gated(i, v) for i, v in enumerate(views)))
    stop.set()
    killed = await killing

    assert killed >= 1
    print(f"killed {killed} connections; {len(failures)} answers failed and were resubmitted: {failures[:3]}")
    assert [a.version for a in answered] == [v.version + 1 for v in views]
    assert await count_events(svc) - before == len(views)  # each answer committed exactly once
    async with svc.db.read() as s:
        claims = (await s.execute(text("SELECT count(*) FROM processed_deliveries WHERE key LIKE 'k%'"))).scalar_one()
    assert claims == len(views)


async def test_a_burst_of_answers_reuses_its_connections(svc: Services, pg_url: str) -> None:
    """Sixteen transactions at once, twice: the second burst opens no connection (the pool keeps
    what the first opened, rather than closing each beyond the fifth as soon as it is returned).
    """
    async def hold() -> None:
        async with svc.db.transaction() as s:
            await s.execute(text("SELECT pg_sleep(0.05)"))

    async def opened() -> int:
        async with svc.db.read() as s:
            query = text("SELECT sessions FROM pg_stat_database WHERE datname = current_database()")
            return int((await s.execute(query)).scalar_one())

    await asyncio.gather(*(hold() for _ in range(16)))
    before = await opened()
    await asyncio.gather(*(hold() for _ in range(16)))
    assert await opened() - before == 0


@pytest.mark.parametrize("through", ["orm", "plain"])
async def test_a_connection_lost_mid_transaction_fails_it_with_the_drivers_error(svc: Services, pg_url: str,
                                                                                  through: str,
                                                                                  caplog: pytest.LogCaptureFixture) -> None:
    """The statement that finds the connection gone raises SQLAlchemy's error for it, the
    transaction ends there (nothing to roll back on a dead connection), and the next one gets a
    live connection: through the ORM, which invalidates the connection itself, or the plain SQL.
    """
    teacher = await people.add(svc, email="t@r.sch.uk", role="staff", name="T", school="r", slack_user_id="U0RESIL001")
    with pytest.raises(DBAPIError):
        async with svc.db.transaction() as s:
            if through == "orm":
                await s.execute(text("SELECT pg_terminate_backend(pg_backend_pid())"))
                await s.execute(text("SELECT 1"))
            else:
                await kill_others(pg_url)
                await repo.claim_delivery(s, "lost", None)
    assert not [r for r in caplog.records if "ROLLBACK failed" in r.getMessage()]
    assert (await raised(svc, teacher, 1))[0].version == 1
