"""The endpoint's edges: every recorded Slack request gets a non-5xx answer, forged or stale
requests get 401, malformed bodies 4xx, and retried events do nothing twice."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote_plus

import pytest

from bot.app import build_app
from handlers.slack import MAX_PAYLOAD_DEPTH, is_shallow, payload_depth
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


DEEP_JSON = "[" * 20_000 + "]" * 20_000
DEEP_BODIES = {
    "form-raw": "payload=" + DEEP_JSON, "form-quoted": "payload=" + quote(DEEP_JSON, safe=""),
    "json": '{"type":' + DEEP_JSON + "}",
    "inside-an-action": "payload=" + quote('{"type":"block_actions","actions":' + DEEP_JSON + "}", safe=""),
    "form-key": "a" + "%5Ba%5D" * 20_000 + "=1",  # a[a][a]...=1: a nested form key (Rails-style), read flat
}


async def test_a_body_nested_20000_deep_is_a_client_error_signed_or_not(slack: Driver) -> None:
    answers = {}
    for name, body in DEEP_BODIES.items():
        unsigned = await slack.http.post("/slack/events", content=body.encode(),
                                         headers={"Content-Type": content_type(body)})
        signed = await slack.post(body, content_type(body))
        answers[name] = (unsigned.status_code, signed.status_code)

    assert all(unsigned == 401 and 400 <= signed < 500 for unsigned, signed in answers.values()), answers


async def test_a_signed_payload_that_is_not_a_json_object_is_a_client_error(slack: Driver) -> None:
    answers = {body: (await slack.post(body, content_type(body))).status_code
               for body in ["payload=%5B1%5D", "payload=1", "payload=", 'payload="x"', "payload=%7B"]}

    assert all(status == 400 for status in answers.values()), answers


def test_a_payload_nested_deeper_than_slack_ever_sends_is_refused_before_json_loads_it() -> None:
    assert is_shallow('{"view":{"state":{"values":{"b":{"a":{"value":"[[[[ {{{{ \\" [[["}}}}}}')  # text, not JSON
    assert not is_shallow("[" * (MAX_PAYLOAD_DEPTH + 1))
    assert is_shallow("[" * MAX_PAYLOAD_DEPTH + "]" * MAX_PAYLOAD_DEPTH)
    assert payload_depth('"' + '\\"' * 100_000 + "[[") == 0  # one unterminated string, scanned once
    assert max(payload_depth(unquote_plus(p.read_text())) for p in BODIES) < MAX_PAYLOAD_DEPTH // 2


async def test_a_malformed_timestamp_is_401_not_a_server_error(slack: Driver) -> None:
    body = (FIXTURES / "slash_command.body").read_text()
    answers = {}
    for timestamp in ["9" * 400, "not-a-number", "-60", "", " 1", "+1", "1_0", "1e9", "١٢٣", str(2**63), "0"]:
        headers = {**sign(SECRET, body), "Content-Type": content_type(body), "X-Slack-Request-Timestamp": timestamp}
        response = await slack.http.post("/slack/events", content=body.encode(),
                                         headers={k: v.encode("utf-8") for k, v in headers.items()})
        answers[timestamp[:12]] = response.status_code

    assert set(answers.values()) == {401}, answers


async def test_a_malformed_signature_is_401(slack: Driver) -> None:
    body = (FIXTURES / "slash_command.body").read_text()
    answers = {}
    for signature in ["", "v0=", "v0=é", "v0=" + "0" * 64, "x" * 10_000]:
        headers = {**sign(SECRET, body), "Content-Type": content_type(body), "X-Slack-Signature": signature}
        response = await slack.http.post("/slack/events", content=body.encode(),
                                         headers={k: v.encode("utf-8") for k, v in headers.items()})
        answers[signature[:8]] = response.status_code

    assert set(answers.values()) == {401}, answers


async def test_a_body_that_is_not_utf8_is_refused(slack: Driver) -> None:
    body = b"payload=\xff\xfe" + b"\x80" * 10
    signed = await slack.http.post("/slack/events", content=body,
                                   headers={**sign(SECRET, body), "Content-Type": "application/x-www-form-urlencoded"})
    unsigned = await slack.http.post("/slack/events", content=body,
                                     headers={"Content-Type": "application/x-www-form-urlencoded"})

    assert signed.status_code == unsigned.status_code == 401


async def test_a_client_that_disconnects_mid_body_gets_one_log_line_and_no_traceback(
        slack: Driver, caplog: pytest.LogCaptureFixture) -> None:
    app = build_app(slack.settings, slack.svc)
    arrived = [{"type": "http.request", "body": b"payload=%7B%22ty", "more_body": True}, {"type": "http.disconnect"}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return arrived.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/slack/events", "raw_path": b"/slack/events", "query_string": b"", "root_path": "",
             "headers": [(b"content-type", b"application/x-www-form-urlencoded"), (b"content-length", b"900")],
             "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 3000)}
    with caplog.at_level(logging.INFO):
        await app(scope, receive, send)

    assert not arrived, "the app read to the disconnect"
    lines = [r for r in caplog.records if r.name.startswith(("handlers", "bot"))]
    assert [r.getMessage() for r in lines] == ["slack request abandoned: the client disconnected mid-body"]
    assert not [r for r in caplog.records if r.exc_info] and "Traceback" not in caplog.text
