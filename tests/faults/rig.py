"""What every scenario stands on: a migrated database, the fake Slack, 20 DSLs, a queue of messages
(every 5th an urgent alert), senders running in the background, and `consentbot` run as a process.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import func
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import col, select

from bot import people
from bot.cases import Services
from bot.crypto import Keyring, generate_key
from bot.messages import Kind, Message
from bot.ports import Chat
from bot.sender import SenderConfig, run
from storage import repo
from storage.db import create_database
from storage.migrate import upgrade
from storage.models import OutboxMessage, Staff, utcnow
from tests.conftest import england
from tests.faults.inject import FaultySlack
from tests.faults.outcome import Row, count
from tests.slack.conftest import TOKEN

REPO = Path(__file__).resolve().parents[2]
CONSENTBOT = Path(sys.executable).with_name("consentbot")
KEY = generate_key("f")  # one deployment, one key: every process of every scenario uses it
RECIPIENTS, URGENT_EVERY = 20, 5  # at most 50 DMs each: the lost-post check reads the newest 50
DOWN = (OSError, SQLAlchemyError)  # what a database that is away raises (TimeoutError is an OSError)


@dataclass
class Rig:
    """One scenario's database (`url`, `svc`), fake Slack and working directory."""

    url: str
    svc: Services
    fake: FaultySlack
    workdir: Path
    started: float = field(default_factory=time.monotonic)

    @property
    def backend(self) -> str:
        """sqlite or postgresql."""
        return "sqlite" if self.svc.db.is_sqlite else "postgresql"

    def env(self) -> dict[str, str]:
        """A `consentbot` process's environment: this database, this key, this Slack."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CONSENTBOT_", "SLACK_", "TEAMS_"))}
        env.update(DATABASE_URL=self.url, CONSENTBOT_ENCRYPTION_KEY=KEY, SLACK_BOT_TOKEN=TOKEN,
                   SLACK_API_URL=self.fake.url, PYTHONPATH=str(REPO))
        return env

    def spawn(self, argv: Sequence[str], *, log: Path) -> subprocess.Popen[bytes]:
        """Start `consentbot ARGS` (or a python command line) in the background, output to `log`."""
        command = list(argv) if argv[0] == sys.executable else [str(CONSENTBOT), *argv]
        with log.open("wb") as out:
            return subprocess.Popen(command, env=self.env(), cwd=self.workdir, stdout=out, stderr=subprocess.STDOUT)


@asynccontextmanager
async def rigged(url: str, workdir: Path) -> AsyncIterator[Rig]:
    """A migrated database at `url` with 20 DSLs on Slack, and a fake Slack."""
    db = create_database(url)
    try:
        await upgrade(db)
        svc = Services(db=db, keyring=Keyring.parse(KEY), policy=england(), delivering=frozenset({"slack"}))
        for i in range(RECIPIENTS):
            await people.add(svc, email=f"dsl{i}@oak.sch.uk", role="dsl", name=f"DSL {i}", school="oak",
                             slack_user_id=f"U0F{i:07d}")
        with FaultySlack() as fake:
            yield Rig(url=url, svc=svc, fake=fake, workdir=workdir)
    finally:
        await db.dispose()


async def queue(rig: Rig, numbers: range) -> None:
    """Queue messages `fault:N` as the bot does (one transaction; a key queued already is skipped)."""
    async with rig.svc.db.transaction() as s:
        staff = list((await s.execute(select(Staff).order_by(col(Staff.id)))).scalars())
        now = utcnow()
        await repo.enqueue(s, [OutboxMessage(
            school_id=staff[n % len(staff)].school_id, recipient_id=staff[n % len(staff)].id or 0, platform="slack",
            kind=message.kind.value, payload=message.to_json(), dedupe_key=f"fault:{n}", next_attempt_at=now,
            created_at=now) for n in numbers for message in [_message(n)]])


def _message(n: int) -> Message:
    if n % URGENT_EVERY == 0:
        return Message(kind=Kind.URGENT_ALERT, case_ref=f"C-{n:06d}", urgent=True, can_acknowledge=True)
    return Message(kind=Kind.DECISION_NEEDED, case_ref=f"C-{n:06d}", step_title="Decide")


@asynccontextmanager
async def sending(rig: Rig, chats: Sequence[Chat], config: SenderConfig) -> AsyncIterator[None]:
    """One `bot.sender.run` loop (as in `consentbot serve`) per chat, until the block ends."""
    stop = asyncio.Event()
    tasks = [asyncio.create_task(run(rig.svc, chat, stop=stop, config=config)) for chat in chats]
    try:
        yield
    finally:
        stop.set()
        _, late = await asyncio.wait(tasks, timeout=60)
        for task in late:
            task.cancel()


async def unsettled(svc: Services) -> int:
    """Messages still waiting or being sent (1 while the database cannot say)."""
    try:
        async with svc.db.transaction() as s:
            query = select(func.count()).select_from(OutboxMessage).where(
                col(OutboxMessage.status).in_(("pending", "sending")))
            return int((await s.execute(query)).scalar() or 0)
    except DOWN:
        return 1


async def settled(rig: Rig, *, after: float = 0.0, within: float) -> None:
    """Wait until the faults are over (`after`, monotonic), the fake Slack is answering nothing, and
    every message is sent, failed or cancelled.
    """
    deadline = time.monotonic() + within
    while time.monotonic() < after or rig.fake.in_flight or await unsettled(rig.svc):
        assert time.monotonic() < deadline, f"messages still waiting after {within:g}s"
        await asyncio.sleep(0.05)


async def finish(rig: Rig, *, after: float = 0.0, within: float, again: Sequence[str] = ()) -> int:
    """Wait until settled; then queue the failed messages again with `consentbot outbox retry
    --failed` (and run `consentbot ARGS` `again` when no sender runs) and wait again. How many were failed.
    """
    await settled(rig, after=after, within=within)
    async with rig.svc.db.transaction() as s:
        query = select(func.count()).select_from(OutboxMessage).where(col(OutboxMessage.status) == "failed")
        failed = int((await s.execute(query)).scalar() or 0)
    if failed:
        await consentbot(rig, "outbox", "retry", "--failed", "--platform", "slack")
        if again:
            await consentbot(rig, *again)
        await settled(rig, within=within)
    return failed


async def consentbot(rig: Rig, *args: str, timeout: float = 120) -> str:
    """Run `consentbot ARGS` to the end (in a thread: the senders and the fakes keep running)."""
    done = await asyncio.to_thread(subprocess.run, [str(CONSENTBOT), *args], env=rig.env(), cwd=rig.workdir,
                                   capture_output=True, text=True, timeout=timeout, check=False)
    assert done.returncode == 0, f"consentbot {' '.join(args)}: {done.stderr[-2000:]}"
    return done.stdout.strip()


async def result(rig: Rig, scenario: str, faults: int, said: str, *, since: float, requeued: int = 0) -> Row:
    """The scenario's row, counted from what the fake Slack recorded. `since`: when the fault ended
    (monotonic), or the burst began; `requeued`: failed messages `outbox retry --failed` queued again.
    """
    said += f"; {requeued} failed, requeued" if requeued else ""
    return await count(rig.svc, rig.fake.posted_keys(), rig.fake.landed, since=since, backend=rig.backend,
                       scenario=scenario, faults=faults, said=said, wall=time.monotonic() - rig.started)
