"""Shared fixtures: a fresh migrated database per test (SQLite, and PostgreSQL when
CONSENTBOT_TEST_DATABASE_URL is set), services built on it, and a guard that fails any
test reaching beyond loopback."""

from __future__ import annotations

import asyncio
import collections
import functools
import ipaddress
import os
import shutil
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.cases import Person, Services
from bot.crypto import Keyring, generate_key
from bot.policy.loader import load_policy
from bot.policy.model import Policy
from storage.db import create_database
from storage.migrate import upgrade
from tests.fakes.slack_api import FakeSlack

PG_ENV = "CONSENTBOT_TEST_DATABASE_URL"
_real_connect = socket.socket.connect


def _ignore_local_settings() -> None:
    """The suite reads no settings file and none of a developer's settings: a `.env` in the checkout
    (or the file CONSENTBOT_ENV_FILE names) would turn platforms on or point tests at a real
    database. /dev/null names no file (bot/config.py); commands run in a test's own folder.
    """
    from bot.config import ENV_FILE_VARIABLE, Settings

    for field in Settings.model_fields.values():
        if field.alias:
            os.environ.pop(field.alias, None)
    os.environ[ENV_FILE_VARIABLE] = os.devnull


_ignore_local_settings()


def _is_local(address: object) -> bool:
    if not isinstance(address, tuple):
        return True  # unix sockets (PostgreSQL's, SQLite needs none)
    host = str(address[0])
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@pytest.fixture(autouse=True)
def own_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test runs in its own empty folder: a command it starts without a `cwd` (or with the
    CONSENTBOT_ variables stripped) finds no `.env` of the checkout there.
    """
    monkeypatch.chdir(tmp_path)


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail any connection that is not to this machine (PTB's OfflineRequest, at the socket)."""

    def guarded(sock: socket.socket, address: object) -> object:
        if not _is_local(address):
            raise AssertionError(f"test tried to reach the network: {address!r}")
        return _real_connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)


@functools.cache
def england() -> Policy:
    """The default policy, loaded and validated once per test process and shared: it is immutable data,
    and parsing its YAML costs ~0.05 s (~30 s of CPU over the suite when every fixture parsed it).
    Tests of loading call `load_policy` itself.
    """
    return load_policy()


def postgres_url() -> str | None:
    """The PostgreSQL server for tests, or None when not configured (then those tests skip)."""
    return os.environ.get(PG_ENV) or None


async def _create_pg_database(base_url: str, *, template: str | None = None) -> tuple[str, str]:
    import asyncpg  # type: ignore[import-untyped]

    name = f"cb_{uuid.uuid4().hex[:12]}"
    plain = base_url.replace("postgresql+asyncpg://", "postgresql://")
    conn = await asyncpg.connect(plain, timeout=10)  # unreachable -> error: the test fails, never skips
    try:
        await conn.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
    finally:
        await conn.close()
    return base_url.rsplit("/", 1)[0] + "/" + name, name


async def _drop_pg_database(base_url: str, name: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(base_url.replace("postgresql+asyncpg://", "postgresql://"), timeout=10)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def _migrate(url: str) -> None:
    db = create_database(url)
    try:
        await upgrade(db)
    finally:
        await db.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite database at the newest migration, made once per test process and copied per test:
    running the migrations costs 0.15-0.35 s a test, a copy well under a millisecond.
    """
    path = tmp_path_factory.mktemp("template") / "migrated.db"
    asyncio.run(_migrate(f"sqlite+aiosqlite:///{path}"))
    return path


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str | None]:
    """A PostgreSQL database at the newest migration (per test process) that tests' databases
    are created from (CREATE DATABASE ... TEMPLATE); None when PostgreSQL is not configured.
    """
    base = postgres_url()
    if base is None:
        yield None
        return
    url, name = asyncio.run(_create_pg_database(base))
    asyncio.run(_migrate(url))
    yield name
    if (ahead := _AHEAD.pop(name, None)) is not None:
        ahead.close()
    asyncio.run(_drop_pg_database(base, name))


class _Ahead:
    """Databases made from a template ahead of the tests that take them, on threads of their own:
    CREATE DATABASE ... TEMPLATE costs PostgreSQL ~0.2 s of CPU, which then overlaps the tests before
    instead of delaying each one's start (two in the making, for runs of short tests). Each database
    is still new to the one test that takes it, and dropped after it.
    """

    DEPTH = 2

    def __init__(self, base: str, template: str) -> None:
        self._base, self._template = base, template
        self._threads = ThreadPoolExecutor(max_workers=self.DEPTH, thread_name_prefix="pg-ahead")
        self._drops: list[Future[None]] = []
        self._ready = collections.deque(self._make() for _ in range(self.DEPTH))

    def _make(self) -> Future[tuple[str, str]]:
        return self._threads.submit(lambda: asyncio.run(_create_pg_database(self._base, template=self._template)))

    def take(self) -> tuple[str, str]:
        """A new database (its URL and name); the server's error if it could not be made (the test fails)."""
        made = self._ready.popleft()
        self._ready.append(self._make())
        return made.result(timeout=120)

    def drop(self, name: str) -> None:
        self._drops.append(self._threads.submit(lambda: asyncio.run(_drop_pg_database(self._base, name))))

    def close(self) -> None:
        """Drop the databases made for no test; wait for every drop (one that failed raises here)."""
        for made in self._ready:
            if made.exception(timeout=120) is None:  # else nothing was made; the tests saw the error
                self.drop(made.result()[1])
        self._threads.shutdown(wait=True)
        for dropped in self._drops:
            dropped.result()


_AHEAD: dict[str, _Ahead] = {}


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path,
           pg_template: str | None) -> Iterator[str]:
    """A fresh database at the newest migration: SQLite always, PostgreSQL when
    CONSENTBOT_TEST_DATABASE_URL is set. `upgrade` on it is a no-op; `empty_db_url` has no schema.
    """
    if request.param == "sqlite":
        shutil.copyfile(sqlite_template, tmp_path / "test.db")
        yield f"sqlite+aiosqlite:///{tmp_path}/test.db"
        return
    yield from _pg_database(template=pg_template)


@pytest.fixture
def migrated_sqlite_url(tmp_path: Path, sqlite_template: Path) -> str:
    """A fresh SQLite database at the newest migration (SQLite only)."""
    shutil.copyfile(sqlite_template, tmp_path / "migrated.db")
    return f"sqlite+aiosqlite:///{tmp_path}/migrated.db"


@pytest.fixture(params=["sqlite", "postgres"])
def empty_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database URL (no schema), for tests of the migrations themselves."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path}/test.db"
        return
    yield from _pg_database(template=None)


def _pg_database(*, template: str | None) -> Iterator[str]:
    base = postgres_url()
    if base is None:
        pytest.skip(f"{PG_ENV} is not set")
    if template is None:
        url, name = asyncio.run(_create_pg_database(base))
        yield url
        asyncio.run(_drop_pg_database(base, name))
        return
    if template not in _AHEAD:
        _AHEAD[template] = _Ahead(base, template)
    ahead = _AHEAD[template]
    url, name = ahead.take()
    yield url
    ahead.drop(name)


@pytest.fixture
def sqlite_url(tmp_path: object) -> str:
    """A fresh SQLite database URL, for tests about the SQLite file itself."""
    return f"sqlite+aiosqlite:///{tmp_path}/test.db"


@pytest.fixture(scope="session")
def slack_server() -> Iterator[FakeSlack]:
    """One fake Slack Web API on loopback for the whole run; `fake_slack` resets it per test."""
    with FakeSlack() as server:
        yield server


@pytest.fixture
def fake_slack(slack_server: FakeSlack) -> FakeSlack:
    """The fake Slack, with no calls recorded and no failures scripted."""
    slack_server.reset()
    return slack_server


class Clock:
    """A clock tests move by hand."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    """Tuesday 24 November 2026, 10:00 UTC (a school day)."""
    return Clock(datetime(2026, 11, 24, 10, 0, tzinfo=UTC))


@pytest.fixture
async def services(db_url: str, clock: Clock) -> AsyncIterator[Services]:
    """Services on a fresh, migrated database with the England policy (`db_url` is migrated already)."""
    db = create_database(db_url)
    svc = Services(db=db, keyring=Keyring.parse(generate_key("t1")), policy=england(), clock=clock,
                   delivering=frozenset({"slack"}))
    yield svc
    await db.dispose()


@pytest.fixture
async def school(services: Services) -> dict[str, Person]:
    """One school's people: a teacher, a second teacher, a DSL, a deputy; and another school's DSL.
    Each has a Slack id, and the services deliver on Slack, so the DSLs can be reached.
    """
    from bot import people

    async def add(email: str, role: str, name: str, school: str) -> Person:
        slack_id = f"U0{email.split('@')[0].upper():0<8}"
        return await people.add(services, email=email, role=role, name=name, school=school, slack_user_id=slack_id)

    return {
        "teacher": await add("tina@oak.sch.uk", "staff", "Tina Teacher", "oak"),
        "teacher2": await add("tom@oak.sch.uk", "staff", "Tom Teacher", "oak"),
        "dsl": await add("dee@oak.sch.uk", "dsl", "Dee DSL", "oak"),
        "deputy": await add("pat@oak.sch.uk", "deputy", "Pat Deputy", "oak"),
        "other_dsl": await add("olu@elm.sch.uk", "dsl", "Olu DSL", "elm"),
    }


@pytest.fixture
async def file_services(migrated_sqlite_url: str, clock: Clock) -> AsyncIterator[Services]:
    """Services on a SQLite file (the writer and reader threads are a SQLite file's), delivering on Slack."""
    services = Services(db=create_database(migrated_sqlite_url), keyring=Keyring.parse(generate_key("t1")),
                        policy=england(), clock=clock, delivering=frozenset({"slack"}))
    yield services
    await services.db.dispose()
