"""A fake Microsoft Graph (and Entra token endpoint) served over real HTTP on 127.0.0.1.

Wire-format notes (learn.microsoft.com Graph v1.0 pages for each call):

* ``GET /groups/{id}/transitiveMembers`` answers ``{"value": [...], "@odata.nextLink": URL}``;
  the items are directoryObjects told apart by ``"@odata.type"`` (``#microsoft.graph.user``,
  ``#microsoft.graph.group``, ...); ``$select`` trims each item (``@odata.type`` stays). The
  nextLink is absolute and carries a ``$skiptoken``.
* ``POST /users/{id}/teamwork/installedApps`` with ``teamsApp@odata.bind``: 201; an app already
  installed for the user: 409 ``Conflict``.
* ``POST /users/{id}/teamwork/sendActivityNotification``: 204, no body.
* Errors: ``{"error": {"code": ..., "message": ...}}``; 429 carries ``Retry-After`` (seconds).
* Tokens: ``POST /{tenant}/oauth2/v2.0/token`` (client credentials) on the login host; here the
  same server, so TEAMS_LOGIN_URL can point at ``login_url``.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fakes.loopback import LoopbackFake, LoopbackServer, matching

Body = dict[str, Any]
_STOP_POLL_SECONDS = 0.05
GRAPH_TOKEN = "fake-graph-token"
FAULT_CODES = {401: "InvalidAuthenticationToken", 403: "Authorization_RequestDenied", 404: "Request_ResourceNotFound"}


@dataclass(frozen=True)
class GraphCall:
    """One request as the fake received it."""

    method: str
    path: str
    query: dict[str, str]
    json: Any
    headers: dict[str, str]


@dataclass
class _Fault:
    pattern: re.Pattern[str]
    status: int
    retry_after: int | None
    act: bool


@dataclass
class _State:
    groups: dict[str, list[Body]] = field(default_factory=dict)
    installed: set[tuple[str, str]] = field(default_factory=set)
    notifications: list[tuple[str, Body]] = field(default_factory=list)


def graph_user(object_id: str, name: str, *, mail: str | None = None, upn: str | None = None,
               enabled: bool = True) -> Body:
    """A directory user as Graph lists it."""
    return {"@odata.type": "#microsoft.graph.user", "id": object_id, "displayName": name, "mail": mail,
            "userPrincipalName": upn or mail, "accountEnabled": enabled}


def graph_group(object_id: str, name: str) -> Body:
    """A nested group as transitiveMembers lists it (among the users)."""
    return {"@odata.type": "#microsoft.graph.group", "id": object_id, "displayName": name, "mail": None}


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


class FakeGraph(LoopbackFake):
    """Graph v1.0 at ``url`` (``http://127.0.0.1:PORT/v1.0``) and a token endpoint at ``login_url``,
    run in a background thread. ``accepted_tokens`` None: any non-empty bearer token is accepted;
    ``client_secret`` None: the token endpoint accepts any non-empty client secret.
    """

    def __init__(self, *, page_size: int = 2, accepted_tokens: Iterable[str] | None = None) -> None:
        self._lock = threading.Lock()
        self._loop = LoopbackServer("fake-graph")
        self._stopping = self._loop.stopping
        self.url = self.login_url = ""
        self.page_size = page_size
        self.accepted_tokens = set(accepted_tokens) if accepted_tokens is not None else None
        self.client_secret: str | None = None
        self.calls: list[GraphCall] = []
        self.token_requests: list[dict[str, str]] = []
        self._reset_script_and_state()

    # ----------------------------------------------------------------- lifecycle

    def _app(self) -> Any:
        return self._build_app()

    def _serving(self, port: int) -> None:
        self.login_url = f"http://127.0.0.1:{port}"
        self.url = f"{self.login_url}/v1.0"

    def reset(self) -> None:
        """Forget calls, scripted faults and directory state; page size 2, any token and secret accepted."""
        with self._lock:
            self.calls.clear()
            self.token_requests.clear()
            self.page_size, self.accepted_tokens, self.client_secret = 2, None, None
            self._reset_script_and_state()

    def _reset_script_and_state(self) -> None:
        self._faults: deque[_Fault] = deque()
        self._stalls: deque[tuple[re.Pattern[str], float]] = deque()
        self._state = _State()

    # ----------------------------------------------------------------- set-up and inspection

    def set_group(self, group_id: str, members: Iterable[Body]) -> None:
        """The group's transitive members, in order (``graph_user`` / ``graph_group`` items)."""
        with self._lock:
            self._state.groups[group_id] = [dict(m) for m in members]

    def calls_to(self, path_regex: str, method: str | None = None) -> list[GraphCall]:
        """Recorded calls whose path matches (re.search), optionally of one method."""
        with self._lock:
            return matching(self.calls, path_regex, method)

    def notifications_to(self, user_id: str) -> list[Body]:
        """Activity notifications Graph accepted (and so delivered) for a user, oldest first."""
        with self._lock:
            return [body for uid, body in self._state.notifications if uid == user_id]

    def installed_for(self, user_id: str) -> set[str]:
        """Catalogue app ids installed for a user."""
        with self._lock:
            return {app for uid, app in self._state.installed if uid == user_id}

    # ----------------------------------------------------------------- scripting

    def fail_next(self, path_regex: str, status: int, retry_after: int | None = None, times: int = 1,
                  act: bool = False) -> None:
        """The next ``times`` requests whose path matches answer ``status``. ``act``: the request is
        carried out first (a notification is delivered), as when Graph fails after acting.
        A 429 carries ``Retry-After`` (``retry_after``, default 1).
        """
        with self._lock:
            self._faults.extend(_Fault(re.compile(path_regex), status, retry_after, act) for _ in range(times))

    def stall_next(self, path_regex: str, seconds: float) -> None:
        """The next request whose path matches waits ``seconds`` before it is handled."""
        with self._lock:
            self._stalls.append((re.compile(path_regex), seconds))

    # ----------------------------------------------------------------- HTTP layer

    def _build_app(self) -> Starlette:
        return Starlette(routes=[
            Route("/{tenant}/oauth2/v2.0/token", self._token, methods=["POST"]),
            Route("/v1.0/groups/{group_id}/transitiveMembers", self._members, methods=["GET"]),
            Route("/v1.0/users/{user_id}/teamwork/installedApps", self._install, methods=["POST"]),
            Route("/v1.0/users/{user_id}/teamwork/sendActivityNotification", self._notify, methods=["POST"]),
            Route("/v1.0/{rest:path}", self._unknown, methods=["GET", "POST", "PATCH", "DELETE"]),
        ])

    async def _token(self, request: Request) -> Response:
        form = dict(parse_qsl((await request.body()).decode("utf-8"), keep_blank_values=True))
        with self._lock:
            self.token_requests.append({k: v for k, v in form.items() if k != "client_secret"})
        secret = form.get("client_secret")
        if form.get("grant_type") != "client_credentials" or not secret or (
                self.client_secret is not None and secret != self.client_secret):
            return JSONResponse({"error": "invalid_client", "error_description": "AADSTS7000215"}, status_code=401)
        return JSONResponse({"token_type": "Bearer", "expires_in": 3599, "access_token": GRAPH_TOKEN})

    async def _recorded(self, request: Request) -> tuple[Any, Response | None]:
        """Record the call, then: a stall, the bearer check, a scripted fault (None: carry on)."""
        raw = await request.body()
        try:
            document = json.loads(raw) if raw else None
        except ValueError:
            document = None
        call = GraphCall(request.method, request.url.path, dict(request.query_params), document,
                         dict(request.headers))
        with self._lock:
            self.calls.append(call)
        await self._stall_if_scripted(call.path)
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        token_ok = scheme.lower() == "bearer" and token.strip() and (
            self.accepted_tokens is None or token.strip() in self.accepted_tokens)
        if not token_ok:
            return document, _error(401, "InvalidAuthenticationToken", "Access token is empty or invalid.")
        return document, None

    def _fault_for(self, path: str) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.pattern.search(path):
                    self._faults.remove(fault)
                    return fault
        return None

    @staticmethod
    def _fault_response(fault: _Fault) -> Response:
        if fault.status == 429:
            return _error(429, "TooManyRequests", "Too many requests.",
                          headers={"Retry-After": str(1 if fault.retry_after is None else fault.retry_after)})
        headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else None
        code = "serviceNotAvailable" if fault.status >= 500 else FAULT_CODES.get(fault.status, "BadRequest")
        return _error(fault.status, code, "Scripted failure.", headers=headers)

    async def _stall_if_scripted(self, path: str) -> None:
        seconds = 0.0
        with self._lock:
            for stall in self._stalls:
                if stall[0].search(path):
                    self._stalls.remove(stall)
                    seconds = stall[1]
                    break
        deadline = time.monotonic() + seconds
        while not self._stopping.is_set() and (remaining := deadline - time.monotonic()) > 0:
            await asyncio.sleep(min(remaining, _STOP_POLL_SECONDS))

    # ----------------------------------------------------------------- Graph methods

    async def _members(self, request: Request) -> Response:
        _, refusal = await self._recorded(request)
        if refusal is not None:
            return refusal
        fault = self._fault_for(request.url.path)
        if fault is not None:
            return self._fault_response(fault)
        group_id = request.path_params["group_id"]
        with self._lock:
            members = self._state.groups.get(group_id)
            size = self.page_size
        if members is None:
            return _error(404, "Request_ResourceNotFound",
                          f"Resource '{group_id}' does not exist or one of its queried reference-property "
                          "objects are not present.")
        start = int(request.query_params.get("$skiptoken") or 0)
        select = [f for f in request.query_params.get("$select", "").split(",") if f]
        page: Body = {"@odata.context": f"{self.url}/$metadata#directoryObjects",
                      "value": [_selected(m, select) for m in members[start:start + size]]}
        if start + size < len(members):
            query = (f"$select={','.join(select)}&" if select else "") + f"$skiptoken={start + size}"
            page["@odata.nextLink"] = f"{self.url}/groups/{group_id}/transitiveMembers?{query}"
        return JSONResponse(page)

    async def _install(self, request: Request) -> Response:
        body, refusal = await self._recorded(request)
        if refusal is not None:
            return refusal
        user_id = request.path_params["user_id"]
        fault = self._fault_for(request.url.path)
        if fault is not None and not fault.act:
            return self._fault_response(fault)
        bind = str((body or {}).get("teamsApp@odata.bind") or "")
        match = re.search(r"/appCatalogs/teamsApps/([^/?#]+)$", bind)
        if match is None:
            return _error(400, "BadRequest", "Invalid teamsApp@odata.bind.")
        with self._lock:
            already = (user_id, match[1]) in self._state.installed
            self._state.installed.add((user_id, match[1]))
        if fault is not None:
            return self._fault_response(fault)
        if already:
            return _error(409, "Conflict", "App is already installed.")
        return JSONResponse({"@odata.type": "#microsoft.graph.userScopeTeamsAppInstallation",
                             "id": f"{user_id}##{match[1]}"}, status_code=201)

    async def _notify(self, request: Request) -> Response:
        body, refusal = await self._recorded(request)
        if refusal is not None:
            return refusal
        fault = self._fault_for(request.url.path)
        if fault is not None and not fault.act:
            return self._fault_response(fault)
        if not isinstance(body, dict) or not body.get("activityType") or not isinstance(body.get("topic"), dict):
            return _error(400, "BadRequest", "activityType and topic are required.")
        with self._lock:
            self._state.notifications.append((request.path_params["user_id"], body))
        if fault is not None:
            return self._fault_response(fault)
        return Response(status_code=204)

    async def _unknown(self, request: Request) -> Response:
        _, refusal = await self._recorded(request)
        if refusal is not None:
            return refusal
        return _error(400, "BadRequest", "Resource not found for the segment.")


def _selected(member: Body, select: list[str]) -> Body:
    if not select:
        return dict(member)
    return {"@odata.type": member["@odata.type"], **{k: member[k] for k in select if k in member}}
