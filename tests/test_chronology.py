"""A child's chronology (G5): cases about one child are joined by a keyed blind index of the
name, a concern raised from an earlier case is linked to it, and a DSL reads every case and
decision in time order. Reading it is logged; nobody else may."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from bot import cases
from bot.cases import CaseView, Person, Services
from bot.chronology import chronology
from bot.crypto import Keyring
from bot.errors import NotAuthorised, NotFound
from bot.policy.model import Actor
from storage import repo
from storage.db import create_database
from storage.models import AccessLog
from tests.cli.harness import Bot, setup_school
from tests.completed_case import SIGNIFICANT_HARM_REFUSED, complete
from tests.conftest import Clock, england
from tests.test_cases import rows

People = dict[str, Person]
CHILD = "Zebedee Canary-Quill"


EARLY_HELP_REFUSED = {**SIGNIFICANT_HARM_REFUSED, "staff_threshold": "early_help", "threshold": "early_help",
                      "consent_outcome": "refused", "child_dob": None, "asked_at": "2026-11-23T12:00:00+00:00"}


async def concern(svc: Services, people: People, *, child: str = CHILD, linked_to: str | None = None) -> CaseView:
    """A concern about `child`, walked to its end: early help, agreement refused, not shared."""
    return await complete(svc, teacher=people["teacher"], dsl=people["dsl"], platform="test", linked_to=linked_to,
                          answers={**EARLY_HELP_REFUSED, "child": child})


async def walk_until_dsl(svc: Services, people: People) -> CaseView:
    """A concern described by the teacher, waiting on the DSL's threshold decision."""
    return await complete(svc, teacher=people["teacher"], dsl=people["dsl"], platform="test", until=Actor.DSL,
                          answers={**EARLY_HELP_REFUSED, "child": CHILD})


async def test_three_cases_one_reescalated_read_in_order_with_the_link(services: Services, school: People,
                                                                      clock: Clock) -> None:
    first = await concern(services, school)
    clock.now += timedelta(days=3)
    again = await concern(services, school, child="  zebedee   CANARY-quill ", linked_to=first.ref)  # G5: re-escalated
    clock.now += timedelta(days=2)
    third = await concern(services, school, child="zebedee canary-quill")  # typed again, no link: the same child
    other = await concern(services, school, child="Somebody Else")

    found = await chronology(services, ref=third.ref, actor=school["dsl"])

    assert found.cases == (first.ref, again.ref, third.ref)  # oldest first; another child's case is not there
    assert found.name == CHILD and other.ref not in "\n".join(found.lines())
    lines = found.lines()
    raised = [line for line in lines if "Concern raised by Tina Teacher" in line]
    assert [r.split()[5] for r in raised] == [first.ref, again.ref, third.ref]
    assert f"(re-escalation of {first.ref})" in raised[1] and "re-escalation" not in raised[0] + raised[2]
    assert any(f"{first.ref}  Dee DSL: Confirm the threshold (Early help" in line for line in lines)
    ats = [e.at for e in found.entries]
    assert ats == sorted(ats)
    assert lines[2].startswith("Tue 24 Nov 2026, 10:00")  # the school's time, as people read it


async def test_the_link_is_chained_and_both_cases_show_it(services: Services, school: People) -> None:
    first = await concern(services, school)
    again = await concern(services, school, linked_to=first.ref)
    log = [(a.action, a.case_id, json.loads(a.detail)) for a in await rows(services, AccessLog)]
    linked = [entry for entry in log if entry[0] == "case_linked"]
    assert len(linked) == 1 and linked[0][2] == {"from": first.ref, "kind": "re_escalation"}
    async with services.db.read() as s:
        ids = dict((await s.execute(text("SELECT ref, id FROM cases"))).all())
        pairs = (await s.execute(text("SELECT ref, linked_case_id, child_id FROM cases"))).all()
    by_ref = {ref: (linked_id, child) for ref, linked_id, child in pairs}
    assert by_ref[again.ref][0] == ids[first.ref] and by_ref[first.ref][0] is None
    assert by_ref[again.ref][1] == by_ref[first.ref][1] is not None


async def test_a_case_joins_its_child_in_its_own_chained_event_not_the_access_log(services: Services,
                                                                                  school: People) -> None:
    """The answer that names the child joins the case to the child's record and says so in its
    own sealed event, which the case's chain verifies; the shared access log, whose appends wait
    for one another, is not written (issue 12).
    """
    from bot.audit import verify

    view = await concern(services, school)
    async with services.db.read() as s:
        child_ref, child_id, case_id = (await s.execute(text(
            "SELECT children.ref, children.id, cases.id FROM cases JOIN children ON children.id = cases.child_id "
            "WHERE cases.ref = :ref"), {"ref": view.ref})).one()
        events = await repo.case_events(s, case_id)
    named = [e for e in events if "child" in json.loads(e.payload)]
    assert [json.loads(e.payload)["child"] for e in named] == [child_ref] and child_id
    assert json.loads(named[0].payload)["step"] == "concern"  # the step that names the child
    assert not [a for a in await rows(services, AccessLog) if a.case_id == case_id and "child" in (a.detail or "")]
    assert not (await verify(services)).problems


async def test_the_childs_name_is_encrypted_and_found_by_a_keyed_index(services: Services, school: People) -> None:
    await concern(services, school)
    async with services.db.read() as s:
        stored = " ".join(str(v) for row in (await s.execute(text("SELECT * FROM children"))).all() for v in row)
    assert "Zebedee" not in stored and "zebedee" not in stored and "enc:v1:t1:" in stored


async def test_only_a_dsl_of_the_school_reads_it_and_every_reading_is_logged(services: Services,
                                                                            school: People) -> None:
    case = await concern(services, school)
    await chronology(services, ref=case.ref, actor=school["deputy"])
    await chronology(services, ref=case.ref, operator="os:it-person")
    with pytest.raises(NotAuthorised, match="Only a DSL or deputy"):
        await chronology(services, ref=case.ref, actor=school["teacher"])
    with pytest.raises(NotFound):
        await chronology(services, ref=case.ref, actor=school["other_dsl"])
    log = [(a.action, a.actor_id, json.loads(a.detail)) for a in await rows(services, AccessLog)]
    viewed = [(who, d) for action, who, d in log if action == "chronology_viewed"]
    assert [who for who, _ in viewed] == [school["deputy"].id, None]
    assert viewed[1][1]["operator"] == "os:it-person" and viewed[0][1]["cases"] == 1
    assert ("refused", school["teacher"].id) in [(a, w) for a, w, _ in log]
    assert ("refused_not_found", school["other_dsl"].id) in [(a, w) for a, w, _ in log]


async def test_a_concern_from_a_case_the_person_may_not_see_is_refused_and_logged(services: Services,
                                                                                 school: People) -> None:
    case = await concern(services, school)
    with pytest.raises(NotAuthorised, match="did not raise it"):
        await cases.raise_concern(services, actor=school["teacher2"], values={"immediate_danger": "no"},
                                  platform="test", linked_to=case.ref)
    with pytest.raises(NotFound):
        await cases.raise_concern(services, actor=school["other_dsl"], values={"immediate_danger": "no"},
                                  platform="test", linked_to=case.ref)
    async with services.db.read() as s:
        assert (await s.execute(text("SELECT count(*) FROM cases"))).scalar() == 1  # nothing raised
    refused = [a.actor_id for a in await rows(services, AccessLog) if a.action.startswith("refused")]
    assert refused == [school["teacher2"].id, school["other_dsl"].id]


async def test_a_teacher_opening_a_case_on_a_dsl_step_is_told_whose_it_is_and_logged(services: Services,
                                                                                    school: People) -> None:
    view = await walk_until_dsl(services, school)
    said = await cases.not_theirs(services, actor=school["teacher"], view=view)
    assert said == (f"Case {view.ref} is waiting for 'Confirm the threshold', which only a Designated Safeguarding "
                    "Lead or Deputy DSL can answer, so it is not offered to you here. This attempt has been recorded.")
    assert await cases.not_theirs(services, actor=school["dsl"], view=view) is None
    refused = [(a.actor_id, json.loads(a.detail)) for a in await rows(services, AccessLog) if a.action == "refused"]
    assert refused == [(school["teacher"].id, {"role": "staff", "step": "dsl_threshold",
                                               "why": "opened a step that is not theirs"})]



def test_the_terminal_shows_the_link_and_the_chronology_and_logs_the_readers(sqlite_url: str, tmp_path: Path) -> None:
    bot = Bot(database_url=sqlite_url, workdir=tmp_path, in_process=True)
    setup_school(bot)
    first, again = asyncio.run(_two_linked_cases(bot))

    opened = bot.run("chat", "--as", "dee@oak.sch.uk", "--case", again, check=False).stdout
    assert f"Raised from: {first} (a re-escalation)" in opened
    assert f"{first}  Dee DSL: Confirm the threshold (Early help" in opened
    shown = bot.run("chronology", first, "--as", "dee@oak.sch.uk").stdout.splitlines()
    assert shown[0].startswith("Child CH-") and shown[0].endswith(f": {CHILD}")
    assert shown[1].endswith(f"2 case(s): {first}, {again}") and f"(re-escalation of {first})" in "\n".join(shown)
    refused = bot.run("chronology", first, "--as", "tina@oak.sch.uk", check=False)
    assert refused.returncode == 1 and "Only a DSL or deputy can see a child's chronology" in refused.stderr
    bot.run("chronology", first)  # the operator at the server: their login name is recorded

    log = bot.run("audit", "show").stdout
    readings = [line for line in log.splitlines() if "chronology_viewed" in line]
    assert len(readings) == 3 and '"operator":"os:' in readings[-1]  # the details view, --as dee, the operator
    assert CHILD not in log and CHILD.split()[0] not in "".join(bot.stderr)  # in the views only, never in a log


async def _two_linked_cases(bot: Bot) -> tuple[str, str]:
    svc = Services(db=create_database(bot.database_url), keyring=Keyring.parse(bot.key), policy=england())
    try:
        async with svc.db.read() as s:
            people = {role: Person.of(p) for p in await repo.list_staff(s) for role in [_ROLE[p.email]]}
        people["teacher2"] = people["teacher"]
        first = await concern(svc, people)
        again = await concern(svc, people, linked_to=first.ref)
        return first.ref, again.ref
    finally:
        await svc.db.dispose()


_ROLE = {"tina@oak.sch.uk": "teacher", "dee@oak.sch.uk": "dsl", "pat@oak.sch.uk": "deputy"}


async def test_people_are_named_as_they_were_when_they_acted(services: Services, school: People) -> None:
    case = await concern(services, school)
    async with services.db.transaction() as s:
        await s.execute(text("UPDATE staff SET display_name = 'Mallory Mole'"))
    lines = "\n".join((await chronology(services, ref=case.ref, actor=school["dsl"])).lines())
    assert "Dee DSL: Confirm the threshold" in lines and "Concern raised by Tina Teacher" in lines
    assert "Mallory" not in lines
