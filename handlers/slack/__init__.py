"""Slack: a Bolt AsyncApp served from the FastAPI app at POST /slack/events.

`process_before_response=True`: every listener finishes (the bot has committed) before the
HTTP answer, which suits a web app that may not keep working after it has answered
(https://docs.slack.dev/tools/bolt-python/concepts/lazy-listeners). Our listeners answer
well inside Slack's 3 seconds (bench/bench_slack.py).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from fastapi import FastAPI, Request, Response
from slack_bolt.adapter.fastapi.async_handler import AsyncSlackRequestHandler
from slack_bolt.adapter.starlette.async_handler import to_starlette_response
from slack_bolt.async_app import AsyncApp, AsyncBoltRequest
from slack_bolt.response import BoltResponse
from slack_sdk.errors import SlackApiError
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient
from starlette.requests import ClientDisconnect

from bot import cases
from bot.cases import Services
from bot.config import Settings
from handlers.slack import (
    assignee_search,
    concern,
    export,
    first_contact,
    home,
    oauth,
    open_case,
    reminder_actions,
    steps,
)
from handlers.slack.platform import SlackPlatform, WorkspacesPlatform

logger = logging.getLogger(__name__)
# Bolt tries each listener's matcher in the order registered until one matches, building its
# arguments each time: step answers, the most frequent request, are matched first.
LISTENERS = (first_contact, steps, concern, assignee_search, open_case, export, home, reminder_actions)
SENDER_TIMEOUT = 10  # seconds; a post that takes longer is treated as possibly delivered


def quiet_logger(name: str, level: int = logging.WARNING) -> logging.Logger:
    """Bolt and slack_sdk log whole request and response bodies (modals hold case details) at
    DEBUG: their loggers stop at WARNING (or `level`) whatever the root level is.
    """
    quiet = logging.getLogger(name)
    quiet.setLevel(level)
    return quiet


def web_client(settings: Settings, *, timeout: int = 30, token: str | None = None) -> AsyncWebClient:
    """A Web API client for SLACK_API_URL (the fake Slack in tests): SLACK_BOT_TOKEN's unless `token`."""
    return AsyncWebClient(token=token or settings.slack_bot_token, base_url=settings.slack_api_url, timeout=timeout,
                          logger=quiet_logger("handlers.slack.sdk"))


def build_bolt_app(settings: Settings, services: Services) -> AsyncApp:
    """The Bolt app with every listener registered: one workspace with SLACK_BOT_TOKEN, or several
    through OAuth (settings.slack_oauth; handlers/slack/oauth.py), each kept to its own school.
    """
    bolt_logger = quiet_logger("handlers.slack.bolt")
    flow = None
    if settings.slack_oauth:
        flow = oauth.oauth_flow(settings, services, web_client(settings), quiet_logger("handlers.slack.oauth_flow",
                                                                                      logging.ERROR))
    # Bolt's own signature check is off: POST /slack/events checks every request's signature on the
    # bytes as sent before Bolt sees it (unsigned_reason), then hands Bolt the JSON it reads, which
    # is not what was signed (bolt_body). Socket Mode's requests come over a socket Slack opened
    # with the app token, and Bolt never checks those.
    app = AsyncApp(client=web_client(settings), signing_secret=settings.slack_signing_secret, oauth_flow=flow,
                   process_before_response=True, logger=bolt_logger, request_verification_enabled=False)
    app.use(skip_retried_events)
    app.use(skip_seen_events(services))
    app.error(on_error)
    for module in LISTENERS:
        module.register(app, services)
    if flow is not None:
        # Last of the middleware, so it judges the person any earlier middleware (first contact) found.
        app.use(oauth.workspace_guard(services))
        app.enable_token_revocation_listeners()
    return app


def sender_platform(settings: Settings, services: Services | None = None) -> SlackPlatform | WorkspacesPlatform:
    """The `Chat` the outbox sender delivers through (its own clients, without retry handlers). With
    several workspaces it picks each recipient's workspace token, which needs `services`.
    """
    if not settings.slack_oauth:
        return SlackPlatform(web_client(settings, timeout=SENDER_TIMEOUT))
    if services is None:
        raise ValueError("several Slack workspaces: the sender needs the services to find each school's token")
    return WorkspacesPlatform(services, lambda token: web_client(settings, timeout=SENDER_TIMEOUT, token=token))


def mount(fastapi_app: FastAPI, settings: Settings, services: Services) -> AsyncApp:
    """Serve Slack at POST /slack/events (only with a signing secret: without one nothing could be
    verified), and with several workspaces Bolt's GET /slack/install and GET /slack/oauth_redirect.
    """
    bolt = build_bolt_app(settings, services)
    fastapi_app.state.slack = bolt
    if settings.slack_signing_secret:
        _route(fastapi_app, bolt, SignatureVerifier(settings.slack_signing_secret))
    if bolt.oauth_flow is not None:
        _route_oauth(fastapi_app, bolt)
    return bolt


async def connect_socket_mode(bolt: AsyncApp, settings: Settings) -> Any:
    """Open a Socket Mode connection (SLACK_APP_TOKEN): supported in production, for a school
    without a public HTTPS address.
    """
    from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler

    handler = AsyncSocketModeHandler(bolt, settings.slack_app_token)
    await handler.connect_async()
    logger.info("slack socket mode connected")
    return handler


def _route(fastapi_app: FastAPI, bolt: AsyncApp, verifier: SignatureVerifier) -> None:
    @fastapi_app.post("/slack/events")
    async def slack_events(request: Request) -> Response:
        try:
            body = await request.body()  # bounded by bot.app.LimitBody
        except ClientDisconnect:
            logger.info("slack request abandoned: the client disconnected mid-body")
            return Response(status_code=400)
        if refused := unsigned_reason(verifier, body, request.headers):
            logger.warning("slack request refused reason=%s", refused)
            return Response(status_code=401, content="invalid request")
        readable = bolt_body(body.decode("utf-8"))  # unsigned_reason has checked that it is UTF-8
        if isinstance(readable, Unreadable):
            return _unreadable(readable.reason)
        try:
            bolt_request = AsyncBoltRequest(body=readable, query=request.query_params,  # type: ignore[arg-type]
                                            headers=request.headers)  # type: ignore[arg-type]
            return to_starlette_response(await bolt.async_dispatch(bolt_request))
        except (ValueError, TypeError, AttributeError, KeyError) as exc:  # Bolt could not even read the body's shape
            return _unreadable(type(exc).__name__)


def _route_oauth(fastapi_app: FastAPI, bolt: AsyncApp) -> None:
    """Bolt's install page and OAuth redirect: a browser's, not Slack's, so unsigned; the redirect
    is checked by Bolt against its state (cookie and SignedStateStore) before any code is exchanged.
    """
    handler = AsyncSlackRequestHandler(bolt)

    @fastapi_app.get("/slack/install")
    async def slack_install(request: Request) -> Response:
        return await handler.handle(request)

    @fastapi_app.get("/slack/oauth_redirect")
    async def slack_oauth_redirect(request: Request) -> Response:
        return await handler.handle(request)


def _unreadable(reason: str) -> Response:
    """400 for a signed body that cannot be read; one line with the reason, never the body."""
    logger.warning("slack request unreadable reason=%s", reason)
    return Response(status_code=400, content="bad request")


# Slack sends the timestamp as whole seconds since 1970 (ten digits until 2286).
TIMESTAMP = re.compile(r"[0-9]{1,12}")


def unsigned_reason(verifier: SignatureVerifier, body: bytes, headers: Mapping[str, str]) -> str | None:
    """Why the request is not Slack's: checked with Slack's v0 signature before anything parses
    the body (https://docs.slack.dev/authentication/verifying-requests-from-slack/); None if it is.
    What the verifier would choke on counts as unsigned: a timestamp that is not a short run of
    digits (int() reads 400 nines, but subtracting them from a float overflows), a signature that
    is not ASCII (hmac.compare_digest refuses it), a body that is not UTF-8 (Slack's always is).
    """
    timestamp = headers.get("x-slack-request-timestamp") or ""
    signature = headers.get("x-slack-signature") or ""
    if not TIMESTAMP.fullmatch(timestamp):
        return "timestamp missing or malformed"
    if not (signature and signature.isascii()):
        return "signature missing or malformed"
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return "body not utf-8"
    return None if verifier.is_valid(body=text, timestamp=timestamp, signature=signature) else "signature wrong or stale"


# Slack's payloads nest about 10 levels (the recorded ones 8 at most; a modal's rich text adds a
# few); json.loads recurses once per level and fails with RecursionError near 1,000.
MAX_PAYLOAD_DEPTH = 64
# A JSON string, or an unterminated one up to the end: runs of plain characters taken whole, and
# possessive, so a body full of escaped quotes is still scanned in linear time.
_STRING = re.compile(r'"[^"\\]*+(?:\\.[^"\\]*+)*+(?:"|\\?\Z)', re.S)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")


def payload_depth(text: str) -> int:
    """How deep the JSON in `text` nests: its brackets counted outside strings. For valid JSON this
    is exactly the depth json.loads reaches, so a shallow answer is a promise; without recursion.
    """
    depth = deepest = 0
    for bracket in _NOT_BRACKET.sub("", _STRING.sub("", text)):  # strings, then all but brackets, dropped
        if bracket in "[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def is_shallow(text: str) -> bool:
    """Whether `text` nests no deeper than any payload Slack sends (MAX_PAYLOAD_DEPTH)."""
    return payload_depth(text) <= MAX_PAYLOAD_DEPTH


@dataclass(frozen=True)
class Unreadable:
    """Why a signed body is not handed to Bolt (logged; the body never is)."""

    reason: str


def bolt_body(text: str) -> str | Unreadable:
    """What Bolt is given to read, read once: a JSON body as it is; a form's `payload` field (an
    interaction), which is JSON; any other form as it is (a slash command). Whatever Bolt will
    json.loads is scanned for depth first. Bolt reads a body that starts with "{" as JSON
    (slack_bolt.request.internals.parse_body), so a payload is handed over as its JSON alone and
    Bolt does not decode the form a second time; the signature was checked on the bytes as sent.
    """
    if not text.startswith("{") and "payload" in text:
        payload = dict(parse_qsl(text, keep_blank_values=True)).get("payload")
        if payload is not None:
            if not payload.startswith("{"):  # Slack's payload is always an object
                return Unreadable("payload not an object")
            text = payload
    return text if is_shallow(text) else Unreadable("nesting")


async def skip_retried_events(req: Any, next: Any) -> BoltResponse | None:  # noqa: A002 - Bolt injects by name
    """Slack retries an event it thinks we missed (X-Slack-Retry-Num). Every listener runs
    before we answer, so the first delivery is done or under way: answer 200 and do nothing
    (https://docs.slack.dev/apis/events-api/#retries).
    """
    retry = req.headers.get("x-slack-retry-num")
    if retry and req.body.get("type") == "event_callback":
        logger.info("slack event retry skipped event_id=%s retry=%s", req.body.get("event_id"), retry[0])
        return BoltResponse(status=200, body="")
    await next()
    return None


def skip_seen_events(svc: Services) -> Any:
    """An event whose event_id was handled before (a retry that slipped past the header check,
    or a replay) is answered 200 and not handled again.
    """

    async def middleware(req: Any, next: Any) -> BoltResponse | None:  # noqa: A002 - Bolt injects by name
        event_id = req.body.get("event_id") if req.body.get("type") == "event_callback" else None
        if event_id and not await cases.claim_delivery(svc, key=f"slack:event:{event_id}"):
            logger.info("slack event seen before event_id=%s", event_id)
            return BoltResponse(status=200, body="")
        await next()
        return None

    return middleware


async def on_error(error: Exception) -> BoltResponse:
    """A payload missing what its type promises is the sender's fault (400); a Slack API error
    after we acknowledged is logged by its code. Logs carry types and codes, never bodies.
    """
    if isinstance(error, SlackApiError):
        code = error.response.get("error") if isinstance(error.response.data, dict) else error.response.status_code
        logger.warning("slack api call failed in a listener error=%s", code)
        return BoltResponse(status=200, body="")
    if isinstance(error, KeyError | TypeError | ValueError | AttributeError | json.JSONDecodeError):
        logger.warning("slack payload rejected error=%s", type(error).__name__)
        return BoltResponse(status=400, body="bad request")
    logger.error("slack listener failed error=%s", type(error).__name__)
    return BoltResponse(status=500, body="")
