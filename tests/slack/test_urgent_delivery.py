"""Nothing given up silently: an urgent alert outlasts a Slack outage, widens to the escalation
contact (and the DSL's other platform) once, stops once a DSL has taken the case; a routine
message fails visibly and `consentbot outbox retry` queues it again. The fake Slack on
loopback answers 500 for as many posts as the test scripts; nothing is ever posted twice.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update
from sqlmodel import col, select

from bot import ack, cases, people
from bot.cases import CaseView, Person, Services
from bot.crypto import generate_key
from bot.messages import Kind
from bot.policy.model import Actor
from bot.sender import DrainReport, SenderConfig, drain
from handlers.slack import sender_platform
from storage.models import OutboxMessage, utcnow
from tests.cli.harness import run_in_process
from tests.fakes.slack_api import FakeSlack
from tests.slack.conftest import TOKEN, make_services, slack_settings
from tests.slack.test_ack_snooze import ANSWERS, asked, drive
from tests.slack.test_sender import delivered_keys, queue, recipients

DSL, ADMIN, DSL_TEAMS = "U0DSL00001", "U0ADMIN001", "29:1dsl-teams-id"
# Short waits, and the platform's own settle (None): after a 500 Slack has answered, so no wait.
QUICK = SenderConfig(max_attempts=2, widen_after=3, backoff=0.02, urgent_backoff=0.02, urgent_max_backoff=0.1,
                     defer=0.05)


@pytest.fixture
def svc(sender_services: Services) -> Services:
    return sender_services


@pytest.fixture
async def school(svc: Services) -> dict[str, Person]:
    """One DSL (also on Teams), a teacher, and an admin: the escalation contact, none being named."""
    return {
        "teacher": await people.add(svc, email="tina@oak.sch.uk", role="staff", name="Tina Teacher", school="oak",
                                    slack_user_id="U0TEACHER1"),
        "dsl": await people.add(svc, email="dee@oak.sch.uk", role="dsl", name="Dee DSL", school="oak",
                                slack_user_id=DSL, teams_user_id=DSL_TEAMS),
        "admin": await people.add(svc, email="ada@oak.sch.uk", role="admin", name="Ada Admin", school="oak",
                                  slack_user_id=ADMIN),
    }


async def outbox_rows(svc: Services, **where: Any) -> list[OutboxMessage]:
    async with svc.db.transaction() as s:
        query = select(OutboxMessage).where(*(getattr(OutboxMessage, k) == v for k, v in where.items()))
        return list((await s.execute(query.order_by(col(OutboxMessage.id)))).scalars())


def posted_keys(fake: FakeSlack, user: str) -> list[str]:
    return [m["metadata"]["event_payload"]["key"] for m in fake.messages_to(user)]


async def drain_slack(svc: Services, fake: FakeSlack, config: SenderConfig = QUICK, max_wait: float = 2) -> DrainReport:
    return await drain(svc, sender_platform(slack_settings(fake)), config=config, max_wait=max_wait)


async def failing_until(svc: Services, fake: FakeSlack, *, attempts: int) -> OutboxMessage:
    """Drain, pass by pass, while Slack is down, until the urgent alert has failed `attempts` times."""
    for _ in range(200):
        [alert] = await outbox_rows(svc, kind=Kind.URGENT_ALERT.value, platform="slack")
        if alert.attempts >= attempts:
            return alert
        await drain_slack(svc, fake, max_wait=0)
        await asyncio.sleep(0.03)
    raise AssertionError(f"the alert was tried {alert.attempts} times, not {attempts}")


async def test_an_urgent_alert_outlasts_a_slack_outage_and_widens_once(
        fake_slack: FakeSlack, svc: Services, school: dict[str, Person]) -> None:
    ref = (await drive(svc, school, danger="yes", until=lambda v: v.urgent)).ref
    fake_slack.fail_next("chat.postMessage", status=500, times=8)  # Slack is down for 8 posts

    await drain_slack(svc, fake_slack)

    [alert] = await outbox_rows(svc, kind=Kind.URGENT_ALERT.value)
    assert (alert.status, alert.platform) == ("sent", "slack")
    assert alert.attempts > QUICK.max_attempts  # a routine message would have been given up
    [unreachable] = await outbox_rows(svc, kind=Kind.UNREACHABLE.value)
    assert (unreachable.recipient_id, unreachable.status) == (school["admin"].id, "sent")
    assert posted_keys(fake_slack, DSL) == [alert.dedupe_key]  # delivered once Slack recovered, once
    assert posted_keys(fake_slack, ADMIN) == [unreachable.dedupe_key]
    [told] = fake_slack.messages_to(ADMIN)
    assert ref in told["text"] and "no DSL or deputy can be reached" in told["text"]
    every_post = len(fake_slack.calls_to("chat.postMessage"))
    assert every_post == 8 + 2 == sum(r.attempts for r in await outbox_rows(svc))  # each post an attempt: none doubled
    assert not await outbox_rows(svc, platform="teams")  # this deployment does not deliver on Teams


async def test_an_alert_the_dsl_acknowledges_while_slack_is_down_is_not_sent_late(
        fake_slack: FakeSlack, svc: Services, school: dict[str, Person]) -> None:
    ref = (await drive(svc, school, danger="yes", until=lambda v: v.urgent)).ref
    fake_slack.fail_next("chat.postMessage", status=500, times=1000)
    await failing_until(svc, fake_slack, attempts=QUICK.max_attempts + 1)  # retried past where routine gives up

    await ack.acknowledge(svc, actor=school["dsl"], case_ref=ref)  # by phone, or in the Home tab
    await asyncio.sleep(QUICK.urgent_max_backoff * 1.5)  # the alert's next attempt is due
    report = await drain_slack(svc, fake_slack, max_wait=0)  # one pass: Slack is still down

    assert report.counts.get("cancelled", 0) >= 1
    [alert] = await outbox_rows(svc, kind=Kind.URGENT_ALERT.value)
    assert (alert.status, alert.last_error) == ("cancelled", "not_needed:acknowledged")
    assert {r.status for r in await outbox_rows(svc)} <= {"cancelled"}  # the widened message stopped too
    fake_slack.reset()  # Slack is back: nothing left to send
    assert (await drain_slack(svc, fake_slack)).counts == {}
    assert not fake_slack.messages_to(DSL)


async def answer_as_the_dsl(svc: Services, school: dict[str, Person], view: CaseView) -> CaseView:
    """Carry the case on until the DSL has answered a step of it (which cancels its urgent ladder)."""
    while True:
        assert view.step is not None, "the case closed before a DSL answered"
        by_dsl = view.step.actor is Actor.DSL
        actor = school["dsl"] if by_dsl else school["teacher"]
        view = await cases.answer(svc, actor=actor, case_ref=view.ref, version=view.version, step=view.step.id,
                                  values=asked(view.step, {**ANSWERS, "threshold": "significant_harm"}), platform="slack")
        if by_dsl:
            return view


async def test_an_alert_is_moot_once_a_dsl_has_answered_the_case(
        fake_slack: FakeSlack, svc: Services, school: dict[str, Person]) -> None:
    view = await drive(svc, school, danger="yes", until=lambda v: v.urgent)
    fake_slack.fail_next("chat.postMessage", status=500, times=1000)
    await failing_until(svc, fake_slack, attempts=1)

    await answer_as_the_dsl(svc, school, view)  # the DSL answered in the app, without acknowledging
    await asyncio.sleep(QUICK.urgent_max_backoff * 1.5)  # the alert's next attempt is due
    await drain_slack(svc, fake_slack, max_wait=0)  # one pass: Slack is still down

    [alert] = await outbox_rows(svc, kind=Kind.URGENT_ALERT.value)
    assert alert.status == "cancelled"


@pytest.mark.parametrize("teams_delivers", [True, False])
async def test_an_undelivered_alert_is_copied_to_the_dsls_teams_only_where_teams_is_delivered(
        fake_slack: FakeSlack, svc: Services, school: dict[str, Person], teams_delivers: bool) -> None:
    on = replace(svc, delivering=frozenset({"slack", "teams"})) if teams_delivers else svc
    await drive(on, school, danger="yes", until=lambda v: v.urgent)
    fake_slack.fail_next("chat.postMessage", status=500, times=1000)

    alert = await failing_until(on, fake_slack, attempts=QUICK.widen_after + 2)  # widened on 3 failures, then 2 more

    copies = await outbox_rows(on, platform="teams")
    if teams_delivers:
        [copy] = copies  # once, although the alert failed again after widening
        assert (copy.recipient_id, copy.kind, copy.dedupe_key) == (school["dsl"].id, "urgent_alert",
                                                                   f"{alert.dedupe_key}@teams")
        assert copy.payload == alert.payload
    else:
        assert copies == []
    assert len(await outbox_rows(on, kind=Kind.UNREACHABLE.value)) == 1


async def test_an_urgent_alerts_first_retry_after_a_slack_500_comes_within_seconds(
        fake_slack: FakeSlack, svc: Services) -> None:
    to = await recipients(svc, 1)
    await queue(svc, to, 1, kind=Kind.URGENT_ALERT)
    fake_slack.fail_next("chat.postMessage", status=500)
    started = time.monotonic()

    report = await drain_slack(svc, fake_slack, config=SenderConfig(), max_wait=5)  # the production defaults

    assert report.counts == {"retried": 1, "sent": 1}
    assert time.monotonic() - started < 3
    assert delivered_keys(fake_slack, to) == ["test:0"]


# ---------------------------------------------------------------- routine messages and `outbox retry`

async def outbox_retry(url: str, fake: FakeSlack, key: str, *args: str) -> str:
    """`consentbot outbox retry ...` in this process, on a thread of its own as the command runs its
    own event loop (the fault suite, tests/faults, runs it as a process).
    """
    env = {"DATABASE_URL": url, "CONSENTBOT_ENCRYPTION_KEY": key, "SLACK_BOT_TOKEN": TOKEN, "SLACK_API_URL": fake.url}
    done = await asyncio.to_thread(run_in_process, "outbox", "retry", *args, env=env, cwd=Path.cwd())
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


async def test_a_routine_message_fails_visibly_and_outbox_retry_queues_it_again(
        fake_slack: FakeSlack, db_url: str) -> None:
    svc = await make_services(db_url)
    to = await recipients(svc, 2)
    await queue(svc, to, 2)  # test:0 will fail; test:1 waits for a retry an hour away
    async with svc.db.transaction() as s:
        await s.execute(update(OutboxMessage).where(col(OutboxMessage.dedupe_key) == "test:1")
                        .values(next_attempt_at=utcnow() + timedelta(hours=1)))
    fake_slack.fail_next("chat.postMessage", status=500, times=QUICK.max_attempts)
    await drain_slack(svc, fake_slack)
    [failed] = await outbox_rows(svc, dedupe_key="test:0")
    assert (failed.status, failed.attempts) == ("failed", QUICK.max_attempts)
    await svc.db.dispose()
    key = generate_key("k")

    waiting = await outbox_retry(db_url, fake_slack, key, "--platform", "slack")
    again = await outbox_retry(db_url, fake_slack, key, "--failed", "--platform", "slack")

    assert waiting == "outbox slack: 1 waiting now due, 1 failed left as they are (add --failed to queue them again)"
    assert again == "outbox slack: 1 failed queued again, 0 waiting now due"
    svc = await make_services(db_url)
    try:
        assert (await drain_slack(svc, fake_slack)).counts == {"sent": 2}
        assert Counter(delivered_keys(fake_slack, to)) == Counter({"test:0": 1, "test:1": 1})  # each once
        assert {(r.dedupe_key, r.status, r.attempts) for r in await outbox_rows(svc)} == {
            ("test:0", "sent", 1), ("test:1", "sent", 1)}
    finally:
        await svc.db.dispose()
