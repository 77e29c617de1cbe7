"""The assignee picker searches: in a school of 150 staff the step modal offers an external_select,
Slack's block_suggestion is answered (signed, through Bolt) with at most 100 matches from the
case's school and the roles the field allows, and someone beyond the first 100 is found and assigned."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx

from bot import people
from bot.cases import CaseView, Person
from bot.people_import import import_staff, parse_rows
from bot.policy.model import FieldType
from storage import repo
from tests.slack.conftest import Driver
from tests.slack.test_ack_snooze import drive

MANY = 150


async def school_of_150(slack: Driver) -> None:
    rows = "\n".join(f"p{i:03d}@oak.sch.uk,Person {i:03d},staff" for i in range(MANY))
    await import_staff(slack.svc, rows=parse_rows("email,name,role\n" + rows + "\n", school="oak"))
    await people.add(slack.svc, email="adam@oak.sch.uk", role="admin", name="Adam Admin", school="oak")
    await people.add(slack.svc, email="zed@elm.sch.uk", role="staff", name="Person Zed Elsewhere", school="elm")


def asks_assignee(view: CaseView) -> bool:
    return view.step is not None and any(f.type is FieldType.ASSIGNEE for f in view.step.fields)


async def search(slack: Driver, who: str, view: dict[str, Any], typed: str) -> httpx.Response:
    """What Slack sends as someone types (shape: /work/shared/fixtures/slack/block_suggestion_in_modal.json)."""
    from tests.slack.test_first_contact import users_of

    shown = {"id": "V0SEARCH01", **view, "state": {"values": {}}}
    return await slack.interact({
        "type": "block_suggestion", "user": {"id": users_of(slack)[who], "team_id": "T0FAKE0001"},
        "container": {"type": "view", "view_id": shown["id"]}, "api_app_id": "A0APP00001",
        "action_id": "assignee", "block_id": "assignee", "value": typed,
        "team": {"id": "T0FAKE0001", "domain": "oak"}, "view": shown})


def values(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [o["value"] for o in response.json()["options"]]


async def opened_at_assignee_step(slack: Driver, staff: dict[str, Person]) -> dict[str, Any]:
    await school_of_150(slack)
    case = await drive(slack.svc, staff, danger="no", until=asks_assignee)
    await slack.click("dsl", case.ref)
    return slack.last_opened_view()


async def test_someone_beyond_the_first_100_is_found_and_assigned(slack: Driver, staff: dict[str, Person]) -> None:
    view = await opened_at_assignee_step(slack, staff)
    [picker] = [b["element"] for b in view["blocks"] if b.get("block_id") == "assignee"]
    assert picker["type"] == "external_select" and picker["min_query_length"] == 0 and "options" not in picker

    first = values(await search(slack, "dsl", view, ""))
    assert len(first) == 100 and "p149@oak.sch.uk" not in first  # at most 100, alphabetical: Person 149 is later
    assert values(await search(slack, "dsl", view, "  person 149 ")) == ["p149@oak.sch.uk"]
    assert values(await search(slack, "dsl", view, "P14")) == [f"p14{i}@oak.sch.uk" for i in range(10)]
    assert values(await search(slack, "dsl", view, "sam@")) == ["sam@oak.sch.uk"]
    assert values(await search(slack, "dsl", view, "Adam")) == []  # admins are not assignable here
    assert values(await search(slack, "dsl", view, "Elsewhere")) == []  # nor anyone of another school

    started = time.perf_counter()
    reply = await slack.submit("dsl", view, {"assignee": "p149@oak.sch.uk"})
    assert reply.status_code == 200 and reply.json()["response_action"] == "update", reply.text
    assert time.perf_counter() - started < 3  # Slack's limit for the answer
    async with slack.svc.db.read() as s:
        case = await repo.case_by_ref(s, view["private_metadata"].split(":")[0])
        assignee = await repo.staff_by(s, email="p149@oak.sch.uk")
    assert case is not None and assignee is not None and case.assignee_id == assignee.id


async def test_only_someone_who_may_answer_the_step_can_search(slack: Driver, staff: dict[str, Person]) -> None:
    view = await opened_at_assignee_step(slack, staff)
    assert values(await search(slack, "teacher", view, "Person")) == []  # raised it, but the DSL decides
    assert values(await search(slack, "bystander", view, "Person")) == []  # may not see the case at all
    async with slack.svc.db.read() as s:
        refused = [r for r in await repo.access_log(s) if r.action.startswith("refused")]
    assert any(r.actor_id == staff["bystander"].id for r in refused)  # the attempt is logged
    assert values(await search(slack, "deputy", view, "Person 0")) == [f"p{i:03d}@oak.sch.uk" for i in range(100)]


async def test_a_crafted_value_is_still_refused_when_submitted(slack: Driver, staff: dict[str, Person]) -> None:
    view = await opened_at_assignee_step(slack, staff)
    for crafted in ("adam@oak.sch.uk", "zed@elm.sch.uk"):
        reply = await slack.submit("dsl", view, {"assignee": crafted})
        assert reply.json()["response_action"] == "errors", reply.text
        assert "assignee" in reply.json()["errors"]
    assert "Adam" not in json.dumps(values(await search(slack, "dsl", view, "a")))
