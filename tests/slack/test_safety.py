"""The endpoint's edges: every recorded Slack request gets a non-5xx answer, forged or stale
requests get 401, malformed bodies 4xx, and retried events do nothing twice."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.fakes.slack_signing import sign
from tests.slack.conftest import SECRET, USERS, Driver

FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "slack"
BODIES = sorted(FIXTURES.glob("*.body"))


def content_type(body: str) -> str:
    return "application/json" if body.startswith("{") else "application/x-www-form-urlencoded"


def test_the_recorded_fixtures_are_there() -> None:
    assert len(BODIES) >= 11


@pytest.mark.parametrize("path", BODIES, ids=[p.stem for p in BODIES])
async def test_every_recorded_request_gets_an_answer_that_is_not_a_server_error(slack: Driver, path: Path) -> None:
    body = path.read_text()
    response = await slack.post(body, content_type(body))

    assert response.status_code < 500, (path.stem, response.status_code)


async def test_url_verification_echoes_the_challenge(slack: Driver) -> None:
    body = (FIXTURES / "url_verification.body").read_text()
    response = await slack.post(body, "application/json")

    assert response.status_code == 200 and "challenge" in response.text


@pytest.mark.parametrize("path", BODIES[:4], ids=[p.stem for p in BODIES[:4]])
async def test_a_forged_signature_is_refused(slack: Driver, path: Path) -> None:
    body = path.read_text()
    headers = {**sign("not-the-secret", body), "Content-Type": content_type(body)}
    response = await slack.http.post("/slack/events", content=body.encode(), headers=headers)

    assert response.status_code == 401


async def test_a_stale_timestamp_is_refused(slack: Driver) -> None:
    body = (FIXTURES / "slash_command.body").read_text()
    headers = {**sign(SECRET, body, timestamp=int(time.time()) - 6 * 60), "Content-Type": content_type(body)}
    response = await slack.http.post("/slack/events", content=body.encode(), headers=headers)

    assert response.status_code == 401


async def test_an_unsigned_request_is_refused(slack: Driver) -> None:
    response = await slack.http.post("/slack/events", content=b"command=%2Fconcern",
                                     headers={"Content-Type": "application/x-www-form-urlencoded"})

    assert response.status_code == 401


@pytest.mark.parametrize("body", [
    "payload=%7Bnot-json", "{not json", "payload=%5B1%2C2%5D", "payload=%7B%7D",
    "payload=" + "%7B%22type%22%3A%22view_submission%22%7D",
    "payload=" + "%7B%22type%22%3A%22block_actions%22%2C%22actions%22%3A%5B%7B%22action_id%22%3A%22open_case%22%7D%5D%7D",
])
async def test_a_signed_but_malformed_body_is_a_client_error(slack: Driver, body: str) -> None:
    response = await slack.post(body, content_type(body))

    assert 400 <= response.status_code < 500, (body, response.status_code, response.text)


async def test_a_malformed_body_with_a_forged_signature_is_401(slack: Driver) -> None:
    body = "payload=%7Bnot-json"
    headers = {**sign("wrong", body), "Content-Type": "application/x-www-form-urlencoded"}
    response = await slack.http.post("/slack/events", content=body.encode(), headers=headers)

    assert response.status_code == 401


async def test_a_retried_event_is_answered_without_doing_the_work_again(slack: Driver) -> None:
    home = {"type": "app_home_opened", "user": USERS["dsl"], "tab": "home", "channel": "D0X"}
    first = await slack.event(home, event_id="Ev0HOME01")
    retried = await slack.event(home, event_id="Ev0HOME01", retry=1)

    assert first.status_code == retried.status_code == 200
    assert len(slack.fake.calls_to("views.publish")) == 1


async def test_an_event_delivered_twice_without_a_retry_header_is_handled_once(slack: Driver) -> None:
    home = {"type": "app_home_opened", "user": USERS["dsl"], "tab": "home", "channel": "D0X"}
    first = await slack.event(home, event_id="Ev0HOME02")
    replayed = await slack.event(home, event_id="Ev0HOME02")
    other = await slack.event(home, event_id="Ev0HOME03")

    assert first.status_code == replayed.status_code == other.status_code == 200
    assert len(slack.fake.calls_to("views.publish")) == 2  # Ev0HOME02 once, Ev0HOME03 once
