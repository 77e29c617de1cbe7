"""The five fault scenarios of issue 8. Each takes a fresh, empty database URL, queues messages to 20
DSLs (every 5th an urgent alert), delivers them with the real sender (`bot.sender.run`, the loop of
`consentbot serve`, or `consentbot outbox drain` in its own process) through the real Slack client to
the fake Slack on loopback while one kind of fault is injected, waits until every message is sent
or failed, queues the failed ones again with `consentbot outbox retry --failed`, and counts.

A `Timing` says how long each fault lasts and how the sender's own timing (`SenderConfig`: backoffs,
lease, poll) is scaled from production's: `CI` and `BENCH` shrink both in proportion, `REAL` is the
issue's (Slack down 5 minutes, posts stalled 60 s against `SENDER_TIMEOUT`).
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path

from sqlmodel import col, select

from bot.cases import Services
from bot.ports import Chat
from bot.sender import SenderConfig
from handlers.slack import SENDER_TIMEOUT, sender_platform, web_client
from handlers.slack.platform import LANDING_MARGIN, SlackPlatform
from storage.models import OutboxMessage
from tests.faults.database import database_down
from tests.faults.inject import POST
from tests.faults.outcome import Row
from tests.faults.rig import Rig, consentbot, finish, queue, result, rigged, sending
from tests.slack.conftest import slack_settings


@dataclass(frozen=True)
class Timing:
    """How long each fault lasts (seconds), and `scale`: the sender's timing as a fraction of production's."""

    name: str
    scale: float
    messages: int
    outage: float  # (a) Slack answers 500 to every post (the issue: 5 minutes)
    stall: float  # (b) a stalled post lands this long after it was sent (the issue: 60 s) ...
    client_timeout: float  # ... and the sender's client gives up after this (SENDER_TIMEOUT) ...
    landing_margin: float  # ... and looks for it this long after that (LANDING_MARGIN)
    stalls: int
    storm: int  # (c) 429s with `retry_after`, then Slack admits `burst` posts a second
    retry_after: int
    burst: int
    db_down: float  # (d) SQLite: locked this long; PostgreSQL: refused a third of it, black-holed the rest
    pace: float = 0.05  # (e) every post takes this long, so that the burst can be killed mid-way

    def sender(self) -> SenderConfig:
        """`SenderConfig()` with its backoffs, lease and poll scaled (the lease at least 1 s)."""
        base, s = SenderConfig(), self.scale
        return replace(base, backoff=base.backoff * s, max_backoff=base.max_backoff * s,
                       urgent_backoff=base.urgent_backoff * s, urgent_max_backoff=base.urgent_max_backoff * s,
                       defer=base.defer * s, poll=max(base.poll * s, 0.05),
                       lease=timedelta(seconds=max(base.lease.total_seconds() * s, 1.0)))

    def describe(self) -> str:
        """The timing, as the bench prints it above the table."""
        c = self.sender()
        return (f"timing {self.name}: sender backoff {c.backoff:.2g}s (max {c.max_backoff:.3g}s), urgent backoff "
                f"{c.urgent_backoff:.2g}s (max {c.urgent_max_backoff:.3g}s), lease {c.lease.total_seconds():.3g}s, "
                f"max_attempts {c.max_attempts}; Slack 500s for {self.outage:g}s; posts stalled {self.stall:g}s "
                f"past a {self.client_timeout:.2g}s client timeout, looked for {self.landing_margin:g}s later; "
                f"database down {self.db_down:g}s")


# CI leaves more room between a stalled post landing and the check (1.2 s), and paces (e) slower, for a busy machine.
CI = Timing("ci (production timing x1/100)", scale=1 / 100, messages=60, outage=3.0, stall=1.0, client_timeout=0.2,
            landing_margin=2.0, stalls=8, storm=4, retry_after=1, burst=30, db_down=3.6, pace=0.1)
BENCH = Timing("scaled (production timing x1/30)", scale=1 / 30, messages=300, outage=10.0, stall=2.0,
               client_timeout=1 / 3, landing_margin=2.0, stalls=16, storm=10, retry_after=2, burst=50, db_down=9.0)
REAL = Timing("real (production timing, --long)", scale=1.0, messages=300, outage=300.0, stall=60.0,
              client_timeout=float(SENDER_TIMEOUT), landing_margin=LANDING_MARGIN, stalls=16, storm=10, retry_after=2,
              burst=50, db_down=90.0)
Scenario = Callable[[str, Timing, Path], Awaitable[Row]]


async def slack_outage(url: str, timing: Timing, workdir: Path) -> Row:
    """(a) Slack answers 500 to every post for `timing.outage`: routine messages fail after
    max_attempts and are queued again with `outbox retry --failed`; urgent ones retry until sent.
    """
    async with rigged(url, workdir) as rig:
        await queue(rig, range(timing.messages))
        rig.fake.outage(seconds=timing.outage)
        over = time.monotonic() + timing.outage
        async with sending(rig, [sender_platform(slack_settings(rig.fake))], timing.sender()):
            requeued = await finish(rig, after=over, within=timing.outage * 1.5 + 60)
        n = rig.fake.faults["http 500"]
        return await result(rig, "a slack 500s", n, f"HTTP 500 x{n} for {timing.outage:g}s", since=over,
                            requeued=requeued)


async def slack_stalls(url: str, timing: Timing, workdir: Path) -> Row:
    """(b) Posts stall past the client's timeout and land later: the lost-post check (on, from the
    token's scopes) looks for each once it can no longer land, so none is posted twice.
    """
    async with rigged(url, workdir) as rig:
        await queue(rig, range(timing.messages))
        rig.fake.delay_next(POST, seconds=timing.stall, times=timing.stalls)
        client = web_client(slack_settings(rig.fake), timeout=timing.client_timeout)  # type: ignore[arg-type]
        chat = SlackPlatform(client, landing_margin=timing.landing_margin)
        began = time.monotonic()
        async with sending(rig, [chat], timing.sender()):
            requeued = await finish(rig, within=timing.stall * 3 + 60)
        n, check = rig.fake.faults["stall"], "on" if chat.verify_lost_posts else "OFF"
        return await result(rig, "b slack stalls", n, f"{n} posts stalled {timing.stall:g}s (timeout "
                                                      f"{timing.client_timeout:.2g}s), check {check}", since=began,
                            requeued=requeued)


async def rate_limit_storm(url: str, timing: Timing, workdir: Path) -> Row:
    """(c) A 429 storm against two senders (two replicas): a run of 429s with Retry-After, then
    Slack admits `burst` posts a second. Retry-After is Slack's, not scaled: nor is the lease.
    """
    async with rigged(url, workdir) as rig:
        await queue(rig, range(timing.messages))
        rig.fake.fail_next(POST, status=429, retry_after=timing.retry_after, times=timing.storm)
        rig.fake.rate_limit(POST, burst=timing.burst, retry_after=1)
        config = replace(timing.sender(), lease=SenderConfig().lease)
        replicas: list[Chat] = [sender_platform(slack_settings(rig.fake)) for _ in range(2)]
        began = time.monotonic()
        async with sending(rig, replicas, config):
            requeued = await finish(rig, within=timing.messages / timing.burst * 3 + 60)
        n = rig.fake.faults["http 429"]
        return await result(rig, "c slack 429 storm", n, f"HTTP 429 x{n} (Retry-After {timing.retry_after}s, "
                                                         f"{timing.burst}/s), 2 senders", since=began,
                            requeued=requeued)


# (e): the sender that is killed. `consentbot outbox drain` claims under SenderConfig's 120-s lease; with a
# scaled timing the same drain runs with the scaled lease, so that its restart need not wait 2 minutes.
KILLED = ("import sys\nfrom datetime import timedelta\nfrom bot.cli import run\nfrom bot.config import Settings\n"
          "from bot.sender import SenderConfig, drain\nfrom handlers.slack import sender_platform\n"
          "config = SenderConfig(lease=timedelta(seconds=float(sys.argv[1])))\n"
          "run(lambda svc: drain(svc, sender_platform(Settings()), config=config, max_wait=30))\n")


async def killed_mid_burst(url: str, timing: Timing, workdir: Path) -> Row:
    """(e) A sender process is SIGKILLed mid-burst, holding claimed messages, some posted and not
    recorded; `consentbot outbox drain`, restarted, sends the rest once the dead sender's lease ends.
    """
    async with rigged(url, workdir) as rig:
        await queue(rig, range(timing.messages))
        rig.fake.pace = timing.pace
        lease = timing.sender().lease.total_seconds()
        real = lease == SenderConfig().lease.total_seconds()
        argv = ["outbox", "drain"] if real else [sys.executable, "-c", KILLED, str(lease)]
        # Not at a multiple of the batch (50): the sender dies holding posts made and posts not made yet.
        posted, killed = await _kill_when_posted(rig, argv, at=timing.messages // 3 + 5)
        held = await _leased(rig.svc)
        landed = sum(1 for key in held if rig.fake.landed.get(key))
        rig.fake.pace = 0.0
        await consentbot(rig, "outbox", "drain", "--wait", str(lease + 30), timeout=lease + 120)
        requeued = await finish(rig, within=60, again=("outbox", "drain", "--wait", "5"))
        what = "outbox drain" if real else "drain"
        return await result(rig, "e sigkill mid-burst", 1, f"SIGKILL {what} at {posted} posted; {len(held)} leased "
                                                           f"{lease:g}s, {landed} posted", since=killed,
                            requeued=requeued)


async def _kill_when_posted(rig: Rig, argv: list[str], *, at: int) -> tuple[int, float]:
    """Start the sender, SIGKILL it once `at` posts have landed: how many had, and when (monotonic)."""
    child = rig.spawn(argv, log=rig.workdir / "killed.log")
    try:
        deadline = time.monotonic() + 60
        while (posted := sum(rig.fake.posted_keys().values())) < at:
            assert child.poll() is None, f"the sender ended before the kill:\n{(rig.workdir / 'killed.log').read_text()}"
            assert time.monotonic() < deadline, "the sender posted too little to be killed mid-burst"
            await asyncio.sleep(0.005)
        child.send_signal(signal.SIGKILL)
        killed = time.monotonic()
    finally:
        if child.poll() is None:
            child.kill()
        await asyncio.to_thread(child.wait, 10)
    while rig.fake.in_flight:  # what it had sent lands (or not) before anything looks
        await asyncio.sleep(0.01)
    return posted, killed


async def _leased(svc: Services) -> list[str]:
    """The dedupe keys of the messages a sender holds."""
    async with svc.db.transaction() as s:
        query = select(OutboxMessage.dedupe_key).where(col(OutboxMessage.status) == "sending")
        return list((await s.execute(query)).scalars())


SCENARIOS: dict[str, Scenario] = {"a": slack_outage, "b": slack_stalls, "c": rate_limit_storm, "d": database_down,
                                  "e": killed_mid_burst}
