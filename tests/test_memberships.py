"""People of several schools: a trust's DSL covers two schools, each role is checked at the case's
own school, a new concern goes to the school its raiser chose, and every membership is logged and
covered by the staff fingerprints `audit verify` checks.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlmodel import select

from bot import cases, people, screens, views
from bot.audit import verify
from bot.cases import Person, Services
from bot.errors import Conflict, InvalidAnswer, NotAuthorised, NotFound
from bot.policy.model import Actor
from storage import repo
from storage.models import Case, Membership, OutboxMessage
from tests.cli.harness import Bot, setup_school
from tests.completed_case import SIGNIFICANT_HARM_REFUSED, complete, values_for
from tests.conftest import Clock


async def acting(services: Services, email: str) -> Person:
    return await cases.identify(services, email=email)


async def school_id(services: Services, slug: str) -> int:
    async with services.db.read() as s:
        found = await repo.get_school(s, slug)
    assert found is not None
    return found.id or 0


async def raise_as(services: Services, me: Person, **extra: str) -> cases.CaseView:
    start = services.policy.steps[services.policy.start]
    values = values_for(start, None, SIGNIFICANT_HARM_REFUSED, me)
    reply = screens.Reply(step_id=start.id, case_ref=None, version=-1, values={**values, **extra})
    return await screens.record(services, actor=me, reply=reply, platform="slack")


@pytest.fixture
async def trust(services: Services, school: dict[str, Person], clock: Clock) -> dict[str, Person]:
    """Dee is Oak's DSL and, through the trust, Elm's too; Pat (Oak's deputy) teaches at Elm; Eve teaches at Elm."""
    clock.now = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)  # after every time the completed cases record
    await people.join(services, email="dee@oak.sch.uk", school="elm", role="dsl")
    await people.join(services, email="pat@oak.sch.uk", school="elm", role="staff")
    eve = await people.add(services, email="eve@elm.sch.uk", role="staff", name="Eve Teacher", school="elm",
                           slack_user_id="U0EVE00000")
    return {**school, "dee": await acting(services, "dee@oak.sch.uk"), "pat": await acting(services, "pat@oak.sch.uk"),
            "eve": eve}


async def test_a_trust_dsl_is_alerted_for_and_decides_on_both_schools_cases(services: Services,
                                                                           trust: dict[str, Person]) -> None:
    for teacher in (trust["teacher"], trust["eve"]):
        view = await complete(services, teacher=teacher, dsl=trust["dee"], until=Actor.DSL)
        async with services.db.read() as s:
            case = await repo.case_by_ref(s, view.ref)
            told = [m.recipient_id for m in (await s.execute(text("select recipient_id from outbox"))).all()]
        assert case is not None and case.school_id == teacher.school_id
        assert trust["dee"].id in told  # the decision waiting reached Dee at either school
        assert view.answerable_by(trust["dee"])
        done = await complete_from(services, view, trust)
        assert done.outcome is not None


async def complete_from(services: Services, view: cases.CaseView, trust: dict[str, Person]) -> cases.CaseView:
    assert view.step is not None
    teacher = trust["teacher"] if view.school_id == trust["teacher"].school_id else trust["eve"]
    for _ in range(40):
        if view.step is None:
            return view
        who = trust["dee"] if view.step.actor is Actor.DSL else teacher
        view = await cases.answer(services, actor=who, case_ref=view.ref, version=view.version, step=view.step.id,
                                  values=values_for(view.step, view, SIGNIFICANT_HARM_REFUSED, teacher),
                                  platform="slack")
    raise AssertionError("the case did not end")


async def test_the_trust_dsls_decision_is_signed_with_their_role_at_the_cases_school(
        services: Services, trust: dict[str, Person]) -> None:
    await people.join(services, email="dee@oak.sch.uk", school="elm", role="deputy")  # DSL at Oak, deputy at Elm
    dee = await acting(services, "dee@oak.sch.uk")
    view = await complete(services, teacher=trust["eve"], dsl=dee, assignee=trust["eve"])
    async with services.db.read() as s:
        case = await repo.case_by_ref(s, view.ref)
        assert case is not None
        signed = [json.loads(e.payload)["people"][str(dee.id)] for e in await repo.case_events(s, case.id or 0)
                  if e.actor_id == dee.id]
    assert signed and all(p == {"name": "Dee DSL", "role": "deputy"} for p in signed)
    details = await views.open_details(services, actor=dee, case_ref=view.ref)
    assert "Dee DSL" in json.dumps(details.record)


async def test_a_deputy_at_one_school_is_only_a_teacher_at_the_other(services: Services,
                                                                      trust: dict[str, Person]) -> None:
    at_elm = await complete(services, teacher=trust["eve"], dsl=trust["dee"], until=Actor.DSL)
    pat = trust["pat"]
    assert not at_elm.answerable_by(pat)
    assert at_elm.step is not None
    with pytest.raises(NotAuthorised):  # a teacher at Elm cannot decide there
        await cases.answer(services, actor=pat, case_ref=at_elm.ref, version=at_elm.version, step=at_elm.step.id,
                           values={}, platform="slack")
    at_oak = await complete(services, teacher=trust["teacher"], dsl=trust["dee"], until=Actor.DSL)
    assert at_oak.answerable_by(pat)  # still Oak's deputy
    async with services.db.read() as s:
        refused = [r for r in await repo.access_log(s) if r.actor_id == pat.id and r.action.startswith("refused")]
    assert refused, "the attempt at Elm is logged"


async def test_a_teacher_at_two_schools_cannot_decide_at_the_one_they_teach_at(services: Services,
                                                                               trust: dict[str, Person]) -> None:
    pat = trust["pat"]
    view = await raise_as(services, pat, school=str(await school_id(services, "elm")))
    assert view.school_id == await school_id(services, "elm")
    view = await complete_teacher_part(services, view, pat)
    assert view.step is not None and view.step.actor is Actor.DSL
    with pytest.raises(NotAuthorised):
        await cases.answer(services, actor=pat, case_ref=view.ref, version=view.version, step=view.step.id,
                           values=values_for(view.step, view, SIGNIFICANT_HARM_REFUSED, pat), platform="slack")


async def complete_teacher_part(services: Services, view: cases.CaseView, teacher: Person) -> cases.CaseView:
    while view.step is not None and view.step.actor is not Actor.DSL:
        view = await cases.answer(services, actor=teacher, case_ref=view.ref, version=view.version,
                                  step=view.step.id, values=values_for(view.step, view, SIGNIFICANT_HARM_REFUSED,
                                                                       teacher), platform="slack")
    return view


async def test_someone_of_several_schools_must_choose_one_of_theirs(services: Services,
                                                                   trust: dict[str, Person]) -> None:
    dee = trust["dee"]
    shown = await screens.first_screen(services, email=dee.email)
    which = shown.question(screens.SCHOOL)
    assert which is not None and which.label == "Which school is this concern about?"
    assert [label for _, label in which.choices] == ["oak", "elm"]  # named, home school first
    with pytest.raises(InvalidAnswer) as missing:
        await raise_as(services, dee)
    assert missing.value.field == screens.SCHOOL
    assert screens.field_error(services.policy.steps[services.policy.start], missing.value).key == screens.SCHOOL
    with pytest.raises(InvalidAnswer):
        await raise_as(services, dee, school=str(await school_id(services, "elm") + 99))
    view = await raise_as(services, dee, school=str(await school_id(services, "elm")))
    async with services.db.read() as s:
        case = await repo.case_by_ref(s, view.ref)
    assert case is not None and case.school_id == await school_id(services, "elm")
    assert [c.ref for c in await views.my_cases(services, actor=dee)].count(view.ref) == 1


async def test_one_school_is_never_asked_which(services: Services, trust: dict[str, Person]) -> None:
    shown = await screens.first_screen(services, email="tina@oak.sch.uk")
    assert shown.question(screens.SCHOOL) is None
    view = await raise_as(services, trust["teacher"])
    assert view.school_id == trust["teacher"].school_id


async def test_each_school_sees_only_what_its_roles_allow(services: Services, trust: dict[str, Person]) -> None:
    at_elm = await complete(services, teacher=trust["eve"], dsl=trust["dee"], until=Actor.DSL)
    with pytest.raises(NotFound):  # Oak's teacher: another school's case
        await views.open_details(services, actor=trust["teacher"], case_ref=at_elm.ref)
    assert at_elm.ref in [c.ref for c in await views.my_cases(services, actor=trust["other_dsl"])]  # Elm's own DSL
    assert at_elm.ref in [c.ref for c in await views.my_cases(services, actor=trust["dee"])]  # the trust's DSL
    assert at_elm.ref not in [c.ref for c in await views.my_cases(services, actor=trust["pat"])]  # a teacher at Elm


async def test_leaving_ends_the_role_there(services: Services, trust: dict[str, Person]) -> None:
    at_elm = await complete(services, teacher=trust["eve"], dsl=trust["dee"], until=Actor.DSL)
    await people.leave(services, email="dee@oak.sch.uk", school="elm")
    dee = await acting(services, "dee@oak.sch.uk")
    assert dee.school_ids == (dee.school_id,)
    with pytest.raises(NotFound):
        await views.open_details(services, actor=dee, case_ref=at_elm.ref)


async def test_joining_is_checked_and_logged(services: Services, trust: dict[str, Person]) -> None:
    with pytest.raises(Conflict, match="home school"):
        await people.join(services, email="dee@oak.sch.uk", school="oak", role="deputy")
    with pytest.raises(NotFound, match="Did you mean 'elm'"):
        await people.join(services, email="dee@oak.sch.uk", school="elms", role="dsl")
    with pytest.raises(NotFound):
        await people.leave(services, email="tina@oak.sch.uk", school="elm")
    assert await people.join(services, email="dee@oak.sch.uk", school="elm", role="dsl") == "unchanged"
    assert await people.join(services, email="dee@oak.sch.uk", school="elm", role="deputy") == "changed"
    async with services.db.read() as s:
        actions = [r.action for r in await repo.access_log(s)]
    assert actions.count("staff_joined") == 3  # Dee, Pat, then Dee's change
    report = await verify(services)
    assert not report.problems, [p.line() for p in report.problems]


async def test_a_role_granted_in_the_database_fails_verify(services: Services, trust: dict[str, Person]) -> None:
    async with services.db.transaction() as s:
        s.add(Membership(staff_id=trust["teacher"].id, school_id=await school_id(services, "elm"), role="dsl"))
    report = await verify(services)
    assert [p.line() for p in report.problems if "staff record" in p.line()], "an unlogged membership shows"


async def test_a_role_changed_in_the_database_fails_verify(services: Services, trust: dict[str, Person]) -> None:
    async with services.db.transaction() as s:
        await s.execute(text("update memberships set role = 'dsl' where role = 'staff'"))
    report = await verify(services)
    assert any("changed outside consentbot" in p.line() for p in report.problems)


def test_staff_join_list_and_leave_through_the_cli(sqlite_url: str, tmp_path: Path) -> None:
    bot = Bot(database_url=sqlite_url, workdir=tmp_path, in_process=True)
    setup_school(bot)
    bot.run("staff", "add", "olu@elm.sch.uk", "--role", "dsl", "--name", "Olu", "--school", "elm", "--create-school")
    email = next(row.split("\t")[0] for row in bot.run("staff", "list", "--school", "oak").stdout.splitlines()
                 if row.split("\t")[2] == "dsl")
    joined = bot.run("staff", "join", email, "--school", "elm", "--role", "deputy")
    assert joined.stdout.strip() == f"{email} is now deputy at elm too"
    listed = bot.run("staff", "list", "--school", "elm").stdout.splitlines()
    at_elm = {row.split("\t")[0]: row.split("\t")[2:4] for row in listed}
    assert at_elm == {"olu@elm.sch.uk": ["dsl", "elm"], email: ["deputy", "elm"]}
    assert bot.run("staff", "list").stdout.count(email) == 2  # one row per school
    left = bot.run("staff", "leave", email, "--school", "elm")
    assert left.stdout.strip() == f"{email} no longer belongs to elm"
    assert email not in bot.run("staff", "list", "--school", "elm").stdout
    home = bot.run("staff", "join", email, "--school", "oak", "--role", "dsl", check=False)
    assert home.returncode == 1 and "home school" in home.stderr
    assert bot.run("audit", "verify", check=False).returncode == 0


async def test_outbox_rows_for_a_trust_dsl_name_the_cases_school(services: Services, trust: dict[str, Person]) -> None:
    view = await complete(services, teacher=trust["eve"], dsl=trust["dee"], until=Actor.DSL)
    async with services.db.read() as s:
        case = await repo.case_by_ref(s, view.ref)
        rows = [m for m in (await s.execute(select(OutboxMessage))).scalars() if case and m.case_id == case.id]
    assert case is not None and isinstance(case, Case)
    assert {m.school_id for m in rows} == {case.school_id}
