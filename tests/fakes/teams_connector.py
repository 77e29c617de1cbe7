"""Fakes of Microsoft's side of a Teams bot, served over real HTTP on 127.0.0.1.

One server (`FakeTeams`, one port) plays three Microsoft services, so that tests exercise the
real HTTP clients (httpx, PyJWT's JWKS client, the Teams SDK's validator) without the internet:

* **Entra ID** ``POST /{tenant}/oauth2/v2.0/token`` (OAuth client credentials). Give the bot
  ``login_url = fake.url``.
* **Bot Framework OpenID metadata and JWKS** ``GET /v1/.well-known/openidconfiguration`` and
  ``GET /v1/.well-known/keys``, for validating the JWTs Teams sends with each activity
  (`sign_activity_token` makes such a JWT with the served key).
* **Bot Connector REST** under ``fake.service_url`` (``{url}/teams/``, with the trailing slash Teams
  puts on ``serviceUrl``): create a 1:1 conversation, post / reply / update / delete activities,
  read members.

Wire-format notes (checked against the Teams SDK for Python's clients and models in
``microsoft_teams.api`` and Microsoft's REST reference):

* Entra answers ``{"token_type", "expires_in", "ext_expires_in", "access_token"}``; errors are
  OAuth-style ``{"error": "invalid_client", "error_description": "AADSTS7000215: ..."}``.
* The Bot Connector answers errors as ``{"error": {"code": ..., "message": ...}}``; throttling is
  429 with ``Retry-After`` (whole seconds).
* The SDK does not URL-encode conversation ids in paths (``a:...``, ``19:...@thread.v2``); other
  clients do. The fake decodes each path segment from the raw path, so both work, and so does an
  encoded ``/`` inside an id.

Activities *to* the bot are built by `activity` and the builders after it (`message`,
`card_action`, `task_fetch`, ...), shaped like what Teams posts to a bot's messaging endpoint and
accepted by the SDK's pydantic models.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import functools
import hashlib
import html
import json
import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl, unquote
from zoneinfo import ZoneInfo

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fakes.loopback import LoopbackFake, LoopbackServer, matching

TEST_ISSUER = "https://api.botframework.test"
"""Issuer of the fake's activity tokens (the real one is https://api.botframework.com)."""

BOT_SCOPE = "https://api.botframework.com/.default"
GRAPH_SCOPE = "https://graph.microsoft.com/.default"
DEFAULT_CLIENT_ID = "00000000-0000-0000-0000-0000000000b0"
DEFAULT_CLIENT_SECRET = "test-secret"
TENANT_ID = "00000000-0000-0000-0000-0000000000a1"
BOT_APP_ID = DEFAULT_CLIENT_ID
BOT_ID = f"28:{BOT_APP_ID}"
BOT_NAME = "consentbot"
BOT_FRAMEWORK_APP_ID = "https://api.botframework.com"
"""``appid`` claim of activity tokens: the caller is the Bot Framework channel service."""
DEFAULT_KID = "fake-botframework-key-1"
ADAPTIVE_CARD = "application/vnd.microsoft.card.adaptive"
MESSAGE_ACTION_COMMAND = "concern_from_message"

_STOP_POLL_SECONDS = 0.05
_LONDON = ZoneInfo("Europe/London")

Body = dict[str, Any]


# ----------------------------------------------------------------------------- keys


@functools.cache
def fake_signing_key() -> rsa.RSAPrivateKey:
    """The RSA key whose public half the fake serves in its JWKS (one per test process)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@functools.cache
def other_signing_key() -> rsa.RSAPrivateKey:
    """An RSA key that is in no JWKS: tokens signed with it must be rejected."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _int_b64url(value: int) -> str:
    return _b64url(value.to_bytes((value.bit_length() + 7) // 8, "big"))


@functools.cache
def _certificate_der(key: rsa.RSAPrivateKey) -> bytes:
    # Bot Framework's JWKS carries a self-signed certificate per key (x5c) and its SHA-1 thumbprint (x5t).
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "api.botframework.test")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=365))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.DER)


def jwk_for(key: rsa.RSAPrivateKey, kid: str = DEFAULT_KID) -> Body:
    """The JWKS entry Bot Framework publishes for ``key``."""
    numbers = key.public_key().public_numbers()
    der = _certificate_der(key)
    return {
        "kty": "RSA",
        "use": "sig",
        "kid": kid,
        "x5t": _b64url(hashlib.sha1(der, usedforsecurity=False).digest()),
        "n": _int_b64url(numbers.n),
        "e": _int_b64url(numbers.e),
        "x5c": [base64.b64encode(der).decode("ascii")],
        "endorsements": ["msteams"],
    }


def sign_activity_token(
    *,
    audience: str,
    service_url: str,
    issuer: str = TEST_ISSUER,
    key: rsa.RSAPrivateKey | None = None,
    kid: str = DEFAULT_KID,
    expires_in: int = 3600,
    extra_claims: Body | None = None,
) -> str:
    """An RS256 JWT like the one Bot Framework sends a bot in ``Authorization: Bearer ...``.

    ``audience`` is the bot's client (app) id; ``service_url`` goes in the ``serviceurl`` claim,
    which validators compare with the activity's ``serviceUrl``. A negative ``expires_in`` gives
    an expired token (beyond any reasonable clock-skew leeway if large enough).
    """
    now = int(time.time())
    claims: Body = {
        "serviceurl": service_url,
        "nbf": now - 5,
        "iat": now - 5,
        "exp": now + expires_in,
        "iss": issuer,
        "aud": audience,
        "appid": BOT_FRAMEWORK_APP_ID,
        **(extra_claims or {}),
    }
    signer = key if key is not None else fake_signing_key()
    return jwt.encode(claims, signer, algorithm="RS256", headers={"kid": kid, "x5t": jwk_for(signer, kid)["x5t"]})


def other_key_token(**kwargs: Any) -> str:
    """Like `sign_activity_token`, but signed with a key that is not in the fake's JWKS."""
    kwargs.setdefault("key", other_signing_key())
    return sign_activity_token(**kwargs)


# ----------------------------------------------------------------------------- recorded calls


@dataclass(frozen=True)
class Call:
    """One request as the fake received it. ``path`` is decoded segment by segment."""

    method: str
    path: str
    headers: dict[str, str]
    json: Any
    form: dict[str, str] | None
    time: float
    text: str = ""
    query: dict[str, str] = field(default_factory=dict)

    @property
    def token(self) -> str | None:
        """The bearer token sent, if any."""
        scheme, _, credentials = self.headers.get("authorization", "").partition(" ")
        return (credentials.strip() or None) if scheme.lower() == "bearer" else None


@dataclass
class _Fault:
    pattern: re.Pattern[str]
    remaining: int
    status: int = 0
    retry_after: float | None = None
    seconds: float = 0.0
    act: bool = True


@dataclass
class _Conversation:
    id: str
    member: str | None
    activities: dict[str, Body] = field(default_factory=dict)


@dataclass(frozen=True)
class _Req:
    params: list[str]
    body: Any
    form: dict[str, str]
    token: str | None


@dataclass(frozen=True)
class _Route:
    method: str
    pattern: tuple[str | None, ...]  # None matches any one segment
    kind: str  # "token" | "meta" | "connector"
    handler: Callable[[_Req], Response]


def _connector_error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


def _oauth_error(status: int, code: str, description: str, headers: dict[str, str] | None = None) -> Response:
    # Entra's error body (trimmed of trace_id / correlation_id / timestamp, which nothing should read).
    number = int(description[len("AADSTS"):description.index(":")])
    body = {"error": code, "error_description": description, "error_codes": [number]}
    return JSONResponse(body, status_code=status, headers=headers)


_STATUS_CODES = {
    400: "BadArgument",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    412: "PreconditionFailed",
    429: "TooManyRequests",
    500: "ServiceError",
    502: "BadGateway",
    503: "ServiceUnavailable",
    504: "GatewayTimeout",
}


def _seconds_header(seconds: float) -> str:
    return str(int(seconds)) if float(seconds).is_integer() else str(seconds)


def _fault_response(kind: str, status: int, retry_after: float | None) -> Response:
    if status == HTTPStatus.TOO_MANY_REQUESTS and retry_after is None:
        retry_after = 1
    headers = {"Retry-After": _seconds_header(retry_after)} if retry_after is not None else None
    if kind == "token":
        if status == HTTPStatus.TOO_MANY_REQUESTS:
            return _oauth_error(status, "temporarily_unavailable", "AADSTS50196: The server is throttling requests.",
                                headers)
        return _oauth_error(status, "temporarily_unavailable",
                            "AADSTS90033: A transient error has occurred. Please try again.", headers)
    if status == HTTPStatus.TOO_MANY_REQUESTS:
        return JSONResponse({"error": {"code": "TooManyRequests", "message": "Too many requests."}},
                            status_code=status, headers=headers)
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    return _connector_error(status, _STATUS_CODES.get(status, "ServiceError"), phrase, headers)


def _string_leaves(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from _string_leaves(item)
    elif isinstance(value, list):
        for item in value:
            yield from _string_leaves(item)


# ----------------------------------------------------------------------------- the server


class FakeTeams(LoopbackFake):
    """Entra ID token endpoint + Bot Framework JWKS + Bot Connector on 127.0.0.1, in a background thread.

    Usable from sync and async tests: the server has its own thread and event loop. All inspection
    and scripting methods are thread-safe.
    """

    def __init__(
        self,
        *,
        client_id: str = DEFAULT_CLIENT_ID,
        client_secret: str = DEFAULT_CLIENT_SECRET,
        tenant_id: str = TENANT_ID,
        token_lifetime: int = 3599,
    ) -> None:
        self.client_id, self.client_secret, self.tenant_id = client_id, client_secret, tenant_id
        self.token_lifetime = token_lifetime
        self.key = fake_signing_key()
        self.kid = DEFAULT_KID
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._loop = LoopbackServer("fake-teams")
        self._stopping = self._loop.stopping
        self._in_flight = 0
        self._tokens: dict[str, str] = {}
        self._last_activity_ms = 0
        self.url = ""
        self.calls: list[Call] = []
        self._clear_state()
        self._routes = self._build_routes()

    # ----------------------------------------------------------------- lifecycle

    def _app(self) -> Any:
        return Starlette(routes=[Route("/{path:path}", self._endpoint, methods=["GET", "POST", "PUT", "DELETE"])])

    def _serving(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"

    def reset(self) -> None:
        """Forget calls, faults, conversations, members and forbidden members; keep keys and issued tokens."""
        with self._lock:
            self.calls.clear()
            self._clear_state()

    def _clear_state(self) -> None:
        self._faults: list[_Fault] = []
        self._stalls: list[_Fault] = []
        self._conversations: dict[str, _Conversation] = {}
        self._members: dict[str, Body] = {}  # by Bot Framework id (29:...)
        self._forbidden: set[str] = set()

    # ----------------------------------------------------------------- addresses

    @property
    def login_url(self) -> str:
        """Base of the token endpoint (what ``https://login.microsoftonline.com`` is in production)."""
        return self.url

    def token_url(self, tenant: str | None = None) -> str:
        return f"{self.url}/{tenant or self.tenant_id}/oauth2/v2.0/token"

    @property
    def openid_metadata_url(self) -> str:
        return f"{self.url}/v1/.well-known/openidconfiguration"

    @property
    def jwks_url(self) -> str:
        return f"{self.url}/v1/.well-known/keys"

    @property
    def service_url(self) -> str:
        """The Bot Connector base, as Teams sends it in ``serviceUrl`` (trailing slash included)."""
        return f"{self.url}/teams/"

    # ----------------------------------------------------------------- tokens

    def sign_activity_token(self, *, audience: str | None = None, service_url: str | None = None, **kwargs: Any) -> str:
        """`sign_activity_token` with this fake's bot id and service URL as defaults."""
        return sign_activity_token(audience=audience or self.client_id, service_url=service_url or self.service_url,
                                   **kwargs)

    def other_key_token(self, *, audience: str | None = None, service_url: str | None = None, **kwargs: Any) -> str:
        return other_key_token(audience=audience or self.client_id, service_url=service_url or self.service_url,
                               **kwargs)

    @property
    def issued_tokens(self) -> dict[str, str]:
        """Access tokens issued so far, token -> scope."""
        with self._lock:
            return dict(self._tokens)

    def revoke_tokens(self) -> None:
        """Forget every issued token: the Bot Connector answers 401 until the client fetches a new one."""
        with self._lock:
            self._tokens.clear()

    # ----------------------------------------------------------------- scripting

    def add_member(
        self,
        bf_id: str,
        aad_object_id: str,
        name: str,
        email: str,
        upn: str | None = None,
        *,
        given_name: str | None = None,
        surname: str | None = None,
    ) -> Body:
        """Register a user (``29:...`` id and Entra object id) whom member look-ups can find."""
        first, _, last = name.partition(" ")
        member = {
            "id": bf_id,
            "name": name,
            "aadObjectId": aad_object_id,
            "givenName": given_name or first,
            "surname": surname or last or None,
            "email": email,
            "userPrincipalName": upn or email,
            "tenantId": self.tenant_id,
            "userRole": "user",
        }
        with self._lock:
            self._members[bf_id] = member
        return dict(member)

    def forbid(self, member_id: str) -> None:
        """The bot cannot reach this user (not installed for them, or blocked): 1:1 creation and posts get 403."""
        with self._lock:
            self._forbidden |= self._aliases(member_id)

    def fail_next(self, path_regex: str, *, status: int, retry_after: float | None = None, times: int = 1) -> None:
        """The next ``times`` requests whose decoded path matches ``path_regex`` (``re.search``) answer ``status``
        without acting. Only Bot Connector and token requests are affected.

        429 carries ``Retry-After`` (``retry_after``, default 1 s) and ``{"error": {"code": "TooManyRequests"}}``;
        other statuses carry the service's error body (Bot Connector or OAuth style).
        """
        with self._lock:
            self._faults.append(_Fault(re.compile(path_regex), times, status=status, retry_after=retry_after))

    def stall_next(self, path_regex: str, seconds: float, times: int = 1, act: bool = True) -> None:
        """The next ``times`` matching requests wait ``seconds`` before answering (a client timeout).

        With ``act`` the request then takes effect as usual (the post landed though the client gave up);
        without, it answers 504 GatewayTimeout and changes nothing. Use `wait_idle` before asserting.
        """
        with self._lock:
            self._stalls.append(_Fault(re.compile(path_regex), times, seconds=seconds, act=act))

    def wait_idle(self, timeout: float = 5.0) -> None:
        """Block until no request is being handled (e.g. a stalled post has finished landing)."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._in_flight:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError("fake Teams still handling a request")
                self._idle.wait(remaining)

    # ----------------------------------------------------------------- inspection

    def calls_to(self, path_regex: str, method: str | None = None) -> list[Call]:
        """Recorded calls whose path matches (re.search), optionally of one method."""
        with self._lock:
            return matching(self.calls, path_regex, method)

    def activities_in(self, conversation_id: str) -> list[Body]:
        """The activities now in a conversation, oldest first, as last updated."""
        with self._lock:
            conversation = self._conversations.get(conversation_id)
            return copy.deepcopy(list(conversation.activities.values())) if conversation else []

    def conversation_of(self, member_id: str) -> str | None:
        """The 1:1 conversation the bot created with this user (``29:...`` or Entra object id), if any."""
        with self._lock:
            aliases = self._aliases(member_id)
            for conversation in self._conversations.values():
                if conversation.member in aliases:
                    return conversation.id
        return None

    def cards_to(self, member_id: str) -> list[Body]:
        """The Adaptive Card contents now showing in the user's 1:1 chat with the bot, oldest first."""
        conversation_id = self.conversation_of(member_id)
        if conversation_id is None:
            return []
        return [
            attachment["content"]
            for activity in self.activities_in(conversation_id)
            for attachment in activity.get("attachments") or []
            if attachment.get("contentType") == ADAPTIVE_CARD
        ]

    def all_sent_text(self) -> str:
        """Every request body received, raw, followed by its decoded strings (for canary checks)."""
        with self._lock:
            calls = list(self.calls)
        parts: list[str] = []
        for call in calls:
            parts.append(call.text)
            parts.extend(_string_leaves(call.json))
            parts.extend(_string_leaves(call.form or {}))
        return "\n".join(parts)

    # ----------------------------------------------------------------- HTTP layer

    def _build_routes(self) -> list[_Route]:
        conv: tuple[str | None, ...] = ("teams", "v3", "conversations")
        return [
            _Route("POST", (None, "oauth2", "v2.0", "token"), "token", self._token),
            _Route("GET", ("v1", ".well-known", "openidconfiguration"), "meta", self._openid_metadata),
            _Route("GET", ("v1", ".well-known", "keys"), "meta", self._keys),
            _Route("POST", conv, "connector", self._create_conversation),
            _Route("POST", (*conv, None, "activities"), "connector", self._post_activity),
            _Route("POST", (*conv, None, "activities", None), "connector", self._post_activity),
            _Route("PUT", (*conv, None, "activities", None), "connector", self._update_activity),
            _Route("DELETE", (*conv, None, "activities", None), "connector", self._delete_activity),
            _Route("GET", (*conv, None, "members"), "connector", self._list_members),
            _Route("GET", (*conv, None, "members", None), "connector", self._get_member),
        ]

    def _match(self, method: str, segments: list[str]) -> tuple[_Route | None, list[str]]:
        for route in self._routes:
            if route.method != method or len(route.pattern) != len(segments):
                continue
            if all(p is None or p == s for p, s in zip(route.pattern, segments, strict=True)):
                return route, [s for p, s in zip(route.pattern, segments, strict=True) if p is None]
        return None, []

    async def _endpoint(self, request: Request) -> Response:
        raw_path = request.scope.get("raw_path") or request.url.path.encode()
        segments = [unquote(s) for s in raw_path.decode("latin-1").split("?")[0].strip("/").split("/")]
        path = "/" + "/".join(segments)
        raw = await request.body()
        text = raw.decode("utf-8", errors="replace")
        body, form = _decode_body(request.headers.get("content-type", ""), text)
        call = Call(method=request.method, path=path, headers={k.lower(): v for k, v in request.headers.items()},
                    json=body, form=form, time=time.time(), text=text, query=dict(request.query_params))
        with self._lock:
            self.calls.append(call)
            self._in_flight += 1
        try:
            route, params = self._match(request.method, segments)
            if route is None:
                return _connector_error(404, "NotFound", f"No route for {request.method} {path}")
            if route.kind != "meta":
                refusal = await self._apply_faults(route.kind, path)
                if refusal is not None:
                    return refusal
            with self._lock:
                return route.handler(_Req(params, body, form or {}, call.token))
        finally:
            with self._idle:
                self._in_flight -= 1
                self._idle.notify_all()

    async def _apply_faults(self, kind: str, path: str) -> Response | None:
        stall = self._take(self._stalls, path)
        if stall is not None:
            await self._sleep(stall.seconds)
            if not stall.act:
                return _fault_response(kind, HTTPStatus.GATEWAY_TIMEOUT, None)
        failure = self._take(self._faults, path)
        if failure is not None:
            return _fault_response(kind, failure.status, failure.retry_after)
        return None

    def _take(self, faults: list[_Fault], path: str) -> _Fault | None:
        with self._lock:
            for fault in faults:
                if fault.pattern.search(path):
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        faults.remove(fault)
                    return fault
        return None

    async def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self._stopping.is_set() and (remaining := deadline - time.monotonic()) > 0:
            await asyncio.sleep(min(remaining, _STOP_POLL_SECONDS))

    # ----------------------------------------------------------------- Entra ID

    def _token(self, req: _Req) -> Response:
        form = req.form
        if form.get("grant_type") != "client_credentials":
            return _oauth_error(400, "unsupported_grant_type",
                                "AADSTS70003: The app requested an unsupported grant type.")
        if form.get("client_id") != self.client_id:
            return _oauth_error(400, "unauthorized_client",
                                f"AADSTS700016: Application with identifier '{form.get('client_id')}' was not found "
                                "in the directory.")
        if form.get("client_secret") != self.client_secret:
            return _oauth_error(401, "invalid_client", "AADSTS7000215: Invalid client secret provided.")
        scope = form.get("scope", "")
        if not scope.endswith("/.default"):
            return _oauth_error(400, "invalid_scope",
                                f"AADSTS1002012: The provided value for scope {scope} is not valid.")
        # Entra's access tokens are JWTs, and the Teams SDK decodes them (unverified) to read the expiry.
        now = int(time.time())
        token = jwt.encode({"aud": scope.removesuffix("/.default"), "iss": f"{self.login_url}/{self.tenant_id}/v2.0",
                            "appid": self.client_id, "tid": self.tenant_id, "iat": now, "nbf": now,
                            "exp": now + self.token_lifetime, "jti": secrets.token_urlsafe(16)},
                           fake_signing_key(), algorithm="RS256", headers={"kid": DEFAULT_KID})
        self._tokens[token] = scope
        return JSONResponse({"token_type": "Bearer", "expires_in": self.token_lifetime,
                             "ext_expires_in": self.token_lifetime, "access_token": token})

    # ----------------------------------------------------------------- OpenID metadata / JWKS

    def _openid_metadata(self, req: _Req) -> Response:
        return JSONResponse({
            "issuer": TEST_ISSUER,
            "authorization_endpoint": "https://invalid.botframework.test",
            "jwks_uri": self.jwks_url,
            "id_token_signing_alg_values_supported": ["RS256"],
            "token_endpoint_auth_methods_supported": ["private_key_jwt"],
        })

    def _keys(self, req: _Req) -> Response:
        return JSONResponse({"keys": [jwk_for(self.key, self.kid)]})

    # ----------------------------------------------------------------- Bot Connector

    def _unauthorized(self, req: _Req) -> Response | None:
        if req.token is None or self._tokens.get(req.token) != BOT_SCOPE:
            return _connector_error(401, "Unauthorized", "Authorization has been denied for this request.")
        return None

    def _aliases(self, member_id: str) -> set[str]:
        """The ids one user goes by: ``29:...`` and Entra object id, when the member is registered."""
        for member in self._members.values():
            if member_id in (member["id"], member["aadObjectId"]):
                return {member["id"], member["aadObjectId"]}
        return {member_id}

    def _canonical(self, member_id: str) -> str:
        for member in self._members.values():
            if member_id in (member["id"], member["aadObjectId"]):
                return str(member["id"])
        return member_id

    def _forbidden_response(self) -> Response:
        return _connector_error(403, "Forbidden", "The bot is not part of the conversation roster.")

    def _create_conversation(self, req: _Req) -> Response:
        if (refusal := self._unauthorized(req)) is not None:
            return refusal
        body = req.body if isinstance(req.body, dict) else {}
        members = body.get("members") or []
        tenant = body.get("tenantId") or ((body.get("channelData") or {}).get("tenant") or {}).get("id")
        if len(members) != 1 or not isinstance(members[0], dict) or not members[0].get("id"):
            return _connector_error(400, "BadArgument", "A 1:1 conversation needs exactly one member with an id.")
        if not tenant:
            return _connector_error(400, "BadArgument", "Tenant id is required (tenantId or channelData.tenant.id).")
        member = self._canonical(str(members[0]["id"]))
        if member in self._forbidden:
            return self._forbidden_response()
        conversation_id = "a:conv-" + hashlib.sha256(member.encode()).hexdigest()[:24]
        self._conversations.setdefault(conversation_id, _Conversation(conversation_id, member))
        return JSONResponse({"id": conversation_id}, status_code=201)

    def _conversation(self, conversation_id: str) -> _Conversation:
        # Teams accepts posts to conversations it created for inbound activities too; so does the fake.
        return self._conversations.setdefault(conversation_id, _Conversation(conversation_id, None))

    def _post_activity(self, req: _Req) -> Response:
        if (refusal := self._unauthorized(req)) is not None:
            return refusal
        if not isinstance(req.body, dict):
            return _connector_error(400, "BadSyntax", "The request body must be an activity (a JSON object).")
        conversation = self._conversation(req.params[0])
        if conversation.member in self._forbidden:
            return self._forbidden_response()
        # Teams' message ids are the epoch milliseconds of the post; kept unique here.
        self._last_activity_ms = max(int(time.time() * 1000), self._last_activity_ms + 1)
        activity_id = str(self._last_activity_ms)
        stored = {**copy.deepcopy(req.body), "id": activity_id}
        if len(req.params) > 1:
            stored["replyToId"] = req.params[1]
        conversation.activities[activity_id] = stored
        return JSONResponse({"id": activity_id}, status_code=201)

    def _update_activity(self, req: _Req) -> Response:
        if (refusal := self._unauthorized(req)) is not None:
            return refusal
        conversation_id, activity_id = req.params
        conversation = self._conversations.get(conversation_id)
        if conversation is None or activity_id not in conversation.activities:
            return _connector_error(404, "NotFound", "The activity could not be found.")
        if conversation.member in self._forbidden:
            return self._forbidden_response()
        if not isinstance(req.body, dict):
            return _connector_error(400, "BadSyntax", "The request body must be an activity (a JSON object).")
        conversation.activities[activity_id] = {**copy.deepcopy(req.body), "id": activity_id}
        return JSONResponse({"id": activity_id})

    def _delete_activity(self, req: _Req) -> Response:
        if (refusal := self._unauthorized(req)) is not None:
            return refusal
        conversation = self._conversations.get(req.params[0])
        if conversation is None or conversation.activities.pop(req.params[1], None) is None:
            return _connector_error(404, "NotFound", "The activity could not be found.")
        return Response(status_code=200)

    def _get_member(self, req: _Req) -> Response:
        if (refusal := self._unauthorized(req)) is not None:
            return refusal
        member = self._members.get(self._canonical(req.params[1]))
        if member is None:
            return _connector_error(404, "MemberNotFoundInConversation", "The member could not be found in the "
                                    "conversation.")
        return JSONResponse({k: v for k, v in member.items() if v is not None})

    def _list_members(self, req: _Req) -> Response:
        if (refusal := self._unauthorized(req)) is not None:
            return refusal
        conversation = self._conversations.get(req.params[0])
        member = self._members.get(conversation.member or "") if conversation else None
        return JSONResponse([{k: v for k, v in member.items() if v is not None}] if member else [])


def _decode_body(content_type: str, text: str) -> tuple[Any, dict[str, str] | None]:
    kind = content_type.split(";")[0].strip().lower()
    if kind == "application/x-www-form-urlencoded":
        return None, dict(parse_qsl(text, keep_blank_values=True))
    if not text:
        return None, None
    try:
        return json.loads(text), None
    except ValueError:
        return None, None


# ----------------------------------------------------------------------------- inbound activities


def _iso_utc(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def activity(
    kind: str,
    *,
    from_id: str,
    aad_object_id: str,
    name: str = "",
    conversation_id: str,
    service_url: str,
    text: str | None = None,
    value: Any = None,
    name_: str | None = None,
    id: str | None = None,
    tenant_id: str = TENANT_ID,
    reply_to_id: str | None = None,
    members_added: list[Body] | None = None,
    bot_id: str = BOT_ID,
    bot_name: str = BOT_NAME,
    timestamp: datetime | None = None,
) -> Body:
    """An activity as Teams posts it to the bot's messaging endpoint (1:1 chat with the bot).

    ``kind`` is the activity ``type`` ("message", "invoke", "conversationUpdate", ...); ``name_`` is the
    invoke's ``name`` (``name`` is the sender's display name). ``from_id`` is the user's ``29:...`` id.
    """
    moment = timestamp or datetime.now(UTC)
    result: Body = {
        "type": kind,
        "id": id or (f"f:{uuid.uuid4()}" if kind == "invoke" else str(int(moment.timestamp() * 1000))),
        "timestamp": _iso_utc(moment),
        "localTimestamp": moment.astimezone(_LONDON).isoformat(timespec="milliseconds"),
        "serviceUrl": service_url,
        "channelId": "msteams",
        "from": {"id": from_id, "name": name, "aadObjectId": aad_object_id},
        "conversation": {"conversationType": "personal", "tenantId": tenant_id, "id": conversation_id},
        "recipient": {"id": bot_id, "name": bot_name},
        "entities": [{"locale": "en-GB", "country": "GB", "platform": "Web", "timezone": "Europe/London",
                      "type": "clientInfo"}],
        "channelData": {"tenant": {"id": tenant_id}},
        "locale": "en-GB",
    }
    if kind == "message" and text is not None:
        # Teams sends the plain text and an HTML rendering of it.
        result["textFormat"] = "plain"
        result["attachments"] = [{"contentType": "text/html", "content": f"<p>{html.escape(text)}</p>"}]
    optional = {"text": text, "name": name_, "value": value, "replyToId": reply_to_id, "membersAdded": members_added}
    result.update({key: item for key, item in optional.items() if item is not None})
    return result


def message(text: str, **who: Any) -> Body:
    """The user types ``text`` in the 1:1 chat. ``who``: `activity`'s sender / conversation arguments."""
    return activity("message", text=text, **who)


def card_action(verb: str, data: Body, trigger: str = "manual", *, reply_to_id: str | None = None,
                **who: Any) -> Body:
    """An ``adaptiveCard/action`` invoke: the user pressed an ``Action.Execute`` with ``verb`` and ``data``.

    ``reply_to_id`` is the id of the bot's message that carries the card (Teams sends it).
    """
    value = {"action": {"type": "Action.Execute", "verb": verb, "data": data}, "trigger": trigger}
    return activity("invoke", name_="adaptiveCard/action", value=value, reply_to_id=reply_to_id, **who)


def task_fetch(data: Body, **who: Any) -> Body:
    """A ``task/fetch`` invoke (an ``Action.Submit`` whose data says ``"msteams": {"type": "task/fetch"}``)."""
    value = {"data": {"msteams": {"type": "task/fetch"}, **data}, "context": {"theme": "default"}}
    return activity("invoke", name_="task/fetch", value=value, **who)


def task_submit(data: Body, **who: Any) -> Body:
    """A ``task/submit`` invoke: the user submitted the dialog's card with these inputs and action data."""
    return activity("invoke", name_="task/submit", value={"data": data, "context": {"theme": "default"}}, **who)


def _message_payload(message_html: str, message_id: str | None, author_aad_id: str, author_name: str) -> Body:
    return {
        "id": message_id or str(int(time.time() * 1000)),
        "replyToId": None,
        "createdDateTime": _iso_utc(datetime.now(UTC)),
        "lastModifiedDateTime": None,
        "deleted": False,
        "subject": None,
        "summary": None,
        "importance": "normal",
        "locale": "en-us",
        "linkToMessage": None,
        "from": {"user": {"id": author_aad_id, "displayName": author_name, "userIdentityType": "aadUser"},
                 "application": None, "conversation": None},
        "body": {"contentType": "html", "content": message_html},
        "attachmentLayout": None,
        "attachments": [],
        "mentions": [],
        "reactions": [],
    }


def message_action_fetch(message_html: str, *, message_id: str | None = None, author_aad_id: str | None = None,
                         author_name: str | None = None, **who: Any) -> Body:
    """``composeExtension/fetchTask`` from the "..." menu of a message (command ``concern_from_message``).

    The message's author defaults to the user invoking the action.
    """
    payload = _message_payload(message_html, message_id, author_aad_id or who["aad_object_id"],
                               author_name if author_name is not None else who.get("name", ""))
    value = {"commandId": MESSAGE_ACTION_COMMAND, "commandContext": "message", "context": {"theme": "default"},
             "messagePayload": payload}
    return activity("invoke", name_="composeExtension/fetchTask", value=value, **who)


def message_action_submit(data: Body, *, message_html: str | None = None, message_id: str | None = None,
                          author_aad_id: str | None = None, author_name: str | None = None, **who: Any) -> Body:
    """``composeExtension/submitAction``: the user submitted the dialog the message action opened."""
    value: Body = {"commandId": MESSAGE_ACTION_COMMAND, "commandContext": "message", "data": data,
                   "context": {"theme": "default"}}
    if message_html is not None:
        value["messagePayload"] = _message_payload(message_html, message_id, author_aad_id or who["aad_object_id"],
                                                   author_name if author_name is not None else who.get("name", ""))
    return activity("invoke", name_="composeExtension/submitAction", value=value, **who)


def installed(*, bot_id: str = BOT_ID, **who: Any) -> Body:
    """``conversationUpdate`` sent when the user installs the bot personally (the bot joins the 1:1)."""
    return activity("conversationUpdate", members_added=[{"id": bot_id}], bot_id=bot_id, **who)
