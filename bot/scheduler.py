"""The in-process timer: the reminder sweep every few seconds and the digest check every few minutes.

APScheduler 3 runs these and nothing else: reminders are rows in the database, because an
APScheduler 3 job store cannot be shared between replicas and a one-off job missed while the
process was down is dropped (its FAQ and misfire_grace_time). Every job here is idempotent,
so every replica runs them all. The digest is not a cron at one time: each school has its own
digest time and timezone, so the job looks every DIGEST_EVERY for schools whose time has come.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, time, timedelta
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from bot import digest, reminders
from bot.cases import Services
from bot.config import Settings
from bot.schooltime import QUIET_END, QUIET_START

logger = logging.getLogger(__name__)
STOP_SECONDS = 10
DIGEST_EVERY = timedelta(minutes=5)  # a school's digest goes at most this long after its digest time
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


async def digest_job(svc: Services, default_time: time) -> None:
    """The digests of schools whose digest time has come; safe to repeat (one per DSL per day)."""
    with _tracked():
        try:
            await digest.run_digests(svc, default_time=default_time)
        except Exception:  # noqa: BLE001 - as above: the next interval tries again
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
    """The scheduler with the sweep and the digest check (both first run at once), not yet started.

    Running the digest check at start-up is the catch-up: a process started after a school's
    digest time sends it then; one already sent is not repeated.
    """
    at = digest_time(settings)
    scheduler = AsyncIOScheduler(timezone=settings.timezone)
    scheduler.add_job(sweep_job, "interval", seconds=settings.sweep_seconds, args=(svc, settings), id="sweep",
                      next_run_time=now, max_instances=1, coalesce=True)
    scheduler.add_job(digest_job, "interval", seconds=DIGEST_EVERY.total_seconds(), args=(svc, at), id="digest",
                      next_run_time=now, max_instances=1, coalesce=True)
    return scheduler
