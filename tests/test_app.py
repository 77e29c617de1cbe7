"""The web app: health, readiness before and after migration, metrics; `consentbot serve`."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from bot.app import build_app
from bot.cases import Services
from bot.config import Settings
from bot.crypto import Keyring, generate_key
from bot.policy.loader import load_policy
from storage.db import create_database
from storage.migrate import upgrade


async def test_readyz_answers_503_until_migrated_then_200(db_url: str) -> None:
    db = create_database(db_url)
    svc = Services(db=db, keyring=Keyring.parse(generate_key("t")), policy=load_policy())
    app = build_app(Settings(DATABASE_URL=db_url), svc)
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
    svc = Services(db=create_database(url), keyring=Keyring.parse(generate_key("t")), policy=load_policy())
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
    subprocess.run([consentbot, "db", "upgrade"], cwd=tmp_path, env=env, check=True, capture_output=True)
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
