"""The App Home tab: references only, grouped by what each case waits for."""

from __future__ import annotations

import json
from typing import Any

from tests.slack.conftest import USERS, Driver
from tests.slack.test_raise import CHILD, raise_concern


async def home_of(slack: Driver, who: str) -> dict[str, Any]:
    event = {"type": "app_home_opened", "user": USERS[who], "tab": "home", "channel": "D0HOME"}
    response = await slack.event(event, event_id=f"Ev{who}{len(slack.fake.calls)}")
    assert response.status_code == 200
    [call] = [c for c in slack.fake.calls_to("views.publish") if c.params["user_id"] == USERS[who]][-1:]
    return dict(call.params["view"])


def sections(view: dict[str, Any]) -> list[str]:
    return [b["text"]["text"] for b in view["blocks"] if b["type"] == "section"]


async def test_a_dsl_sees_open_cases_grouped_and_no_child_details(slack: Driver) -> None:
    ref, _ = await raise_concern(slack)

    view = await home_of(slack, "dsl")

    shown = sections(view)
    assert "*Awaiting decision* (1)" in shown and "*Awaiting outcome* (0)" in shown and "*Overdue* (0)" in shown
    [line] = [b for b in view["blocks"] if b.get("accessory", {}).get("value") == ref]
    assert line["accessory"]["action_id"] == "open_case"
    assert CHILD not in json.dumps(view)


async def test_staff_see_only_what_is_assigned_to_them(slack: Driver) -> None:
    ref, _ = await raise_concern(slack)
    await slack.click("dsl", ref, channel="D" + USERS["dsl"])
    view = slack.last_opened_view()
    for answers in ({"threshold": "significant_harm"}, {"reasons_not_to_ask": []}, {"assignee": "sam@oak.sch.uk"}):
        view = (await slack.submit("dsl", view, answers)).json()["view"]

    assignee, bystander = await home_of(slack, "assignee"), await home_of(slack, "bystander")

    assert "*Assigned to you* (1)" in sections(assignee)
    assert ref in json.dumps(assignee) and ref not in json.dumps(bystander)
    assert CHILD not in json.dumps(assignee)


async def test_an_unregistered_person_is_told_how_to_get_access(slack: Driver) -> None:
    event = {"type": "app_home_opened", "user": "U0STRANGER", "tab": "home", "channel": "D0HOME"}
    await slack.event(event)

    [call] = slack.fake.calls_to("views.publish")
    assert "not registered" in json.dumps(call.params["view"])


async def test_the_messages_tab_publishes_nothing(slack: Driver) -> None:
    await slack.event({"type": "app_home_opened", "user": USERS["dsl"], "tab": "messages", "channel": "D0HOME"})

    assert not slack.fake.calls_to("views.publish")
