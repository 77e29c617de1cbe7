"""Honest alerts, operator side: `consentbot doctor` says which schools cannot be alerted and why;
`staff add` refuses a mistyped school and malformed chat ids; `consentbot school set|list`."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot import people, schools
from bot.cases import Person, Services
from bot.crypto import Keyring
from bot.errors import NotFound
from bot.schools import Changes, InvalidSetting
from storage import repo
from storage.db import create_database
from storage.migrate import upgrade
from storage.models import OutboxMessage
from tests.cli.harness import Bot, setup_school
from tests.conftest import england

SLACK_ON = {"SLACK_BOT_TOKEN": "xoxb-test", "SLACK_SIGNING_SECRET": "test"}  # Slack configured: it is "delivering"
SLACK_OFF = {"SLACK_BOT_TOKEN": "", "SLACK_SIGNING_SECRET": ""}
# Several workspaces: Slack is on through OAuth, each school reached only through its linked workspace.
SLACK_OAUTH = {"SLACK_BOT_TOKEN": "", "SLACK_SIGNING_SECRET": "test", "SLACK_CLIENT_ID": "1.2", "SLACK_CLIENT_SECRET": "s"}
HEALTHY = (("dee@oak.sch.uk", "dsl", "U0DEE00001"), ("pat@oak.sch.uk", "deputy", "U0PAT00001"),
           ("tina@oak.sch.uk", "staff", None))


def cli_school(bot: Bot, *people_: tuple[str, str, str | None], school: str = "oak") -> None:
    """Migrate, then add (email, role, Slack id or None) people to a new school, in-process: a
    `consentbot` process costs about a second, and `staff add` through the CLI has tests of its own.
    """

    async def go() -> None:
        svc = Services(db=create_database(bot.database_url), keyring=Keyring.parse(bot.key), policy=england())
        try:
            await upgrade(svc.db)
            for email, role, slack_id in people_:
                await people.add(svc, email=email, role=role, name=email.split("@")[0].title(), school=school,
                                 slack_user_id=slack_id)
        finally:
            await svc.db.dispose()

    asyncio.run(go())


def seed_outbox(bot: Bot, *rows: tuple[str, str, timedelta]) -> None:
    """Queue (platform, status, age) messages to the DSL, as the use cases would have."""

    async def go() -> None:
        db = create_database(bot.database_url)
        now = datetime.now(UTC)
        try:
            async with db.transaction() as s:
                dee = await repo.staff_by(s, email="dee@oak.sch.uk")
                assert dee is not None and dee.id is not None
                await repo.enqueue(s, [OutboxMessage(
                    school_id=dee.school_id, recipient_id=dee.id, platform=platform, kind="reminder", payload="{}",
                    dedupe_key=f"test:{i}", status=status, created_at=now - age, next_attempt_at=now - age)
                    for i, (platform, status, age) in enumerate(rows)])
        finally:
            await db.dispose()

    asyncio.run(go())


# doctor


def test_a_school_whose_dsl_has_no_chat_id_cannot_be_alerted(db_url: str, tmp_path: Path) -> None:
    bot = Bot(database_url=db_url, workdir=tmp_path, extra_env=SLACK_ON, in_process=True)
    cli_school(bot, ("dee@oak.sch.uk", "dsl", None), ("tina@oak.sch.uk", "staff", "U0TINA0001"))
    done = bot.run("doctor", check=False)
    assert done.returncode == 1, done.stdout
    lines = done.stdout.splitlines()
    assert lines[0] == "oak: 0 of 1 DSLs and deputies can be alerted"
    assert lines[1].startswith("oak: CANNOT BE ALERTED: no active DSL or deputy can be reached")
    assert ("oak: DSL dee@oak.sch.uk cannot be reached (no Slack or Teams id on a platform this deployment "
            "sends on)") in lines
    assert "oak: no deputy" in lines
    assert lines[-1].startswith("1 school checked: 1 cannot be alerted, ")


def test_a_healthy_school_passes_and_fails_once_slack_is_off(sqlite_url: str, tmp_path: Path) -> None:
    bot = Bot(database_url=sqlite_url, workdir=tmp_path, extra_env=SLACK_ON, in_process=True)
    cli_school(bot, *HEALTHY)
    bot.run("school", "set", "oak", "--dsl-phone", "01632 960 123", "--front-door-phone", "01632 960 000",
            "--escalation", "pat@oak.sch.uk")
    healthy = bot.run("doctor", check=False)
    assert (healthy.returncode, healthy.stdout) == (0, "oak: 2 of 2 DSLs and deputies can be alerted (slack 2)\n"
                                                       "1 school checked: 0 cannot be alerted, 0 warnings\n")
    bot.extra_env = SLACK_OFF  # the same people, but this deployment sends on no chat platform
    off = bot.run("doctor", check=False)
    assert off.returncode == 1
    assert "oak: CANNOT BE ALERTED: " in off.stdout and "sends on no chat platform" in off.stdout
    assert "oak: DSL dee@oak.sch.uk cannot be reached" in off.stdout


def test_a_mistyped_school_is_refused_and_flagged_once_created_on_purpose(sqlite_url: str, tmp_path: Path) -> None:
    bot = Bot(database_url=sqlite_url, workdir=tmp_path, extra_env=SLACK_ON, in_process=True)
    cli_school(bot, *HEALTHY)
    add_tom = ("staff", "add", "tom@oak.sch.uk", "--role", "staff", "--name", "Tom", "--school", "oka")
    refused = bot.run(*add_tom, check=False)
    assert refused.returncode == 1
    assert refused.stderr.splitlines()[-1] == ("error: no school 'oka'. Known schools: oak. "
                                                 "Did you mean 'oak'? Add --create-school to create it.")
    assert "tom@oak.sch.uk" not in bot.run("staff", "list").stdout
    bot.run(*add_tom, "--create-school")
    done = bot.run("doctor", check=False)
    assert "oka: looks like a typo of 'oak' (1 member of staff, no DSL)" in done.stdout.splitlines()
    assert "oka: CANNOT BE ALERTED: " in done.stdout and done.returncode == 1
    assert "oak: looks like a typo" not in done.stdout and "oak: CANNOT BE ALERTED" not in done.stdout
    bot.run("staff", "remove", "tom@oak.sch.uk")  # a school cannot be deleted: emptied, it no longer fails doctor
    emptied = bot.run("doctor", check=False)
    assert emptied.returncode == 0 and "oka: no active staff" in emptied.stdout.splitlines()
    assert not [line for line in emptied.stdout.splitlines() if line.startswith("oka: ")
                and "no active staff" not in line and "can be alerted" not in line]


def test_stuck_messages_are_counted_per_platform(db_url: str, tmp_path: Path) -> None:
    bot = Bot(database_url=db_url, workdir=tmp_path, extra_env=SLACK_ON, in_process=True)
    cli_school(bot, *HEALTHY)
    minutes = timedelta(minutes=1)
    seed_outbox(bot, ("console", "pending", 125 * minutes + timedelta(seconds=20)), ("console", "pending", minutes),
                ("console", "sent", 300 * minutes), ("slack", "pending", minutes), ("slack", "sent", 60 * minutes),
                ("slack", "pending", 30 * minutes + timedelta(seconds=20)), ("slack", "failed", 3 * minutes))
    done = bot.run("doctor", check=False)
    assert done.returncode == 0, done.stdout
    lines = done.stdout.splitlines()
    assert "oak: 2 messages undelivered (oldest 2h 5m) on console" in lines  # nothing sends console messages
    assert "oak: 2 messages undelivered (oldest 30m) on slack" in lines  # 30 minutes pending, and a failure
    assert lines[-1] == "1 school checked: 0 cannot be alerted, 4 warnings"  # also: no phones, no escalation


def install_workspaces(bot: Bot, *teams: tuple[str, str, str | None]) -> None:
    """Install (team id, name, school slug or None) Slack workspaces, as /slack/install would, and link them."""
    from bot import workspaces

    async def go() -> None:
        svc = Services(db=create_database(bot.database_url), keyring=Keyring.parse(bot.key), policy=england())
        try:
            for team_id, name, school in teams:
                await workspaces.save(svc, workspace=workspaces.Workspace(team_id=team_id, team_name=name,
                                                                          bot_token=f"xoxb-{team_id}"))
                if school:
                    await workspaces.link(svc, team_id=team_id, school=school)
        finally:
            await svc.db.dispose()

    asyncio.run(go())


def test_doctor_names_each_schools_workspace_and_an_unlinked_school_or_workspace(db_url: str,
                                                                                 tmp_path: Path) -> None:
    bot = Bot(database_url=db_url, workdir=tmp_path, extra_env=SLACK_OAUTH, in_process=True)
    cli_school(bot, *HEALTHY)
    cli_school(bot, ("bo@birch.sch.uk", "dsl", "U0BO000001"), ("tia@birch.sch.uk", "staff", "U0TIA00001"),
               school="birch")
    single = bot.run("doctor", check=False)  # no workspace installed yet: the one-workspace report, unchanged
    assert single.returncode == 0 and "workspace" not in single.stdout.lower()

    install_workspaces(bot, ("T0OAKWOOD1", "Oak Primary", "oak"), ("T0BIRCHES1", "Birch Academy", None))
    done = bot.run("doctor", check=False)
    lines = done.stdout.splitlines()
    assert done.returncode == 1, done.stdout  # birch's DSL is on Slack only, and no workspace carries the DM
    assert "oak: Slack workspace Oak Primary (T0OAKWOOD1)" in lines
    assert "birch: 0 of 1 DSLs and deputies can be alerted" in lines
    assert ("birch: CANNOT BE ALERTED: no active DSL or deputy can be reached through the bot, so an urgent concern "
            "raised here alerts nobody (no Slack workspace is linked to this school)") in lines
    assert "birch: DSL bo@birch.sch.uk cannot be reached (their Slack id is in no workspace linked to this school)" \
        in lines
    assert ("birch: no Slack workspace is linked to this school, so its 2 people registered on Slack cannot be "
            "alerted there or raise a concern there (consentbot slack link TEAM_ID --school birch)") in lines
    assert ("Slack workspace Birch Academy (T0BIRCHES1): installed but linked to no school, so it serves nobody: "
            "run `consentbot slack link T0BIRCHES1 --school SLUG`") in lines
    assert not [line for line in lines if line.startswith("oak: ") and "workspace" in line and "T0OAKWOOD1" not in line]
    assert "xoxb-" not in done.stdout

    install_workspaces(bot, ("T0BIRCHES1", "Birch Academy", "birch"))  # a reinstall, then `slack link`
    fixed = bot.run("doctor", check=False)
    assert fixed.returncode == 0, fixed.stdout
    assert "birch: Slack workspace Birch Academy (T0BIRCHES1)" in fixed.stdout.splitlines()
    assert "linked" not in fixed.stdout and "birch: 1 of 1 DSLs and deputies can be alerted (slack 1)" in fixed.stdout


# staff add


def test_staff_add_refuses_malformed_chat_ids_through_the_cli(sqlite_url: str, tmp_path: Path) -> None:
    bot = Bot(database_url=sqlite_url, workdir=tmp_path, in_process=True)
    setup_school(bot)
    add = ("staff", "add", "tom@oak.sch.uk", "--role", "staff", "--name", "Tom", "--school", "oak")
    slack = bot.run(*add, "--slack-id", "u0tom", check=False)
    assert slack.returncode == 1
    assert "error: 'u0tom' is not a Slack member id" in slack.stderr and "Copy member ID" in slack.stderr
    teams = bot.run(*add, "--teams-id", "tom@oak.sch.uk", check=False)
    assert teams.returncode == 1
    assert "is not a Teams user id" in teams.stderr and "Object ID" in teams.stderr
    assert "tom@oak.sch.uk" not in bot.run("staff", "list").stdout
    bot.run(*add, "--slack-id", "U0TOM00001", "--teams-id", "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0")
    assert "tom@oak.sch.uk\tTom\tstaff\toak\tU0TOM00001" in bot.run("staff", "list").stdout


@pytest.mark.parametrize("slack_id", ["u012abcdef", "C012ABCDEF", "U0", "<@U012ABCDEF>", "U012 ABCDEF", "U" + "A" * 21])
async def test_malformed_slack_ids_are_refused(services: Services, school: dict[str, Person], slack_id: str) -> None:
    with pytest.raises(InvalidSetting, match="is not a Slack member id. A member id looks like U012ABCDEF"):
        await people.add(services, email="x@oak.sch.uk", role="staff", name="X", school="oak", slack_user_id=slack_id)
    assert not [r for r in await people.listing(services, school="oak") if r[0] == "x@oak.sch.uk"]


@pytest.mark.parametrize("teams_id", ["x@oak.sch.uk", "29:", "29:abc def", "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f",
                                      "0b1c2d3e4f5061728394a5b6c7d8e9f0", "29:" + "a" * 62])
async def test_malformed_teams_ids_are_refused(services: Services, school: dict[str, Person], teams_id: str) -> None:
    with pytest.raises(InvalidSetting, match="is not a Teams user id. Use the person's Microsoft Entra object id"):
        await people.add(services, email="x@oak.sch.uk", role="staff", name="X", school="oak", teams_user_id=teams_id)


@pytest.mark.parametrize(("slack_id", "teams_id"), [("W0ENTERPRISE1", None), (None, "29:1aBc-De_F"),
                                                   (None, "0B1C2D3E-4F50-6172-8394-A5B6C7D8E9F0")])
async def test_well_formed_chat_ids_are_accepted(services: Services, school: dict[str, Person], slack_id: str | None,
                                                 teams_id: str | None) -> None:
    await people.add(services, email="x@oak.sch.uk", role="staff", name="X", school="oak", slack_user_id=slack_id,
                     teams_user_id=teams_id)
    row = next(r for r in await people.listing(services, school="oak") if r[0] == "x@oak.sch.uk")
    assert row[4:] == (slack_id or "-", teams_id or "-")


async def test_an_unknown_school_is_created_only_on_request(services: Services, school: dict[str, Person]) -> None:
    typo = r"^no school 'ok'. Known schools: elm, oak. Did you mean 'oak'\? Add --create-school to create it.$"
    with pytest.raises(NotFound, match=typo):
        await people.add(services, email="x@oak.sch.uk", role="staff", name="X", school="ok", create_school=False)
    await people.add(services, email="x@ash.sch.uk", role="staff", name="X", school="ash", create_school=True)
    assert [r[0] for r in await people.listing(services, school="ash")] == ["x@ash.sch.uk"]


# school set | list


def test_school_set_changes_only_what_it_is_given_and_lists_it(sqlite_url: str, tmp_path: Path) -> None:
    bot = Bot(database_url=sqlite_url, workdir=tmp_path, in_process=True)
    setup_school(bot)
    assert bot.run("school", "list").stdout == ("oak\tname=oak\ttimezone=Europe/London\tdsl_phone=-\t"
                                                "front_door_phone=-\tescalation=-\tdigest_time=-\tplatform=-\n")
    done = bot.run("school", "set", "oak", "--name", "Oak Primary", "--dsl-phone", "01632 960 123",
                   "--front-door-phone", "+44 (1632) 960-000", "--escalation", "PAT@oak.sch.uk",
                   "--timezone", "Europe/London", "--digest-time", "07:45")
    assert done.stdout == "school oak: changed digest_time, dsl_phone, escalation, front_door_phone, name\n"
    assert bot.run("school", "list").stdout == ("oak\tname=Oak Primary\ttimezone=Europe/London\t"
                                                "dsl_phone=01632 960 123\tfront_door_phone=+44 (1632) 960-000\t"
                                                "escalation=pat@oak.sch.uk\tdigest_time=07:45\tplatform=-\n")
    bot.run("school", "set", "oak", "--dsl-phone", "", "--timezone", "Europe/Dublin")
    assert "\ttimezone=Europe/Dublin\tdsl_phone=-\tfront_door_phone=+44" in bot.run("school", "list").stdout
    log = [line for line in bot.run("audit", "show").stdout.splitlines() if "school_updated" in line]
    assert len(log) == 2 and '"changed":["dsl_phone","timezone"]' in log[1]
    assert "01632" not in "".join(log)  # names of settings, never their values


def test_school_set_refuses_a_bad_value_with_a_clear_error(sqlite_url: str, tmp_path: Path) -> None:
    bot = Bot(database_url=sqlite_url, workdir=tmp_path, in_process=True)
    setup_school(bot)
    done = bot.run("school", "set", "oak", "--digest-time", "01:30", check=False)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.splitlines()[-1] == ("error: digest time 01:30 falls between 01:00 and 02:59, when the "
                                            "clocks change: pick another time")
    assert bot.run("school", "set", "oak", check=False).stderr.splitlines()[-1].startswith("error: nothing to change")
    assert "digest_time=-" in bot.run("school", "list").stdout


INVALID = [
    (Changes(timezone="Europe/Lundon"), "unknown timezone 'Europe/Lundon'"),
    (Changes(timezone="../etc/passwd"), "unknown timezone"),
    (Changes(digest_time="7:30"), "must be HH:MM"),
    (Changes(digest_time="24:00"), "must be HH:MM"),
    (Changes(digest_time="01:00"), "falls between 01:00 and 02:59"),
    (Changes(digest_time="02:59"), "falls between 01:00 and 02:59"),
    (Changes(dsl_phone="call 01632"), "the DSL phone must be a phone number"),
    (Changes(front_door_phone="1" * 41), "the front-door phone must be a phone number"),
    (Changes(front_door_phone="+() -"), "the front-door phone must be a phone number"),
    (Changes(escalation="olu@elm.sch.uk"), "must be an active member of staff of oak"),
    (Changes(escalation="nobody@oak.sch.uk"), "must be an active member of staff of oak"),
    (Changes(name="  "), "name must be 1 to 200 characters"),
]


@pytest.mark.parametrize(("changes", "message"), INVALID)
async def test_invalid_school_settings_are_refused_and_nothing_changes(
        services: Services, school: dict[str, Person], changes: Changes, message: str) -> None:
    with pytest.raises(InvalidSetting, match=message):
        # valid changes alongside the bad one, which must not be written either
        given = {k: v for k, v in vars(changes).items() if v is not None}
        await schools.update(services, slug="oak", changes=replace(Changes(name="Renamed", dsl_phone="01632"), **given))
    oak = next(s for s in await schools.listing(services) if s.slug == "oak")
    assert (oak.name, oak.dsl_phone, oak.timezone, oak.digest_time, oak.escalation) == (
        "oak", None, "Europe/London", None, None)


async def test_a_digest_time_either_side_of_the_clock_change_band_is_accepted(
        services: Services, school: dict[str, Person]) -> None:
    assert await schools.update(services, slug="oak", changes=Changes(digest_time="00:59")) == ["digest_time"]
    assert await schools.update(services, slug="oak", changes=Changes(digest_time="03:00")) == ["digest_time"]
    assert await schools.update(services, slug="oak", changes=Changes(digest_time="03:00")) == []


async def test_school_set_for_an_unknown_school_names_the_known_ones(services: Services,
                                                                    school: dict[str, Person]) -> None:
    with pytest.raises(NotFound, match=r"^no school 'oka'. Known schools: elm, oak.$"):
        await schools.update(services, slug="oka", changes=Changes(name="Oka"))


async def test_doctor_counts_teams_reachability_per_school(services: Services) -> None:
    from bot import doctor as checks

    await people.add(services, email="dee@oak.sch.uk", role="dsl", name="Dee", school="oak",
                     teams_user_id="aaaaaaaa-0000-4000-8000-000000000002")
    await people.add(services, email="pat@oak.sch.uk", role="deputy", name="Pat", school="oak",
                     slack_user_id="U0PAT00001")
    services.delivering = frozenset({"teams"})
    report = await checks.check(services)
    assert report.reach == ["oak: 1 of 2 DSLs and deputies can be alerted (teams 1)"]
    assert "oak: deputy pat@oak.sch.uk cannot be reached (their Slack id is on a platform this deployment " \
           "does not send on)" in [f.line() for f in report.findings]
    services.delivering = frozenset({"teams", "slack"})
    assert (await checks.check(services)).reach == ["oak: 2 of 2 DSLs and deputies can be alerted (slack 1, teams 1)"]
