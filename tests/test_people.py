"""People without copying ids: ids and emails checked, `staff edit`, `staff reactivate`, and
`staff import` of a CSV in one transaction; every change logged so `audit verify` stays green."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot import people
from bot.audit import verify
from bot.cases import Person, Services
from bot.errors import Conflict, NotFound
from bot.people_import import ImportRefused, import_staff, parse_rows
from bot.schools import InvalidSetting
from storage import repo
from tests.cli.harness import Bot, setup_school


async def access(services: Services) -> list[tuple[str, dict]]:
    async with services.db.read() as s:
        return [(r.action, json.loads(r.detail)) for r in await repo.access_log(s)]


async def assert_verified(services: Services) -> None:
    report = await verify(services)
    assert not report.problems, [p.line() for p in report.problems]


# ids and emails


@pytest.mark.parametrize("slack_id", ["U0TINA", "U1234567", "W123", "u012abcdef", "U012ABCDEFG "])
async def test_a_slack_id_shorter_than_slacks_or_malformed_is_refused(services: Services, school: dict[str, Person],
                                                                      slack_id: str) -> None:
    with pytest.raises(InvalidSetting, match="is not a Slack member id"):
        await people.add(services, email="x@oak.sch.uk", role="staff", name="X", school="oak", slack_user_id=slack_id)


@pytest.mark.parametrize("email", ["x", "x@", "@oak.sch.uk", "x@oak", "x y@oak.sch.uk", "x@oak..uk", "a,b@oak.sch.uk",
                                   "x@-oak.sch.uk", "x@" + "a" * 250 + ".uk"])
async def test_a_malformed_email_is_refused(services: Services, school: dict[str, Person], email: str) -> None:
    with pytest.raises(InvalidSetting, match="is not an email address"):
        await people.add(services, email=email, role="staff", name="X", school="oak")


async def test_a_role_is_checked_in_bot_not_only_by_the_cli(services: Services, school: dict[str, Person]) -> None:
    with pytest.raises(InvalidSetting, match="'headteacher' is not a role: use one of staff, dsl, deputy, admin"):
        await people.add(services, email="x@oak.sch.uk", role="headteacher", name="X", school="oak")
    with pytest.raises(InvalidSetting, match="is not a role"):
        await people.edit(services, email="tina@oak.sch.uk", changes=people.Edit(role="root"))


def test_a_mistyped_school_suggests_the_close_match_through_the_cli(sqlite_url: str, tmp_path: Path) -> None:
    bot = Bot(database_url=sqlite_url, workdir=tmp_path, in_process=True)
    setup_school(bot)
    done = bot.run("staff", "add", "x@oak.sch.uk", "--role", "staff", "--name", "X", "--school", "oaks", check=False)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == ("error: no school 'oaks'. Known schools: oak. "
                                                    "Did you mean 'oak'? Add --create-school to create it.")
    assert [r for r in bot.run("school", "list").stdout.splitlines() if r.startswith("oaks")] == []


# edit and reactivate


async def test_edit_changes_only_what_it_is_given_and_logs_the_field_names(services: Services,
                                                                           school: dict[str, Person]) -> None:
    changed = await people.edit(services, email="TINA@oak.sch.uk",
                                changes=people.Edit(name="Tina Teach", role="deputy", slack_user_id="U0TINANEW1",
                                                    email="tina.t@oak.sch.uk"))
    assert changed == ["display_name", "email", "role", "slack_user_id"]
    row = next(r for r in await people.listing(services, school="oak") if r[0] == "tina.t@oak.sch.uk")
    assert row == ("tina.t@oak.sch.uk", "Tina Teach", "deputy", "oak", "U0TINANEW1", "-")
    action, detail = (await access(services))[-1]
    assert action == "staff_edited" and detail["fields"] == changed and detail["staff_id"] == school["teacher"].id
    assert "Tina Teach" not in json.dumps(detail) and detail["operator"].startswith("os:")
    assert await people.edit(services, email="tina.t@oak.sch.uk", changes=people.Edit(role="deputy")) == []
    assert (await access(services))[-1][0] == "staff_edited"  # no entry for no change
    await assert_verified(services)


async def test_edit_refuses_someone_elses_id_or_email_and_changes_nothing(services: Services,
                                                                         school: dict[str, Person]) -> None:
    dee_slack = next(r[4] for r in await people.listing(services, school="oak") if r[0] == "dee@oak.sch.uk")
    with pytest.raises(Conflict, match="already registered to someone else"):
        await people.edit(services, email="tina@oak.sch.uk", changes=people.Edit(slack_user_id=dee_slack))
    with pytest.raises(Conflict):
        await people.edit(services, email="tina@oak.sch.uk", changes=people.Edit(email="dee@oak.sch.uk",
                                                                                 name="Changed"))
    with pytest.raises(NotFound):
        await people.edit(services, email="nobody@oak.sch.uk", changes=people.Edit(name="N"))
    assert next(r for r in await people.listing(services, school="oak") if r[0] == "tina@oak.sch.uk")[1] == "Tina Teacher"
    await assert_verified(services)


async def test_a_removed_person_is_edited_reactivated_and_not_silently_re_added(services: Services,
                                                                                school: dict[str, Person]) -> None:
    await people.remove(services, email="tom@oak.sch.uk")
    with pytest.raises(Conflict, match="was removed: `consentbot staff reactivate tom@oak.sch.uk`"):
        await people.add(services, email="tom@oak.sch.uk", role="staff", name="Tom", school="oak")
    assert await people.edit(services, email="tom@oak.sch.uk", changes=people.Edit(slack_user_id="")) == ["slack_user_id"]
    back = await people.reactivate(services, email="tom@oak.sch.uk")
    assert back.id == school["teacher2"].id and back.role == "staff"
    with pytest.raises(Conflict, match="active already"):
        await people.reactivate(services, email="tom@oak.sch.uk")
    assert [a for a, _ in await access(services)][-3:] == ["staff_removed", "staff_edited", "staff_reactivated"]
    assert ("tom@oak.sch.uk", "Tom Teacher", "staff", "oak", "-", "-") in await people.listing(services, school="oak")
    await assert_verified(services)


def test_edit_and_reactivate_through_the_cli_keep_audit_verify_green(sqlite_url: str, tmp_path: Path) -> None:
    bot = Bot(database_url=sqlite_url, workdir=tmp_path, in_process=True)
    setup_school(bot)
    bot.run("staff", "remove", "pat@oak.sch.uk")
    assert bot.run("staff", "edit", "pat@oak.sch.uk", "--name", "Pat P", "--teams-id",
                   "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0", "--as", "dee@oak.sch.uk").stdout == (
        "pat@oak.sch.uk: changed display_name, teams_user_id\n")
    assert bot.run("staff", "reactivate", "pat@oak.sch.uk").stdout == "reactivated pat@oak.sch.uk as deputy\n"
    bad = bot.run("staff", "edit", "pat@oak.sch.uk", "--slack-id", "U0PAT", check=False)
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1 and "is not a Slack member id" in bad.stderr
    assert bot.run("staff", "edit", "pat@oak.sch.uk", check=False).returncode == 1
    assert "pat@oak.sch.uk\tPat P\tdeputy\toak\tU0PAT00001\t0b1c2d3e" in bot.run("staff", "list").stdout
    assert bot.run("audit", "verify").stdout.rstrip().endswith(": ok")


# import


def roster(n: int, *, start: int = 0, role: str = "staff") -> list[str]:
    return [f"p{i}@oak.sch.uk,Person {i},{role},oak,U0P{i:07d}," for i in range(start, start + n)]


def test_import_of_500_rows_adds_and_updates_in_one_go_and_reports(sqlite_url: str, tmp_path: Path) -> None:
    bot = Bot(database_url=sqlite_url, workdir=tmp_path, in_process=True)
    setup_school(bot)
    first = tmp_path / "first.csv"
    first.write_text("\n".join(["email,name,role,school,slack_id,teams_id", *roster(300)]) + "\n")
    assert bot.run("staff", "import", str(first)).stdout.splitlines()[-1] == "added 300, updated 0, unchanged 0"
    # 500 rows: 200 new people, 100 renamed or promoted, 200 as they are; Tina gets a Teams id.
    rows = roster(200, start=300) + roster(200)
    rows += [f"p{i}@oak.sch.uk,Person {i} Renamed,staff,oak,U0P{i:07d}," for i in range(200, 250)]
    rows += [f"p{i}@oak.sch.uk,Person {i},dsl,,," for i in range(250, 299)]
    rows += ["TINA@oak.sch.uk,Tina Teacher,staff,,,29:1aBcDeF"]
    second = tmp_path / "second.csv"
    second.write_text("\ufeff" + "\r\n".join(["Email,Name,Role,School,Slack_ID,Teams_ID", *rows]) + "\r\n")
    assert len(rows) == 500
    dry = bot.run("staff", "import", str(second), "--school", "oak", "--dry-run").stdout.splitlines()
    assert dry[-1] == "would add 200, would update 100, unchanged 200 (dry run: nothing was written)"
    assert "p300@oak.sch.uk: would add" in dry and "p250@oak.sch.uk: would change role" in dry
    assert "p499@oak.sch.uk" not in bot.run("staff", "list").stdout
    done = bot.run("staff", "import", str(second), "--school", "oak", "--as", "dee@oak.sch.uk").stdout.splitlines()
    assert done[-1] == "added 200, updated 100, unchanged 200"
    assert "p200@oak.sch.uk: changed display_name" in done and "tina@oak.sch.uk: changed teams_user_id" in done
    listed = bot.run("staff", "list", "--school", "oak").stdout
    assert len(listed.splitlines()) == 3 + 500
    assert "p499@oak.sch.uk\tPerson 499\tstaff\toak\tU0P0000499\t-" in listed
    assert "p260@oak.sch.uk\tPerson 260\tdsl\toak\tU0P0000260\t-" in listed  # an empty slack_id cell keeps the id
    assert "tina@oak.sch.uk\tTina Teacher\tstaff\toak\tU0TINA0001\t29:1aBcDeF" in listed
    assert bot.run("audit", "verify").stdout.rstrip().endswith(": ok")


@pytest.mark.parametrize(("bad_row", "message"), [
    ("q@oak.sch.uk,Q,boss,oak,,", "line 4: 'boss' is not a role"),
    ("q@oak,Q,staff,oak,,", "line 4: 'q@oak' is not an email address"),
    ("q@oak.sch.uk,Q,staff,oka,,", "line 4: no school 'oka'. Did you mean 'oak'?"),
    ("q@oak.sch.uk,Q,staff,oak,U0Q,", "line 4: 'U0Q' is not a Slack member id"),
    ("q@oak.sch.uk,Q,staff,oak,U0DEE00001,", "line 4: the Slack id U0DEE00001 belongs to dee@oak.sch.uk"),
    ("p0@oak.sch.uk,Again,staff,oak,,", "line 4: p0@oak.sch.uk is on line 2 too"),
    ("olu@elm.sch.uk,Olu,dsl,oak,,", "line 4: olu@elm.sch.uk is registered at another school"),
])
def test_one_bad_row_changes_nothing_and_names_its_line(sqlite_url: str, tmp_path: Path, bad_row: str,
                                                        message: str) -> None:
    bot = Bot(database_url=sqlite_url, workdir=tmp_path, in_process=True)
    setup_school(bot)
    bot.run("staff", "add", "olu@elm.sch.uk", "--role", "dsl", "--name", "Olu", "--school", "elm", "--create-school")
    before = bot.run("staff", "list").stdout
    csv = tmp_path / "staff.csv"
    csv.write_text("\n".join(["email,name,role,school,slack_id,teams_id", *roster(2), bad_row, *roster(2, start=5)]))
    done = bot.run("staff", "import", str(csv), check=False)
    assert done.returncode == 1 and message in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert bot.run("staff", "list").stdout == before


async def test_a_collision_while_applying_rolls_every_row_back(services: Services, school: dict[str, Person]) -> None:
    await people.remove(services, email="tom@oak.sch.uk")
    rows = parse_rows("email,name,role\nnew1@oak.sch.uk,New,staff\ntom@oak.sch.uk,Tom,staff\n", school="oak")
    with pytest.raises(ImportRefused, match="line 3: tom@oak.sch.uk was removed"):
        await import_staff(services, rows=rows)
    assert not [r for r in await people.listing(services, school="oak") if r[0] == "new1@oak.sch.uk"]
    with pytest.raises(ImportRefused, match="line 1: .*missing role; unknown title"):
        parse_rows("email,name,title\n", school="oak")
    with pytest.raises(ImportRefused, match="line 2: no school"):
        parse_rows("email,name,role\nx@oak.sch.uk,X,staff\n", school=None)
    await assert_verified(services)


async def test_first_contact_links_only_an_active_unlinked_person_of_the_given_school(services: Services,
                                                                                     school: dict[str, Person]) -> None:
    await people.add(services, email="nia@oak.sch.uk", role="staff", name="Nia", school="oak")
    link = people.link_on_first_contact
    elm = school["other_dsl"].school_id
    assert await link(services, platform="slack", user_id="U0NIA00001", email="nia@oak.sch.uk", school_id=elm) is None
    assert await link(services, platform="slack", user_id="U0NIA00001", email="dee@oak.sch.uk") is None  # has an id
    linked = await link(services, platform="slack", user_id="U0NIA00001", email="NIA@oak.sch.uk",
                        school_id=school["dsl"].school_id)
    assert linked is not None and linked.email == "nia@oak.sch.uk"
    assert await link(services, platform="slack", user_id="U0NIA00001", email="nia@oak.sch.uk") is None  # taken
    action, detail = (await access(services))[-1]
    assert action == "staff_linked" and detail["operator"] == "first_contact" and detail["platform"] == "slack"
    await assert_verified(services)
