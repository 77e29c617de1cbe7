"""The web app: health, readiness before and after migration, metrics; `consentbot serve`."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from bot import people
from bot.app import build_app
from bot.cases import Services
from bot.config import Settings
from bot.crypto import Keyring, generate_key
from storage import repo
from storage.db import create_database
from storage.migrate import upgrade
from storage.models import OutboxMessage
from tests.cli.harness import run_in_process
from tests.conftest import Clock, england


async def test_readyz_answers_503_until_migrated_then_200(empty_db_url: str) -> None:
    db = create_database(empty_db_url)
    svc = Services(db=db, keyring=Keyring.parse(generate_key("t")), policy=england())
    app = build_app(Settings(DATABASE_URL=empty_db_url), svc)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app") as client:
        assert (await client.get("/healthz")).status_code == 200
        before = await client.get("/readyz")
        assert before.status_code == 503 and "db upgrade" in before.json()["status"]
        await upgrade(db)
        assert (await client.get("/readyz")).status_code == 200
        metrics = await client.get("/metrics")
        assert metrics.status_code == 200 and "consentbot_outbox_messages" in metrics.text
    await db.dispose()


async def test_readyz_is_503_when_the_database_is_unreachable(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/missing-dir/x.db"
    svc = Services(db=create_database(url), keyring=Keyring.parse(generate_key("t")), policy=england())
    app = build_app(Settings(DATABASE_URL=url), svc)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app") as client:
        response = await client.get("/readyz")
    assert response.status_code == 503 and response.json() == {"status": "database unreachable"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_starts_on_sqlite_and_says_which_platforms_are_off(tmp_path: Path) -> None:
    consentbot = str(Path(sys.executable).with_name("consentbot"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONSENTBOT_", "SLACK_", "TEAMS_", "DATABASE_"))}
    env.update(PORT=str(port := free_port()), HOST="127.0.0.1")
    upgraded = run_in_process("db", "upgrade", cwd=tmp_path, env=env)  # the process to start is `serve`
    assert upgraded.returncode == 0, upgraded.stderr
    server = subprocess.Popen([consentbot, "serve"], cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True)
    try:
        ready = wait_for(f"http://127.0.0.1:{port}/readyz")
        assert ready.status_code == 200
    finally:
        server.terminate()
        logs = server.communicate(timeout=20)[1]
    assert "platform slack: off: set SLACK_SIGNING_SECRET" in logs
    assert "platform teams: off" in logs
    assert "DEVELOPMENT ONLY" in logs and (tmp_path / "consentbot.db.key").exists()


def wait_for(url: str, seconds: float = 20) -> httpx.Response:
    deadline = time.monotonic() + seconds
    while True:
        try:
            return httpx.get(url, timeout=2)
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


async def test_metrics_count_unalertable_schools_and_the_oldest_unsent_message(db_url: str) -> None:
    clock = Clock(datetime(2026, 11, 24, 10, 0, tzinfo=UTC))
    db = create_database(db_url)
    await upgrade(db)
    svc = Services(db=db, keyring=Keyring.parse(generate_key("t")), policy=england(), clock=clock,
                   delivering=frozenset({"slack"}))
    dee = await people.add(svc, email="dee@oak.sch.uk", role="dsl", name="Dee", school="oak", slack_user_id="U0DEE00001")
    await people.add(svc, email="olu@elm.sch.uk", role="dsl", name="Olu", school="elm")  # no chat id: unalertable
    async with db.transaction() as s:
        await repo.enqueue(s, [OutboxMessage(school_id=dee.school_id, recipient_id=dee.id, platform=platform,
                                             kind="reminder", payload="{}", dedupe_key=f"m{i}", status=status,
                                             created_at=clock.now - timedelta(seconds=age))
                               for i, (platform, status, age) in enumerate([
                                   ("console", "pending", 3600), ("console", "failed", 60), ("slack", "sent", 7200),
                                   ("slack", "pending", 90)])])
    app = build_app(Settings(DATABASE_URL=db_url), svc)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app") as client:
        text = (await client.get("/metrics")).text
    await db.dispose()
    gauges = {family.name: {s.labels.get("platform", ""): s.value for s in family.samples}
              for family in text_string_to_metric_families(text) if family.type == "gauge"}
    assert gauges["consentbot_schools_unalertable"] == {"": 1}
    assert gauges["consentbot_outbox_oldest_undelivered_seconds"] == {"console": 3600, "slack": 90, "teams": 0}
