"""The ASGI app: health, readiness and metrics; chat platforms mount here when configured."""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bot import keys
from bot.cases import Services
from bot.config import Settings
from bot.logs import RequestIds
from bot.metrics import CONTENT_TYPE, RequestMetrics, exposition
from storage.schema_version import is_current

logger = logging.getLogger(__name__)
READY_TIMEOUT_SECONDS = 2.0


def platform_status(settings: Settings) -> dict[str, str]:
    """Which platforms are on, and how to turn on the others."""
    ways = [w for w, on in (("HTTP at POST /slack/events", settings.slack_signing_secret),
                            ("Socket Mode", settings.slack_app_token),
                            ("several workspaces: install at GET /slack/install", settings.slack_oauth)) if on]
    slack = f"on ({' and '.join(ways)})" if slack_configured(settings) else (
        "off: set SLACK_SIGNING_SECRET and SLACK_BOT_TOKEN (or SLACK_APP_TOKEN for Socket Mode), or for several "
        "workspaces SLACK_CLIENT_ID and SLACK_CLIENT_SECRET (see docs/slack-setup.md)")
    teams = "on (HTTP at POST /api/messages)" if settings.teams_configured else (
        "off: set TEAMS_CLIENT_ID, TEAMS_CLIENT_SECRET and TEAMS_TENANT_ID (see docs/teams-setup.md)")
    return {"slack": slack, "teams": teams}


def slack_configured(settings: Settings) -> bool:
    """Slack is on with a bot token and a way in: the signing secret (HTTP) or an app token (Socket Mode)."""
    return settings.slack_configured


def freeze_startup_heap() -> None:
    """Put what start-up made (modules, the policy, SQLAlchemy's mappers and statement caches)
    out of the garbage collector's reach, once the app is built. Every full collection walked all
    of it, pausing the event loop, and with it every request, for up to 90 ms: the slowest 1% of
    answers waited 118 ms, against 37 ms with the heap frozen (bench/bench_slack.py, issue 12).
    """
    gc.collect()
    gc.freeze()


def build_app(settings: Settings, services: Services) -> FastAPI:
    """The FastAPI app serving /healthz, /readyz and /metrics, and Slack and Teams when configured."""
    app = FastAPI(title="consentbot", lifespan=_lifespan(settings, services), docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.state.services = services
    app.add_middleware(LimitBody, max_bytes=settings.max_body_bytes)
    if slack_configured(settings):
        from handlers.slack import mount  # composition root: the only place bot/ reaches into handlers/

        mount(app, settings, services)
    if settings.teams_configured:
        from handlers.teams import app as teams  # composition root, as above

        teams.mount(app, settings, services)
    _add_health_routes(app, services)
    app.add_middleware(RequestMetrics, routes=[getattr(route, "path", "") for route in app.routes])
    app.add_middleware(RequestIds)  # outermost: every log line of the request carries its id
    return app


class BodyTooLarge(Exception):
    """A request body grew past the limit while it was being read."""


class LimitBody:
    """Refuse with 413 any request whose body is over `max_bytes`, before anything buffers or
    verifies it: at once when its Content-Length says so, else as soon as the chunks read pass the
    limit. The rest of the body is never read, and the connection is closed.

    The limit (CONSENTBOT_MAX_BODY_BYTES, 1 MiB) is generous for Slack: interaction payloads are a
    few KB, and the largest, a view_submission, carries the modal's blocks and state, tens of KB at
    most (a modal holds at most 100 blocks; a text input at most 3,000 characters:
    https://docs.slack.dev/reference/views/modal-views). Unsigned 200 MB POSTs took the process to
    1.4 GB before (issue 8, defect 4).
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve the request, reading its body through a meter that stops at the limit."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await _refuse_too_large(send, f"declared {declared} bytes")
            return
        read = 0
        started = False

        async def counted() -> Message:
            nonlocal read
            message = await receive()
            read += len(message.get("body", b""))
            if read > self.max_bytes:
                raise BodyTooLarge
            return message

        async def watched(message: Message) -> None:
            nonlocal started
            started = True
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except BodyTooLarge:
            if not started:
                await _refuse_too_large(send, f"over {self.max_bytes} bytes read")


def _content_length(scope: Scope) -> int | None:
    """The declared body size; None when absent or unreadable (then the bytes read are counted)."""
    value = dict(scope["headers"]).get(b"content-length", b"")
    if not value.isdigit():
        return None
    digits = value.lstrip(b"0")
    return int(digits or b"0") if len(digits) <= 18 else sys.maxsize  # int() refuses 4,300+ digits


async def _refuse_too_large(send: Send, why: str) -> None:
    logger.warning("request refused: body too large (%s)", why)
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": b"request body too large"})


def _lifespan(settings: Settings, services: Services) -> Any:
    """Start the scheduler, the outbox senders and Socket Mode with the server; stop them with it."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        for name, state in platform_status(settings).items():
            logger.info("platform %s: %s", name, state)
        scheduler = None
        if settings.scheduler_enabled:  # the reminder sweep and digest crons (bot/scheduler.py)
            from bot.scheduler import build_scheduler, stop_scheduler

            scheduler = build_scheduler(services, settings, now=services.clock())
            scheduler.start()
        if settings.teams_configured:
            from handlers.teams import app as teams

            await teams.initialize(app)
        stop_senders = asyncio.Event()
        senders = _start_senders(settings, services, stop_senders)
        socket_mode = await _connect_socket_mode(app, settings)
        yield
        if socket_mode is not None:
            await socket_mode.close_async()
        # The scheduler first, so that nothing it queues is left behind by the senders' last pass.
        if scheduler is not None:
            await stop_scheduler(scheduler)
        stop_senders.set()
        await asyncio.gather(*senders, return_exceptions=True)
        await services.db.dispose()

    return lifespan


def _add_health_routes(app: FastAPI, services: Services) -> None:
    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        return await _readiness(services)

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(await exposition(services), media_type=CONTENT_TYPE)


def _start_senders(settings: Settings, services: Services, stop: asyncio.Event) -> list[asyncio.Task[None]]:
    """The outbox senders (one per configured platform), as background tasks of the server."""
    from bot import sender

    tasks: list[asyncio.Task[None]] = []
    final = settings.shutdown_seconds  # what is left is sent once stopped, for at most this long
    if slack_configured(settings):
        from handlers.slack import sender_platform

        slack = sender_platform(settings, services)
        tasks.append(asyncio.create_task(sender.run(services, slack, stop=stop, drain_on_stop=final), name="outbox-slack"))
    if settings.teams_configured:
        from handlers.teams import app as teams

        tasks.append(asyncio.create_task(sender.run(services, teams.sender_platform(settings, services), stop=stop,
                                                    drain_on_stop=final), name="outbox-teams"))
    return tasks


async def _connect_socket_mode(app: FastAPI, settings: Settings) -> Any:
    """With SLACK_APP_TOKEN, Slack also reaches the app over Socket Mode (supported in production: a
    school without a public HTTPS address needs no inbound connection).
    """
    if not (settings.slack_app_token and slack_configured(settings)):
        return None
    from handlers.slack import connect_socket_mode

    return await connect_socket_mode(app.state.slack, settings)


async def _readiness(services: Services) -> JSONResponse:
    # Bounded here as well as by the database timeouts: a probe that hangs is no answer.
    try:
        problem = await asyncio.wait_for(_not_ready(services), READY_TIMEOUT_SECONDS)
    except TimeoutError:
        logger.warning("readyz: database did not answer within %s s", READY_TIMEOUT_SECONDS)
        return JSONResponse({"status": f"database did not answer within {READY_TIMEOUT_SECONDS:g} s"}, status_code=503)
    except Exception:  # noqa: BLE001 - any database failure means not ready
        logger.warning("readyz: database unreachable")
        return JSONResponse({"status": "database unreachable"}, status_code=503)
    if problem:
        logger.warning("readyz: %s", problem)  # key ids and migration state only
        return JSONResponse({"status": problem}, status_code=503)
    return JSONResponse({"status": "ready"})


async def _not_ready(services: Services) -> str | None:
    """Why the app cannot serve yet: migrations pending, or a key that does not fit the database."""
    if not await is_current(services.db):
        return "migrations pending: run `consentbot db upgrade`"
    return await keys.mismatch(services)
