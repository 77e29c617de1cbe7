"""The operator commands, run through the real typer app on a SQLite file."""

from __future__ import annotations

import asyncio

import pytest
from typer.testing import CliRunner

from bot import cli_commands, cli_reminders  # noqa: F401 - register the commands
from bot.cases import Services
from bot.cli import app
from bot.crypto import Keyring, generate_key
from storage.db import create_database
from tests.conftest import england

from .conftest import Clock, add_reminder, london, make_case, outbox_rows, reminder_rows

ICS = ("BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nSUMMARY:Autumn term\r\nDTSTART;VALUE=DATE:20260901\r\n"
       "DTEND;VALUE=DATE:20261219\r\nEND:VEVENT\r\nBEGIN:VEVENT\r\nSUMMARY:Half term\r\n"
       "DTSTART;VALUE=DATE:20261026\r\nDTEND;VALUE=DATE:20261031\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n")


def invoke(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture
def url(tmp_path, monkeypatch) -> str:
    monkeypatch.chdir(tmp_path)
    db_url = f"sqlite+aiosqlite:///{tmp_path}/cli.db"
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("CONSENTBOT_ENCRYPTION_KEY", generate_key("t1"))
    monkeypatch.delenv("CONSENTBOT_POLICY", raising=False)
    invoke("db", "upgrade")
    invoke("staff", "add", "tina@oak.sch.uk", "--role", "staff", "--name", "Tina Teacher", "--school", "oak",
           "--create-school")
    invoke("staff", "add", "tom@oak.sch.uk", "--role", "staff", "--name", "Tom Teacher", "--school", "oak")
    invoke("staff", "add", "dee@oak.sch.uk", "--role", "dsl", "--name", "Dee DSL", "--school", "oak")
    return db_url


def with_services(url: str, work):
    async def go():
        db = create_database(url)
        svc = Services(db=db, keyring=Keyring.parse(generate_key("t1")), policy=england(),
                       clock=Clock(london(2026, 11, 24, 9, 0)))
        try:
            return await work(svc)
        finally:
            await db.dispose()

    return asyncio.run(go())


def seed_reminder(url: str) -> str:
    from bot import cases

    async def work(svc):
        tina = await cases.identify(svc, email="tina@oak.sch.uk")
        tom = await cases.identify(svc, email="tom@oak.sch.uk")
        case = await make_case(svc, tina, assignee=tom, due_at=london(2026, 11, 24, 9, 0))
        await add_reminder(svc, case, tom, due=london(2026, 11, 24, 9, 0))
        return case.ref

    return with_services(url, work)


def test_remind_dry_run_shows_what_and_to_whom_then_the_real_run_sends(url):
    ref = seed_reminder(url)

    listed = invoke("reminders", "list", "--overdue")
    dry = invoke("remind", "--now", "2026-11-24T10:00:00+00:00", "--dry-run")
    assert with_services(url, outbox_rows) == []
    sent = invoke("remind", "--now", "2026-11-24T10:00:00+00:00")

    assert f"outcome\tlevel 0\t{ref}\tTom Teacher\tpending" in listed
    assert f"would send\toutcome level 0\t{ref}\tto Tom Teacher\tdue" in dry
    assert "would have sent 1, deferred 0, cancelled 0" in dry
    assert "sent 1, deferred 0, cancelled 0" in sent
    assert invoke("reminders", "list").strip() == "0 reminders"


def test_remind_on_a_saturday_defers_to_monday_morning(url):
    seed_reminder(url)
    out = invoke("remind", "--now", "2026-11-28T10:00")  # no offset: school time (Europe/London)
    assert "sent 0, deferred 1, cancelled 0" in out
    [row] = with_services(url, reminder_rows)
    assert row.due_at == london(2026, 11, 30, 8, 0) and row.status == "pending"


def test_digest_dry_run_prints_the_lines_then_it_is_queued_once(url):
    ref = seed_reminder(url)

    dry = invoke("digest", "--now", "2026-11-24T07:30", "--dry-run")
    first = invoke("digest", "--now", "2026-11-24T07:30")
    again = invoke("digest", "--now", "2026-11-24T07:45")

    assert "would send digest:daily:3:2026-11-24 to Dee DSL" in dry and f"{ref} due Tue 24 Nov 2026, 09:00" in dry
    assert "queued digest:daily:3:2026-11-24 to Dee DSL" in first
    assert again.strip().endswith("0 digests, 0 reminders folded in")
    assert len(with_services(url, lambda svc: outbox_rows(svc, kind="digest"))) == 2  # daily + weekly


def test_digest_waits_for_the_configured_time_in_the_schools_timezone(url, monkeypatch):
    monkeypatch.setenv("CONSENTBOT_DIGEST_TIME", "09:00")

    early = invoke("digest", "--now", "2026-11-24T08:55")
    on_time = invoke("digest", "--now", "2026-11-24T09:00")

    assert early.strip() == "0 digests, 0 reminders folded in"
    assert "queued digest:daily:3:2026-11-24 to Dee DSL" in on_time


def test_calendar_import_reads_csv_and_ics_and_the_sweep_uses_it(url, tmp_path):
    csv_file = tmp_path / "oak.csv"
    csv_file.write_text("kind,start,end,label\nclosure,2026-11-24,2026-11-24,INSET day\n")
    ics_file = tmp_path / "oak.ics"
    ics_file.write_text(ICS)

    assert "imported 1 terms and 1 closures for oak" in invoke("calendar", "import", str(ics_file), "--school", "oak")
    assert "imported 0 terms and 1 closures for oak" in invoke("calendar", "import", str(csv_file), "--school", "oak")
    seed_reminder(url)
    assert "deferred 1" in invoke("remind", "--now", "2026-11-24T10:00:00+00:00")  # the INSET day
    [row] = with_services(url, reminder_rows)
    assert row.due_at == london(2026, 11, 25, 8, 0)


def test_a_bad_calendar_file_is_refused_with_its_line(url, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("kind,start,end\nholiday,2026-11-24,2026-11-24\n")
    result = CliRunner().invoke(app, ["calendar", "import", str(bad), "--school", "oak"])
    assert result.exit_code == 1 and "line 2: unknown kind" in result.output


def test_the_remind_time_must_be_iso(url):
    result = CliRunner().invoke(app, ["remind", "--now", "tuesday"])
    assert result.exit_code == 1 and "ISO" in result.output
