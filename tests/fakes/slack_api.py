"""A fake Slack Web API served over real HTTP on 127.0.0.1.

Why a fake server rather than mocking ``AsyncWebClient``: the bot's resilience
depends on how the *real* slack_sdk client reacts to Slack's wire format (HTTP
status, ``Retry-After``, ``{"ok": false, "error": ...}`` bodies, timeouts,
retry handlers). Speaking that format over a socket exercises all of it.

Wire-format notes (checked against docs.slack.dev / api.slack.com method pages and
slack_sdk 3.48's source):

* Every method is ``/api/<method>``; most application errors are HTTP 200 with
  ``{"ok": false, "error": "<code>"}`` (e.g. ``not_authed``, ``unknown_method``).
* Rate limiting is HTTP 429 + ``Retry-After: <seconds>``; body
  ``{"ok": false, "error": "ratelimited"}``.
* Methods accept ``application/x-www-form-urlencoded`` (structured fields such as
  ``blocks``/``view`` then arrive as JSON-encoded strings) and, for most write
  methods, ``application/json``. slack_sdk sends ``chat.*``/``views.*`` as JSON,
  ``users.info`` as a GET query string, and ``conversations.open`` as a POST whose
  arguments are in the *query string* with an empty form body.
* The token travels in ``Authorization: Bearer xox...`` (or a ``token`` param).
* A file is uploaded in three steps (https://docs.slack.dev/messaging/working-with-files#upload):
  ``files.getUploadURLExternal`` (filename, length) returns an ``upload_url`` and a ``file_id``;
  the bytes are POSTed to that URL (here ``/upload/<file_id>`` on the same loopback server; Slack
  answers 200 "OK - <length>"); ``files.completeUploadExternal`` (``files`` a JSON list of
  {"id", "title"}, ``channel_id``) shares the file into a conversation the bot is in, with
  ``initial_comment`` as the message beside it. Until completed, a file is shared nowhere.
* Scopes (https://docs.slack.dev/reference/methods/users.info): every scope is granted unless a
  test withholds it (``withhold_scopes``). ``users.info`` without ``users:read`` answers
  ``{"ok": false, "error": "missing_scope", "needed": "users:read", "provided": ...}``; without
  ``users:read.email`` it answers, but the profile carries no ``email``, as Slack's does.
* OAuth (https://docs.slack.dev/reference/methods/oauth.v2.access): after a person approves the
  app at slack.com/oauth/v2/authorize (``grant`` here), the app exchanges the one-time ``code``
  for a bot token with its client id and secret (HTTP Basic, or form fields). Errors are
  ``invalid_client_id``, ``bad_client_secret``, ``invalid_code`` (unknown or already used) and
  ``bad_redirect_uri``. Every token issued belongs to one workspace: what is posted with it lands
  in that workspace only, and ``auth.test`` names that workspace. Tokens not issued here (the
  single-token tests' ``xoxb-...``) all belong to the default workspace ``TEAM_ID``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from tests.fakes.loopback import LoopbackFake, LoopbackServer

TEAM_ID = "T0FAKE0001"
TEAM_NAME = "Consentbot Test School"
BOT_USER_ID = "U0BOT00001"
BOT_ID = "B0BOT00001"
APP_ID = "A0APP00001"
# What the app asks for (slack/manifest.yml), with the optional scopes that link people by email.
SCOPES = frozenset({"commands", "chat:write", "files:write", "im:write", "im:history", "users:read",
                    "users:read.email"})

# Form fields Slack documents as "JSON-based ..., presented as a URL-encoded string".
JSON_STRING_FIELDS = frozenset({"blocks", "attachments", "view", "metadata", "unfurls", "files"})

# Fixed epoch so message timestamps are deterministic yet look like Slack's.
_TS_EPOCH_MICROS = 1_700_000_000 * 1_000_000
_STOP_POLL_SECONDS = 0.05

Params = dict[str, Any]
Body = dict[str, Any]


@dataclass(frozen=True)
class Call:
    """One request as the fake received it (after decoding the body)."""

    method: str
    params: Params
    token: str | None


@dataclass
class Upload:
    """A file as the fake holds it: announced, its bytes received, then shared into channels."""

    id: str
    filename: str
    length: int
    data: bytes | None = None
    title: str = ""
    channels: list[str] = field(default_factory=list)
    initial_comment: str = ""


@dataclass
class _Failure:
    status: int
    retry_after: int


@dataclass
class _Window:
    """A burst of admitted calls per method; once it is used up, 429 for `retry_after` seconds."""

    burst: int
    retry_after: int
    filled_at: float | None = None
    admitted: int = 0


@dataclass
class _State:
    """What the fake workspace "remembers" between calls."""

    ts_counter: int = 0
    id_counter: int = 0
    messages: dict[str, list[Body]] = field(default_factory=dict)
    opened_dms: set[str] = field(default_factory=set)
    views: dict[str, Body] = field(default_factory=dict)
    home_views: dict[str, str] = field(default_factory=dict)
    users: dict[str, Body] = field(default_factory=dict)
    uploads: dict[str, Upload] = field(default_factory=dict)  # by file id, from getUploadURLExternal on
    withheld_scopes: set[str] = field(default_factory=set)  # scopes the app was not granted


@dataclass(frozen=True)
class Identity:
    """Who a token speaks as: the workspace and its bot."""

    team_id: str = TEAM_ID
    team_name: str = TEAM_NAME
    bot_user_id: str = BOT_USER_ID
    bot_id: str = BOT_ID


@dataclass
class _Workspace:
    identity: Identity
    state: _State = field(default_factory=_State)


@dataclass(frozen=True)
class _Grant:
    """A person's approval at slack.com/oauth/v2/authorize, waiting to be exchanged once."""

    client_id: str
    identity: Identity
    installer: str
    scope: str
    redirect_uri: str | None


def _ok(**fields: Any) -> Body:
    return {"ok": True, **fields}


def _error(code: str, **fields: Any) -> Body:
    return {"ok": False, "error": code, **fields}


def _invalid_arguments(message: str) -> Body:
    # Shape of Slack's documented views.* validation error.
    return _error("invalid_arguments", response_metadata={"messages": [message]})


class FakeSlack(LoopbackFake):
    """A Slack Web API on 127.0.0.1, run in a background thread (uvicorn + Starlette app).

    Usable from sync and async tests: the server has its own thread and event loop.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop = LoopbackServer("fake-slack")
        self._stopping = self._loop.stopping
        self.url = ""
        self.calls: list[Call] = []
        self._reset_script_and_state()
        self._handlers: dict[str, Callable[[Params], Body]] = {
            "auth.test": self._auth_test,
            "chat.postMessage": self._chat_post_message,
            "chat.update": self._chat_update,
            "chat.postEphemeral": self._chat_post_ephemeral,
            "conversations.open": self._conversations_open,
            "views.open": self._views_open,
            "views.update": self._views_update,
            "views.push": self._views_push,
            "views.publish": self._views_publish,
            "users.info": self._users_info,
            "files.getUploadURLExternal": self._files_get_upload_url,
            "files.completeUploadExternal": self._files_complete_upload,
        }

    # ----------------------------------------------------------------- lifecycle

    def _app(self) -> Any:
        return self._build_app()

    def _serving(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}/api/"

    def reset(self) -> None:
        """Forget calls, scripted behaviour and workspace state (for shared fixtures)."""
        with self._lock:
            self.calls.clear()
            self._reset_script_and_state()

    def _reset_script_and_state(self) -> None:
        self._failures: dict[str, deque[_Failure]] = {}
        self._delays: dict[str, deque[float]] = {}
        self._windows: dict[str, _Window] = {}
        self._state = _State()
        self._identity = Identity()
        self._apps: dict[str, str] = {}  # client id -> client secret
        self._grants: dict[str, _Grant] = {}  # one-time codes
        self._workspaces: dict[str, _Workspace] = {}  # by team id, for the workspaces installed through OAuth
        self._tokens: dict[str, str] = {}  # bot token -> team id

    # ------------------------------------------------------------- inspection

    def calls_to(self, method: str) -> list[Call]:
        with self._lock:
            return [call for call in self.calls if call.method == method]

    def messages_to(self, channel: str, *, team: str | None = None) -> list[Body]:
        """Messages currently in ``channel`` (a user id means the bot's DM with them), oldest first,
        in workspace ``team`` (default: the default workspace).

        Reflects later ``chat.update`` edits, as a Slack client would show them.
        """
        with self._lock:
            channel_id = self._resolve_channel(channel)
            state = self._workspaces[team].state if team in self._workspaces else self._state
            return [json.loads(json.dumps(m)) for m in state.messages.get(channel_id, [])]

    # ------------------------------------------------------------- OAuth

    def register_app(self, client_id: str, client_secret: str) -> None:
        """The app's credentials, as on its Basic Information page."""
        with self._lock:
            self._apps[client_id] = client_secret

    def grant(self, client_id: str, team_id: str, team_name: str, *, installer: str = "U0INSTALL1",
              scope: str = "commands,chat:write,files:write,im:write", redirect_uri: str | None = None) -> str:
        """A person in workspace ``team_id`` approves the app: the one-time code Slack puts on the
        redirect to the app's /slack/oauth_redirect.
        """
        with self._lock:
            code = f"{team_id}.{self._next_id('code')}"
            identity = Identity(team_id=team_id, team_name=team_name, bot_user_id=f"U0BOT{team_id[-5:]}",
                                bot_id=f"B0BOT{team_id[-5:]}")
            self._grants[code] = _Grant(client_id, identity, installer, scope, redirect_uri)
            return code

    def token_of(self, team_id: str) -> str | None:
        """The bot token last issued to workspace ``team_id``."""
        with self._lock:
            return next((t for t, team in reversed(self._tokens.items()) if team == team_id), None)

    def _oauth_v2_access(self, params: Params, basic: tuple[str, str] | None) -> Body:
        client_id, secret = basic or (str(params.get("client_id") or ""), str(params.get("client_secret") or ""))
        if client_id not in self._apps:
            return _error("invalid_client_id")
        if not hmac.compare_digest(secret, self._apps[client_id]):
            return _error("bad_client_secret")
        grant = self._grants.pop(str(params.get("code") or ""), None)  # a code works once
        if grant is None or grant.client_id != client_id:
            return _error("invalid_code")
        if grant.redirect_uri is not None and params.get("redirect_uri") != grant.redirect_uri:
            return _error("bad_redirect_uri")
        identity = grant.identity
        workspace = self._workspaces.setdefault(identity.team_id, _Workspace(identity))
        token = f"xoxb-{identity.team_id}-{self._next_id('')}"
        self._tokens[token] = identity.team_id
        return _ok(access_token=token, token_type="bot", scope=grant.scope, bot_user_id=workspace.identity.bot_user_id,
                   app_id=APP_ID, team={"name": identity.team_name, "id": identity.team_id}, enterprise=None,
                   authed_user={"id": grant.installer}, is_enterprise_install=False)

    def files_in(self, channel: str) -> list[Upload]:
        """Files completed into ``channel`` (a user id means the bot's DM with them), oldest first."""
        with self._lock:
            channel_id = self._resolve_channel(channel)
            return [u for u in self._state.uploads.values() if channel_id in u.channels]

    def uploads(self) -> list[Upload]:
        """Every file announced, whether or not its bytes came or it was shared."""
        with self._lock:
            return list(self._state.uploads.values())

    def add_user(self, user_id: str, *, team: str | None = None, **fields: Any) -> None:
        """Override fields of the user object ``users.info`` returns for ``user_id`` (in workspace
        ``team``, one installed through OAuth; default: the default workspace).
        """
        with self._lock:
            state = self._workspaces[team].state if team in self._workspaces else self._state
            state.users[user_id] = {**self._default_user(user_id), **fields}

    # ------------------------------------------------------------- scripting

    def withhold_scopes(self, *scopes: str) -> None:
        """The app was installed without ``scopes`` (e.g. ``users:read.email``)."""
        with self._lock:
            self._state.withheld_scopes.update(scopes)

    def fail_next(self, method: str, *, status: int = 429, retry_after: int = 1, times: int = 1) -> None:
        """The next ``times`` calls to ``method`` fail with ``status``.

        429 answers like Slack's rate limiter; anything else answers like an
        upstream outage, i.e. a non-JSON text body (e.g. 500 "Internal Server Error").
        """
        with self._lock:
            queue = self._failures.setdefault(method, deque())
            queue.extend(_Failure(status, retry_after) for _ in range(times))

    def delay_next(self, method: str, *, seconds: float, times: int = 1) -> None:
        """The next ``times`` calls to ``method`` stall ``seconds`` before answering normally."""
        with self._lock:
            self._delays.setdefault(method, deque()).extend([seconds] * times)

    def rate_limit(self, method: str, *, burst: int, retry_after: int = 1) -> None:
        """Admit ``burst`` calls to ``method``, then answer 429 until ``retry_after`` seconds have
        passed since the last of them was admitted; then another burst. However slowly the calls come
        (a loaded test machine), the calls after a burst meet the limit.
        """
        with self._lock:
            self._windows[method] = _Window(burst=burst, retry_after=retry_after)

    # ------------------------------------------------------------- HTTP layer

    def _build_app(self) -> Starlette:
        route = Route("/api/{method:str}", self._endpoint, methods=["GET", "POST"])
        upload = Route("/upload/{file_id:str}", self._upload_endpoint, methods=["POST"])
        return Starlette(routes=[route, upload])

    async def _upload_endpoint(self, request: Request) -> Response:
        """The upload URL: the raw bytes of one announced file, of the announced length."""
        file_id = request.path_params["file_id"]
        data = await request.body()
        with self._lock:
            self.calls.append(Call(method="upload", params={"file_id": file_id, "length": len(data)}, token=None))
        failure = self._take_failure("upload")
        with self._lock:
            upload = self._state.uploads.get(file_id)
            if failure is None and upload is not None and upload.data is None and len(data) == upload.length:
                upload.data = data
                return PlainTextResponse(f"OK - {len(data)}")
        if failure is not None:
            return failure
        return PlainTextResponse("Bad Request", status_code=HTTPStatus.BAD_REQUEST)

    async def _endpoint(self, request: Request) -> Response:
        method = request.path_params["method"]
        params, parse_error = await _read_params(request)
        token = _bearer_token(request) or _pop_token(params)
        with self._lock:
            self.calls.append(Call(method=method, params=params, token=token))
        await self._sleep_if_scripted(method)
        # Edge failures come first: on Slack they happen before the method runs.
        for check in (self._take_failure, self._check_rate_limit):
            refusal = check(method)
            if refusal is not None:
                return refusal
        if method == "oauth.v2.access":  # authenticated by the app's client id and secret, not a token
            with self._lock:
                return JSONResponse(self._oauth_v2_access(params, _basic_auth(request)))
        return JSONResponse(self._dispatch(method, params, token, parse_error))

    def _dispatch(self, method: str, params: Params, token: str | None, parse_error: str | None) -> Body:
        if token is None:
            return _error("not_authed")
        if not token.startswith("xox"):
            return _error("invalid_auth")
        handler = self._handlers.get(method)
        if handler is None:
            return _error("unknown_method")
        if parse_error is not None:
            return _error(parse_error)
        with self._lock:
            workspace = self._workspaces.get(self._tokens.get(token, ""))
            if workspace is None:
                return handler(params)
            # The token's workspace: its own messages, views and ids, and its own identity.
            saved = self._state, self._identity
            self._state, self._identity = workspace.state, workspace.identity
            try:
                return handler(params)
            finally:
                self._state, self._identity = saved

    async def _sleep_if_scripted(self, method: str) -> None:
        with self._lock:
            delays = self._delays.get(method)
            seconds = delays.popleft() if delays else 0.0
        deadline = time.monotonic() + seconds
        # Sleep in slices so stop() never waits for a long scripted stall.
        while not self._stopping.is_set() and (remaining := deadline - time.monotonic()) > 0:
            await asyncio.sleep(min(remaining, _STOP_POLL_SECONDS))

    def _take_failure(self, method: str) -> Response | None:
        with self._lock:
            queue = self._failures.get(method)
            failure = queue.popleft() if queue else None
        if failure is None:
            return None
        if failure.status == HTTPStatus.TOO_MANY_REQUESTS:
            return _ratelimited(failure.retry_after)
        return PlainTextResponse(_reason_phrase(failure.status), status_code=failure.status)

    def _check_rate_limit(self, method: str) -> Response | None:
        with self._lock:
            window = self._windows.get(method)
            if window is None:
                return None
            now = time.monotonic()
            if window.filled_at is not None and now - window.filled_at >= window.retry_after:
                window.filled_at, window.admitted = None, 0  # the limit has passed: a new burst
            if window.admitted < window.burst:
                window.admitted += 1
                if window.admitted == window.burst:
                    window.filled_at = now
                return None
            return _ratelimited(window.retry_after)

    # ------------------------------------------------------------- id helpers

    def _next_ts(self) -> str:
        self._state.ts_counter += 1
        micros = _TS_EPOCH_MICROS + self._state.ts_counter * 100
        return f"{micros // 1_000_000}.{micros % 1_000_000:06d}"

    def _next_id(self, prefix: str) -> str:
        self._state.id_counter += 1
        return f"{prefix}{self._state.id_counter:08X}"

    def _view_hash(self) -> str:
        self._state.id_counter += 1
        return f"{1_700_000_000 + self._state.id_counter}.{self._state.id_counter:08d}"

    @staticmethod
    def _resolve_channel(channel: str) -> str:
        # Slack lets apps post to a user id; the message lands in the bot's DM with them.
        return _dm_id(channel) if channel[:1] in ("U", "W") else channel

    # ------------------------------------------------------------- auth / users

    def _auth_test(self, params: Params) -> Body:
        me = self._identity
        return _ok(
            url="https://consentbot-test.slack.com/" if me.team_id == TEAM_ID else f"https://{me.team_id.lower()}.slack.com/",
            team=me.team_name,
            user="consentbot",
            team_id=me.team_id,
            user_id=me.bot_user_id,
            bot_id=me.bot_id,
            is_enterprise_install=False,
        )

    def _users_info(self, params: Params) -> Body:
        withheld = self._state.withheld_scopes
        if "users:read" in withheld:
            return _error("missing_scope", needed="users:read", provided=",".join(sorted(SCOPES - withheld)))
        user_id = str(params.get("user", ""))
        if user_id in self._state.users:
            user = json.loads(json.dumps(self._state.users[user_id]))
        elif user_id[:1] not in ("U", "W"):
            return _error("user_not_found")
        else:
            user = self._default_user(user_id)
        if "users:read.email" in withheld:
            user.get("profile", {}).pop("email", None)
        return _ok(user=user)

    @staticmethod
    def _default_user(user_id: str) -> Body:
        name = f"user_{user_id.lower()}"
        real_name = f"Test User {user_id}"
        return {
            "id": user_id,
            "team_id": TEAM_ID,
            "name": name,
            "deleted": False,
            "real_name": real_name,
            "tz": "Europe/London",
            "tz_label": "Greenwich Mean Time",
            "tz_offset": 0,
            "profile": {
                "real_name": real_name,
                "display_name": name,
                "real_name_normalized": real_name,
                "display_name_normalized": name,
                "email": f"{name}@school.example",
                "team": TEAM_ID,
            },
            "is_admin": False,
            "is_owner": False,
            "is_primary_owner": False,
            "is_restricted": False,
            "is_ultra_restricted": False,
            "is_bot": False,
            "is_app_user": False,
            "updated": 1_700_000_000,
        }

    # ------------------------------------------------------------- chat.*

    def _chat_post_message(self, params: Params) -> Body:
        channel = str(params.get("channel") or "")
        if not channel:
            return _error("channel_not_found")
        if not _has_content(params):
            return _error("no_text")
        channel_id = self._resolve_channel(channel)
        message = self._new_message(params)
        self._state.messages.setdefault(channel_id, []).append(message)
        return _ok(channel=channel_id, ts=message["ts"], message=message)

    def _new_message(self, params: Params) -> Body:
        # Modern bot-token posts carry both the bot user and bot ids.
        message: Body = {
            "type": "message",
            "user": self._identity.bot_user_id,
            "bot_id": self._identity.bot_id,
            "app_id": APP_ID,
            "team": self._identity.team_id,
            "text": params.get("text", ""),
            "ts": self._next_ts(),
        }
        for key in ("blocks", "attachments", "thread_ts", "metadata"):
            if key in params:
                message[key] = params[key]
        return message

    def _chat_update(self, params: Params) -> Body:
        channel_id = self._resolve_channel(str(params.get("channel") or ""))
        message = self._find_message(channel_id, str(params.get("ts") or ""))
        if message is None:
            return _error("message_not_found")
        _apply_edit(message, params)
        return _ok(channel=channel_id, ts=message["ts"], text=message["text"], message=message)

    def _find_message(self, channel_id: str, ts: str) -> Body | None:
        for message in self._state.messages.get(channel_id, []):
            if message["ts"] == ts:
                return message
        return None

    def _chat_post_ephemeral(self, params: Params) -> Body:
        if not params.get("channel"):
            return _error("channel_not_found")
        if not params.get("user"):
            return _error("user_not_found")
        if not _has_content(params):
            return _error("no_text")
        return _ok(message_ts=self._next_ts())

    # ------------------------------------------------------------- conversations.*

    def _conversations_open(self, params: Params) -> Body:
        users = [u for u in str(params.get("users") or "").split(",") if u]
        if not users:
            return _error("users_list_not_supplied")
        channel_id = _dm_id(users[0]) if len(users) == 1 else _mpim_id(users)
        already_open = channel_id in self._state.opened_dms
        self._state.opened_dms.add(channel_id)
        channel: Body = {"id": channel_id}
        if _truthy(params.get("return_im")):
            channel.update(is_im=len(users) == 1, user=users[0], is_open=True)
        if already_open:
            return _ok(no_op=True, already_open=True, channel=channel)
        return _ok(channel=channel)

    # ------------------------------------------------------------- files.*

    def _files_get_upload_url(self, params: Params) -> Body:
        filename = str(params.get("filename") or "")
        length = str(params.get("length") or "")
        if not filename or not length.isdigit() or int(length) <= 0:
            return _error("invalid_arguments")
        file_id = self._next_id("F")
        self._state.uploads[file_id] = Upload(id=file_id, filename=filename, length=int(length))
        return _ok(upload_url=f"{self.url.removesuffix('/api/')}/upload/{file_id}", file_id=file_id)

    def _files_complete_upload(self, params: Params) -> Body:
        files = params.get("files")
        if not isinstance(files, list) or not files:
            return _error("invalid_arguments")
        uploads = [self._state.uploads.get(str(f.get("id"))) for f in files if isinstance(f, dict)]
        if len(uploads) != len(files) or any(u is None or u.data is None for u in uploads):
            return _error("file_not_found")
        channel_id = str(params.get("channel_id") or "")
        if channel_id and channel_id not in self._state.opened_dms and not channel_id.startswith("C"):
            return _error("channel_not_found")  # a DM the bot has not opened (conversations.open) is not its to post in
        shared = []
        for upload, item in zip(uploads, files, strict=True):
            assert upload is not None  # noqa: S101 - checked above
            upload.title = str(item.get("title") or upload.filename)
            upload.initial_comment = str(params.get("initial_comment") or "")
            if channel_id:
                upload.channels.append(channel_id)
            shared.append({"id": upload.id, "title": upload.title, "name": upload.filename, "size": upload.length})
        if channel_id:
            message = self._new_message({"text": params.get("initial_comment") or ""})
            message["files"] = shared
            self._state.messages.setdefault(channel_id, []).append(message)
        return _ok(files=shared)

    # ------------------------------------------------------------- views.*

    def _views_open(self, params: Params) -> Body:
        if not (params.get("trigger_id") or params.get("interactivity_pointer")):
            return _invalid_arguments("invalid `trigger_id`")
        return self._create_view(params, previous_view_id=None)

    def _views_push(self, params: Params) -> Body:
        if not (params.get("trigger_id") or params.get("interactivity_pointer")):
            return _invalid_arguments("invalid `trigger_id`")
        return self._create_view(params, previous_view_id=None)

    def _create_view(self, params: Params, previous_view_id: str | None) -> Body:
        payload = params.get("view")
        if not isinstance(payload, dict):
            return _invalid_arguments("invalid `view`")
        view_id = self._next_id("V")
        view = self._stored_view(view_id, payload, previous_view_id)
        self._state.views[view_id] = view
        return _ok(view=view)

    def _stored_view(self, view_id: str, payload: Body, previous_view_id: str | None) -> Body:
        # Field set from the documented views.open success response.
        return {
            "id": view_id,
            "team_id": self._identity.team_id,
            "type": payload.get("type", "modal"),
            "private_metadata": "",
            "callback_id": "",
            "external_id": "",
            "clear_on_close": False,
            "notify_on_close": False,
            **payload,
            "state": {"values": {}},
            "hash": self._view_hash(),
            "root_view_id": view_id,
            "previous_view_id": previous_view_id,
            "app_id": APP_ID,
            "bot_id": self._identity.bot_id,
        }

    def _views_update(self, params: Params) -> Body:
        payload = params.get("view")
        if not isinstance(payload, dict):
            return _invalid_arguments("invalid `view`")
        current = self._lookup_view(params)
        if current is None:
            return _error("not_found")
        # The hash guards against overwriting a view someone else already changed.
        if params.get("hash") and params["hash"] != current["hash"]:
            return _error("hash_conflict")
        view = self._stored_view(current["id"], payload, current["previous_view_id"])
        view["root_view_id"] = current["root_view_id"]
        self._state.views[current["id"]] = view
        return _ok(view=view)

    def _lookup_view(self, params: Params) -> Body | None:
        if params.get("view_id"):
            return self._state.views.get(str(params["view_id"]))
        external_id = params.get("external_id")
        if external_id:
            for view in self._state.views.values():
                if view.get("external_id") == external_id:
                    return view
        return None

    def _views_publish(self, params: Params) -> Body:
        user_id = str(params.get("user_id") or "")
        payload = params.get("view")
        if not user_id:
            return _invalid_arguments("invalid `user_id`")
        if not isinstance(payload, dict) or payload.get("type") != "home":
            return _invalid_arguments("invalid `view`")
        # A user's Home tab keeps one view id across publishes; the hash changes.
        view_id = self._state.home_views.get(user_id) or self._next_id("V")
        current = self._state.views.get(view_id)
        if current and params.get("hash") and params["hash"] != current["hash"]:
            return _error("hash_conflict")
        view = self._stored_view(view_id, payload, previous_view_id=None)
        self._state.home_views[user_id] = view_id
        self._state.views[view_id] = view
        return _ok(view=view)


# ----------------------------------------------------------------- request decoding


async def _read_params(request: Request) -> tuple[Params, str | None]:
    """Merge query-string and body arguments; return (params, Slack error code or None)."""
    params: Params = dict(request.query_params)
    raw = await request.body()
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if raw and content_type == "application/json":
        try:
            document = json.loads(raw)
        except ValueError:
            return params, "invalid_json"
        if not isinstance(document, dict):
            return params, "json_not_object"
        params.update(document)
    elif raw:
        params.update(parse_qsl(raw.decode("utf-8"), keep_blank_values=True))
    return _decode_json_strings(params), None


def _decode_json_strings(params: Params) -> Params:
    # Form posts carry blocks/view as JSON text; tests want the structure.
    for key in JSON_STRING_FIELDS & params.keys():
        value = params[key]
        if isinstance(value, str) and value[:1] in ("[", "{"):
            try:
                params[key] = json.loads(value)
            except ValueError:
                pass  # leave it; the method handler reports invalid input
    return params


def _bearer_token(request: Request) -> str | None:
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return credentials.strip() or None


def _basic_auth(request: Request) -> tuple[str, str] | None:
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, _, password = base64.b64decode(credentials.strip()).decode().partition(":")
    except ValueError:
        return None
    return user, password


def _pop_token(params: Params) -> str | None:
    # Slack also accepts the token as a POST parameter; it is not a method argument.
    token = params.pop("token", None)
    return str(token) if token else None


# ----------------------------------------------------------------- response helpers


def _ratelimited(retry_after: int) -> Response:
    return JSONResponse(
        _error("ratelimited"),
        status_code=HTTPStatus.TOO_MANY_REQUESTS,
        headers={"Retry-After": str(retry_after)},
    )


def _reason_phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


# ----------------------------------------------------------------- message helpers


def _has_content(params: Params) -> bool:
    return any(params.get(key) for key in ("text", "blocks", "attachments"))


def _apply_edit(message: Body, params: Params) -> None:
    # chat.update rule: text without blocks removes the old blocks; omitted
    # attachments are retained.
    if "blocks" in params:
        message["blocks"] = params["blocks"]
    elif "text" in params:
        message.pop("blocks", None)
    if "attachments" in params:
        message["attachments"] = params["attachments"]
    if "text" in params:
        message["text"] = params["text"]


def _dm_id(user_id: str) -> str:
    return "D" + user_id


def _mpim_id(user_ids: list[str]) -> str:
    digest = hashlib.sha256(",".join(sorted(user_ids)).encode()).hexdigest()
    return "G" + digest[:10].upper()


def _truthy(value: Any) -> bool:
    return str(value).lower() in ("1", "true")
