"""(d) The database goes away while messages are being queued and drained: PostgreSQL refuses
connections, then black-holes them (a relay in front of it); a SQLite file's write lock is held by
another process. Messages are queued in small batches throughout, each batch retried until the
database takes it, while the sender (`bot.sender.run`) keeps draining.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import make_url

from handlers.slack import sender_platform
from tests.faults.inject import DatabaseGate, lock_sqlite
from tests.faults.outcome import Row
from tests.faults.rig import DOWN, Rig, finish, queue, result, rigged, sending
from tests.slack.conftest import slack_settings

if TYPE_CHECKING:
    from tests.faults.scenarios import Timing

BATCH = 5
POSTING = 0.2  # seconds each post takes: the outage begins while some are under way


async def database_down(url: str, timing: Timing, workdir: Path) -> Row:
    """(d) on SQLite (the write lock held elsewhere) or PostgreSQL (refused, then black-holed)."""
    target = make_url(url)
    if target.get_backend_name() == "sqlite":
        return await _through(url, timing, workdir, lambda: _lock(Path(str(target.database)), timing.db_down))
    gate = DatabaseGate(target.host or "127.0.0.1", target.port or 5432)
    await gate.open()
    try:
        gated = target.set(host="127.0.0.1", port=gate.port).render_as_string(hide_password=False)
        return await _through(gated, timing, workdir, lambda: _refuse_then_black_hole(gate, timing.db_down))
    finally:
        await gate.close()


async def _lock(path: Path, seconds: float) -> str:
    locker = await asyncio.to_thread(lock_sqlite, path, seconds)
    await asyncio.to_thread(locker.wait, seconds + 30)
    return f"write lock held {seconds:g}s elsewhere"


async def _refuse_then_black_hole(gate: DatabaseGate, seconds: float) -> str:
    """A third of `seconds` refused, the rest black-holed (longer than the 2-s connect and statement timeouts)."""
    await gate.refuse()
    await asyncio.sleep(seconds / 3)
    await gate.black_hole()
    await asyncio.sleep(seconds * 2 / 3)
    await gate.open()
    return f"refused {seconds / 3:g}s+black-holed {seconds * 2 / 3:g}s"


async def _through(url: str, timing: Timing, workdir: Path, outage: Callable[[], Awaitable[str]]) -> Row:
    """Queue `timing.messages` over the outage and a second while one sender drains; the outage
    starts half a second in, while posts are under way, so that the sender cannot record them: it
    finds them once their lease is over. The faults: queue commits and sender passes that failed.
    """
    spread = timing.db_down + 1
    with _FailedPasses() as passes:
        async with rigged(url, workdir) as rig:
            rig.fake.pace = POSTING
            async with sending(rig, [sender_platform(slack_settings(rig.fake))], timing.sender()):
                producer = asyncio.create_task(_produce(rig, timing.messages, over=spread))
                await asyncio.sleep(0.5)
                await _while_posting(rig)
                down = asyncio.create_task(outage())
                rig.fake.pace = 0.0  # the posts under way keep their pace; the rest go at Slack's
                said = await down
                back = time.monotonic()
                refused = await producer
                requeued = await finish(rig, within=60 + spread)
            return await result(rig, "d database away", refused + passes.count,
                                f"{said}: {refused} commits, {passes.count} passes failed", since=back,
                                requeued=requeued)


async def _produce(rig: Rig, count: int, *, over: float) -> int:
    """Queue `count` messages in batches spread over `over` seconds, retrying each batch until the
    database takes it (as a person would press again). How many commits failed.
    """
    batches = [range(start, min(start + BATCH, count)) for start in range(0, count, BATCH)]
    started, refused = time.monotonic(), 0
    for n, batch in enumerate(batches):
        await asyncio.sleep(started + n * over / len(batches) - time.monotonic())  # on time, or at once if late
        while True:
            try:
                await queue(rig, batch)
                break
            except DOWN:
                refused += 1
                assert time.monotonic() < started + over + 120, "the database never came back"
                await asyncio.sleep(0.1)
    return refused


async def _while_posting(rig: Rig) -> None:
    """Return once a post is under way (or after 10 s)."""
    for _ in range(2000):
        if rig.fake.in_flight:
            return
        await asyncio.sleep(0.005)


class _FailedPasses(logging.Handler):
    """Counts the sender's passes that failed (bot.sender logs each, and its loop carries on)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += record.getMessage().startswith("outbox pass failed")

    def __enter__(self) -> _FailedPasses:
        logging.getLogger("bot.sender").addHandler(self)
        return self

    def __exit__(self, *exc_info: object) -> None:
        logging.getLogger("bot.sender").removeHandler(self)
