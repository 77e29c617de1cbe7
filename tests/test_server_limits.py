"""A server that stands up (issue 8, defect 4): a request body over the limit is refused before
anything reads it, and `consentbot serve` closes idle and dribbling connections and refuses those
beyond its connection limit."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qsl, urlencode

import httpx
import pytest

from bot.app import build_app
from bot.cases import Services
from tests.cli.harness import run_in_process
from tests.fakes.slack_api import FakeSlack
from tests.fakes.slack_signing import sign
from tests.slack.conftest import SECRET, make_services, slack_settings
from tests.test_app import free_port, wait_for

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "slack"
MB = 1024 * 1024
HUGE = 200 * MB
CHUNK = 64 * 1024
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


class Upload:
    """A body streamed from a generator, so the test never holds it; counts what was pulled."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.pulled = 0

    async def chunks(self) -> AsyncIterator[bytes]:
        chunk = b"x" * CHUNK
        while self.pulled < self.size:
            self.pulled += CHUNK
            yield chunk


@pytest.fixture
async def svc(migrated_sqlite_url: str) -> AsyncIterator[Services]:
    services = await make_services(migrated_sqlite_url)
    yield services
    await services.db.dispose()


@pytest.fixture
async def http(fake_slack: FakeSlack, svc: Services) -> AsyncIterator[httpx.AsyncClient]:
    app = build_app(slack_settings(fake_slack), svc)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://consentbot.test") as client:
        yield client


async def post_measured(http: httpx.AsyncClient, upload: Upload, headers: dict[str, str]) -> tuple[int, float, int]:
    """Status, seconds taken, and the peak of Python memory allocated while answering (bytes)."""
    tracemalloc.start()
    started = time.monotonic()
    try:
        response = await http.post("/slack/events", content=upload.chunks(), headers=headers)
        return response.status_code, time.monotonic() - started, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
async def test_an_unsigned_200_mb_post_is_refused_413_without_being_read(http: httpx.AsyncClient,
                                                                          declared: bool) -> None:
    upload = Upload(HUGE)
    headers = {**FORM, "Content-Length": str(HUGE)} if declared else FORM
    status, seconds, peak = await post_measured(http, upload, headers)
    print(f"\n200 MB POST ({'declared' if declared else 'chunked'}): {status} in {seconds:.2f} s, "
          f"{upload.pulled / MB:.2f} MB read, memory peak +{peak / MB:.2f} MB")

    assert status == 413
    assert seconds < 2
    assert upload.pulled <= (0 if declared else MB + CHUNK)  # the rest is never read
    assert peak < 5 * MB


async def test_a_body_at_the_limit_is_let_through_to_the_signature_check(http: httpx.AsyncClient) -> None:
    at_limit = await http.post("/slack/events", content=b"x" * MB, headers=FORM)
    over = await http.post("/slack/events", content=b"x" * (MB + 1), headers=FORM)

    assert (at_limit.status_code, over.status_code) == (401, 413)


async def test_a_signed_body_of_900_kb_is_answered_not_refused(http: httpx.AsyncClient) -> None:
    recorded = dict(parse_qsl((FIXTURES / "slash_command.body").read_text()))
    body = urlencode({**recorded, "command": "/concern", "text": "a" * 900_000}).encode()
    response = await http.post("/slack/events", content=body, headers={**FORM, **sign(SECRET, body)})

    assert response.status_code == 200


async def test_a_nonsense_content_length_is_not_trusted(http: httpx.AsyncClient) -> None:
    cases = {"junk": b"abc", "huge": b"9" * 400, "zero-padded": b"0" * 30 + b"12"}
    answers = {}
    for name, value in cases.items():
        upload = Upload(2 * MB)
        response = await http.post("/slack/events", content=upload.chunks(), headers={**FORM, "Content-Length": value})
        answers[name] = (response.status_code, upload.pulled <= MB + CHUNK)

    assert answers == {"junk": (413, True), "huge": (413, True), "zero-padded": (413, True)}


def raw_exchange(port: int, request: bytes, wait: float = 3) -> bytes:
    """Send `request` on a new connection and read until the server closes it."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as conn:
        conn.sendall(request)
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    return answer


def closed_by_server(conn: socket.socket, wait: float) -> bool:
    conn.settimeout(wait)
    try:
        return conn.recv(1) == b""
    except (TimeoutError, ConnectionResetError):
        return False


def test_serve_closes_idle_and_dribbling_connections_and_refuses_beyond_its_limit(tmp_path: Path) -> None:
    consentbot = str(Path(sys.executable).with_name("consentbot"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONSENTBOT_", "SLACK_", "TEAMS_", "DATABASE_"))}
    env.update(PORT=str(port := free_port()), HOST="127.0.0.1", CONSENTBOT_SCHEDULER="false",
               CONSENTBOT_MAX_CONNECTIONS="4", CONSENTBOT_READ_TIMEOUT_SECONDS="1", CONSENTBOT_MAX_HEADER_BYTES="4096")
    # serve refuses a database that is not migrated
    upgraded = run_in_process("db", "upgrade", cwd=tmp_path, env=env)  # the process to start is `serve`
    assert upgraded.returncode == 0, upgraded.stderr
    server = subprocess.Popen([consentbot, "serve"], cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for(f"http://127.0.0.1:{port}/healthz").status_code == 200
        idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(4)]
        idle[0].sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n")  # headers that never end
        beyond = raw_exchange(port, b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        opened = time.monotonic()
        closed = [closed_by_server(conn, wait=4) for conn in idle]
        closed_after = time.monotonic() - opened
        after = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
        big_headers = raw_exchange(port, b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 8000 + b"\r\n")
        for conn in idle:
            conn.close()
    finally:
        server.terminate()
        logs = server.communicate(timeout=20)[1]
    print(f"\nserve limits: beyond the limit {beyond.split(b' ', 2)[1].decode()}, idle closed after "
          f"{closed_after:.1f} s, then /healthz {after.status_code}")

    assert beyond.startswith(b"HTTP/1.1 503 ")
    assert closed == [True] * 4 and closed_after < 2.5
    assert after.status_code == 200
    assert big_headers.startswith(b"HTTP/1.1 400 ")
    assert "Traceback" not in logs
    assert "connection closed: no complete request headers within 1 s" in logs
