"""Reminders and digests reach Slack: the sweep queues, the sender delivers, once, with
references only (issue 4 through the platform issue 3 built)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from slack_sdk.web.async_client import AsyncWebClient

from bot import cases, people, reminders, sender
from bot.cases import CaseView, Person, Services
from bot.digest import run_digests
from handlers.slack.platform import SlackPlatform
from tests.conftest import Clock
from tests.fakes.slack_api import FakeSlack
from tests.slack.conftest import TOKEN

CHILD = "Perpetua Canarywing"
TUESDAY_10 = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)  # a school day, in working hours (GMT)


async def step(svc: Services, who: Person, view: CaseView, values: dict) -> CaseView:
    assert view.step is not None
    return await cases.answer(svc, actor=who, case_ref=view.ref, version=view.version, step=view.step.id,
                              values=values, platform="slack")


async def assigned_case(svc: Services) -> tuple[CaseView, dict[str, Person]]:
    add = people.add
    who = {"teacher": await add(svc, email="t@s.uk", role="staff", name="Tia", school="s",
                                slack_user_id="U0T0000001"),
           "dsl": await add(svc, email="d@s.uk", role="dsl", name="Dev", school="s", slack_user_id="U0D0000001")}
    view = await cases.raise_concern(svc, actor=who["teacher"], platform="slack", values={"immediate_danger": "no"})
    for actor, values in (("teacher", {"child": CHILD, "year_group": "year_4", "concern": f"{CHILD} said so",
                                       "seen_at": "2026-11-24T09:10:00+00:00"}),
                          ("teacher", {"staff_threshold": "early_help"}),
                          ("dsl", {"threshold": "early_help"}),
                          ("dsl", {"assignee": "t@s.uk", "due_at": (TUESDAY_10 + timedelta(hours=1)).isoformat()})):
        view = await step(svc, who[actor], view, values)
    return view, who


async def deliver(svc: Services, fake: FakeSlack) -> sender.DrainReport:
    client = AsyncWebClient(token=TOKEN, base_url=fake.url)
    return await sender.drain(svc, SlackPlatform(client, verify_lost_posts=False))


def texts_to(fake: FakeSlack, user: str) -> list[str]:
    return [str(c.params.get("text")) for c in fake.calls_to("chat.postMessage") if c.params.get("channel") == user]


async def test_an_overdue_outcome_reminds_the_assignee_in_slack_once(slack_services: Services,
                                                                  fake_slack: FakeSlack) -> None:
    svc = slack_services
    view, _ = await assigned_case(svc)
    await deliver(svc, fake_slack)  # the assignment DM and the DSL's messages
    before = len(texts_to(fake_slack, "U0T0000001"))

    late = TUESDAY_10 + timedelta(hours=1, minutes=5)
    first = await reminders.sweep(svc, now=late)
    again = await reminders.sweep(svc, now=late + timedelta(minutes=1))
    await deliver(svc, fake_slack)

    reminded = texts_to(fake_slack, "U0T0000001")[before:]
    assert first.sent == 1 and again.sent == 0
    assert reminded == [f"Reminder: concern {view.ref} is waiting for you: Record the request for agreement and its "
                        f"outcome, due {reminded[0].rsplit('due ', 1)[1]}"]
    every_call = json.dumps([c.params for c in fake_slack.calls])
    assert CHILD.split()[0] not in every_call and CHILD.split()[1] not in every_call


async def test_the_dsl_digest_arrives_in_slack_with_references_only(slack_services: Services,
                                                                  fake_slack: FakeSlack) -> None:
    svc = slack_services
    view, _ = await assigned_case(svc)
    wednesday_8 = TUESDAY_10 + timedelta(days=1, hours=-2)
    await run_digests(svc, now=wednesday_8)
    svc.clock = Clock(wednesday_8 + timedelta(minutes=1))  # the sender sends what is due by its clock
    await deliver(svc, fake_slack)

    digests = [t for t in texts_to(fake_slack, "U0D0000001") if t.startswith("Safeguarding digest")]
    daily, weekly = sorted(digests, key=lambda t: "Week to" in t)  # the first digest of a week brings the summary
    assert f"{view.ref} due Tue 24 Nov 2026, 11:00, assigned to Tia" in daily and "Outcomes overdue: 1" in daily
    assert "Week to Wed 25 Nov 2026: raised 1, decided 1" in weekly
    assert all(CHILD.split()[0] not in t for t in digests)
