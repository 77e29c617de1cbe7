"""Exactly once across real `consentbot serve` processes on one PostgreSQL database.

Runs when CONSENTBOT_TEST_DATABASE_URL is set (and fails, never skips, if that server is
unreachable). Each test gets its own database, dropped afterwards.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from bot.crypto import generate_key
from bot.schooltime import SchoolCalendar
from tests.conftest import _pg_database

PG_ENV = "CONSENTBOT_TEST_DATABASE_URL"
ROWS = 10_000
CONSENTBOT = Path(sys.executable).parent / "consentbot"
KEY = generate_key("k")  # one deployment, one key: both replicas must read what the other wrote


def _plain(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://")


@pytest.fixture
def pg_url(pg_template: str | None) -> Iterator[str]:
    """A new database at the newest migration, made from the migrated template (tests/conftest.py);
    skipped without CONSENTBOT_TEST_DATABASE_URL, an error (never a skip) when that server is unreachable.
    """
    if pg_template is None:
        pytest.skip(f"{PG_ENV} is not set")
    yield from _pg_database(template=pg_template)


async def seed(url: str, *, rows: int, kind: str, due: datetime, urgent: bool = True, role: str = "dsl") -> None:
    """One school, a person with `role`, 100 cases and `rows` due reminders to them, bulk-loaded with COPY."""
    import asyncpg

    conn = await asyncpg.connect(_plain(url))
    now = datetime.now(UTC)
    try:
        school = await conn.fetchval("INSERT INTO schools (slug, name, nation, timezone, created_at) VALUES "
                                     "('oak', 'Oak', 'ENG', 'Europe/London', $1) "
                                     "ON CONFLICT (slug) DO UPDATE SET name = 'Oak' RETURNING id", now)
        dsl = await conn.fetchval("INSERT INTO staff (school_id, email, display_name, role, slack_user_id, active, "
                                  "created_at) VALUES ($1, $2, 'Dee', $5, $3, true, $4) RETURNING id",
                                  school, f"{uuid.uuid4().hex[:8]}@oak.sch.uk", "U" + uuid.uuid4().hex[:8], now, role)
        cases = [await conn.fetchval(
            "INSERT INTO cases (ref, school_id, raised_by, policy_id, policy_version, created_at, step, status, "
            "urgent, version, head_hash, updated_at) VALUES ($1, $2, $3, 'england', '2026.1', $4, 'eh_outcome', "
            "'awaiting_outcome', $5, 1, '', $4) RETURNING id", f"C-{uuid.uuid4().hex[:6].upper()}", school, dsl,
            now, urgent) for _ in range(100)]
        tag = uuid.uuid4().hex[:6]
        await conn.copy_records_to_table("reminders", columns=[
            "case_id", "recipient_id", "kind", "level", "due_at", "unique_key", "status", "created_at"], records=[
            (cases[i % 100], dsl, kind, 0, due, f"{tag}:{i}", "pending", now) for i in range(rows)])
    finally:
        await conn.close()


async def counts(url: str) -> dict[str, int]:
    import asyncpg

    conn = await asyncpg.connect(_plain(url))
    try:
        found = {r["status"]: r["n"] for r in await conn.fetch(
            "SELECT status, count(*) AS n FROM reminders GROUP BY status")}
        found["outbox"] = await conn.fetchval("SELECT count(*) FROM outbox WHERE dedupe_key LIKE 'reminder:%'")
        found["unmatched"] = await conn.fetchval(
            "SELECT count(*) FROM reminders r WHERE r.status = 'sent' AND NOT EXISTS "
            "(SELECT 1 FROM outbox o WHERE o.dedupe_key = 'reminder:' || r.unique_key)")
        return found
    finally:
        await conn.close()


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A free port, never one handed out before in this process: two replicas may start at once."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    log: Path

    def sent(self) -> int:
        """Rows this process's sweeps marked sent (a row sent by both would be counted twice)."""
        return sum(int(n) for n in re.findall(r"sweep sent=(\d+)", self.log.read_text()))


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[list[Server]]:
    started: list[Server] = []
    yield started
    for server in started:
        if server.process.poll() is None:
            server.process.send_signal(signal.SIGTERM)
            try:
                server.process.wait(10)
            except subprocess.TimeoutExpired:
                server.process.kill()
                server.process.wait()


async def serve(url: str, tmp_path: Path, servers: list[Server], *, batch: int = 200, lease: float = 3) -> Server:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "TEAMS_", "CONSENTBOT_"))}
    env.update(DATABASE_URL=url, CONSENTBOT_ENCRYPTION_KEY=KEY, PORT=str(port), HOST="127.0.0.1",
               CONSENTBOT_SWEEP_SECONDS="0.2", CONSENTBOT_SWEEP_BATCH=str(batch),
               CONSENTBOT_SWEEP_LEASE_SECONDS=str(lease), CONSENTBOT_LOG_LEVEL="INFO")
    log = tmp_path / f"serve-{port}.log"
    with log.open("wb") as out:
        process = subprocess.Popen([str(CONSENTBOT), "serve"], env=env, cwd=tmp_path, stdout=out,
                                   stderr=subprocess.STDOUT)
    server = Server(process, log)
    servers.append(server)
    async with httpx.AsyncClient() as client:
        for _ in range(200):
            assert process.poll() is None, log.read_text()
            try:
                if (await client.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200:
                    return server
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.05)
    raise AssertionError(f"serve did not become ready:\n{log.read_text()}")


async def wait_for(url: str, done, timeout: float = 40) -> dict[str, int]:
    deadline = time.monotonic() + timeout
    while True:
        found = await counts(url)
        if done(found) or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.1)


async def test_two_serve_processes_send_each_of_10000_reminders_exactly_once(pg_url, tmp_path, servers):
    first, second = await asyncio.gather(serve(pg_url, tmp_path, servers), serve(pg_url, tmp_path, servers))
    await seed(pg_url, rows=ROWS, kind="urgent_ack", due=datetime.now(UTC) - timedelta(minutes=1))

    found = await wait_for(pg_url, lambda c: c.get("sent", 0) == ROWS)
    await asyncio.sleep(0.5)  # let the last sweeps log their totals

    assert found == {"sent": ROWS, "outbox": ROWS, "unmatched": 0}
    assert first.sent() + second.sent() == ROWS, (first.sent(), second.sent())
    assert first.sent() > 0 and second.sent() > 0, "both replicas should have shared the work"


async def test_a_sweep_killed_mid_batch_loses_and_doubles_nothing(pg_url, tmp_path, servers):
    import asyncpg

    doomed = await serve(pg_url, tmp_path, servers, batch=50, lease=2)
    await seed(pg_url, rows=ROWS, kind="urgent_ack", due=datetime.now(UTC) - timedelta(minutes=1))
    conn = await asyncpg.connect(_plain(pg_url))
    try:
        for _ in range(20_000):  # kill it while it holds claimed rows it has not yet enqueued
            claimed, sent = await conn.fetchrow("SELECT count(*) FILTER (WHERE status = 'claimed'), "
                                                "count(*) FILTER (WHERE status = 'sent') FROM reminders")
            if claimed and sent:
                doomed.process.send_signal(signal.SIGKILL)
                doomed.process.wait()
                break
    finally:
        await conn.close()
    stranded = await counts(pg_url)
    assert stranded.get("claimed", 0) > 0 and stranded.get("sent", 0) < ROWS

    await serve(pg_url, tmp_path, servers, batch=500, lease=2)  # the restart
    found = await wait_for(pg_url, lambda c: c.get("sent", 0) == ROWS)

    assert found == {"sent": ROWS, "outbox": ROWS, "unmatched": 0}


async def test_reminders_that_fell_due_while_nothing_ran_go_once_after_a_restart(pg_url, tmp_path, servers):
    due = datetime.now(UTC) - timedelta(hours=3)
    await seed(pg_url, rows=5, kind="urgent_ack", due=due)
    await seed(pg_url, rows=5, kind="outcome", due=due, urgent=False, role="staff")  # the assignee: no digest
    started = datetime.now(UTC)
    expected = SchoolCalendar().next_send_time(started)  # the routine ones: now, or the next working time

    await serve(pg_url, tmp_path, servers)
    routine_now = expected <= started + timedelta(seconds=1)
    found = await wait_for(pg_url, lambda c: c.get("sent", 0) == (10 if routine_now else 5), timeout=20)
    await asyncio.sleep(0.5)  # a few more sweeps: nothing more may go
    found = await counts(pg_url)

    if routine_now:
        assert found == {"sent": 10, "outbox": 10, "unmatched": 0}
    else:
        assert found == {"sent": 5, "pending": 5, "outbox": 5, "unmatched": 0}
        import asyncpg

        conn = await asyncpg.connect(_plain(pg_url))
        dues = {r["due_at"] for r in await conn.fetch("SELECT due_at FROM reminders WHERE status = 'pending'")}
        await conn.close()
        assert dues == {expected}
