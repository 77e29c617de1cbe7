"""From a case's window in Slack, "Raise a new concern about this child" starts the checklist
again linked to that case (G5 re-escalation): the new case is about the same child and both show
the link. Someone who may not see the earlier case cannot raise from it, and the attempt is logged."""

from __future__ import annotations

import json
import time
from typing import Any

from sqlalchemy import text

from bot.audit import access_entries
from bot.cases import Person
from bot.chronology import chronology
from tests.slack.conftest import USERS, Driver
from tests.slack.test_export_pdf import opened_window
from tests.test_chronology import concern

RAISE_FROM = "raise_from"


def raise_buttons(view: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for b in view.get("blocks", []) if b.get("type") == "actions" for e in b["elements"]
            if e.get("action_id") == RAISE_FROM]


async def click_raise_from(slack: Driver, who: str, ref: str) -> dict[str, Any]:
    """The button pressed in the case window: the checklist's first step pushed on top of it."""
    payload = {"type": "block_actions", "trigger_id": slack.trigger(), "user": {"id": USERS[who]},
               "team": {"id": "T0FAKE0001"}, "view": {"id": "V0CASEWIN1", "type": "modal"},
               "actions": [{"type": "button", "action_id": RAISE_FROM, "block_id": f"export:{ref}", "value": ref,
                            "action_ts": str(time.time())}]}
    assert (await slack.interact(payload)).status_code == 200
    return dict(slack.fake.calls_to("views.push")[-1].params["view"])


async def test_a_dsl_raises_a_new_concern_from_a_closed_case_and_both_show_the_link(
        slack: Driver, staff: dict[str, Person]) -> None:
    earlier = await concern(slack.svc, staff)  # early help, agreement refused, not shared: closed
    window = await opened_window(slack, "dsl", earlier.ref)
    [button] = raise_buttons(window)
    assert button["text"]["text"] == "Raise a new concern about this child"

    first = await click_raise_from(slack, "dsl", earlier.ref)
    assert f"A new concern about the same child as case {earlier.ref}" in json.dumps(first)
    answered = await slack.submit("dsl", first, {"immediate_danger": "no"})
    assert answered.status_code == 200 and answered.json()["response_action"] == "update"

    async with slack.svc.db.read() as s:
        rows = dict((await s.execute(text("SELECT ref, linked_case_id FROM cases"))).all())
        ids = dict((await s.execute(text("SELECT id, ref FROM cases"))).all())
    [new_ref] = [ref for ref in rows if ref != earlier.ref]
    assert ids[rows[new_ref]] == earlier.ref  # linked to the case it was raised from
    assert any("case_linked" in line and earlier.ref in line for line in await access_entries(slack.svc,
                                                                                               case_ref=new_ref))
    again = await opened_window(slack, "dsl", earlier.ref)
    assert f"*Concerns raised from this case*\\n{new_ref}" in json.dumps(again)
    found = await chronology(slack.svc, ref=earlier.ref, actor=staff["dsl"])
    assert found.cases == (earlier.ref, new_ref)  # the same child, though the new concern names nobody yet


async def test_someone_who_cannot_see_the_case_cannot_raise_from_it_and_is_logged(
        slack: Driver, staff: dict[str, Person]) -> None:
    earlier = await concern(slack.svc, staff)
    first = await click_raise_from(slack, "bystander", earlier.ref)  # a crafted click: no window offered it
    refused = await slack.submit("bystander", first, {"immediate_danger": "no"})
    said = json.dumps(refused.json())
    assert f"You cannot raise a concern from case {earlier.ref}" in said
    async with slack.svc.db.read() as s:
        assert (await s.execute(text("SELECT count(*) FROM cases"))).scalar() == 1  # nothing raised
    log = await access_entries(slack.svc, case_ref=earlier.ref)
    assert any("\trefused\t" in line and f"staff={staff['bystander'].id}" in line for line in log)
