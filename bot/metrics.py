"""`/metrics` in Prometheus' text format, through prometheus_client (its registry, types,
escaping and exposition; its parser reads it back in the tests).

Counters and histograms are the process's own (one registry per process: they count what this
process did since it started). Gauges of the database (outbox depth and age, reminders due,
schools that cannot be alerted) are read at each scrape, so every replica reports the same truth.
Labels are routes, platforms, statuses and results only: never a case reference or a person.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import timedelta

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CONTENT_TYPE = CONTENT_TYPE_LATEST
REGISTRY = CollectorRegistry()
OTHER_ROUTE = "other"  # any path the app does not serve: never the raw path (it is the client's choice)
OVERDUE_AFTER = timedelta(minutes=15)  # a due reminder still pending this long means the sweep is behind

REQUESTS = Counter("consentbot_http_requests", "HTTP requests answered, by route and status code.",
                   ["route", "status"], registry=REGISTRY)
LATENCY = Histogram("consentbot_http_request_duration_seconds",
                    "Time to answer an HTTP request, by route. Slack answers arrive on /slack/events, Teams "
                    "answers on /api/messages.", ["route"], registry=REGISTRY,
                    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0))
SENDS = Counter("consentbot_sends", "Outbox send attempts by platform and result (sent, updated, deferred, "
                "rate_limited, retried, failed, cancelled).", ["platform", "result"], registry=REGISTRY)
RATE_LIMITED = Counter("consentbot_rate_limited", "Answers 429 (rate limited) from a chat platform's API.",
                       ["platform"], registry=REGISTRY)


def sent(platform: str, result: str) -> None:
    """Count one send attempt's result (and a 429 among them)."""
    SENDS.labels(platform, result).inc()
    if result == "rate_limited":
        RATE_LIMITED.labels(platform).inc()


class RequestMetrics:
    """ASGI middleware counting and timing every HTTP request by the route it matched."""

    def __init__(self, app: ASGIApp, routes: Iterable[str] = ()) -> None:
        self.app, self.routes = app, frozenset(routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on; count it and time it, whatever happens."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = scope["path"] if scope["path"] in self.routes else OTHER_ROUTE
        status, started = 500, time.perf_counter()

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            REQUESTS.labels(route, str(status)).inc()
            LATENCY.labels(route).observe(time.perf_counter() - started)


async def exposition(services: object) -> bytes:
    """Every series: the process's counters, then the database's gauges read now."""
    from bot import doctor  # the same checks as `consentbot doctor`
    from bot.cases import Services
    from storage import repo

    assert isinstance(services, Services)  # noqa: S101 - typed loosely to keep this module's import light
    now, snapshot = services.clock(), CollectorRegistry()
    depth = Gauge("consentbot_outbox_depth", "Messages not yet settled, by platform and status (pending, "
                  "sending, failed).", ["platform", "status"], registry=snapshot)
    by_status = Gauge("consentbot_outbox_messages", "Outbox messages by status.", ["status"], registry=snapshot)
    oldest = Gauge("consentbot_outbox_oldest_undelivered_seconds", "Age of the oldest message not yet sent "
                   "(waiting or failed), per platform; 0 when none.", ["platform"], registry=snapshot)
    due = Gauge("consentbot_reminders_due", "Reminders due now and not yet sent.", registry=snapshot)
    overdue = Gauge("consentbot_reminders_overdue", f"Reminders due more than {OVERDUE_AFTER.seconds // 60} "
                    "minutes ago and not yet sent (the sweep is behind).", registry=snapshot)
    unalertable = Gauge("consentbot_schools_unalertable", "Schools where no active DSL or deputy can be reached "
                        "on a platform this deployment sends on (see `consentbot doctor`).", registry=snapshot)
    async with services.db.read() as s:
        for platform, status, n in await repo.outbox_depths(s):
            depth.labels(platform, status).set(n)
        for status, n in await repo.outbox_counts(s):
            by_status.labels(status).set(n)
        waiting, late = await repo.reminders_waiting(s, now=now, late=now - OVERDUE_AFTER)
    due.set(waiting)
    overdue.set(late)
    for platform, seconds in (await doctor.oldest_unsent_ages(services, now=now)).items():
        oldest.labels(platform).set(round(seconds))
    unalertable.set(await doctor.count_unalertable(services))
    return generate_latest(REGISTRY) + generate_latest(snapshot)
