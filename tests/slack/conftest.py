"""Slack fixtures: the real app (FastAPI + Bolt) over ASGI, signed requests, FakeSlack on loopback,
and a fresh SQLite database per test with the wall clock (the sender waits in real time)."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

from bot import people
from bot.app import build_app
from bot.cases import Person, Services
from bot.config import Settings
from bot.crypto import Keyring, generate_key
from bot.sender import DrainReport, SenderConfig, drain
from handlers.slack import sender_platform
from storage.db import create_database
from storage.migrate import upgrade
from tests.conftest import england
from tests.fakes.slack_api import FakeSlack
from tests.fakes.slack_signing import form_body, sign

SECRET = "test-signing-secret"
TOKEN = "xoxb-test-token"
USERS = {"teacher": "U0TEACHER1", "dsl": "U0DSL00001", "deputy": "U0DEPUTY01", "assignee": "U0STAFF001",
         "bystander": "U0STAFF002"}




def services_on(url: str) -> Services:
    """Services delivering on Slack, on a database already at the newest migration (the fixtures')."""
    return Services(db=create_database(url), keyring=Keyring.parse(generate_key("t")), policy=england(),
                    delivering=frozenset({"slack"}))


async def make_services(url: str) -> Services:
    """Services delivering on Slack, on `url` migrated first (a new database file, say)."""
    svc = services_on(url)
    await upgrade(svc.db)
    return svc


@pytest.fixture
async def sender_services(db_url: str) -> AsyncIterator[Services]:
    svc = services_on(db_url)  # SQLite, and PostgreSQL when CONSENTBOT_TEST_DATABASE_URL is set
    yield svc
    await svc.db.dispose()


@pytest.fixture
async def slack_services(migrated_sqlite_url: str) -> AsyncIterator[Services]:
    svc = services_on(migrated_sqlite_url)
    yield svc
    await svc.db.dispose()


@pytest.fixture
async def staff(slack_services: Services) -> dict[str, Person]:
    add = people.add
    svc, school = slack_services, "oak"
    return {
        "teacher": await add(svc, email="tina@oak.sch.uk", role="staff", name="Tina Teacher", school=school,
                             slack_user_id=USERS["teacher"]),
        "dsl": await add(svc, email="dee@oak.sch.uk", role="dsl", name="Dee DSL", school=school,
                         slack_user_id=USERS["dsl"]),
        "deputy": await add(svc, email="pat@oak.sch.uk", role="deputy", name="Pat Deputy", school=school,
                            slack_user_id=USERS["deputy"]),
        "assignee": await add(svc, email="sam@oak.sch.uk", role="staff", name="Sam Staff", school=school,
                              slack_user_id=USERS["assignee"]),
        "bystander": await add(svc, email="bea@oak.sch.uk", role="staff", name="Bea Bystander", school=school,
                               slack_user_id=USERS["bystander"]),
    }


def slack_settings(fake: FakeSlack) -> Settings:
    return Settings(_env_file=None, SLACK_SIGNING_SECRET=SECRET, SLACK_BOT_TOKEN=TOKEN,  # type: ignore[call-arg]
                    SLACK_API_URL=fake.url, DATABASE_URL="sqlite+aiosqlite:///unused.db")


@dataclass
class Driver:
    """Plays Slack's side: signs and posts what Slack would send, reads what the app answered."""

    http: httpx.AsyncClient
    fake: FakeSlack
    svc: Services
    settings: Settings
    views: int = 0
    sent: list[str] = field(default_factory=list)

    async def post(self, body: str, content_type: str, headers: dict[str, str] | None = None) -> httpx.Response:
        self.sent.append(body)
        signed = {**sign(SECRET, body), "Content-Type": content_type, **(headers or {})}
        return await self.http.post("/slack/events", content=body.encode(), headers=signed)

    async def interact(self, payload: dict[str, Any]) -> httpx.Response:
        return await self.post(form_body(payload), "application/x-www-form-urlencoded")

    async def event(self, event: dict[str, Any], event_id: str = "Ev0001", retry: int | None = None) -> httpx.Response:
        body = json.dumps({"type": "event_callback", "team_id": "T0FAKE0001", "api_app_id": "A0APP00001",
                           "event": event, "event_id": event_id, "event_time": int(time.time())})
        headers = {"X-Slack-Retry-Num": str(retry), "X-Slack-Retry-Reason": "http_timeout"} if retry else None
        return await self.post(body, "application/json", headers)

    async def command(self, who: str, text: str = "") -> httpx.Response:
        body = urlencode({"command": "/concern", "text": text, "user_id": USERS[who], "team_id": "T0FAKE0001",
                          "channel_id": "C0STAFFROOM", "trigger_id": self.trigger(), "response_url": ""})
        return await self.post(body, "application/x-www-form-urlencoded")

    async def shortcut(self, who: str, callback_id: str = "concern_global", **extra: Any) -> httpx.Response:
        kind = "message_action" if "message" in extra else "shortcut"
        return await self.interact({"type": kind, "callback_id": callback_id, "trigger_id": self.trigger(),
                                    "user": {"id": USERS[who]}, "team": {"id": "T0FAKE0001"}, **extra})

    async def click(self, who: str, case_ref: str, *, channel: str | None = None) -> httpx.Response:
        payload: dict[str, Any] = {"type": "block_actions", "trigger_id": self.trigger(), "user": {"id": USERS[who]},
                                   "team": {"id": "T0FAKE0001"}, "actions": [
                                       {"type": "button", "action_id": "open_case", "block_id": f"case:{case_ref}",
                                        "value": case_ref, "action_ts": str(time.time())}]}
        if channel:
            payload["channel"] = {"id": channel}
        return await self.interact(payload)

    async def submit(self, who: str, view: dict[str, Any], answers: dict[str, Any],
                     view_id: str | None = None) -> httpx.Response:
        """Submit `view` filled with `answers`, as Slack would (state built from the view's own blocks)."""
        self.views += 1
        shown = {**view, "id": view_id or view.get("id") or f"V{self.views:08d}", "hash": f"h{self.views}",
                 "state": {"values": fill(view, answers)}}
        return await self.interact({"type": "view_submission", "user": {"id": USERS[who]},
                                    "team": {"id": "T0FAKE0001"}, "view": shown})

    def trigger(self) -> str:
        self.views += 1
        return f"{self.views}.trigger"

    def last_opened_view(self) -> dict[str, Any]:
        return dict(self.fake.calls_to("views.open")[-1].params["view"])

    async def drain(self, max_wait: float = 0) -> DrainReport:
        config = SenderConfig(backoff=0.05, settle=0.05, defer=0.05)
        return await drain(self.svc, sender_platform(self.settings), config=config, max_wait=max_wait)


def fill(view: dict[str, Any], answers: dict[str, Any]) -> dict[str, Any]:
    """view.state.values for `answers`, shaped by each input block's element type."""
    state: dict[str, Any] = {}
    for block in view.get("blocks", []):
        if block.get("type") != "input" or block["block_id"] not in answers:
            continue
        element, value = block["element"], answers[block["block_id"]]
        state[block["block_id"]] = {element["action_id"]: element_state(element, value)}
    unknown = set(answers) - set(state)
    assert not unknown, f"the modal does not ask {sorted(unknown)}"
    return state


def element_state(element: dict[str, Any], value: Any) -> dict[str, Any]:
    kind = element["type"]
    if kind in ("checkboxes", "multi_static_select"):
        allowed = {o["value"]: o for o in element["options"]}
        return {"type": kind, "selected_options": [allowed[v] for v in value]}
    if kind in ("radio_buttons", "static_select"):
        chosen = next(o for o in element["options"] if o["value"] == value)
        return {"type": kind, "selected_option": chosen}
    if kind == "external_select":  # the option our search answered with (any text: the value is what is read)
        return {"type": kind, "selected_option": {"text": {"type": "plain_text", "text": value}, "value": value}}
    if kind == "datetimepicker":
        return {"type": kind, "selected_date_time": value}
    if kind == "datepicker":
        return {"type": kind, "selected_date": value}
    return {"type": kind, "value": value}


@pytest.fixture
async def slack(fake_slack: FakeSlack, slack_services: Services, staff: dict[str, Person]) -> AsyncIterator[Driver]:
    settings = slack_settings(fake_slack)
    app = build_app(settings, slack_services)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://consentbot.test") as http:
        yield Driver(http=http, fake=fake_slack, svc=slack_services, settings=settings)


def decision_dm(fake: FakeSlack, who: str, step: str = "dsl_threshold") -> dict[str, Any]:
    """The one "decision needed" DM (or what it became) for `step` in `who`'s DM with the app."""
    [dm] = [m for m in fake.messages_to(USERS[who]) if f":decision:{step}:" in m["metadata"]["event_payload"]["key"]]
    return dm

