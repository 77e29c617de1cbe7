"""Every request to /api/messages is authenticated; a bad one gets 4xx and changes nothing."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlmodel import func, select

from bot.app import build_app
from bot.cases import Services
from handlers.teams import app as teams
from handlers.teams.app import TeamsConfigError
from storage.models import AccessLog, Case, ProcessedDelivery
from tests.fakes import teams_connector as tc
from tests.teams.conftest import Driver


async def rows(svc: Services) -> tuple[int, int, int]:
    async with svc.db.read() as s:
        counts = [(await s.execute(select(func.count()).select_from(t))).scalar_one()
                  for t in (Case, AccessLog, ProcessedDelivery)]
    return counts[0], counts[1], counts[2]


def concern(teams: Driver) -> dict[str, Any]:
    return tc.message("concern", **teams.who("dsl"))


@pytest.mark.parametrize("why", ["missing", "other_key", "wrong_audience", "serviceurl_mismatch", "expired",
                                 "not_bearer"])
async def test_an_unauthenticated_activity_gets_401_and_changes_nothing(teams_driver: Driver, why: str) -> None:
    teams = teams_driver
    activity = concern(teams)
    service_url = activity["serviceUrl"]
    tokens = {
        "missing": None,
        "other_key": teams.fake.other_key_token(service_url=service_url),
        "wrong_audience": teams.fake.sign_activity_token(audience="someone-else", service_url=service_url),
        "serviceurl_mismatch": teams.fake.sign_activity_token(service_url="https://evil.example/teams/"),
        "expired": teams.fake.sign_activity_token(service_url=service_url, expires_in=-3600),
        "not_bearer": "Basic dXNlcjpwYXNz",
    }
    before, calls = await rows(teams.svc), len(teams.fake.calls)
    token = tokens[why]
    headers = {} if token is None else {"Authorization": token if why == "not_bearer" else f"Bearer {token}"}
    response = await teams.http.post("/api/messages", json=activity, headers=headers)
    assert response.status_code == 401
    assert await rows(teams.svc) == before
    assert not [c for c in teams.fake.calls[calls:] if "/v3/" in c.path]  # nothing was said to anyone


DEEP = b'{"type": "message", "x": ' + b"[" * 100 + b"]" * 100 + b"}"  # deeper than any activity


@pytest.mark.parametrize("body", [b"{not json", b"[]", b'{"no": "type"}', b"\xff\xfe", b"[" * 5000 + b"]" * 5000, DEEP],
                         ids=["broken", "list", "no_type", "not_utf8", "recursion", "deep"])
async def test_a_malformed_body_gets_400_and_changes_nothing(teams_driver: Driver, body: bytes) -> None:
    teams = teams_driver
    before = await rows(teams.svc)
    token = teams.fake.sign_activity_token(service_url=teams.fake.service_url)
    response = await teams.http.post("/api/messages", content=body, headers={
        "Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    assert response.status_code == 400
    assert await rows(teams.svc) == before


async def test_an_activity_teams_redelivers_is_handled_once(teams_driver: Driver) -> None:
    teams = teams_driver
    activity = tc.message("concern", id="1700000000001", **teams.who("dsl"))
    for _ in range(3):  # Teams redelivers after ~15 s without an answer
        assert (await teams.post(activity)).status_code == 200
    replies = [c for c in teams.fake.calls_to("/activities", "POST")]
    assert len(replies) == 1


async def test_an_automatic_refresh_is_answered_not_a_500(teams_driver: Driver) -> None:
    """microsoft-teams-api 2.1.1 accepts only trigger "manual": without the fix this is a 500."""
    teams = teams_driver
    activity = tc.card_action("refresh", {"consentbot": "refresh", "case": "C-NOSUCH"}, trigger="automatic",
                              **teams.who("dsl"))
    response = await teams.post(activity)
    assert response.status_code == 200
    body = response.json()
    assert body["type"] == "application/vnd.microsoft.card.adaptive"
    assert "C-NOSUCH" in json.dumps(body["value"])  # "no case C-NOSUCH": said to the clicker only


async def test_unauthenticated_mode_is_refused(teams_driver: Driver, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DANGEROUSLY_ALLOW_UNAUTHENTICATED_REQUESTS", "true")
    with pytest.raises(TeamsConfigError, match="never accepts unauthenticated"):
        build_app(teams_driver.settings, teams_driver.svc)


async def test_someone_not_registered_is_told_so_and_the_attempt_is_logged(teams_driver: Driver) -> None:
    teams = teams_driver
    teams.fake.add_member("29:1stranger", "bbbbbbbb-0000-4000-8000-000000000009", "Stan Ranger", "stan@elsewhere.uk")
    who = {**teams.who("dsl"), "from_id": "29:1stranger", "aad_object_id": "bbbbbbbb-0000-4000-8000-000000000009",
           "conversation_id": "a:personal-stranger"}
    assert (await teams.post(tc.message("concern", **who))).status_code == 200
    [reply] = [c for c in teams.fake.calls_to("/activities", "POST")]
    assert "not registered" in json.dumps(reply.json)
    async with teams.svc.db.read() as s:
        actions = (await s.execute(select(AccessLog.action))).scalars().all()
    assert "refused_unregistered" in actions


async def test_a_registered_teacher_is_linked_by_email_on_first_contact(teams_driver: Driver) -> None:
    teams = teams_driver
    assert (await teams.say("teacher", "concern")).status_code == 200
    async with teams.svc.db.read() as s:
        actions = (await s.execute(select(AccessLog.action))).scalars().all()
    assert actions.count("staff_linked") == 1
    assert (await teams.say("teacher", "cases")).status_code == 200  # known by id now: no second link
    async with teams.svc.db.read() as s:
        assert (await s.execute(select(AccessLog.action))).scalars().all().count("staff_linked") == 1
    assert len(teams.fake.calls_to("/members/")) == 1


def test_teams_is_reported_on_with_its_settings(teams_driver: Driver) -> None:
    from bot.app import platform_status

    assert platform_status(teams_driver.settings)["teams"].startswith("on")
    assert teams.BOT_SCOPE.endswith("/.default")


async def test_an_activity_from_another_organisation_is_ignored(teams_driver: Driver) -> None:
    teams = teams_driver
    activity = tc.message("concern", tenant_id="99999999-0000-4000-8000-000000000000", **teams.who("teacher"))
    before = await rows(teams.svc)
    assert (await teams.post(activity)).status_code == 200
    assert await rows(teams.svc) == before  # not linked by the email its administrator chose, nothing said
    assert not teams.fake.calls_to("/activities", "POST") and not teams.fake.calls_to("/members/")
