"""CONSENTBOT_LOG_FORMAT=json: one JSON object per line, each with its request id, never content;
every HTTP answer carries the id it was logged under."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import httpx

from bot.app import build_app
from bot.cases import Services
from bot.config import Settings
from bot.crypto import Keyring, generate_key
from bot.logs import handler
from storage.db import create_database
from tests.cli.harness import Bot, case_ref, setup_school
from tests.conftest import england

CHILD = "Zebedee Canary-Quill"


async def test_a_requests_log_lines_carry_the_id_its_answer_returns(empty_db_url: str) -> None:
    out = io.StringIO()
    capture = handler("json")
    capture.stream = out  # type: ignore[attr-defined]
    logging.getLogger("bot.app").addHandler(capture)
    svc = Services(db=create_database(empty_db_url), keyring=Keyring.parse(generate_key("t")), policy=england())
    app = build_app(Settings(DATABASE_URL=empty_db_url), svc)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app") as client:
            first = await client.get("/readyz")  # not migrated: logged as a warning
            given = await client.get("/readyz", headers={"X-Request-Id": "proxy-42"})
            forged = await client.get("/readyz", headers={"X-Request-Id": "a b\"<script>"})
    finally:
        logging.getLogger("bot.app").removeHandler(capture)
        await svc.db.dispose()
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [line["request_id"] for line in lines] == [first.headers["x-request-id"], "proxy-42",
                                                       forged.headers["x-request-id"]]
    assert len(first.headers["x-request-id"]) == 16 and given.headers["x-request-id"] == "proxy-42"
    assert forged.headers["x-request-id"] != 'a b"<script>'  # not an id: a fresh one instead
    assert {"time", "level", "logger", "message"} <= set(lines[0]) and lines[0]["level"] == "WARNING"


def test_the_json_format_logs_a_whole_conversation_without_content(sqlite_url: str, tmp_path: Path) -> None:
    bot = Bot(database_url=sqlite_url, workdir=tmp_path, extra_env={"CONSENTBOT_LOG_FORMAT": "json"})
    setup_school(bot)
    out = bot.chat("tina@oak.sch.uk", "1", "2", CHILD, "", "6", f"{CHILD} said he was hit", "2026-11-24 08:40", "1")
    ref = case_ref(out)
    lines = [line for line in bot.stderr[-1].splitlines() if line.strip()]
    parsed = [json.loads(line) for line in lines]  # every line is one JSON object
    assert any(p["logger"] == "bot.cases" and ref in p["message"] for p in parsed)
    assert all(p["level"] in ("DEBUG", "INFO", "WARNING", "ERROR") for p in parsed)
    assert "Zebedee" not in bot.stderr[-1]


def test_an_unknown_log_format_is_refused_in_one_line(sqlite_url: str, tmp_path: Path) -> None:
    bot = Bot(database_url=sqlite_url, workdir=tmp_path, extra_env={"CONSENTBOT_LOG_FORMAT": "xml"}, in_process=True)
    done = bot.run("db", "upgrade", check=False)
    assert done.returncode == 1 and "CONSENTBOT_LOG_FORMAT" in done.stderr
