"""First contact in Slack: someone registered by email only (no Slack id copied by hand) is linked
by their Slack profile's email, through signed requests against the fake Slack, and raises a
concern in the same interaction; without the email scope they are told how to get linked."""

from __future__ import annotations

import json
import sys
from typing import Any
from urllib.parse import urlencode

import pytest

from bot import people
from bot.audit import verify
from storage import repo
from tests.slack.conftest import USERS, Driver, decision_dm
from tests.slack.test_oauth_workspaces import BIRCH, OAK, Trust, linked, trust  # noqa: F401 - fixtures
from tests.slack.test_raise import ABOUT, CHILD

NIA = "U0NIA00001"


def users_of(slack: Driver) -> dict[str, str]:
    """The USERS the Driver reads (pytest may load conftest.py under another module name)."""
    users: dict[str, str] = sys.modules[type(slack).__module__].USERS
    return users


@pytest.fixture
async def nia(slack: Driver, monkeypatch: pytest.MonkeyPatch) -> Driver:
    """Nia is registered by email only; Slack knows her as NIA with that email (any case)."""
    await people.add(slack.svc, email="nia@oak.sch.uk", role="staff", name="Nia New", school="oak")
    monkeypatch.setitem(users_of(slack), "newcomer", NIA)
    slack.fake.add_user(NIA, real_name="Nia New", profile={"real_name": "Nia New", "email": "Nia@Oak.sch.uk"})
    return slack


async def staff_log(slack: Driver) -> list[tuple[str, int | None, dict[str, Any]]]:
    async with slack.svc.db.read() as s:
        return [(r.action, r.actor_id, json.loads(r.detail)) for r in await repo.access_log(s)
                if r.action.startswith(("staff_", "refused"))]


async def test_a_registered_email_is_linked_on_first_contact_and_raises_a_concern(nia: Driver) -> None:
    slack = nia
    assert (await slack.command("newcomer")).status_code == 200
    view = slack.last_opened_view()
    assert view["callback_id"] == "step:immediate_danger"  # the checklist, not "you are not registered"
    assert slack.fake.calls_to("users.info")[0].params["user"] == NIA
    view = (await slack.submit("newcomer", view, {"immediate_danger": "no"})).json()["view"]
    ref = view["private_metadata"].split(":")[0]
    view = (await slack.submit("newcomer", view, {**ABOUT, "concern": f"{CHILD} said she is scared"})).json()["view"]
    await slack.submit("newcomer", view, {"staff_threshold": "significant_harm"})
    await slack.drain()
    assert ref in json.dumps(decision_dm(slack.fake, "dsl"))
    row = next(r for r in await people.listing(slack.svc, school="oak") if r[0] == "nia@oak.sch.uk")
    assert row[4] == NIA
    [(action, actor, detail)] = [e for e in await staff_log(slack) if e[0] == "staff_linked"]
    assert detail["platform"] == "slack" and detail["operator"] == "first_contact" and actor == detail["staff_id"]
    assert "nia" not in json.dumps(detail).lower() and "fingerprint" in detail
    assert not (await verify(slack.svc)).problems
    await slack.command("newcomer")  # known by id now: Slack is not asked again
    assert len(slack.fake.calls_to("users.info")) == 1


async def test_an_email_nobody_registered_links_nobody(slack: Driver, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(users_of(slack), "stranger", "U0STRANGE1")
    slack.fake.add_user("U0STRANGE1", profile={"email": "someone@elsewhere.example"})
    await slack.command("stranger")
    assert slack.last_opened_view()["callback_id"] != "step:immediate_danger"
    assert "not registered" in json.dumps(slack.last_opened_view())
    assert [a for a, _, _ in await staff_log(slack)].count("staff_linked") == 0


async def test_someone_unregistered_is_looked_up_once_then_found_as_soon_as_they_are_added(
        slack: Driver, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(users_of(slack), "stranger", "U0STRANGE1")
    slack.fake.add_user("U0STRANGE1", profile={"email": "sol@oak.sch.uk"})
    for _ in range(3):  # clicking again and again asks Slack once
        await slack.command("stranger")
        assert "not registered" in json.dumps(slack.last_opened_view())
    assert len(slack.fake.calls_to("users.info")) == 1
    await people.add(slack.svc, email="sol@oak.sch.uk", role="staff", name="Sol", school="oak")
    await slack.command("stranger")  # someone was added who could be them: Slack is asked again, and they are linked
    assert slack.last_opened_view()["callback_id"] == "step:immediate_danger"
    assert len(slack.fake.calls_to("users.info")) == 2


async def test_someone_already_linked_elsewhere_or_removed_is_not_relinked(nia: Driver) -> None:
    slack = nia
    await people.edit(slack.svc, email="nia@oak.sch.uk", changes=people.Edit(slack_user_id="U0NIAOLD01"))
    await slack.command("newcomer")  # her email matches, but she has another Slack id already
    assert slack.last_opened_view()["callback_id"] != "step:immediate_danger"
    await people.remove(slack.svc, email="tina@oak.sch.uk")
    slack.fake.add_user(USERS["teacher"], profile={"email": "tina@oak.sch.uk"})
    await slack.command("teacher")  # removed: still refused, her id is never moved
    assert "access to consentbot has been removed" in json.dumps(slack.last_opened_view())
    assert [a for a, _, _ in await staff_log(slack)].count("staff_linked") == 0


@pytest.mark.parametrize("withheld", [("users:read.email",), ("users:read", "users:read.email")])
async def test_without_the_email_scope_the_person_is_told_to_ask_for_staff_edit(nia: Driver,
                                                                             withheld: tuple[str, ...]) -> None:
    slack = nia
    slack.fake.withhold_scopes(*withheld)
    await slack.command("newcomer")
    shown = json.dumps(slack.last_opened_view())
    assert slack.last_opened_view()["callback_id"] != "step:immediate_danger"
    assert f"consentbot staff edit YOUR-EMAIL --slack-id {NIA}" in shown
    assert "Nia" not in shown and [a for a, _, _ in await staff_log(slack)].count("staff_linked") == 0
    assert [a for a, _, _ in await staff_log(slack)][-1] == "refused_unregistered"  # still logged as a refusal


async def test_the_fake_answers_missing_scope_like_slack(nia: Driver) -> None:
    from slack_sdk.errors import SlackApiError
    from slack_sdk.web.async_client import AsyncWebClient

    client = AsyncWebClient(token="xoxb-test", base_url=nia.fake.url)
    assert (await client.users_info(user=NIA))["user"]["profile"]["email"] == "Nia@Oak.sch.uk"
    nia.fake.withhold_scopes("users:read.email")
    assert "email" not in (await client.users_info(user=NIA))["user"]["profile"]
    nia.fake.withhold_scopes("users:read")
    with pytest.raises(SlackApiError) as refused:
        await client.users_info(user=NIA)
    assert refused.value.response["error"] == "missing_scope" and refused.value.response["needed"] == "users:read"


async def test_opening_the_home_tab_links_too(nia: Driver) -> None:
    slack = nia
    await slack.event({"type": "app_home_opened", "user": NIA, "channel": "D0NIA", "tab": "home"})
    [published] = slack.fake.calls_to("views.publish")
    assert "Signed in as Nia New" in json.dumps(published.params["view"])
    assert [a for a, _, _ in await staff_log(slack)].count("staff_linked") == 1


async def test_the_home_tab_says_how_to_get_linked_without_the_scope(nia: Driver) -> None:
    slack = nia
    slack.fake.withhold_scopes("users:read.email")
    await slack.event({"type": "app_home_opened", "user": NIA, "channel": "D0NIA", "tab": "home"})
    [published] = slack.fake.calls_to("views.publish")
    assert f"--slack-id {NIA}" in json.dumps(published.params["view"])


async def test_with_several_workspaces_only_the_workspaces_own_school_is_linked(linked: Trust) -> None:  # noqa: F811
    await people.add(linked.svc, email="nia@oak.sch.uk", role="staff", name="Nia New", school="oak")
    profile = {"real_name": "Nia New", "email": "nia@oak.sch.uk"}
    linked.fake.add_user("U0NIABIRCH", team=BIRCH, profile=profile)  # Birch's admins vouch for Birch's people only
    linked.fake.add_user("U0NIAOAK01", team=OAK, profile=profile)
    body = {"command": "/concern", "text": "", "team_id": BIRCH, "channel_id": "C0STAFFROOM", "response_url": ""}
    await linked.post(urlencode({**body, "user_id": "U0NIABIRCH", "trigger_id": linked.trigger()}),
                      "application/x-www-form-urlencoded")
    assert not [r for r in await people.listing(linked.svc, school="oak") if r[4] == "U0NIABIRCH"]
    await linked.post(urlencode({**body, "team_id": OAK, "user_id": "U0NIAOAK01", "trigger_id": linked.trigger()}),
                      "application/x-www-form-urlencoded")
    assert ("nia@oak.sch.uk", "Nia New", "staff", "oak", "U0NIAOAK01", "-") in await people.listing(linked.svc,
                                                                                                   school="oak")
    assert linked.opened_views(OAK)[-1]["callback_id"] == "step:immediate_danger"
