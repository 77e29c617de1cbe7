"""Teams fixtures: the real app (FastAPI + the Teams SDK) over ASGI with token validation on,
activities signed with a local RSA key and validated against FakeTeams' JWKS and test issuer,
the bot's replies and proactive cards captured on FakeTeams' Bot Connector, Graph on FakeGraph.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from bot import people
from bot.app import build_app
from bot.cases import Person, Services
from bot.config import Settings
from bot.crypto import Keyring, generate_key
from bot.sender import DrainReport, SenderConfig, drain
from handlers.teams import app as teams
from storage.db import create_database
from tests.conftest import england
from tests.fakes import teams_connector as tc
from tests.fakes.graph_api import FakeGraph
from tests.fakes.teams_connector import FakeTeams

CATALOG_APP_ID = "11111111-2222-3333-4444-555555555555"


@dataclass(frozen=True)
class User:
    """A person as Teams knows them."""

    key: str
    bf_id: str
    aad: str
    name: str
    email: str
    role: str

    @property
    def conversation(self) -> str:
        return f"a:personal-{self.key}"


USERS = {u.key: u for u in (
    User("teacher", "29:1teacher", "aaaaaaaa-0000-4000-8000-000000000001", "Tina Teacher", "tina@oak.sch.uk", "staff"),
    User("dsl", "29:1dsl", "aaaaaaaa-0000-4000-8000-000000000002", "Dee DSL", "dee@oak.sch.uk", "dsl"),
    User("deputy", "29:1deputy", "aaaaaaaa-0000-4000-8000-000000000003", "Pat Deputy", "pat@oak.sch.uk", "deputy"),
    User("assignee", "29:1assignee", "aaaaaaaa-0000-4000-8000-000000000004", "Sam Staff", "sam@oak.sch.uk", "staff"),
    User("bystander", "29:1bystander", "aaaaaaaa-0000-4000-8000-000000000005", "Bea Bystander", "bea@oak.sch.uk",
         "staff"),
)}


@pytest.fixture(scope="session")
def teams_server() -> Iterator[FakeTeams]:
    with FakeTeams() as server:
        yield server


@pytest.fixture(scope="session")
def graph_server() -> Iterator[FakeGraph]:
    with FakeGraph() as server:
        yield server


@pytest.fixture
def fake_teams(teams_server: FakeTeams) -> FakeTeams:
    teams_server.reset()
    for u in USERS.values():
        teams_server.add_member(u.bf_id, u.aad, u.name, u.email, u.email)
    return teams_server


@pytest.fixture
def fake_graph(graph_server: FakeGraph) -> FakeGraph:
    graph_server.reset()
    return graph_server


def teams_settings(fake: FakeTeams, graph: FakeGraph, **extra: Any) -> Settings:
    return Settings(_env_file=None, TEAMS_CLIENT_ID=tc.DEFAULT_CLIENT_ID,  # type: ignore[call-arg]
                    TEAMS_CLIENT_SECRET=tc.DEFAULT_CLIENT_SECRET, TEAMS_TENANT_ID=tc.TENANT_ID,
                    TEAMS_LOGIN_URL=fake.login_url, SERVICE_URL=fake.service_url,
                    TEAMS_OPENID_METADATA_URL=fake.openid_metadata_url, TEAMS_TOKEN_ISSUER=tc.TEST_ISSUER,
                    GRAPH_API_URL=graph.url, TEAMS_CATALOG_APP_ID=CATALOG_APP_ID,
                    DATABASE_URL="sqlite+aiosqlite:///unused.db", **extra)


@pytest.fixture
def teams_db_url(migrated_sqlite_url: str) -> str:
    """SQLite; the story test also runs on PostgreSQL (it overrides this with `db_url`)."""
    return migrated_sqlite_url


@pytest.fixture
async def teams_services(teams_db_url: str) -> AsyncIterator[Services]:
    db = create_database(teams_db_url)  # migrated already
    svc = Services(db=db, keyring=Keyring.parse(generate_key("t")), policy=england(),
                   delivering=frozenset({"teams"}))
    yield svc
    await db.dispose()


@pytest.fixture
async def team(teams_services: Services) -> dict[str, Person]:
    """The school's staff, registered with their Entra object ids (the teacher by email only:
    linked on first contact).
    """
    registered = {}
    for u in USERS.values():
        teams_id = None if u.key == "teacher" else u.aad
        registered[u.key] = await people.add(teams_services, email=u.email, role=u.role, name=u.name, school="oak",
                                             teams_user_id=teams_id)
    return registered


@dataclass
class Driver:
    """Plays Teams' side: signs activities as the Bot Framework would and posts them to the app."""

    http: httpx.AsyncClient
    fake: FakeTeams
    graph: FakeGraph
    svc: Services
    settings: Settings

    def who(self, key: str) -> dict[str, Any]:
        u = USERS[key]
        return {"from_id": u.bf_id, "aad_object_id": u.aad, "name": u.name, "conversation_id": u.conversation,
                "service_url": self.fake.service_url}

    async def post(self, activity: dict[str, Any], *, token: str | None = None) -> httpx.Response:
        token = token if token is not None else self.fake.sign_activity_token(service_url=activity["serviceUrl"])
        return await self.http.post("/api/messages", json=activity, headers={"Authorization": f"Bearer {token}"})

    async def say(self, key: str, text: str) -> httpx.Response:
        return await self.post(tc.message(text, **self.who(key)))

    async def invoke(self, activity: dict[str, Any]) -> dict[str, Any]:
        response = await self.post(activity)
        assert response.status_code == 200, response.text
        return dict(response.json())

    async def drain(self, max_wait: float = 0) -> DrainReport:
        config = SenderConfig(backoff=0.05, settle=0.05, defer=0.05)
        return await drain(self.svc, teams.sender_platform(self.settings, self.svc), config=config, max_wait=max_wait)


@pytest.fixture
async def teams_driver(fake_teams: FakeTeams, fake_graph: FakeGraph, teams_services: Services,
                       team: dict[str, Person]) -> AsyncIterator[Driver]:
    settings = teams_settings(fake_teams, fake_graph)
    app = build_app(settings, teams_services)
    await teams.initialize(app)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://consentbot.test") as http:
        yield Driver(http=http, fake=fake_teams, graph=fake_graph, svc=teams_services, settings=settings)
