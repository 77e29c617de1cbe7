"""The outbox sender: claims due messages of one platform under a lease and delivers them
through a `bot.ports.Chat`. Platform-neutral: Slack and Teams plug in their `Chat`.

Guarantees: a message is claimed by one sender at a time (storage.outbox); a rate limit
holds every send of the workspace for `Retry-After` and reschedules the message (it does not
count as an attempt); transient failures back off exponentially; when an attempt may have been
delivered although no answer came back (timeout, dropped connection, or a sender that died
holding the lease), the next attempt first asks the platform whether the message is there
(`Chat.find`) instead of posting again blind, and only once such a post can no longer land
(the platform's `settle_after`). A "decided" message edits every copy of the "decision
needed" message it supersedes, using the stored reference.

Nothing is given up silently. A routine message is `failed` after `max_attempts`, with a
content-free `last_error`, and `consentbot outbox retry --failed` queues it again. An urgent
message is never given up on a transient failure: it retries with a short, capped backoff
until it is sent or, for an urgent alert, until a DSL has taken the case (then it is
`cancelled`). From the `widen_after`-th failed attempt on, an urgent alert widens, in the
same transaction that records the failure: the school's escalation contact is queued an
`unreachable` message (once per case), and the recipient a copy on each other platform this
deployment delivers on where they have an id (once per message).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from bot import metrics, notify
from bot.ack import ACKNOWLEDGED
from bot.cases import Services
from bot.messages import Kind, Message
from bot.ports import Chat, Permanent, RateLimited, Transient
from storage import outbox, repo
from storage.models import Case, OutboxMessage, Staff
from storage.outbox import AMBIGUOUS, Claimed

logger = logging.getLogger(__name__)
_random = secrets.SystemRandom()
URGENT_KINDS = frozenset({Kind.URGENT_ALERT, Kind.UNREACHABLE})
DEFAULT_SETTLE = 60.0  # for a platform that cannot say when a lost post would have landed


@dataclass(frozen=True)
class SenderConfig:
    """Tuning. The defaults suit one school's workspace."""

    batch: int = 50
    concurrency: int = 8
    lease: timedelta = timedelta(seconds=120)  # longer than any single platform call can take
    max_attempts: int = 5  # routine messages only: an urgent one is never given up on a transient failure
    backoff: float = 2.0  # seconds before the first retry; doubles per attempt, with jitter
    max_backoff: float = 600.0
    urgent_backoff: float = 1.0  # an urgent message's first retry comes within this, not after a long wait
    urgent_max_backoff: float = 60.0  # the longest wait between an urgent message's attempts (bar `settle`)
    widen_after: int = 3  # from this failed attempt on, an urgent alert reaches further (see module doc)
    defer: float = 2.0  # a "decided" message waits this long for the message it replaces
    poll: float = 1.0
    # After a possibly delivered attempt, wait this long before looking for it; None: as long as
    # the platform says a post can still land after that failure (`settle_after`, else DEFAULT_SETTLE).
    settle: float | None = None


def is_urgent(message: Message) -> bool:
    """An urgent message is retried until it is sent (or no longer needed), never given up."""
    return message.urgent or message.kind in URGENT_KINDS


def is_alert(message: Message) -> bool:
    """A message asking a DSL to take an urgent case, or telling the escalation contact that none
    could be asked: while it cannot be delivered, it widens.
    """
    return message.can_acknowledge or message.kind in URGENT_KINDS


def is_moot_once_taken(message: Message) -> bool:
    """An alert that says nothing more once a DSL has taken the case. Not a "decision needed":
    it still asks for the decision.
    """
    return message.kind in URGENT_KINDS or (message.kind is Kind.ESCALATION and message.can_acknowledge)


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


async def run(svc: Services, chat: Chat, *, stop: asyncio.Event, config: SenderConfig | None = None,
              drain_on_stop: float = 0.0) -> None:
    """Drain forever (until `stop` is set): the background task of `consentbot serve`. Once
    stopped, what is due is sent for at most `drain_on_stop` seconds (what the last requests
    queued); a batch cut short stays leased, and the next start asks the platform before resending.
    """
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
    if drain_on_stop > 0:
        await _final_drain(svc, chat, config, pacer, drain_on_stop)
    logger.info("outbox sender stopped platform=%s", chat.platform)


async def _final_drain(svc: Services, chat: Chat, config: SenderConfig, pacer: Pacer, seconds: float) -> None:
    try:
        report = await asyncio.wait_for(drain(svc, chat, config=config, pacer=pacer), timeout=seconds)
        logger.info("outbox drained on stop platform=%s %s", chat.platform, report.counts)
    except TimeoutError:
        logger.warning("outbox not drained within %g s on stop platform=%s: the rest is sent on the next start",
                       seconds, chat.platform)
    except Exception as exc:  # noqa: BLE001 - stopping must not fail on a bad pass; the type says enough
        logger.error("outbox final pass failed platform=%s error=%s", chat.platform, type(exc).__name__)


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

    name: str  # sent | updated | deferred | rate_limited | retried | failed | cancelled
    claim: Claimed
    message: Message
    ref: str | None = None
    retry_in: float = 0.0
    error: str | None = None
    count: bool = False

    @property
    def undelivered_alert(self) -> bool:
        """An urgent alert whose attempt failed."""
        return self.name in ("retried", "failed") and is_alert(self.message)


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

    results = await _record_batch(svc, chat.platform, await asyncio.gather(*(one(c) for c in claims)), config)
    for result in results:
        report.add(result.name)
        metrics.sent(chat.platform, result.name)
        _log(result)


async def _record_batch(svc: Services, platform: str, results: Sequence[_Result],
                        config: SenderConfig) -> list[_Result]:
    """Record the results, with what an undelivered urgent alert calls for, in one transaction."""
    now = svc.clock()
    async with svc.db.transaction() as s:
        taken = await _taken(s, results)
        recorded = [_cancelled(r) if r.claim.case_id in taken and is_moot_once_taken(r.message) else r
                    for r in results]
        for result in recorded:
            if await _record(s, result, now) and _widens(result, config) and result.claim.case_id not in taken:
                await _widen(s, result, platform, svc.delivering, now)
    return recorded


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
        return _Result("deferred", claim, message, retry_in=config.defer,
                       error=_code(claim, "deferred") if claim.uncertain else None)
    except RateLimited as exc:
        pacer.hold(exc.retry_after)
        return _Result("rate_limited", claim, message, retry_in=exc.retry_after, error=_code(claim, exc.code))
    except Transient as exc:
        settle = _settle(chat, config, exc.code) if exc.ambiguous else 0.0
        return _transient(claim, message, _code(claim, exc.code, exc.ambiguous), config, settle)
    except Permanent as exc:
        return _Result("failed", claim, message, error=_code(claim, exc.code))
    except Exception as exc:  # noqa: BLE001 - a platform bug must not stop the queue; retried, then failed
        code = f"error:{type(exc).__name__}"
        return _transient(claim, message, _code(claim, code, True), config, _settle(chat, config, code))
    updated = bool(message.supersedes and original and original[0] == "sent")
    return _Result("updated" if updated else "sent", claim, message, ref=ref)


def _code(claim: Claimed, code: str, ambiguous: bool = False) -> str:
    """The stored error; it keeps saying "ambiguous" once any attempt may have been delivered."""
    return f"{AMBIGUOUS}{code}" if ambiguous or claim.uncertain else code


def _settle(chat: Chat, config: SenderConfig, code: str) -> float:
    """How long after a possibly delivered attempt to wait before looking for it. A post that
    may still be under way (no answer came) must have landed by then, or `find` misses it and
    the message is posted twice; a post the platform answered has landed, or never will.
    """
    if config.settle is not None:
        return config.settle
    settle_after = getattr(chat, "settle_after", None)  # optional: bot.ports.Chat does not require it
    return float(settle_after(code)) if callable(settle_after) else DEFAULT_SETTLE


def _transient(claim: Claimed, message: Message, error: str, config: SenderConfig, settle: float) -> _Result:
    urgent = is_urgent(message)
    if not urgent and claim.attempts + 1 >= config.max_attempts:
        return _Result("failed", claim, message, error=error)
    base, cap = (config.urgent_backoff, config.urgent_max_backoff) if urgent else (config.backoff, config.max_backoff)
    delay = min(cap, base * 2 ** min(claim.attempts, 30)) * _random.uniform(0.5, 1.0)
    # An ambiguous post may still be landing: look for it only once it can no longer land.
    return _Result("retried", claim, message, retry_in=max(delay, settle), error=error, count=True)


async def _taken(s: AsyncSession, results: Sequence[_Result]) -> set[int]:
    """The cases of undelivered alerts that a DSL has taken meanwhile (acknowledged or answered)."""
    alerts = {r.claim.case_id for r in results if r.undelivered_alert and r.claim.case_id is not None}
    if not alerts:
        return set()
    return await outbox.alert_taken(s, case_ids=sorted(alerts), reminder_kind=notify.URGENT_ACK_REMINDER,
                                    action=ACKNOWLEDGED)


def _cancelled(r: _Result) -> _Result:
    """An undelivered alert of a taken case is not tried again (sent late, it would mislead)."""
    return replace(r, name="cancelled", error="not_needed:acknowledged") if r.undelivered_alert else r


async def _record(s: AsyncSession, r: _Result, now: datetime) -> bool:
    """Write one result; False when the lease was lost meanwhile (another sender has the row)."""
    if r.ref is not None:
        return await outbox.mark_sent(s, r.claim, ref=r.ref, now=now)
    if r.name == "cancelled":
        return await outbox.mark_cancelled(s, r.claim, reason=r.error or "not_needed")
    if r.name == "failed":
        return await outbox.mark_failed(s, r.claim, error=r.error or "failed")
    return await outbox.reschedule(s, r.claim, at=now + timedelta(seconds=r.retry_in), error=r.error,
                                   count_attempt=r.count)


def _widens(r: _Result, config: SenderConfig) -> bool:
    """An alert widens once it has failed `widen_after` times, or at once when it cannot be delivered at all."""
    return r.undelivered_alert and (r.name == "failed" or r.claim.attempts + 1 >= config.widen_after)


async def _widen(s: AsyncSession, r: _Result, platform: str, delivering: frozenset[str], now: datetime) -> None:
    """Queue what reaches further than the alert that cannot be delivered (see module doc); the
    dedupe keys make every later failure queue nothing more.
    """
    case = await s.get(Case, r.claim.case_id) if r.claim.case_id is not None else None
    recipient = await s.get(Staff, r.claim.recipient_id)
    if case is None or recipient is None:
        return
    rows = _copies(case, recipient, r, platform, delivering, now)
    if r.message.kind is not Kind.UNREACHABLE:
        rows += await _escalations(s, case, recipient, now)
    await repo.enqueue(s, rows)
    logger.warning("outbox id=%s urgent alert undelivered attempts=%s case=%s widened_to=%s", r.claim.id,
                   r.claim.attempts + 1, case.id, len(rows))


def _copies(case: Case, recipient: Staff, r: _Result, platform: str, delivering: frozenset[str],
            now: datetime) -> list[OutboxMessage]:
    """The same alert on the recipient's other platforms. Not from a copy: its original is the one
    on `notify.platform_of(recipient)`, which has widened already.
    """
    home = notify.platform_of(recipient)
    rows = []
    for other, address in (("slack", recipient.slack_user_id), ("teams", recipient.teams_user_id)):
        if other not in (platform, home) and other in delivering and address:
            row = notify.outbox_row(case, recipient, r.message, f"{r.claim.dedupe_key}@{other}", now)
            row.platform = other
            rows.append(row)
    return rows


async def _escalations(s: AsyncSession, case: Case, recipient: Staff, now: datetime) -> list[OutboxMessage]:
    """The school's escalation contact hears that no DSL could be alerted (once per case)."""
    message = Message(kind=Kind.UNREACHABLE, case_ref=case.ref, urgent=True)
    contacts = [p for p in await notify.escalation_contacts(s, case.school_id) if p.id != recipient.id]
    if not contacts:
        logger.warning("outbox case=%s urgent alert undelivered and the school has no escalation contact", case.id)
    rows = [notify.outbox_row(case, p, message, f"{case.id}:unreachable:undelivered:{p.id}", now) for p in contacts]
    await notify.route(s, rows, frozenset({"slack", "teams"}))  # the sender knows only its own platform
    return rows


def _log(r: _Result) -> None:
    if r.name == "failed":
        logger.warning("outbox id=%s failed error=%s attempts=%s", r.claim.id, r.error, r.claim.attempts + 1)
    elif r.name == "cancelled":
        logger.info("outbox id=%s cancelled: the urgent alert was taken", r.claim.id)
    elif r.name not in ("sent", "updated"):
        logger.info("outbox id=%s %s error=%s retry_in=%.1fs", r.claim.id, r.name, r.error, r.retry_in)
