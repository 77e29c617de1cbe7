"""The fake Teams services speak Microsoft's wire format: proven with httpx, PyJWT and the Teams SDK itself."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import jwt
import pytest

from tests.fakes.teams_connector import (
    ADAPTIVE_CARD,
    BOT_SCOPE,
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    GRAPH_SCOPE,
    TENANT_ID,
    TEST_ISSUER,
    FakeTeams,
    activity,
    card_action,
    installed,
    message,
    message_action_fetch,
    message_action_submit,
    other_key_token,
    sign_activity_token,
    task_fetch,
    task_submit,
)

USER_BF_ID = "29:1AbCdEfGhIjKlMnOpQrStUvWxYz"
USER_AAD_ID = "11111111-2222-3333-4444-555555555555"
CARD = {"type": "AdaptiveCard", "version": "1.5", "body": [{"type": "TextBlock", "text": "Consent requested"}]}


@pytest.fixture
def fake(teams_server: FakeTeams) -> FakeTeams:
    teams_server.reset()
    return teams_server


def who(fake: FakeTeams, conversation_id: str = "a:1personal-chat") -> dict[str, Any]:
    return {"from_id": USER_BF_ID, "aad_object_id": USER_AAD_ID, "name": "Ann Smith",
            "conversation_id": conversation_id, "service_url": fake.service_url}


def get_token(fake: FakeTeams, *, secret: str = DEFAULT_CLIENT_SECRET, scope: str = BOT_SCOPE,
              http: httpx.Client | None = None) -> httpx.Response:
    form = {"grant_type": "client_credentials", "client_id": DEFAULT_CLIENT_ID, "client_secret": secret,
            "scope": scope}
    return (http or httpx).post(fake.token_url(), data=form)


@pytest.fixture
def api(fake: FakeTeams) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fake.service_url, timeout=5) as client:
        token = get_token(fake, http=client).json()["access_token"]
        client.headers["Authorization"] = f"Bearer {token}"
        yield client


def open_chat(api: httpx.Client, member_id: str = USER_BF_ID) -> httpx.Response:
    return api.post("v3/conversations", json={
        "isGroup": False, "bot": {"id": f"28:{DEFAULT_CLIENT_ID}"}, "members": [{"id": member_id}],
        "tenantId": TENANT_ID, "channelData": {"tenant": {"id": TENANT_ID}}})


def card_activity(card: dict[str, Any]) -> dict[str, Any]:
    return {"type": "message", "attachments": [{"contentType": ADAPTIVE_CARD, "content": card}]}


# ------------------------------------------------------------------------- lifecycle


def test_a_new_server_serves_and_stops() -> None:
    with FakeTeams() as server:
        assert httpx.get(server.jwks_url).status_code == 200
    with pytest.raises(httpx.ConnectError):
        httpx.get(server.jwks_url)


# ------------------------------------------------------------------------- Entra ID


def test_token_issued_for_the_right_credentials(fake: FakeTeams) -> None:
    response = get_token(fake)
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == body["ext_expires_in"] == 3599
    assert fake.issued_tokens[body["access_token"]] == BOT_SCOPE
    assert fake.calls[-1].form is not None and fake.calls[-1].form["grant_type"] == "client_credentials"


def test_wrong_secret_is_401_invalid_client(fake: FakeTeams) -> None:
    response = get_token(fake, secret="wrong")
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    assert response.json()["error_description"].startswith("AADSTS7000215")
    assert not fake.issued_tokens or all(scope for scope in fake.issued_tokens.values())


def test_token_endpoint_faults(fake: FakeTeams) -> None:
    fake.fail_next(r"/oauth2/v2\.0/token$", status=503)
    response = get_token(fake)
    assert response.status_code == 503
    assert response.json()["error"] == "temporarily_unavailable"
    assert get_token(fake).status_code == 200


# ------------------------------------------------------------------------- Bot Connector


def test_connector_refuses_calls_without_a_bot_token(fake: FakeTeams) -> None:
    response = httpx.post(f"{fake.service_url}v3/conversations/a:x/activities", json={"type": "message", "text": "x"})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "Unauthorized"

    graph_token = get_token(fake, scope=GRAPH_SCOPE).json()["access_token"]
    response = httpx.post(f"{fake.service_url}v3/conversations/a:x/activities", json={"type": "message", "text": "x"},
                          headers={"Authorization": f"Bearer {graph_token}"})
    assert response.status_code == 401
    assert fake.activities_in("a:x") == []


def test_create_post_update_shows_the_latest_card(fake: FakeTeams, api: httpx.Client) -> None:
    created = open_chat(api)
    assert created.status_code == 201
    conversation_id = created.json()["id"]
    assert open_chat(api).json()["id"] == conversation_id  # one 1:1 per user, as in Teams
    assert fake.conversation_of(USER_BF_ID) == conversation_id

    posted = api.post(f"v3/conversations/{conversation_id}/activities", json=card_activity(CARD))
    assert posted.status_code == 201
    activity_id = posted.json()["id"]

    updated_card = {**CARD, "body": [{"type": "TextBlock", "text": "Consent recorded"}]}
    updated = api.put(f"v3/conversations/{conversation_id}/activities/{activity_id}", json=card_activity(updated_card))
    assert updated.status_code == 200
    assert updated.json() == {"id": activity_id}

    [shown] = fake.activities_in(conversation_id)
    assert shown["id"] == activity_id
    assert shown["attachments"][0]["content"]["body"][0]["text"] == "Consent recorded"
    assert fake.cards_to(USER_BF_ID) == [updated_card]


def test_reply_and_url_encoded_conversation_ids(fake: FakeTeams, api: httpx.Client) -> None:
    conversation_id = open_chat(api).json()["id"]
    first = api.post(f"v3/conversations/{quote(conversation_id, safe='')}/activities",
                     json={"type": "message", "text": "hello"}).json()["id"]
    reply = api.post(f"v3/conversations/{conversation_id}/activities/{first}", json={"type": "message", "text": "again"})
    assert reply.status_code == 201
    texts = [(a["text"], a.get("replyToId")) for a in fake.activities_in(conversation_id)]
    assert texts == [("hello", None), ("again", first)]
    assert fake.calls[-2].path == f"/teams/v3/conversations/{conversation_id}/activities"


def test_update_of_an_unknown_activity_is_404(fake: FakeTeams, api: httpx.Client) -> None:
    conversation_id = open_chat(api).json()["id"]
    response = api.put(f"v3/conversations/{conversation_id}/activities/123", json={"type": "message", "text": "x"})
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "NotFound"


def test_forbidden_member_cannot_be_reached(fake: FakeTeams, api: httpx.Client) -> None:
    fake.add_member(USER_BF_ID, USER_AAD_ID, "Ann Smith", "ann@school.example")
    conversation_id = open_chat(api, USER_AAD_ID).json()["id"]  # by Entra object id: same chat
    assert conversation_id == fake.conversation_of(USER_BF_ID)
    fake.forbid(USER_AAD_ID)
    response = open_chat(api)
    assert response.status_code == 403
    assert response.json()["error"] == {"code": "Forbidden", "message": "The bot is not part of the conversation roster."}
    posted = api.post(f"v3/conversations/{conversation_id}/activities", json={"type": "message", "text": "x"})
    assert posted.status_code == 403
    assert fake.activities_in(conversation_id) == []


def test_member_lookup(fake: FakeTeams, api: httpx.Client) -> None:
    fake.add_member(USER_BF_ID, USER_AAD_ID, "Ann Smith", "ann@school.example", "ann@school.onmicrosoft.example")
    conversation_id = open_chat(api).json()["id"]
    for user_id in (USER_BF_ID, USER_AAD_ID):
        member = api.get(f"v3/conversations/{conversation_id}/members/{user_id}")
        assert member.status_code == 200
        assert member.json()["id"] == USER_BF_ID
        assert member.json()["aadObjectId"] == USER_AAD_ID
        assert member.json()["userPrincipalName"] == "ann@school.onmicrosoft.example"
        assert member.json()["tenantId"] == TENANT_ID
    missing = api.get(f"v3/conversations/{conversation_id}/members/29:nobody")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "MemberNotFoundInConversation"


# ------------------------------------------------------------------------- faults


def test_429_has_retry_after_and_does_not_act(fake: FakeTeams, api: httpx.Client) -> None:
    conversation_id = open_chat(api).json()["id"]
    fake.fail_next(r"/activities$", status=429, retry_after=7)
    response = api.post(f"v3/conversations/{conversation_id}/activities", json={"type": "message", "text": "x"})
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "7"
    assert response.json()["error"]["code"] == "TooManyRequests"
    assert fake.activities_in(conversation_id) == []
    assert api.post(f"v3/conversations/{conversation_id}/activities", json={"type": "message"}).status_code == 201


def test_5xx_faults_repeat_the_given_number_of_times(fake: FakeTeams, api: httpx.Client) -> None:
    fake.fail_next(r"/v3/conversations$", status=503, times=2)
    statuses = [open_chat(api).status_code for _ in range(3)]
    assert statuses == [503, 503, 201]
    assert fake.calls_to(r"/v3/conversations$", "POST")[0].json["members"] == [{"id": USER_BF_ID}]


def test_stalled_post_lands_although_the_client_gave_up(fake: FakeTeams, api: httpx.Client) -> None:
    conversation_id = open_chat(api).json()["id"]
    fake.stall_next(r"/activities$", 0.4)
    with pytest.raises(httpx.ReadTimeout):
        api.post(f"v3/conversations/{conversation_id}/activities", json={"type": "message", "text": "late"}, timeout=0.1)
    fake.wait_idle()
    assert [a["text"] for a in fake.activities_in(conversation_id)] == ["late"]


def test_stall_without_acting_answers_504(fake: FakeTeams, api: httpx.Client) -> None:
    conversation_id = open_chat(api).json()["id"]
    fake.stall_next(r"/activities$", 0.05, act=False)
    response = api.post(f"v3/conversations/{conversation_id}/activities", json={"type": "message", "text": "x"})
    assert response.status_code == 504
    assert fake.activities_in(conversation_id) == []


def test_all_sent_text_sees_canaries_however_encoded(fake: FakeTeams, api: httpx.Client) -> None:
    conversation_id = open_chat(api).json()["id"]
    api.post(f"v3/conversations/{conversation_id}/activities", json={"type": "message", "text": 'CANARY "é" 42'})
    assert 'CANARY "é" 42' in fake.all_sent_text()


# ------------------------------------------------------------------------- inbound tokens


def test_activity_token_verifies_against_the_served_jwks(fake: FakeTeams) -> None:
    metadata = httpx.get(fake.openid_metadata_url).json()
    assert metadata["issuer"] == TEST_ISSUER
    assert metadata["jwks_uri"] == fake.jwks_url
    [key] = httpx.get(fake.jwks_url).json()["keys"]
    assert key["kty"] == "RSA" and key["use"] == "sig" and key["endorsements"] == ["msteams"]

    token = sign_activity_token(audience=DEFAULT_CLIENT_ID, service_url=fake.service_url)
    jwks = jwt.PyJWKClient(fake.jwks_url)
    claims = jwt.decode(token, jwks.get_signing_key_from_jwt(token).key, algorithms=["RS256"],
                        audience=DEFAULT_CLIENT_ID, issuer=TEST_ISSUER)
    assert claims["serviceurl"] == fake.service_url

    forged = other_key_token(audience=DEFAULT_CLIENT_ID, service_url=fake.service_url)
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(forged, jwks.get_signing_key_from_jwt(forged).key, algorithms=["RS256"],
                   audience=DEFAULT_CLIENT_ID, issuer=TEST_ISSUER)


async def test_the_sdk_validator_accepts_fake_tokens_and_rejects_forged_ones(fake: FakeTeams) -> None:
    from microsoft_teams.api.auth.cloud_environment import PUBLIC, with_overrides
    from microsoft_teams.apps.auth.token_validator import TokenValidator

    cloud = with_overrides(PUBLIC, openid_metadata_url=fake.openid_metadata_url, token_issuer=TEST_ISSUER)
    validator = TokenValidator.for_service(DEFAULT_CLIENT_ID, cloud=cloud)
    payload = await validator.validate_token(fake.sign_activity_token(), fake.service_url)
    assert payload["aud"] == DEFAULT_CLIENT_ID

    with pytest.raises(jwt.InvalidTokenError):
        await validator.validate_token(fake.other_key_token(), fake.service_url)
    with pytest.raises(jwt.InvalidTokenError):  # a token for another bot
        await validator.validate_token(fake.sign_activity_token(audience="someone-else"), fake.service_url)
    with pytest.raises(jwt.InvalidTokenError):  # a token minted for another service URL
        await validator.validate_token(fake.sign_activity_token(), "https://smba.trafficmanager.net/emea/")
    with pytest.raises(jwt.InvalidTokenError):
        await validator.validate_token(fake.sign_activity_token(expires_in=-3600), fake.service_url)


# ------------------------------------------------------------------------- the SDK's own clients


async def test_the_sdk_client_gets_a_token_and_posts_through_the_fake(fake: FakeTeams) -> None:
    from microsoft_teams.api import ApiClient, ClientCredentials, CreateConversationParams, MessageActivityInput
    from microsoft_teams.api.auth.cloud_environment import PUBLIC, with_overrides
    from microsoft_teams.api.clients.bot.token_client import BotTokenClient
    from microsoft_teams.api.models import Account
    from microsoft_teams.common import ClientOptions

    cloud = with_overrides(PUBLIC, login_endpoint=fake.login_url)
    credentials = ClientCredentials(client_id=DEFAULT_CLIENT_ID, client_secret=DEFAULT_CLIENT_SECRET,
                                    tenant_id=TENANT_ID)
    token = (await BotTokenClient(cloud=cloud).get(credentials)).access_token

    client = ApiClient(fake.service_url, ClientOptions(token=token), cloud=cloud)
    conversation = await client.conversations.create(CreateConversationParams(
        members=[Account(id=USER_BF_ID)], tenant_id=TENANT_ID, channel_data={"tenant": {"id": TENANT_ID}}))
    sent = await client.conversations.create_activity(conversation.id, MessageActivityInput(text="from the SDK"))
    assert [(a["id"], a["text"]) for a in fake.activities_in(conversation.id)] == [(sent.id, "from the SDK")]


# ------------------------------------------------------------------------- inbound activities


def _builders(fake: FakeTeams) -> list[dict[str, Any]]:
    w = who(fake)
    return [
        activity("message", text="hi", **w),
        message("I am worried about a pupil", **w),
        card_action("acknowledge", {"case": "C-1"}, reply_to_id="1714557600123", **w),
        task_fetch({"action": "open_form"}, **w),
        task_submit({"summary": "text"}, **w),
        message_action_fetch("<p>Something <b>worrying</b></p>", **w),
        message_action_submit({"summary": "text"}, message_html="<p>original</p>", **w),
        message_action_submit({"summary": "text"}, **w),
        installed(**w),
    ]


EXPECTED = [
    ("MessageActivity", None),
    ("MessageActivity", None),
    ("AdaptiveCardInvokeActivity", "adaptiveCard/action"),
    ("TaskFetchInvokeActivity", "task/fetch"),
    ("TaskSubmitInvokeActivity", "task/submit"),
    ("MessageExtensionFetchTaskInvokeActivity", "composeExtension/fetchTask"),
    ("MessageExtensionSubmitActionInvokeActivity", "composeExtension/submitAction"),
    ("MessageExtensionSubmitActionInvokeActivity", "composeExtension/submitAction"),
    ("ConversationUpdateActivity", None),
]


def test_factory_activities_pass_the_sdks_validation(fake: FakeTeams) -> None:
    from microsoft_teams.api import ActivityTypeAdapter
    from microsoft_teams.apps.events import CoreActivity

    for built, (class_name, invoke_name) in zip(_builders(fake), EXPECTED, strict=True):
        # The SDK's own path: CoreActivity at the HTTP edge, then the typed union in app_process.
        core = CoreActivity.model_validate(built)
        assert core.type == built["type"] and core.id == built["id"]
        typed = ActivityTypeAdapter.validate_python(core.model_dump(by_alias=True, exclude_none=True))
        assert type(typed).__name__ == class_name
        assert getattr(typed, "name", None) == invoke_name
        assert typed.service_url == fake.service_url
        assert typed.from_.aad_object_id == USER_AAD_ID


def test_factory_values_survive_validation(fake: FakeTeams) -> None:
    from microsoft_teams.api import ActivityTypeAdapter

    w = who(fake)
    action = ActivityTypeAdapter.validate_python(card_action("acknowledge", {"case": "C-1"}, **w))
    assert action.value.action.verb == "acknowledge" and action.value.action.data == {"case": "C-1"}
    fetch = ActivityTypeAdapter.validate_python(message_action_fetch("<p>hello</p>", **w))
    assert fetch.value.command_id == "concern_from_message"
    assert fetch.value.message_payload.body.content == "<p>hello</p>"
    update = ActivityTypeAdapter.validate_python(installed(**w))
    assert [m.id for m in update.members_added] == [f"28:{DEFAULT_CLIENT_ID}"]
