"""/metrics, read back with prometheus_client's own parser: requests by route and status, the
answer latency histogram, outbox depth and age per platform, reminders due and overdue, sends by
platform and result, 429s, and schools that cannot be alerted."""

from __future__ import annotations

from datetime import timedelta

import httpx
from prometheus_client.parser import text_string_to_metric_families

from bot import cases, people
from bot.app import build_app
from bot.cases import Services
from bot.config import Settings
from bot.sender import drain
from handlers.slack import sender_platform
from storage import repo
from storage.models import Reminder
from tests.fakes.slack_api import FakeSlack
from tests.slack.conftest import slack_settings
from tests.slack.test_sender import FAST, queue, recipients

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(app: object) -> Samples:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app") as client:  # type: ignore[arg-type]
        page = await client.get("/metrics")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/plain; version=")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(page.text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_metrics_parse_and_show_every_listed_series(fake_slack: FakeSlack, sender_services: Services) -> None:
    svc = sender_services
    app = build_app(Settings(DATABASE_URL="sqlite+aiosqlite:///unused.db"), svc)
    before = await scrape(app)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app") as client:
        assert (await client.get("/healthz")).status_code == 200
        assert (await client.get("/case/C-SECRET1")).status_code == 404  # a path the app does not serve
    to = await recipients(svc, 2)
    await people.add(svc, email="olu@elm.sch.uk", role="dsl", name="Olu", school="elm")  # no chat id: unalertable
    await queue(svc, to, 5)
    fake_slack.rate_limit("chat.postMessage", burst=2, retry_after=1)
    report = await drain(svc, sender_platform(slack_settings(fake_slack)), config=FAST, max_wait=5)
    await queue_more(svc, to)
    case = await cases.raise_concern(svc, actor=to[0], values={"immediate_danger": "no"}, platform="test")
    now = svc.clock()
    async with svc.db.transaction() as s:
        case_id = (await repo.case_by_ref(s, case.ref)).id  # type: ignore[union-attr]
        await repo.add_reminders(s, [Reminder(case_id=case_id, recipient_id=to[0].id, kind="outcome", due_at=due,
                                              unique_key=f"r{i}") for i, due in
                                     enumerate([now - timedelta(minutes=1), now - timedelta(hours=2),
                                                now + timedelta(hours=1)])])

    after = await scrape(app)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("consentbot_http_requests_total", route="/healthz", status="200") == 1
    assert grew("consentbot_http_requests_total", route="other", status="404") == 1  # never the raw path
    assert not any("C-SECRET1" in str(key) for key in after)
    assert grew("consentbot_http_request_duration_seconds_count", route="/healthz") == 1
    assert value(after, "consentbot_http_request_duration_seconds_bucket", route="/healthz", le="+Inf") >= 1
    assert grew("consentbot_sends_total", platform="slack", result="sent") == report.counts["sent"] == 5
    assert grew("consentbot_rate_limited_total", platform="slack") == report.counts["rate_limited"] > 0
    assert value(after, "consentbot_outbox_depth", platform="slack", status="pending") == 3
    assert value(after, "consentbot_outbox_oldest_undelivered_seconds", platform="slack") >= 0
    assert ("consentbot_outbox_oldest_undelivered_seconds", (("platform", "teams"),)) in after
    assert value(after, "consentbot_reminders_due") == 2 and value(after, "consentbot_reminders_overdue") == 1
    assert value(after, "consentbot_schools_unalertable") == 1


async def queue_more(svc: Services, to: list) -> None:
    """Three messages left waiting (queued after the drain)."""
    from storage.models import OutboxMessage

    now = svc.clock()
    async with svc.db.transaction() as s:
        await repo.enqueue(s, [OutboxMessage(school_id=to[0].school_id, recipient_id=to[0].id, platform="slack",
                                             kind="reminder", payload="{}", dedupe_key=f"left:{i}", created_at=now,
                                             next_attempt_at=now + timedelta(hours=1)) for i in range(3)])
