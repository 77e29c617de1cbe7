"""The timer in the served app: the lifespan starts the sweep and the digest cron, and stops them."""

from __future__ import annotations

import asyncio

import pytest

from bot import scheduler
from bot.app import build_app
from bot.config import Settings

from .conftest import add_reminder, london, make_case, outbox_rows


def settings(**values: str) -> Settings:
    return Settings(_env_file=None, CONSENTBOT_SWEEP_SECONDS="0.05", **values)  # type: ignore[call-arg]


async def test_the_apps_lifespan_runs_the_sweep_and_stops_it_cleanly(svc, oak, tick):
    case = await make_case(svc, oak.teacher, assignee=oak.teacher2)
    await add_reminder(svc, case, oak.teacher2, due=tick.now)
    app = build_app(settings(CONSENTBOT_DIGEST_TIME="16:00"), svc)

    async with app.router.lifespan_context(app):
        for _ in range(100):
            if await outbox_rows(svc, kind="reminder"):
                break
            await asyncio.sleep(0.02)

    assert [r.recipient_id for r in await outbox_rows(svc, kind="reminder")] == [oak.teacher2.id]
    assert not [t for t in scheduler._running if not t.done()]


def test_the_scheduler_has_the_sweep_and_the_digest_cron_only(svc):
    timer = scheduler.build_scheduler(svc, settings(CONSENTBOT_DIGEST_TIME="07:30"), now=london(2026, 11, 24, 7, 0))
    jobs = {job.id: job for job in timer.get_jobs()}
    assert set(jobs) == {"sweep", "digest"}
    assert str(jobs["digest"].trigger) == "cron[hour='7', minute='30']"
    late = scheduler.build_scheduler(svc, settings(CONSENTBOT_DIGEST_TIME="07:30"), now=london(2026, 11, 24, 9, 0))
    assert {job.id for job in late.get_jobs()} == {"sweep", "digest", "digest_catch_up"}


def test_a_digest_time_in_the_small_hours_is_refused(svc):
    with pytest.raises(ValueError, match="quiet hours"):
        scheduler.build_scheduler(svc, settings(CONSENTBOT_DIGEST_TIME="01:30"), now=london(2026, 11, 24, 9, 0))
