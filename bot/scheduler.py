"""The in-process timer: the reminder sweep every few seconds and the digest cron each morning.

APScheduler 3 runs these and nothing else: reminders are rows in the database, because an
APScheduler 3 job store cannot be shared between replicas and a one-off job missed while the
process was down is dropped (its FAQ and misfire_grace_time). Every job here is idempotent,
so every replica runs them all.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger

from bot import digest, reminders
from bot.cases import Services
from bot.config import Settings
from bot.schooltime import QUIET_END, QUIET_START

logger = logging.getLogger(__name__)
STOP_SECONDS = 10
_running: set[asyncio.Task[Any]] = set()  # jobs in flight, so that stopping can wait for them


def digest_time(settings: Settings) -> time:
    """The configured digest time, refused in 01:00-02:59 (missing or doubled on DST days)."""
    at = time.fromisoformat(settings.digest_time)
    if QUIET_START <= at < QUIET_END:
        raise ValueError(f"CONSENTBOT_DIGEST_TIME {settings.digest_time} falls in quiet hours 01:00-02:59")
    return at


async def sweep_job(svc: Services, settings: Settings) -> None:
    """One sweep; a failure is logged and the next interval tries again (rows stay due)."""
    with _tracked():
        try:
            await reminders.sweep(svc, batch=settings.sweep_batch,
                                  lease=timedelta(seconds=settings.sweep_lease_seconds))
        except Exception:  # noqa: BLE001 - the timer must keep running; the rows are still due
            logger.exception("reminder sweep failed")


async def digest_job(svc: Services) -> None:
    """Today's digests; safe to repeat (one per DSL per day)."""
    with _tracked():
        try:
            await digest.run_digests(svc)
        except Exception:  # noqa: BLE001 - as above: tomorrow's cron, or a restart, tries again
            logger.exception("digest run failed")


@contextmanager
def _tracked() -> Iterator[None]:
    task = asyncio.current_task()
    if task is not None:
        _running.add(task)
    try:
        yield
    finally:
        if task is not None:
            _running.discard(task)


async def stop_scheduler(scheduler: AsyncIOScheduler) -> None:
    """Stop the timer and let a job in flight end inside the event loop.

    APScheduler 3 cancels running coroutine jobs on shutdown and cannot wait for them; waiting
    here lets a cancelled sweep roll its transaction back before the engine is disposed.
    """
    scheduler.shutdown(wait=False)
    running = [task for task in _running if not task.done()]
    if running:
        await asyncio.wait(running, timeout=STOP_SECONDS)


def build_scheduler(svc: Services, settings: Settings, *, now: datetime) -> AsyncIOScheduler:
    """The scheduler with the sweep (first run at once) and the digest cron, not yet started."""
    at = digest_time(settings)
    scheduler = AsyncIOScheduler(timezone=settings.timezone)
    scheduler.add_job(sweep_job, "interval", seconds=settings.sweep_seconds, args=(svc, settings), id="sweep",
                      next_run_time=now, max_instances=1, coalesce=True)
    scheduler.add_job(digest_job, CronTrigger(hour=at.hour, minute=at.minute, timezone=settings.timezone),
                      args=(svc,), id="digest", max_instances=1, coalesce=True, misfire_grace_time=3600)
    if _missed_today(now, at, settings):
        # A process started after today's digest time runs it now; one already sent is not repeated.
        scheduler.add_job(digest_job, args=(svc,), id="digest_catch_up", next_run_time=now)
    return scheduler


def _missed_today(now: datetime, at: time, settings: Settings) -> bool:
    return now.astimezone(ZoneInfo(settings.timezone)).time() >= at
