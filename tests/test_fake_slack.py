"""The fake Slack speaks Slack's wire format: proven with the real slack_sdk clients."""

from __future__ import annotations

import asyncio
import json
import time
from urllib.parse import parse_qs

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient

from tests.fakes.slack_api import BOT_USER_ID, FakeSlack
from tests.fakes.slack_signing import form_body, sign

BLOCKS = [{"type": "section", "text": {"type": "mrkdwn", "text": "*Consent* requested"}}]


@pytest.fixture
def fake(fake_slack: FakeSlack) -> FakeSlack:
    return fake_slack


def client_for(fake: FakeSlack, *, timeout: float = 30) -> AsyncWebClient:
    # slack_sdk annotates timeout as int, but aiohttp takes fractional seconds.
    return AsyncWebClient(token="xoxb-test", base_url=fake.url, timeout=timeout)  # type: ignore[arg-type]


# ----------------------------------------------------------------- happy paths


@pytest.mark.asyncio
async def test_post_message_with_blocks_is_recorded_as_structure(fake: FakeSlack) -> None:
    response = await client_for(fake).chat_postMessage(channel="C0CONSENT", text="Consent", blocks=BLOCKS)

    assert response.status_code == 200
    assert response["ok"] is True
    assert response["channel"] == "C0CONSENT"
    assert response["message"]["ts"] == response["ts"]
    [call] = fake.calls_to("chat.postMessage")
    assert call.token == "xoxb-test"
    assert isinstance(call.params["blocks"], list)
    assert call.params["blocks"] == BLOCKS
    assert [m["ts"] for m in fake.messages_to("C0CONSENT")] == [response["ts"]]


@pytest.mark.asyncio
async def test_message_timestamps_are_unique_and_increasing(fake: FakeSlack) -> None:
    client = client_for(fake)
    first = await client.chat_postMessage(channel="C1", text="one")
    second = await client.chat_postMessage(channel="C1", text="two")

    assert first["ts"] == "1700000000.000100"
    assert float(second["ts"]) > float(first["ts"])


@pytest.mark.asyncio
async def test_form_encoded_json_fields_are_decoded(fake: FakeSlack) -> None:
    # Slack also accepts blocks as a JSON string inside a urlencoded form.
    await client_for(fake).api_call("chat.postMessage", data={"channel": "C1", "blocks": json.dumps(BLOCKS)})

    [call] = fake.calls_to("chat.postMessage")
    assert call.params == {"channel": "C1", "blocks": BLOCKS}


@pytest.mark.asyncio
async def test_update_edits_the_delivered_message(fake: FakeSlack) -> None:
    client = client_for(fake)
    posted = await client.chat_postMessage(channel="C1", text="Pending", blocks=BLOCKS)

    updated = await client.chat_update(channel="C1", ts=posted["ts"], text="Recorded")

    assert (updated["channel"], updated["ts"], updated["text"]) == ("C1", posted["ts"], "Recorded")
    [message] = fake.messages_to("C1")
    assert message["text"] == "Recorded"
    assert "blocks" not in message  # Slack drops old blocks when only text is sent


@pytest.mark.asyncio
async def test_update_of_unknown_message_is_a_slack_error(fake: FakeSlack) -> None:
    with pytest.raises(SlackApiError) as raised:
        await client_for(fake).chat_update(channel="C1", ts="1.000000", text="x")

    assert raised.value.response.status_code == 200
    assert raised.value.response["error"] == "message_not_found"


@pytest.mark.asyncio
async def test_dm_flow_and_ephemeral(fake: FakeSlack) -> None:
    client = client_for(fake)
    opened = await client.conversations_open(users=["U0TEACHER"])
    reopened = await client.conversations_open(users="U0TEACHER")
    await client.chat_postMessage(channel=opened["channel"]["id"], text="Hello")
    by_user = await client.chat_postMessage(channel="U0TEACHER", text="Again")  # Slack routes to the DM
    ephemeral = await client.chat_postEphemeral(channel="C1", user="U0TEACHER", text="Only you")

    assert opened["channel"]["id"] == "DU0TEACHER"
    assert reopened["already_open"] is True
    assert by_user["channel"] == "DU0TEACHER"
    assert [m["text"] for m in fake.messages_to("DU0TEACHER")] == ["Hello", "Again"]
    assert ephemeral["message_ts"]


@pytest.mark.asyncio
async def test_views_have_ids_and_hashes_and_hash_conflicts(fake: FakeSlack) -> None:
    client = client_for(fake)
    modal = {"type": "modal", "title": {"type": "plain_text", "text": "Consent"}, "blocks": []}
    opened = await client.views_open(trigger_id="123.456.abc", view=modal)
    view = opened["view"]
    updated = await client.views_update(view_id=view["id"], hash=view["hash"], view=modal)
    pushed = await client.views_push(trigger_id="123.456.def", view=modal)
    home = await client.views_publish(user_id="U0TEACHER", view={"type": "home", "blocks": []})

    assert view["id"].startswith("V") and view["hash"]
    assert updated["view"]["id"] == view["id"] and updated["view"]["hash"] != view["hash"]
    assert pushed["view"]["id"] != view["id"]
    assert home["view"]["id"].startswith("V")
    with pytest.raises(SlackApiError) as raised:
        await client.views_update(view_id=view["id"], hash=view["hash"], view=modal)  # stale hash
    assert raised.value.response["error"] == "hash_conflict"


@pytest.mark.asyncio
async def test_auth_test_and_users_info(fake: FakeSlack) -> None:
    client = client_for(fake)
    fake.add_user("U0HEAD", real_name="Head Teacher")

    auth = await client.auth_test()
    user = await client.users_info(user="U0HEAD")

    assert auth["user_id"] == BOT_USER_ID and auth["team_id"]
    assert user["user"]["real_name"] == "Head Teacher"
    assert fake.calls_to("users.info")[0].params == {"user": "U0HEAD"}


def test_sync_client_works_too(fake: FakeSlack) -> None:
    client = WebClient(token="xoxb-test", base_url=fake.url)

    opened = client.conversations_open(users="U0PARENT")

    assert opened["channel"]["id"] == "DU0PARENT"
    assert fake.calls_to("conversations.open")[0].params == {"users": "U0PARENT"}


# ----------------------------------------------------------------- errors


@pytest.mark.asyncio
async def test_missing_token_is_not_authed_with_http_200(fake: FakeSlack) -> None:
    with pytest.raises(SlackApiError) as raised:
        await AsyncWebClient(base_url=fake.url).auth_test()

    assert raised.value.response.status_code == 200
    assert raised.value.response["error"] == "not_authed"
    assert fake.calls[-1].token is None


@pytest.mark.asyncio
async def test_unknown_method(fake: FakeSlack) -> None:
    with pytest.raises(SlackApiError) as raised:
        await client_for(fake).api_call("consent.grant")

    assert raised.value.response.status_code == 200
    assert raised.value.response["error"] == "unknown_method"


@pytest.mark.asyncio
async def test_429_surfaces_with_retry_after_when_no_retry_handler(fake: FakeSlack) -> None:
    fake.fail_next("chat.postMessage", status=429, retry_after=7)

    with pytest.raises(SlackApiError) as raised:
        await client_for(fake).chat_postMessage(channel="C1", text="hi")

    response = raised.value.response
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "7"
    assert response["error"] == "ratelimited"
    assert fake.messages_to("C1") == []


@pytest.mark.asyncio
async def test_429_is_retried_by_rate_limit_retry_handler(fake: FakeSlack) -> None:
    fake.fail_next("chat.postMessage", status=429, retry_after=1)
    client = client_for(fake)
    client.retry_handlers.append(AsyncRateLimitErrorRetryHandler(max_retry_count=1))

    response = await client.chat_postMessage(channel="C1", text="hi")

    assert response["ok"] is True
    assert len(fake.calls_to("chat.postMessage")) == 2  # refused once, then delivered once
    assert len(fake.messages_to("C1")) == 1


@pytest.mark.asyncio
async def test_rate_limit_window_refuses_after_burst_then_recovers(fake: FakeSlack) -> None:
    fake.rate_limit("chat.postMessage", burst=2, retry_after=1)
    client = client_for(fake)
    await client.chat_postMessage(channel="C1", text="1")
    await client.chat_postMessage(channel="C1", text="2")

    with pytest.raises(SlackApiError) as raised:
        await client.chat_postMessage(channel="C1", text="3")
    assert raised.value.response.status_code == 429
    assert raised.value.response.headers["Retry-After"] == "1"

    await asyncio.sleep(1.05)  # Retry-After has passed since the burst was used up
    assert (await client.chat_postMessage(channel="C1", text="3"))["ok"] is True


@pytest.mark.asyncio
async def test_500_surfaces_as_slack_api_error_with_text_body(fake: FakeSlack) -> None:
    fake.fail_next("chat.postMessage", status=500)

    with pytest.raises(SlackApiError) as raised:
        await client_for(fake).chat_postMessage(channel="C1", text="hi")

    response = raised.value.response
    assert response.status_code == 500
    # A non-JSON body reaches the caller as a str: response["error"] / .get()
    # then raise AttributeError, so handlers must check status_code first.
    assert response.data == "Internal Server Error"
    with pytest.raises(AttributeError):
        response.get("error")


@pytest.mark.asyncio
async def test_slow_answer_raises_builtin_timeout_error(fake: FakeSlack) -> None:
    fake.delay_next("auth.test", seconds=5)
    client = client_for(fake, timeout=0.5)

    started = time.monotonic()
    with pytest.raises(asyncio.TimeoutError) as raised:
        await client.auth_test()

    # aiohttp's total timeout surfaces unwrapped (not SlackApiError); on 3.11
    # asyncio.TimeoutError is the builtin TimeoutError. No default handler retries it.
    assert type(raised.value) is TimeoutError
    assert time.monotonic() - started < 2
    assert len(fake.calls_to("auth.test")) == 1


def test_stop_does_not_wait_for_scripted_delays() -> None:
    server = FakeSlack().start()
    server.delay_next("auth.test", seconds=30)
    client = WebClient(token="xoxb-test", base_url=server.url, timeout=0.3)  # type: ignore[arg-type]
    with pytest.raises(TimeoutError):
        client.auth_test()

    started = time.monotonic()
    server.stop()

    assert time.monotonic() - started < 2


# ----------------------------------------------------------------- signing


def test_signed_interactivity_body_verifies_with_slack_sdk() -> None:
    secret = "8f742231b10e8888abcd99yyyzzz85a5"
    payload = {"type": "block_actions", "user": {"id": "U0TEACHER"}, "actions": [{"action_id": "grant"}]}
    body = form_body(payload)
    headers = sign(secret, body)
    verifier = SignatureVerifier(secret)

    assert body.startswith("payload=")
    assert json.loads(parse_qs(body)["payload"][0]) == payload
    assert verifier.is_valid(body, headers["X-Slack-Request-Timestamp"], headers["X-Slack-Signature"])
    assert verifier.is_valid_request(body.encode(), headers)
    assert not verifier.is_valid(body + "x", headers["X-Slack-Request-Timestamp"], headers["X-Slack-Signature"])


def test_stale_signature_is_rejected_by_slack_sdk() -> None:
    secret = "s3cret"
    headers = sign(secret, b"{}", timestamp=int(time.time()) - 600)

    assert not SignatureVerifier(secret).is_valid(
        b"{}", headers["X-Slack-Request-Timestamp"], headers["X-Slack-Signature"]
    )
