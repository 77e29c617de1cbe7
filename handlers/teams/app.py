"""The Teams SDK's App served from the FastAPI app at POST /api/messages (FastAPIAdapter).

Token validation stays on: the SDK checks every activity's JWT against the Bot Framework's keys
(TEAMS_OPENID_METADATA_URL and TEAMS_TOKEN_ISSUER point it at a test issuer) and the token's
`serviceurl` against the activity's. Before the SDK sees a request, `GuardedAdapter` answers 401
for a missing bearer token and 400 for a body that is not one JSON activity, so nothing
malformed reaches code that would log it. Activities are de-duplicated by id (Teams redelivers
after ~15 s without an answer); handlers answer within the request, database work only.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

# The SDK warns at import that an HTML widget we do not use is in preview: not for our logs.
warnings.filterwarnings("ignore", message="HtmlWidgetSecurityPolicy is in preview")

from microsoft_teams.api.auth.cloud_environment import PUBLIC, with_overrides
from microsoft_teams.apps import App
from microsoft_teams.apps.http import FastAPIAdapter
from microsoft_teams.apps.http.adapter import HttpMethod, HttpRequest, HttpRouteHandler
from microsoft_teams.common import ClientOptions
from starlette.requests import ClientDisconnect

from bot.cases import Services
from bot.config import Settings
from handlers.teams import turns
from handlers.teams.http import EntraTokens, outbound_client, share_ca_bundle
from handlers.teams.platform import TeamsPlatform

logger = logging.getLogger(__name__)
BOT_SCOPE = "https://api.botframework.com/.default"
GRAPH_SCOPE = "https://graph.microsoft.com/.default"
SENDER_TIMEOUT = 10.0  # seconds; a post that takes longer is treated as possibly delivered
REPLY_TIMEOUT = 5.0  # a reply within a request: Teams redelivers an activity unanswered after ~15 s
UNAUTHENTICATED = "DANGEROUSLY_ALLOW_UNAUTHENTICATED_REQUESTS"


class TeamsConfigError(RuntimeError):
    """The Teams settings cannot be served safely."""


def refuse_unauthenticated() -> None:
    """The SDK would accept unsigned activities with this set: anyone could act as a DSL."""
    if os.environ.get(UNAUTHENTICATED, "").strip().lower() not in ("", "0", "false", "no", "off"):
        raise TeamsConfigError(f"{UNAUTHENTICATED} is set: consentbot never accepts unauthenticated Teams "
                               "requests. Unset it (see docs/teams-setup.md).")


def tokens(settings: Settings, *, timeout: float = SENDER_TIMEOUT) -> EntraTokens:
    """App-only tokens for the Bot Connector and Graph, from the Entra app registration."""
    return EntraTokens(outbound_client(timeout=timeout), login_url=settings.teams_login_url,
                       tenant_id=str(settings.teams_tenant_id), client_id=str(settings.teams_client_id),
                       client_secret=str(settings.teams_client_secret))


def graph_directory(settings: Settings, entra: EntraTokens) -> Any:
    """Graph for installs, phone pushes and the directory."""
    from handlers.teams.graph import Directory, build_graph_client

    async def graph_token() -> str:
        return await entra.token(GRAPH_SCOPE)

    return Directory(build_graph_client(settings.graph_api_url, graph_token, timeout=SENDER_TIMEOUT))


def sender_platform(settings: Settings, svc: Services) -> TeamsPlatform:
    """The `Chat` the outbox sender delivers through."""
    entra = tokens(settings)

    async def bot_token() -> str:
        return await entra.token(BOT_SCOPE)

    return TeamsPlatform(svc, http=outbound_client(timeout=SENDER_TIMEOUT), bot_token=bot_token,
                         bot_id=str(settings.teams_client_id), tenant_id=str(settings.teams_tenant_id),
                         service_url=settings.teams_service_url, graph=graph_directory(settings, entra),
                         catalog_app_id=settings.teams_catalog_app_id)


def build_teams_app(fastapi_app: FastAPI, settings: Settings, svc: Services) -> App:
    """The SDK's App, validating tokens, with every handler registered (routes come with `initialize`)."""
    refuse_unauthenticated()
    redact_sdk_logs()
    share_ca_bundle()
    entra = tokens(settings, timeout=5.0)

    async def token(scope: str | list[str], tenant_id: str | None = None) -> str:
        return await entra.token(scope if isinstance(scope, str) else scope[0])

    cloud = with_overrides(PUBLIC, openid_metadata_url=settings.teams_openid_metadata_url,
                           token_issuer=settings.teams_token_issuer, login_endpoint=settings.teams_login_url)
    app = App(client_id=settings.teams_client_id, tenant_id=settings.teams_tenant_id, token=token, cloud=cloud,
              http_server_adapter=GuardedAdapter(app=fastapi_app), service_url=settings.teams_service_url,
              dangerously_allow_unauthenticated_requests=False, state=False,
              client=ClientOptions(timeout=REPLY_TIMEOUT))
    turns.register(app, svc, tenant_id=str(settings.teams_tenant_id))
    return app


def mount(fastapi_app: FastAPI, settings: Settings, svc: Services) -> App:
    """Build the Teams app; `await initialize(fastapi_app)` (the server's start-up) opens /api/messages."""
    app = build_teams_app(fastapi_app, settings, svc)
    fastapi_app.state.teams = app
    return app


async def initialize(fastapi_app: FastAPI) -> None:
    """Register POST /api/messages with token validation on (the SDK does this asynchronously)."""
    app = getattr(fastapi_app.state, "teams", None)
    if app is not None and not getattr(fastapi_app.state, "teams_ready", False):
        await app.initialize()
        fastapi_app.state.teams_ready = True


class GuardedAdapter(FastAPIAdapter):
    """The SDK's FastAPI adapter, with the checks it leaves out made before it reads anything:
    a bearer token must be there (else 401), and the body must be one JSON object with a type
    (else 400; the SDK would answer 500 and log the parser's message, which can quote the body).
    """

    def register_route(self, method: HttpMethod, path: str, handler: HttpRouteHandler) -> None:
        """Serve `handler` at `path` behind the guard."""

        async def endpoint(request: Request) -> Response:
            if not (request.headers.get("authorization") or "").startswith("Bearer "):
                logger.warning("teams request refused reason=no bearer token")
                return JSONResponse({"error": "Unauthorized"}, status_code=401)
            activity = await _activity(request)
            if activity is None:
                return JSONResponse({"error": "Bad request"}, status_code=400)
            result = await handler(HttpRequest(body=turns.normalised(activity), headers=dict(request.headers)))
            body = result.get("body")
            if body is None:
                return Response(status_code=result["status"])
            return JSONResponse(content=body, status_code=result["status"])

        if method != "POST":
            raise ValueError(f"Unsupported HTTP method: {method}")
        self.app.post(path)(endpoint)


MAX_DEPTH = 64  # Teams activities nest about 10 levels; json.loads recurses once per level


async def _activity(request: Request) -> dict[str, Any] | None:
    """The request's activity, or None (logged with a reason, never the body)."""
    try:
        raw = await request.body()
        activity = json.loads(raw)
    except ClientDisconnect:
        logger.info("teams request abandoned: the client disconnected mid-body")
        return None
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        logger.warning("teams request unreadable reason=%s", type(exc).__name__)
        return None
    if not isinstance(activity, dict) or not isinstance(activity.get("type"), str) or _depth(activity) > MAX_DEPTH:
        logger.warning("teams request unreadable reason=not an activity")
        return None
    return activity


def _depth(value: Any, level: int = 0) -> int:
    if level > MAX_DEPTH or not isinstance(value, dict | list):
        return level
    items = value.values() if isinstance(value, dict) else value
    return max((_depth(v, level + 1) for v in items), default=level)


class _Redact(logging.Filter):
    """The SDK logs whole activities at DEBUG and exception texts (pydantic quotes the input) at
    ERROR: keep each record's logger, level and exception type, never its words.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        kept = record.name.endswith("token_validator") or record.name.endswith("http_server")
        if record.levelno < logging.WARNING:
            return False
        if not kept or record.exc_info:
            kind = record.exc_info[1].__class__.__name__ if record.exc_info and record.exc_info[1] else "-"
            record.msg, record.args, record.exc_info, record.exc_text = f"teams sdk {record.levelname.lower()} " \
                f"(text withheld) error={kind}", (), None, None
        return True


def redact_sdk_logs() -> None:
    """Route the SDK's loggers through the redacting filter (once)."""
    sdk = logging.getLogger("microsoft_teams")
    if not any(isinstance(f, _Redact) for h in sdk.handlers for f in h.filters):
        handler = logging.StreamHandler()
        handler.addFilter(_Redact())
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
        sdk.addHandler(handler)
        sdk.propagate = False
    sdk.setLevel(logging.WARNING)
    # The SDK's HTTP client copies its own logger's level onto httpx's: keep httpx at WARNING too.
    logging.getLogger("microsoft_teams.common.http.client").setLevel(logging.WARNING)
