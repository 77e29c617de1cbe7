"""What the bot starts in Teams: reminders and digests once, references only; the Connector's 429
waited out through the outbox; a phone push never repeated blindly; each school's chosen platform.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bot import cases, reminders, schools
from bot.cases import CaseView, Person, Services
from bot.digest import run_digests
from bot.messages import Kind
from bot.schools import Changes
from storage import repo
from storage.models import OutboxMessage
from tests.cli.harness import Bot
from tests.conftest import Clock
from tests.teams.cardplay import CHILD, text
from tests.teams.conftest import USERS, Driver

TUESDAY_10 = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)  # a school day, in working hours (GMT)


async def assigned_case(svc: Services, team: dict[str, Person], *, danger: str = "no") -> CaseView:
    view = await cases.raise_concern(svc, actor=team["teacher"], platform="teams", values={"immediate_danger": danger})
    steps: list[tuple[str, dict[str, Any]]] = [
        ("teacher", {"child": CHILD, "year_group": "year_4", "concern": f"{CHILD} said so",
                     "seen_at": "2026-11-24T09:10:00+00:00"}),
        ("teacher", {"staff_threshold": "early_help"}), ("dsl", {"threshold": "early_help"}),
        ("dsl", {"assignee": USERS["assignee"].email, "due_at": (TUESDAY_10 + timedelta(hours=1)).isoformat()})]
    if danger == "yes":
        return view
    for who, values in steps:
        assert view.step is not None
        view = await cases.answer(svc, actor=team[who], case_ref=view.ref, version=view.version, step=view.step.id,
                                  values=values, platform="teams")
    return view


def texts_to(teams: Driver, who: str) -> list[str]:
    opened = teams.fake.conversation_of(USERS[who].aad)
    return [text(a["content"]) for m in (teams.fake.activities_in(opened) if opened else [])
            for a in m.get("attachments") or []]


async def test_an_overdue_outcome_reminds_the_assignee_in_teams_once(teams_driver: Driver,
                                                                   team: dict[str, Person]) -> None:
    teams, svc = teams_driver, teams_driver.svc
    view = await assigned_case(svc, team)
    await teams.drain()
    before = len(texts_to(teams, "assignee"))
    late = TUESDAY_10 + timedelta(hours=1, minutes=5)
    first = await reminders.sweep(svc, now=late)
    again = await reminders.sweep(svc, now=late + timedelta(minutes=1))
    await teams.drain()
    reminded = texts_to(teams, "assignee")[before:]
    assert first.sent == 1 and again.sent == 0
    assert len(reminded) == 1 and reminded[0].startswith(f"Reminder: concern {view.ref} is waiting for you")
    assert CHILD not in teams.fake.all_sent_text()


async def test_the_dsl_digest_arrives_in_teams_with_references_only(teams_driver: Driver,
                                                                  team: dict[str, Person]) -> None:
    teams, svc = teams_driver, teams_driver.svc
    view = await assigned_case(svc, team)
    wednesday_8 = TUESDAY_10 + timedelta(days=1, hours=-2)
    await run_digests(svc, now=wednesday_8)
    await run_digests(svc, now=wednesday_8 + timedelta(minutes=5))  # the job runs every 5 minutes: still once
    svc.clock = Clock(wednesday_8 + timedelta(minutes=6))
    await teams.drain()
    digests = [t for t in texts_to(teams, "dsl") if t.startswith("Safeguarding digest")]
    assert len(digests) == 2  # the daily one, and the week's summary with the first of the week
    assert any(view.ref in t for t in digests) and not any(CHILD in t for t in digests)


async def test_a_connector_429_is_waited_out_and_the_card_posted_once(teams_driver: Driver,
                                                                     team: dict[str, Person]) -> None:
    teams, svc = teams_driver, teams_driver.svc
    await assigned_case(svc, team)
    teams.fake.fail_next(r"/activities$", status=429, retry_after=1)
    first = await teams.drain()
    assert "failed" not in first.counts and first.counts.get("sent", 0) < 4, first.counts  # one was held back
    await teams.drain(max_wait=5)
    posts = teams.fake.calls_to(r"/activities$", "POST")
    sent = sum(len(teams.fake.activities_in(c)) for c in {teams.fake.conversation_of(u.aad) for u in USERS.values()}
               if c)
    assert len(posts) == sent + 1  # the 429 acted on nothing; its message was posted once, later
    assert posts[-1].time - posts[0].time >= 0.9  # not before Retry-After
    async with svc.db.read() as s:
        rows = await repo.outbox_counts(s)
    assert dict(rows) == {"sent": dict(rows)["sent"]}  # everything sent, nothing failed or pending
    for who in ("dsl", "deputy"):
        assert len([t for t in texts_to(teams, who) if "needs your decision" in t or "decided by" in t]) >= 1


async def test_an_urgent_alert_pushes_to_the_phone_once_even_when_graph_fails(teams_driver: Driver,
                                                                             team: dict[str, Person]) -> None:
    teams, svc = teams_driver, teams_driver.svc
    view = await assigned_case(svc, team, danger="yes")
    teams.graph.fail_next(r"sendActivityNotification", 429, retry_after=1)  # waited out: Graph did nothing
    teams.graph.fail_next(r"sendActivityNotification", 503, act=True, times=1)  # Graph notified, then failed
    await teams.drain()
    pushes = {who: teams.graph.notifications_to(USERS[who].aad) for who in ("dsl", "deputy")}
    assert sum(len(p) for p in pushes.values()) == 2, pushes  # one each: the 503's push is not repeated
    for sent in pushes.values():
        assert sent[0]["templateParameters"] == [{"name": "caseRef", "value": view.ref}]
        assert CHILD not in str(sent)
    for who in ("dsl", "deputy"):
        assert [t for t in texts_to(teams, who) if t.startswith("URGENT")]  # the card arrived either way


async def test_a_person_on_both_platforms_is_messaged_where_the_school_says(teams_driver: Driver,
                                                                          team: dict[str, Person]) -> None:
    svc = teams_driver.svc
    svc.delivering = frozenset({"slack", "teams"})
    async with svc.db.transaction() as s:
        await repo.link_platform_id(s, team["dsl"].id, "slack", "U0DSL00001")

    async def platforms() -> dict[int, str]:
        async with svc.db.read() as s:
            rows = (await s.execute(OutboxMessage.__table__.select())).mappings().all()  # type: ignore[attr-defined]
        return {r["recipient_id"]: r["platform"] for r in rows if r["kind"] == Kind.URGENT_ALERT.value}

    await assigned_case(svc, team, danger="yes")
    assert (await platforms())[team["dsl"].id] == "slack"  # by default, Slack first
    await schools.update(svc, slug="oak", changes=Changes(platform="teams"))
    view = await cases.raise_concern(svc, actor=team["teacher"], platform="teams", values={"immediate_danger": "no"})
    view = await cases.answer(svc, actor=team["teacher"], case_ref=view.ref, version=view.version, step="concern",
                              values={"child": CHILD, "year_group": "year_4", "concern": "x",
                                      "seen_at": "2026-11-24T09:10:00+00:00"},
                              platform="teams")
    await cases.answer(svc, actor=team["teacher"], case_ref=view.ref, version=view.version,
                       step="staff_threshold", values={"staff_threshold": "early_help"}, platform="teams")
    async with svc.db.read() as s:
        rows = (await s.execute(OutboxMessage.__table__.select())).mappings().all()  # type: ignore[attr-defined]
    latest = [r for r in rows if r["recipient_id"] == team["dsl"].id and r["kind"] == Kind.DECISION_NEEDED.value]
    assert latest[-1]["platform"] == "teams"


async def test_an_urgent_decision_pushes_to_the_phone_and_a_routine_one_does_not(teams_driver: Driver,
                                                                                team: dict[str, Person]) -> None:
    teams, svc = teams_driver, teams_driver.svc
    answers = {"emergency_contact": {"emergency_contact": "police_999"},
               "concern": {"child": CHILD, "year_group": "year_4", "concern": "x", "seen_at": "2026-11-24T09:10:00+00:00"},
               "staff_threshold": {"staff_threshold": "significant_harm"}}
    for danger in ("no", "yes"):
        answers["staff_threshold"] = {"staff_threshold": "early_help" if danger == "no" else "significant_harm"}
        view = await cases.raise_concern(svc, actor=team["teacher"], platform="teams",
                                         values={"immediate_danger": danger})
        while view.step is not None and view.step.id in answers:
            view = await cases.answer(svc, actor=team["teacher"], case_ref=view.ref, version=view.version,
                                      step=view.step.id, values=answers[view.step.id], platform="teams")
        assert view.step is not None and view.step.id == "dsl_threshold"
        await teams.drain()
        pushed = [n for who in ("dsl", "deputy") for n in teams.graph.notifications_to(USERS[who].aad)]
        if danger == "no":
            assert pushed == []  # a routine decision waits in the chat; no phone push
        else:
            assert len(pushed) == 2 and {p["templateParameters"][0]["value"] for p in pushed} == {view.ref}


def test_outbox_drain_names_what_teams_needs(sqlite_url: str, tmp_path: Path) -> None:
    bot = Bot(database_url=sqlite_url, workdir=tmp_path, slack=False, in_process=True)
    bot.run("db", "upgrade")
    off = bot.run("outbox", "drain", "--platform", "teams", check=False)
    assert off.returncode == 1 and off.stderr.strip().splitlines()[-1] == (
        "error: Teams is not configured: set TEAMS_CLIENT_ID, TEAMS_CLIENT_SECRET and TEAMS_TENANT_ID "
        "(see docs/teams-setup.md)")
    other = bot.run("outbox", "drain", "--platform", "email", check=False)
    assert other.returncode == 1 and "no 'email' queue: use slack or teams" in other.stderr
