"""Several workspaces (a trust): two Slack workspaces install the app through Bolt's OAuth flow
against the fake Slack, each is linked to its school, and nothing crosses between them: people
are found only among the workspace's school, a school's DMs go with its own workspace's token,
and a DSL of the other school is neither told nor able to open the case.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from pydantic import ValidationError
from sqlmodel import col, select

from bot import people, workspaces
from bot.app import build_app, platform_status
from bot.audit import verify
from bot.cases import Services
from bot.config import Settings, invalid_settings
from bot.crypto import Keyring, generate_key
from bot.errors import NotFound
from bot.messages import Kind, Message
from bot.ports import Permanent
from bot.sender import DrainReport, SenderConfig, drain
from bot.workspaces import Workspace
from handlers.slack import sender_platform
from storage.db import create_database
from storage.models import AccessLog, SlackInstallation
from tests.cli.harness import run_in_process
from tests.conftest import england
from tests.fakes.slack_api import FakeSlack
from tests.fakes.slack_signing import form_body, sign
from tests.slack.conftest import SECRET, fill
from tests.slack.test_raise import ABOUT, CHILD

CLIENT_ID, CLIENT_SECRET = "1111111111.2222222222", "test-client-secret"
OAK, BIRCH = "T0OAKWOOD1", "T0BIRCHES1"  # the two workspaces
PEOPLE = {  # who: (Slack user id, school, role)
    "oak_teacher": ("U0OAKTEACH", "oak", "staff"), "oak_dsl": ("U0OAKDSL01", "oak", "dsl"),
    "birch_teacher": ("U0BIRTEACH", "birch", "staff"), "birch_dsl": ("U0BIRDSL01", "birch", "dsl"),
}
STATE_COOKIE = "slack-app-oauth-state"


def oauth_settings(fake: FakeSlack, **extra: Any) -> Settings:
    values = {"SLACK_SIGNING_SECRET": SECRET, "SLACK_CLIENT_ID": CLIENT_ID, "SLACK_CLIENT_SECRET": CLIENT_SECRET,
              "SLACK_API_URL": fake.url, "DATABASE_URL": "sqlite+aiosqlite:///unused.db", **extra}
    return Settings(_env_file=None, **values)


@dataclass
class Trust:
    """Plays both workspaces' Slack: installs, then signs and posts what each would send."""

    http: httpx.AsyncClient
    fake: FakeSlack
    svc: Services
    settings: Settings
    views: int = 0
    tokens: dict[str, str] = field(default_factory=dict)

    async def install(self, team: str, name: str) -> httpx.Response:
        """Open /slack/install, approve at "Slack", follow the redirect back with the state and cookie."""
        page = await self.http.get("/slack/install")
        assert page.status_code == 200
        state = page.cookies.get(STATE_COOKIE) or _cookie(page, STATE_COOKIE)
        assert f"state={state}" in page.text  # the Add to Slack link carries the state the cookie holds
        code = self.fake.grant(CLIENT_ID, team, name)
        done = await self.redirect({"code": code, "state": state}, state)
        self.tokens[team] = self.fake.token_of(team) or ""
        return done

    async def redirect(self, query: dict[str, str], cookie_state: str | None) -> httpx.Response:
        headers = {"Cookie": f"{STATE_COOKIE}={cookie_state}"} if cookie_state else {}
        return await self.http.get("/slack/oauth_redirect", params=query, headers=headers)

    async def post(self, body: str, content_type: str) -> httpx.Response:
        headers = {**sign(SECRET, body), "Content-Type": content_type}
        return await self.http.post("/slack/events", content=body.encode(), headers=headers)

    async def command(self, who: str, team: str) -> httpx.Response:
        body = urlencode({"command": "/concern", "text": "", "user_id": PEOPLE[who][0], "team_id": team,
                          "channel_id": "C0STAFFROOM", "trigger_id": self.trigger(), "response_url": ""})
        return await self.post(body, "application/x-www-form-urlencoded")

    async def interact(self, payload: dict[str, Any]) -> httpx.Response:
        return await self.post(form_body(payload), "application/x-www-form-urlencoded")

    async def submit(self, who: str, team: str, view: dict[str, Any], answers: dict[str, Any]) -> dict[str, Any]:
        self.views += 1
        shown = {**view, "id": view.get("id") or f"V{self.views:08d}", "hash": f"h{self.views}",
                 "state": {"values": fill(view, answers)}}
        reply = await self.interact({"type": "view_submission", "user": {"id": PEOPLE[who][0], "team_id": team},
                                     "team": {"id": team}, "view": shown})
        assert reply.status_code == 200
        return dict(reply.json()["view"])

    async def open_case(self, who: str, team: str, ref: str) -> httpx.Response:
        return await self.interact({"type": "block_actions", "trigger_id": self.trigger(),
                                    "user": {"id": PEOPLE[who][0], "team_id": team}, "team": {"id": team},
                                    "actions": [{"type": "button", "action_id": "open_case", "block_id": f"case:{ref}",
                                                 "value": ref, "action_ts": str(time.time())}]})

    async def raise_concern(self, who: str, team: str) -> str:
        """/concern in `team`, the staff steps answered; the case reaches the DSL. Returns its ref."""
        assert (await self.command(who, team)).status_code == 200
        view = await self.submit(who, team, self.opened_views(team)[-1], {"immediate_danger": "no"})
        ref = view["private_metadata"].split(":")[0]
        view = await self.submit(who, team, view, {**ABOUT, "concern": f"{CHILD} said she is scared at home"})
        await self.submit(who, team, view, {"staff_threshold": "significant_harm"})
        return ref

    def opened_views(self, team: str) -> list[dict[str, Any]]:
        """The windows opened with `team`'s token."""
        return [dict(c.params["view"]) for c in self.fake.calls_to("views.open") if c.token == self.tokens[team]]

    def trigger(self) -> str:
        self.views += 1
        return f"{self.views}.trigger"

    async def drain(self) -> DrainReport:
        config = SenderConfig(backoff=0.05, settle=0.05, defer=0.05)
        return await drain(self.svc, sender_platform(self.settings, self.svc), config=config)


def _cookie(response: httpx.Response, name: str) -> str:
    for header in response.headers.get_list("set-cookie"):
        if match := re.match(rf"{name}=([^;]+)", header):
            return match.group(1)
    raise AssertionError(f"no {name} cookie set")


@pytest.fixture
async def trust(fake_slack: FakeSlack, sender_services: Services) -> AsyncIterator[Trust]:
    fake_slack.register_app(CLIENT_ID, CLIENT_SECRET)
    slack_services = sender_services  # SQLite, and PostgreSQL when CONSENTBOT_TEST_DATABASE_URL is set
    for who, (user, school, role) in PEOPLE.items():
        await people.add(slack_services, email=f"{who}@{school}.sch.uk", role=role, name=who.replace("_", " ").title(),
                         school=school, slack_user_id=user)
    settings = oauth_settings(fake_slack)
    transport = httpx.ASGITransport(app=build_app(settings, slack_services))
    async with httpx.AsyncClient(transport=transport, base_url="http://consentbot.test") as http:
        yield Trust(http=http, fake=fake_slack, svc=slack_services, settings=settings)


@pytest.fixture
async def linked(trust: Trust) -> Trust:
    """Both workspaces installed through OAuth, each linked to its school."""
    assert (await trust.install(OAK, "Oak Primary")).status_code == 200
    assert (await trust.install(BIRCH, "Birch Academy")).status_code == 200
    await workspaces.link(trust.svc, team_id=OAK, school="oak")
    await workspaces.link(trust.svc, team_id=BIRCH, school="birch")
    return trust


async def installations(svc: Services) -> list[SlackInstallation]:
    async with svc.db.transaction() as s:
        return list((await s.execute(select(SlackInstallation).order_by(SlackInstallation.team_id))).scalars())


async def test_a_concern_raised_in_one_workspace_stays_in_that_workspace(linked: Trust) -> None:
    oak_token, birch_token = linked.tokens[OAK], linked.tokens[BIRCH]
    assert oak_token and birch_token and oak_token != birch_token

    ref = await linked.raise_concern("oak_teacher", OAK)
    report = await linked.drain()

    assert report.counts.get("sent", 0) >= 1
    oak_dsl, birch_dsl = PEOPLE["oak_dsl"][0], PEOPLE["birch_dsl"][0]
    told = linked.fake.messages_to(oak_dsl, team=OAK)
    assert told and all(m["team"] == OAK for m in told)
    assert ref in json.dumps(told)
    # B's DSL is told nothing, in either workspace; nothing of the case lands in B's workspace.
    assert linked.fake.messages_to(birch_dsl, team=BIRCH) == []
    assert linked.fake.messages_to(oak_dsl, team=BIRCH) == []
    assert linked.fake.messages_to(oak_dsl) == []  # nor in the default workspace of the single-token tests
    # Every call about A's case went with A's token: the window, the answers and the DMs.
    posts = linked.fake.calls_to("chat.postMessage")
    assert posts and {c.token for c in posts} == {oak_token}
    assert {c.token for c in linked.fake.calls_to("views.open")} == {oak_token}
    assert CHILD not in json.dumps([c.params for c in posts])
    # Bolt checked A's token once for the four requests (the install's own check, then one cached).
    assert len([c for c in linked.fake.calls_to("auth.test") if c.token == oak_token]) == 2


async def test_the_other_schools_dsl_cannot_open_the_case(linked: Trust) -> None:
    ref = await linked.raise_concern("oak_teacher", OAK)

    reply = await linked.open_case("birch_dsl", BIRCH, ref)

    assert reply.status_code == 200
    [window] = linked.opened_views(BIRCH)  # B's own token, and a refusal: no details
    assert CHILD not in json.dumps(window) and "scared" not in json.dumps(window)
    oak_dsl_window = await linked.open_case("oak_dsl", OAK, ref)
    assert oak_dsl_window.status_code == 200
    assert CHILD in json.dumps(linked.opened_views(OAK)[-1])  # the case's own DSL sees it: the test can tell


async def test_a_user_id_of_one_workspace_matches_nobody_in_the_other(linked: Trust) -> None:
    ref = await linked.raise_concern("oak_teacher", OAK)
    opened = len(linked.fake.calls_to("views.open"))
    birch = await workspaces.find(linked.svc, enterprise_id=None, team_id=BIRCH)
    birch_id = birch.school_id if birch else None

    # A's DSL's user id arriving from workspace B (a colliding id, or a forged one) is nobody there.
    reply = await linked.open_case("oak_dsl", BIRCH, ref)
    command = await linked.command("oak_teacher", BIRCH)

    assert reply.status_code == 200 and reply.text == ""
    assert command.status_code == 200 and "not registered" in command.text
    assert len(linked.fake.calls_to("views.open")) == opened  # nothing opened, in either workspace
    async with linked.svc.db.transaction() as s:
        refusals = list((await s.execute(select(AccessLog).where(AccessLog.action == "refused_unregistered")))
                        .scalars())
    # Logged as an identification within B's school that found nobody.
    assert [json.loads(r.detail)["by"] for r in refusals] == [
        {"slack_user_id": PEOPLE[who][0], "school_id": str(birch_id)}
        for who in ("oak_dsl", "oak_teacher")]


async def test_dms_of_each_school_go_with_its_own_workspace_token(linked: Trust) -> None:
    await linked.raise_concern("oak_teacher", OAK)
    await linked.raise_concern("birch_teacher", BIRCH)

    await linked.drain()

    by_token: dict[str | None, set[str]] = {}
    for call in linked.fake.calls_to("chat.postMessage"):
        by_token.setdefault(call.token, set()).add(str(call.params["channel"]))
    assert by_token == {linked.tokens[OAK]: {PEOPLE["oak_dsl"][0]}, linked.tokens[BIRCH]: {PEOPLE["birch_dsl"][0]}}
    assert linked.fake.messages_to(PEOPLE["birch_dsl"][0], team=BIRCH)
    assert linked.fake.messages_to(PEOPLE["birch_dsl"][0], team=OAK) == []


async def test_an_installed_workspace_serves_nobody_until_it_is_linked(trust: Trust) -> None:
    await trust.install(OAK, "Oak Primary")

    reply = await trust.command("oak_teacher", OAK)

    assert reply.status_code == 200 and "not linked to a school" in reply.text
    assert trust.fake.calls_to("views.open") == []
    [row] = await installations(trust.svc)
    assert row.school_id is None and row.team_id == OAK


async def test_the_installation_store_keeps_the_token_encrypted(linked: Trust) -> None:
    rows = await installations(linked.svc)

    assert [r.team_id for r in rows] == [BIRCH, OAK]
    for row in rows:
        assert linked.tokens[row.team_id] not in row.bot_token and row.bot_token.startswith("enc:")
        assert row.bot_user_id and row.bot_id and "chat:write" in row.bot_scopes
    found = await workspaces.find(linked.svc, enterprise_id=None, team_id=OAK)
    assert found is not None and found.bot_token == linked.tokens[OAK]


async def test_a_request_from_a_workspace_that_never_installed_is_refused(linked: Trust) -> None:
    ref = await linked.raise_concern("oak_teacher", OAK)
    opened = len(linked.fake.calls_to("views.open"))

    reply = await linked.open_case("oak_dsl", "T0STRANGER", ref)

    assert reply.status_code == 200 and "reinstall" in reply.text  # Bolt's own answer: no installation found
    assert len(linked.fake.calls_to("views.open")) == opened


async def test_the_redirect_refuses_a_forged_replayed_or_cookieless_state(trust: Trust) -> None:
    page = await trust.http.get("/slack/install")
    state = _cookie(page, STATE_COOKIE)
    forged = state[:-4] + ("0000" if not state.endswith("0000") else "1111")

    cookieless = await trust.redirect({"code": trust.fake.grant(CLIENT_ID, OAK, "Oak"), "state": state}, None)
    wrong = await trust.redirect({"code": trust.fake.grant(CLIENT_ID, OAK, "Oak"), "state": forged}, forged)
    good = await trust.redirect({"code": trust.fake.grant(CLIENT_ID, OAK, "Oak"), "state": state}, state)
    replayed = await trust.redirect({"code": trust.fake.grant(CLIENT_ID, BIRCH, "Birch"), "state": state}, state)

    assert cookieless.status_code == 400 and wrong.status_code == 401 and replayed.status_code == 401
    assert good.status_code == 200
    assert [r.team_id for r in await installations(trust.svc)] == [OAK]  # only the good one exchanged a code
    assert len(trust.fake.calls_to("oauth.v2.access")) == 1


async def test_a_bad_code_installs_nothing_and_is_never_logged(trust: Trust, caplog: pytest.LogCaptureFixture) -> None:
    page = await trust.http.get("/slack/install")
    state = _cookie(page, STATE_COOKIE)

    reply = await trust.redirect({"code": "T0OAKWOOD1.not-a-code", "state": state}, state)

    assert reply.status_code == 401
    assert await installations(trust.svc) == []
    assert "not-a-code" not in caplog.text and "invalid_code" in caplog.text


async def test_fake_oauth_v2_access_answers_like_slack(fake_slack: FakeSlack) -> None:
    fake_slack.register_app(CLIENT_ID, CLIENT_SECRET)
    code = fake_slack.grant(CLIENT_ID, OAK, "Oak Primary")
    auth = (CLIENT_ID, CLIENT_SECRET)
    async with httpx.AsyncClient(base_url=fake_slack.url) as http:
        wrong_secret = (await http.post("oauth.v2.access", data={"code": code}, auth=(CLIENT_ID, "nope"))).json()
        ok = (await http.post("oauth.v2.access", data={"code": code}, auth=auth)).json()
        again = (await http.post("oauth.v2.access", data={"code": code}, auth=auth)).json()
        who = (await http.post("auth.test", headers={"Authorization": f"Bearer {ok['access_token']}"})).json()

    assert wrong_secret == {"ok": False, "error": "bad_client_secret"}
    assert ok["ok"] and ok["token_type"] == "bot" and ok["team"] == {"id": OAK, "name": "Oak Primary"}
    assert ok["access_token"].startswith("xoxb-") and ok["bot_user_id"] and ok["authed_user"]["id"]
    assert again == {"ok": False, "error": "invalid_code"}  # a code works once
    assert who["team_id"] == OAK and who["user_id"] == ok["bot_user_id"]


@pytest.mark.parametrize(("values", "says"), [
    ({"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_CLIENT_ID": "1.2", "SLACK_CLIENT_SECRET": "s"}, "Slack is set up twice"),
    ({"SLACK_CLIENT_ID": "1.2"}, "SLACK_CLIENT_ID is set without SLACK_CLIENT_SECRET"),
    ({"SLACK_CLIENT_SECRET": "s"}, "SLACK_CLIENT_SECRET is set without SLACK_CLIENT_ID"),
    ({"SLACK_CLIENT_ID": "1.2", "SLACK_CLIENT_SECRET": "s", "SLACK_SIGNING_SECRET": None}, "without SLACK_SIGNING_SECRET"),
])
def test_half_configured_slack_is_refused_in_one_line(values: dict[str, Any], says: str) -> None:
    base: dict[str, Any] = {"SLACK_SIGNING_SECRET": SECRET, "DATABASE_URL": "sqlite+aiosqlite:///unused.db"}
    with pytest.raises(ValidationError) as refused:
        Settings(_env_file=None, **{k: v for k, v in {**base, **values}.items() if v is not None})

    line = invalid_settings(refused.value)
    assert says in line and "\n" not in line and "s," not in line.split("SLACK")[0]


def test_several_workspaces_mode_is_on_and_says_where_to_install(fake_slack: FakeSlack) -> None:
    settings = oauth_settings(fake_slack)

    assert settings.slack_oauth and settings.slack_configured
    assert "GET /slack/install" in platform_status(settings)["slack"]
    assert not Settings(_env_file=None, SLACK_SIGNING_SECRET=SECRET, SLACK_BOT_TOKEN="xoxb-1").slack_oauth


async def test_linking_names_an_installed_workspace_and_an_existing_school(linked: Trust) -> None:
    with pytest.raises(NotFound, match="No school"):
        await workspaces.link(linked.svc, team_id=OAK, school="okk")
    with pytest.raises(NotFound, match="No installed Slack workspace"):
        await workspaces.link(linked.svc, team_id="T0STRANGER", school="oak")

    # A school has one workspace: linking Birch's workspace to Oak moves Oak there.
    await workspaces.link(linked.svc, team_id=BIRCH, school="oak")
    listed = {w.team_id: slug for w, slug in await workspaces.listing(linked.svc)}
    assert listed == {OAK: None, BIRCH: "oak"}


Consentbot = Callable[..., subprocess.CompletedProcess[str]]


def slack_cli(database_url: str) -> Consentbot:
    """A database with Oak's workspace installed (not linked) and Dee, Oak's DSL; and `consentbot`
    run on it, in several-workspaces mode (in this process: what the commands print and write is checked).
    """
    key = generate_key("k1")

    async def installed() -> None:
        svc = Services(db=create_database(database_url), keyring=Keyring.parse(key), policy=england())
        await people.add(svc, email="dee@oak.sch.uk", role="dsl", name="Dee", school="oak", slack_user_id="U0OAKDSL01")
        await people.add(svc, email="bo@birch.sch.uk", role="dsl", name="Bo", school="birch")
        await workspaces.save(svc, workspace=Workspace(team_id=OAK, team_name="Oak Primary", bot_token="xoxb-oak-1"))
        await svc.db.dispose()

    asyncio.run(installed())
    env = dict(DATABASE_URL=database_url, CONSENTBOT_ENCRYPTION_KEY=key, CONSENTBOT_ENV_FILE=os.devnull,
               SLACK_SIGNING_SECRET=SECRET, SLACK_CLIENT_ID=CLIENT_ID, SLACK_CLIENT_SECRET=CLIENT_SECRET)

    def consentbot(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return run_in_process(*args, env={**env, **extra}, cwd=Path.cwd())

    return consentbot


def test_the_command_lists_and_links_workspaces_and_refuses_a_double_set_up(migrated_sqlite_url: str) -> None:
    consentbot = slack_cli(migrated_sqlite_url)

    before = consentbot("slack", "workspaces")
    mistyped = consentbot("slack", "link", OAK, "--school", "okk")
    linked = consentbot("slack", "link", OAK, "--school", "oak")
    after = consentbot("slack", "workspaces")
    twice = consentbot("slack", "workspaces", SLACK_BOT_TOKEN="xoxb-single")

    assert before.returncode == 0 and OAK in before.stdout and "not linked" in before.stdout
    assert mistyped.returncode == 1 and "No school 'okk'" in mistyped.stderr
    assert linked.returncode == 0 and f"{OAK} (Oak Primary) now serves oak" in linked.stdout
    assert after.returncode == 0 and "serves oak" in after.stdout
    assert twice.returncode == 1 and "Slack is set up twice" in twice.stderr and "Traceback" not in twice.stderr
    assert len(twice.stderr.strip().splitlines()) == 1
    for done in (before, mistyped, linked, after, twice):
        assert "xoxb-oak-1" not in done.stdout + done.stderr and CLIENT_SECRET not in done.stdout + done.stderr


def test_slack_link_is_in_the_access_log_naming_the_operator(migrated_sqlite_url: str) -> None:
    consentbot = slack_cli(migrated_sqlite_url)
    added = [line for line in consentbot("audit", "show").stdout.splitlines() if "\tstaff_added\t" in line]
    dee = re.findall(r'"staff_id":(\d+)', added[0])[0]  # Dee was added first

    linked = consentbot("slack", "link", OAK, "--school", "oak", "--as", "dee@oak.sch.uk")
    moved = consentbot("slack", "link", OAK, "--school", "birch")  # no --as: the OS user
    log = [line for line in consentbot("audit", "show").stdout.splitlines() if "\tslack_workspace_linked\t" in line]
    verified = consentbot("audit", "verify")

    assert linked.returncode == 0 and moved.returncode == 0, linked.stderr + moved.stderr
    assert len(log) == 2
    assert f"\tstaff={dee}\t" in log[0] and f'"operator":"staff:{dee}"' in log[0]
    assert f'"team_id":"{OAK}"' in log[0] and '"installation_id":1' in log[0] and "previous_school_id" not in log[0]
    assert "\tstaff=-\t" in log[1] and '"operator":"os:' in log[1] and '"previous_school_id":' in log[1]
    assert "xoxb-oak-1" not in "".join(log)
    assert verified.returncode == 0 and verified.stdout.rstrip().endswith(": ok"), verified.stdout


async def test_a_relink_is_logged_with_what_it_replaced_and_the_log_verifies(linked: Trust) -> None:
    oak_dsl = await people.operator(linked.svc, email="oak_dsl@oak.sch.uk")
    before = {w.team_id: w for w, _ in await workspaces.listing(linked.svc)}

    await workspaces.link(linked.svc, team_id=BIRCH, school="oak", by=oak_dsl)  # Birch's workspace now serves Oak

    async with linked.svc.db.transaction() as s:
        entries = list((await s.execute(select(AccessLog).where(AccessLog.action == "slack_workspace_linked")
                                        .order_by(col(AccessLog.seq)))).scalars())
    assert len(entries) == 3  # the fixture's two links (by the OS user), then the relink
    assert [e.actor_id for e in entries] == [None, None, oak_dsl.staff_id] and oak_dsl.staff_id is not None
    relink = entries[-1]
    assert relink.school_id == before[OAK].school_id
    assert json.loads(relink.detail) == {
        "team_id": BIRCH, "installation_id": before[BIRCH].id, "previous_school_id": before[BIRCH].school_id,
        "previous_installation_id": before[OAK].id, "operator": f"staff:{oak_dsl.staff_id}"}
    assert json.loads(entries[0].detail)["operator"].startswith("os:")
    assert (await verify(linked.svc)).problems == []


async def test_a_school_without_a_linked_workspace_gets_no_dm_with_another_schools_token(trust: Trust) -> None:
    await trust.install(OAK, "Oak Primary")
    await workspaces.link(trust.svc, team_id=OAK, school="oak")
    platform = sender_platform(trust.settings, trust.svc)
    notice = Message(kind=Kind.DECISION_NEEDED, case_ref="C-TEST01")

    ref = await platform.send(PEOPLE["oak_dsl"][0], notice, key="test:oak")
    with pytest.raises(Permanent, match="no_workspace_for_school"):
        await platform.send(PEOPLE["birch_dsl"][0], notice, key="test:birch")
    await platform.update(ref, Message(kind=Kind.DECIDED, case_ref="C-TEST01", by="Dee"))

    assert [c.token for c in trust.fake.calls_to("chat.postMessage")] == [trust.tokens[OAK]]
    assert [c.token for c in trust.fake.calls_to("chat.update")] == [trust.tokens[OAK]]
    [shown] = trust.fake.messages_to(PEOPLE["oak_dsl"][0], team=OAK)
    assert shown["ts"] == ref.rsplit(":", 1)[1]


async def test_a_teacher_whose_school_has_no_linked_workspace_is_never_told_the_dsl_was_alerted(
        trust: Trust) -> None:
    from bot import cases, doctor

    await trust.install(OAK, "Oak Primary")
    await workspaces.link(trust.svc, team_id=OAK, school="oak")  # birch's workspace is not linked yet
    svc = trust.svc
    told = {}
    for school in ("oak", "birch"):
        teacher = await cases.identify(svc, email=f"{school}_teacher@{school}.sch.uk")
        view = await cases.raise_concern(svc, actor=teacher, values={"immediate_danger": "yes"}, platform="slack")
        told[school] = view.told
    assert told["oak"] is not None and told["oak"].reachable
    assert told["birch"] is not None and not told["birch"].reachable  # the fallback contacts instead
    assert "alerted as urgent" not in (told["birch"].text or "") and "Phone the DSL" in (told["birch"].text or "")
    assert await doctor.count_unalertable(svc) == 1  # /metrics and doctor say so too
