"""`bot.directory.sync` against a real database, and `consentbot staff sync-teams` end to end: a
subprocess reading the groups from FakeGraph with a token from its Entra endpoint.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import traceback
from pathlib import Path

import pytest

from bot import directory, people
from bot.cases import Services
from bot.crypto import generate_key
from bot.directory import DirectoryPerson, UnusableGroup
from bot.errors import NotFound
from storage import repo
from storage.models import Staff
from tests.fakes.graph_api import FakeGraph, graph_group, graph_user

CONSENTBOT = str(Path(sys.executable).with_name("consentbot"))
DSL_GROUP = "0d5c0000-0000-4000-8000-00000000d51a"
KEY = generate_key("k1")  # one key for every run of the command on a database
STAFF_GROUP = "0d5c0000-0000-4000-8000-0000000057af"


def aad(n: int) -> str:
    return f"aaaaaaaa-0000-4000-8000-{n:012d}"


DEE = DirectoryPerson(aad(1), "Dee DSL", "dee@oak.sch.uk")
PAT = DirectoryPerson(aad(2), "Pat Deputy", "pat@oak.sch.uk")
TINA = DirectoryPerson(aad(3), "Tina Teacher", "tina@oak.sch.uk")
NEW = DirectoryPerson(aad(4), "Nia New", "nia@oak.sch.uk")


@pytest.fixture
def graph(fake_graph: FakeGraph) -> FakeGraph:
    """The session's FakeGraph (tests/teams/conftest.py), reset."""
    return fake_graph


async def everyone(svc: Services) -> dict[str, Staff]:
    async with svc.db.read() as s:
        return {r.email: r for r in await repo.list_staff(s, include_inactive=True)}


async def access(svc: Services) -> list[tuple[str, dict[str, object]]]:
    async with svc.db.read() as s:
        return [(row.action, json.loads(row.detail)) for row in await repo.access_log(s)]


async def seed(svc: Services) -> None:
    """Oak as a school set it up by hand: a DSL with a Teams id, a deputy and a teacher by email
    only (no Teams id yet), an admin, and a leaver with a Teams id. Elm has its own DSL.
    """
    await people.add(svc, email="dee@oak.sch.uk", role="dsl", name="Dee DSL", school="oak", teams_user_id=DEE.id)
    await people.add(svc, email="pat@oak.sch.uk", role="deputy", name="Pat Deputy", school="oak")
    await people.add(svc, email="tina@oak.sch.uk", role="staff", name="Tina Teacher", school="oak",
                     slack_user_id="U0TINA0001")
    await people.add(svc, email="ada@oak.sch.uk", role="admin", name="Ada Admin", school="oak", teams_user_id=aad(9))
    await people.add(svc, email="lee@oak.sch.uk", role="staff", name="Lee Leaver", school="oak", teams_user_id=aad(8))
    await people.add(svc, email="olu@elm.sch.uk", role="dsl", name="Olu DSL", school="elm", teams_user_id=aad(7))


async def test_members_are_added_linked_and_given_their_group_roles(services: Services) -> None:
    await seed(services)
    before = len(await access(services))

    report = await directory.sync(services, school="oak", dsls=[DEE, PAT, NEW], staff=[DEE, TINA])

    assert sorted(report.changes) == [
        ("lee@oak.sch.uk", "removed (in neither group)"),
        ("nia@oak.sch.uk", "added as dsl"),
        ("pat@oak.sch.uk", "linked to their directory account"),
        ("tina@oak.sch.uk", "linked to their directory account"),
    ]
    assert report.unchanged == 1  # Dee
    rows = await everyone(services)
    assert (rows["nia@oak.sch.uk"].role, rows["nia@oak.sch.uk"].teams_user_id) == ("dsl", NEW.id)
    assert rows["nia@oak.sch.uk"].display_name == "Nia New"
    assert (rows["pat@oak.sch.uk"].role, rows["pat@oak.sch.uk"].teams_user_id) == ("deputy", PAT.id)  # deputy kept
    assert (rows["tina@oak.sch.uk"].teams_user_id, rows["tina@oak.sch.uk"].slack_user_id) == (TINA.id, "U0TINA0001")
    assert not rows["lee@oak.sch.uk"].active
    assert rows["ada@oak.sch.uk"].active and rows["ada@oak.sch.uk"].role == "admin"  # in no group, never touched
    assert rows["olu@elm.sch.uk"].active  # another school's people are not this sync's
    logged = (await access(services))[before:]
    assert sorted(action for action, _ in logged) == ["staff_added", "staff_linked", "staff_linked", "staff_removed"]
    removed = next(detail for action, detail in logged if action == "staff_removed")
    assert len(str(removed.pop("fingerprint"))) == 64  # the row as changed, checked by `audit verify`
    assert removed == {"staff_id": rows["lee@oak.sch.uk"].id, "source": "teams_sync"}
    added = next(detail for action, detail in logged if action == "staff_added")
    assert len(str(added.pop("fingerprint"))) == 64
    assert added == {"staff_id": rows["nia@oak.sch.uk"].id, "role": "dsl", "source": "teams_sync"}


async def test_roles_follow_the_groups_and_a_second_sync_changes_nothing(services: Services) -> None:
    await seed(services)
    await directory.sync(services, school="oak", dsls=[DEE, PAT], staff=[TINA])
    before = len(await access(services))

    # Dee leaves the DSL group but stays on the staff; Tina becomes a DSL.
    report = await directory.sync(services, school="oak", dsls=[PAT, TINA], staff=[DEE])

    assert sorted(report.changes) == [("dee@oak.sch.uk", "role dsl -> staff"), ("tina@oak.sch.uk", "role staff -> dsl")]
    rows = await everyone(services)
    assert rows["dee@oak.sch.uk"].role == "staff" and rows["dee@oak.sch.uk"].active
    assert rows["tina@oak.sch.uk"].role == "dsl"
    changed = [d for action, d in (await access(services))[before:] if action == "staff_role_changed"]
    assert sorted((d["from"], d["to"]) for d in changed) == [("dsl", "staff"), ("staff", "dsl")]
    assert all(d["source"] == "teams_sync" for d in changed)

    again = await directory.sync(services, school="oak", dsls=[PAT, TINA], staff=[DEE])
    assert again.changes == [] and again.unchanged == 3
    assert len(await access(services)) == before + 2


async def test_without_a_staff_group_nobody_is_removed_but_dsls_lose_the_role(services: Services) -> None:
    await seed(services)
    await directory.sync(services, school="oak", dsls=[DEE, PAT], staff=None)

    report = await directory.sync(services, school="oak", dsls=[PAT], staff=None)

    assert report.changes == [("dee@oak.sch.uk", "role dsl -> staff (not in the DSL group)")]
    rows = await everyone(services)
    assert rows["dee@oak.sch.uk"].active and rows["dee@oak.sch.uk"].role == "staff"
    assert rows["lee@oak.sch.uk"].active and rows["lee@oak.sch.uk"].role == "staff"  # not in a group, kept


async def test_a_leaver_who_comes_back_is_reactivated(services: Services) -> None:
    await seed(services)
    await directory.sync(services, school="oak", dsls=[DEE], staff=[TINA])
    lee = DirectoryPerson(aad(8), "Lee Leaver", "lee@oak.sch.uk")

    report = await directory.sync(services, school="oak", dsls=[DEE], staff=[TINA, lee])

    assert report.changes == [("lee@oak.sch.uk", "reactivated")]
    assert (await everyone(services))["lee@oak.sch.uk"].active
    assert (await access(services))[-1][0] == "staff_reactivated"


async def test_a_dry_run_writes_nothing(services: Services) -> None:
    await seed(services)
    before_rows = {e: (r.role, r.active, r.teams_user_id) for e, r in (await everyone(services)).items()}
    before_log = await access(services)

    report = await directory.sync(services, school="oak", dsls=[DEE, PAT, NEW], staff=[TINA], dry_run=True)

    assert report.dry_run and ("nia@oak.sch.uk", "added as dsl") in report.changes
    assert ("lee@oak.sch.uk", "removed (in neither group)") in report.changes
    assert {e: (r.role, r.active, r.teams_user_id) for e, r in (await everyone(services)).items()} == before_rows
    assert await access(services) == before_log


async def test_a_mistyped_school_is_refused_and_not_created(services: Services) -> None:
    await seed(services)
    with pytest.raises(NotFound, match="no school 'oka'. Known schools: "):
        await directory.sync(services, school="oka", dsls=[DEE], staff=None)
    async with services.db.read() as s:
        assert await repo.get_school(s, "oka") is None


async def test_nobody_is_moved_between_schools(services: Services) -> None:
    await seed(services)
    olu = DirectoryPerson(aad(7), "Olu DSL", "olu@elm.sch.uk")

    report = await directory.sync(services, school="oak", dsls=[DEE, olu], staff=None)

    assert report.changes == [("olu@elm.sch.uk", "skipped: registered at another school "
                                                 "(people are not moved between schools)")]
    rows = await everyone(services)
    assert rows["olu@elm.sch.uk"].school_id != rows["dee@oak.sch.uk"].school_id


async def test_an_empty_group_or_one_without_emails_changes_nothing(services: Services) -> None:
    await seed(services)
    with pytest.raises(UnusableGroup, match="the DSL group has no members"):
        await directory.sync(services, school="oak", dsls=[], staff=None)
    with pytest.raises(UnusableGroup, match="the staff group has no members"):
        await directory.sync(services, school="oak", dsls=[DEE], staff=[])
    limited = DirectoryPerson(aad(5), "", "")  # what Graph lists when the app may not read users
    with pytest.raises(UnusableGroup, match="User.ReadBasic.All"):
        await directory.sync(services, school="oak", dsls=[DEE], staff=[TINA, limited])
    assert (await everyone(services))["lee@oak.sch.uk"].active


# ----------------------------------------------------------------- the command, end to end


def command_env(graph: FakeGraph, db_url: str, **env: str) -> dict[str, str]:
    """The settings `consentbot staff sync-teams` reads, pointed at FakeGraph."""
    return {"DATABASE_URL": db_url, "CONSENTBOT_ENCRYPTION_KEY": KEY,
            "TEAMS_CLIENT_ID": "bbbbbbbb-0000-4000-8000-00000000c11e", "TEAMS_CLIENT_SECRET": "s3cret",
            "TEAMS_TENANT_ID": "cccccccc-0000-4000-8000-0000000007e7", "TEAMS_LOGIN_URL": graph.login_url,
            "GRAPH_API_URL": graph.url, "TEAMS_DSL_GROUP_ID": DSL_GROUP, "TEAMS_STAFF_GROUP_ID": STAFF_GROUP,
            "HTTPS_PROXY": "", "HTTP_PROXY": "", "ALL_PROXY": "", **env}


def cli(graph: FakeGraph, db_url: str, cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """The installed command in a process of its own, as an IT person runs it."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("CONSENTBOT_", "SLACK_", "TEAMS_", "GRAPH_"))}
    return subprocess.run([CONSENTBOT, "staff", "sync-teams", *args], capture_output=True, text=True,
                          env={**base, **command_env(graph, db_url, **env)}, cwd=cwd, timeout=120, check=False)


def cli_here(graph: FakeGraph, db_url: str, cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """The same command run in this process (typer's runner), for the many refusal cases: a process
    of its own spends ~4 s loading msgraph. An exception escaping the command is shown as a
    traceback on stderr, as a process would print it.
    """
    from typer.testing import CliRunner

    from bot import cli as command
    from bot import cli_directory  # noqa: F401 - registers sync-teams

    ours = {k: None for k in os.environ if k.startswith(("CONSENTBOT_", "SLACK_", "TEAMS_", "GRAPH_"))}
    before = os.getcwd()
    os.chdir(cwd)  # the settings read .env from the current folder
    try:
        result = CliRunner().invoke(command.app, ["staff", "sync-teams", *args],
                                    env={**ours, **command_env(graph, db_url, **env)})
    finally:
        os.chdir(before)
    escaped = result.exception if not isinstance(result.exception, SystemExit) else None
    stderr = result.stderr + ("".join(traceback.format_exception(escaped)) if escaped else "")
    return subprocess.CompletedProcess(list(args), result.exit_code, result.stdout, stderr)


async def run_cli(*args: object, **env: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(cli, *args, **env)  # type: ignore[arg-type]


async def run_here(*args: object, **env: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(cli_here, *args, **env)  # type: ignore[arg-type]


# The command's own tests run on SQLite: each starts a process that loads msgraph (~4 s), and the
# sync it runs is tested on both databases through bot.directory.sync above.
SQLITE_ONLY_CLI = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


def oak_groups(graph: FakeGraph) -> None:
    graph.set_group(DSL_GROUP, [graph_user(DEE.id, "Dee DSL", mail="Dee@oak.sch.uk"),
                                graph_group("99999999-0000-4000-8000-000000000001", "Deputies"),
                                graph_user(PAT.id, "Pat Deputy", mail="pat@oak.sch.uk"),
                                graph_user(NEW.id, "Nia New", upn="nia@oak.sch.uk")])
    graph.set_group(STAFF_GROUP, [graph_user(TINA.id, "Tina Teacher", mail="tina@oak.sch.uk"),
                                  graph_user(aad(6), "Gone Person", mail="gone@oak.sch.uk", enabled=False)])


@SQLITE_ONLY_CLI
async def test_the_command_reads_both_groups_and_syncs(services: Services, graph: FakeGraph, db_url: str,
                                                       tmp_path: Path) -> None:
    await seed(services)
    oak_groups(graph)

    dry = await run_here(graph, db_url, tmp_path, "--school", "oak", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "nia@oak.sch.uk: added as dsl" in dry.stdout
    assert "oak: would change 4, unchanged 1 (dry run: nothing was written)" in dry.stdout
    assert "nia@oak.sch.uk" not in await everyone(services)

    done = await run_cli(graph, db_url, tmp_path, "--school", "oak")

    assert done.returncode == 0, done.stderr
    assert f"reading group TEAMS_DSL_GROUP_ID ({DSL_GROUP}): 3 people" in done.stdout
    assert f"reading group TEAMS_STAFF_GROUP_ID ({STAFF_GROUP}): 1 person" in done.stdout
    assert "lee@oak.sch.uk: removed (in neither group)" in done.stdout
    assert "oak: changed 4, unchanged 1" in done.stdout
    rows = await everyone(services)
    assert rows["nia@oak.sch.uk"].role == "dsl" and not rows["lee@oak.sch.uk"].active
    assert rows["tina@oak.sch.uk"].teams_user_id == TINA.id
    assert graph.token_requests[0]["scope"] == "https://graph.microsoft.com/.default"
    members = graph.calls_to("/transitiveMembers$")
    assert {c.headers["authorization"] for c in members} == {"Bearer fake-graph-token"}


@SQLITE_ONLY_CLI
async def test_the_command_without_a_staff_group(services: Services, graph: FakeGraph, db_url: str,
                                                 tmp_path: Path) -> None:
    await seed(services)
    oak_groups(graph)
    done = await run_here(graph, db_url, tmp_path, "--school", "oak", TEAMS_STAFF_GROUP_ID="")
    assert done.returncode == 0, done.stderr
    assert "no TEAMS_STAFF_GROUP_ID: nobody is removed" in done.stdout
    assert (await everyone(services))["lee@oak.sch.uk"].active
    assert not graph.calls_to(STAFF_GROUP)


SQLITE_ONLY = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # refusals do not depend on the database


@SQLITE_ONLY
@pytest.mark.parametrize(("fault", "expected"), [
    (403, "(graph:403:Authorization_RequestDenied): grant the app registration the Microsoft Graph application "
          "permissions GroupMember.Read.All and User.ReadBasic.All, with admin consent"),
    (401, "Microsoft Graph refused the app's token (graph:401:InvalidAuthenticationToken): check TEAMS_CLIENT_ID"),
    (404, "check TEAMS_DSL_GROUP_ID"),
    (503, "could not read group"),
])
async def test_graph_refusals_are_one_line_saying_what_to_fix(services: Services, graph: FakeGraph, db_url: str,
                                                             tmp_path: Path, fault: int, expected: str) -> None:
    await seed(services)
    oak_groups(graph)
    if fault == 404:
        graph.set_group(DSL_GROUP, [])
        graph.reset()  # no such group at all
    else:
        graph.fail_next("/transitiveMembers$", fault)

    done = await run_here(graph, db_url, tmp_path, "--school", "oak")

    assert done.returncode == 1
    [line] = done.stderr.strip().splitlines()[-1:]
    assert line.startswith("error: ") and expected in line, done.stderr
    assert "Traceback" not in done.stderr
    assert (await everyone(services))["lee@oak.sch.uk"].active


@SQLITE_ONLY
async def test_missing_settings_and_wrong_credentials_are_named(services: Services, graph: FakeGraph, db_url: str,
                                                                tmp_path: Path) -> None:
    await seed(services)
    oak_groups(graph)
    secret = await run_here(graph, db_url, tmp_path, "--school", "oak", TEAMS_CLIENT_SECRET="")
    assert secret.returncode == 1 and "TEAMS_CLIENT_SECRET is not set" in secret.stderr

    missing = await run_here(graph, db_url, tmp_path, "--school", "oak", TEAMS_DSL_GROUP_ID="")
    assert missing.returncode == 1 and "TEAMS_DSL_GROUP_ID is not set" in missing.stderr
    assert graph.calls == [] and graph.token_requests == []

    graph.client_secret = "the-right-one"
    wrong = await run_here(graph, db_url, tmp_path, "--school", "oak")
    assert wrong.returncode == 1 and "Traceback" not in wrong.stderr
    assert ("error: Entra ID refused the app's credentials (entra:invalid_client): check TEAMS_CLIENT_ID, "
            "TEAMS_CLIENT_SECRET and TEAMS_TENANT_ID") in wrong.stderr
    assert graph.calls == []  # no token, no Graph call


@SQLITE_ONLY
async def test_the_command_refuses_a_mistyped_school_before_reading_graph(services: Services, graph: FakeGraph,
                                                                          db_url: str, tmp_path: Path) -> None:
    await seed(services)
    oak_groups(graph)
    done = await run_here(graph, db_url, tmp_path, "--school", "oka")
    assert done.returncode == 1
    assert "error: no school 'oka'. Known schools: " in done.stderr and "Traceback" not in done.stderr
    assert graph.calls == [] and graph.token_requests == []
