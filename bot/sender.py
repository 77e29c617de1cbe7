"""The outbox sender: claims due messages of one platform under a lease and delivers them
through a `bot.ports.Chat`. Platform-neutral: Slack and Teams plug in their `Chat`.

Guarantees: a message is claimed by one sender at a time (storage.outbox); a rate limit
holds every send of the workspace for `Retry-After` and reschedules the message (it does not
count as an attempt); transient failures back off exponentially up to `max_attempts`, then
the message is `failed` with a content-free `last_error`; when an attempt may have been
delivered although no answer came back (timeout, dropped connection, or a sender that died
holding the lease), the next attempt first asks the platform whether the message is there
(`Chat.find`) instead of posting again blind. A "decided" message edits every copy of the
"decision needed" message it supersedes, using the stored reference.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from bot.cases import Services
from bot.messages import Message
from bot.ports import Chat, Permanent, RateLimited, Transient
from storage import outbox
from storage.outbox import AMBIGUOUS, Claimed

logger = logging.getLogger(__name__)
_random = secrets.SystemRandom()


@dataclass(frozen=True)
class SenderConfig:
    """Tuning. The defaults suit one school's workspace."""

    batch: int = 50
    concurrency: int = 8
    lease: timedelta = timedelta(seconds=120)  # longer than any single platform call can take
    max_attempts: int = 5
    backoff: float = 2.0  # seconds before the first retry; doubles per attempt, with jitter
    max_backoff: float = 600.0
    defer: float = 2.0  # a "decided" message waits this long for the message it replaces
    poll: float = 1.0
    settle: float = 30.0  # after a possibly delivered attempt, wait this long so a slow post has landed before we look


class Pacer:
    """One workspace's pace: after a 429, nobody sends until its Retry-After has passed."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._not_before = 0.0

    def hold(self, seconds: float) -> None:
        """Stop every send for `seconds` from now."""
        self._not_before = max(self._not_before, self._clock() + seconds)

    async def wait(self) -> None:
        """Return once sending is allowed."""
        while (delay := self._not_before - self._clock()) > 0:
            await asyncio.sleep(delay)


@dataclass
class DrainReport:
    """What one drain did, by result."""

    counts: dict[str, int] = field(default_factory=dict)

    def add(self, result: str) -> None:
        """Count one result."""
        self.counts[result] = self.counts.get(result, 0) + 1


class _Defer(Exception):
    """The message this one supersedes has not been sent yet."""


async def drain(svc: Services, chat: Chat, *, config: SenderConfig | None = None, pacer: Pacer | None = None,
                max_wait: float = 0.0) -> DrainReport:
    """Send every due message of `chat.platform`; wait up to `max_wait` seconds for ones that
    become due meanwhile (rate-limited or retried).
    """
    config, pacer, report = config or SenderConfig(), pacer or Pacer(), DrainReport()
    while True:
        claims = await _claim(svc, chat.platform, config)
        if claims:
            await _send_batch(svc, chat, claims, config, pacer, report)
            continue
        wait = await _seconds_to_next(svc, chat.platform)
        if wait is None or wait > max_wait:
            return report
        await asyncio.sleep(max(wait, 0.01))


async def run(svc: Services, chat: Chat, *, stop: asyncio.Event, config: SenderConfig | None = None) -> None:
    """Drain forever (until `stop` is set): the background task of `consentbot serve`."""
    config, pacer = config or SenderConfig(), Pacer()
    logger.info("outbox sender started platform=%s", chat.platform)
    while not stop.is_set():
        try:
            report = await drain(svc, chat, config=config, pacer=pacer)
            if report.counts:
                logger.info("outbox platform=%s %s", chat.platform, report.counts)
        except Exception as exc:  # noqa: BLE001 - the loop must survive a bad pass; the type says enough
            logger.error("outbox pass failed platform=%s error=%s", chat.platform, type(exc).__name__)
        try:
            await asyncio.wait_for(stop.wait(), timeout=config.poll)
        except TimeoutError:
            pass
    logger.info("outbox sender stopped platform=%s", chat.platform)


async def _claim(svc: Services, platform: str, config: SenderConfig) -> list[Claimed]:
    now = svc.clock()
    async with svc.db.transaction() as s:
        return await outbox.claim_due(s, platform=platform, now=now, lease_until=now + config.lease,
                                      limit=config.batch)


async def _seconds_to_next(svc: Services, platform: str) -> float | None:
    async with svc.db.transaction() as s:
        due = await outbox.next_due_at(s, platform=platform)
    return None if due is None else (due - svc.clock()).total_seconds()


@dataclass(frozen=True)
class _Result:
    """What became of one attempt; recorded with the rest of its batch."""

    name: str  # sent | updated | deferred | rate_limited | retried | failed
    claim: Claimed
    ref: str | None = None
    retry_in: float = 0.0
    error: str | None = None
    count: bool = False


async def _send_batch(svc: Services, chat: Chat, claims: list[Claimed], config: SenderConfig, pacer: Pacer,
                      report: DrainReport) -> None:
    """Send a batch concurrently, then record every result in one transaction (one commit, so
    one fsync, per batch; a crash in between leaves the rows leased, to be checked with `find`).
    """
    messages = {c.id: Message.from_json(c.payload) for c in claims}
    async with svc.db.transaction() as s:
        originals = await outbox.states_of(s, [m.supersedes for m in messages.values() if m.supersedes])
    gate = asyncio.Semaphore(config.concurrency)

    async def one(claim: Claimed) -> _Result:
        async with gate:
            message = messages[claim.id]
            return await _attempt(chat, claim, message, originals.get(message.supersedes or ""), config, pacer)

    results = await asyncio.gather(*(one(c) for c in claims))
    now = svc.clock()
    async with svc.db.transaction() as s:
        for result in results:
            await _record(s, result, now)
    for result in results:
        report.add(result.name)
        _log(result)


async def _deliver(chat: Chat, claim: Claimed, message: Message, original: tuple[str, str | None] | None) -> str:
    if not claim.address:
        raise Permanent("no_platform_user_id")
    if message.supersedes and original is not None:
        status, ref = original
        if status == "sent" and ref:
            await chat.update(ref, message)
            return ref
        if status in ("pending", "sending"):
            raise _Defer
    if claim.uncertain and (found := await chat.find(claim.address, claim.dedupe_key)):
        logger.info("outbox id=%s found already delivered", claim.id)
        return found
    return await chat.send(claim.address, message, key=claim.dedupe_key)


async def _attempt(chat: Chat, claim: Claimed, message: Message, original: tuple[str, str | None] | None,
                   config: SenderConfig, pacer: Pacer) -> _Result:
    """Try one message once."""
    await pacer.wait()
    try:
        ref = await _deliver(chat, claim, message, original)
    except _Defer:
        return _Result("deferred", claim, retry_in=config.defer, error=_code(claim, "deferred") if claim.uncertain
                       else None)
    except RateLimited as exc:
        pacer.hold(exc.retry_after)
        return _Result("rate_limited", claim, retry_in=exc.retry_after, error=_code(claim, exc.code))
    except Transient as exc:
        return _transient(claim, _code(claim, exc.code, exc.ambiguous), config, exc.ambiguous)
    except Permanent as exc:
        return _Result("failed", claim, error=_code(claim, exc.code))
    except Exception as exc:  # noqa: BLE001 - a platform bug must not stop the queue; retried, then failed
        return _transient(claim, _code(claim, f"error:{type(exc).__name__}", True), config, True)
    updated = bool(message.supersedes and original and original[0] == "sent")
    return _Result("updated" if updated else "sent", claim, ref=ref)


def _code(claim: Claimed, code: str, ambiguous: bool = False) -> str:
    """The stored error; it keeps saying "ambiguous" once any attempt may have been delivered."""
    return f"{AMBIGUOUS}{code}" if ambiguous or claim.uncertain else code


def _transient(claim: Claimed, error: str, config: SenderConfig, ambiguous: bool) -> _Result:
    if claim.attempts + 1 >= config.max_attempts:
        return _Result("failed", claim, error=error)
    delay = min(config.max_backoff, config.backoff * 2 ** claim.attempts) * _random.uniform(0.5, 1.0)
    if ambiguous:  # Slack may still be processing the lost request: look for it only once it has landed
        delay = max(delay, config.settle)
    return _Result("retried", claim, retry_in=delay, error=error, count=True)


async def _record(s: AsyncSession, r: _Result, now: datetime) -> None:
    if r.ref is not None:
        await outbox.mark_sent(s, r.claim, ref=r.ref, now=now)
    elif r.name == "failed":
        await outbox.mark_failed(s, r.claim, error=r.error or "failed")
    else:
        await outbox.reschedule(s, r.claim, at=now + timedelta(seconds=r.retry_in), error=r.error,
                                count_attempt=r.count)


def _log(r: _Result) -> None:
    if r.name == "failed":
        logger.warning("outbox id=%s failed error=%s attempts=%s", r.claim.id, r.error, r.claim.attempts + 1)
    elif r.name not in ("sent", "updated"):
        logger.info("outbox id=%s %s error=%s retry_in=%.1fs", r.claim.id, r.name, r.error, r.retry_in)
