"""The timer in the served app: the lifespan starts the sweep and the digest check, and stops them."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, time

import pytest

from bot import scheduler
from bot.app import build_app
from bot.config import Settings

from .conftest import add_reminder, london, make_case, outbox_rows


def settings(**values: str) -> Settings:
    return Settings(_env_file=None, CONSENTBOT_SWEEP_SECONDS="0.05", **values)  # type: ignore[call-arg]


async def test_the_apps_lifespan_runs_the_sweep_and_stops_it_cleanly(svc, oak, tick):
    # The real time: APScheduler steps an interval job through every run time it missed since its
    # first, so a first run days back (the fixture's clock) would cost 0.05 s steps for days.
    # An urgent_ack reminder goes at any hour, so the real time of day does not matter.
    tick.now = datetime.now(UTC)
    case = await make_case(svc, oak.teacher, urgent=True)
    await add_reminder(svc, case, oak.deputy, due=tick.now, kind="urgent_ack")
    app = build_app(settings(CONSENTBOT_DIGEST_TIME="16:00"), svc)

    async with app.router.lifespan_context(app):
        for _ in range(100):
            if await outbox_rows(svc, kind="escalation"):
                break
            await asyncio.sleep(0.02)

    assert [r.recipient_id for r in await outbox_rows(svc, kind="escalation")] == [oak.deputy.id]
    assert not [t for t in scheduler._running if not t.done()]


def test_the_scheduler_has_the_sweep_and_a_digest_check_every_five_minutes_both_at_once(svc):
    start = london(2026, 11, 24, 7, 0)
    timer = scheduler.build_scheduler(svc, settings(CONSENTBOT_DIGEST_TIME="07:45"), now=start)
    jobs = {job.id: job for job in timer.get_jobs()}
    assert set(jobs) == {"sweep", "digest"}
    assert str(jobs["digest"].trigger) == "interval[0:05:00]"
    assert jobs["digest"].next_run_time == start and jobs["digest"].args == (svc, time(7, 45))


def test_a_digest_time_in_the_small_hours_is_refused(svc):
    with pytest.raises(ValueError, match="quiet hours"):
        scheduler.build_scheduler(svc, settings(CONSENTBOT_DIGEST_TIME="01:30"), now=london(2026, 11, 24, 9, 0))
