"""The `consentbot` commands for reminders, digests and school calendars (registered on import)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import typer

from bot.cli import app, fail, run

reminders_app = typer.Typer(help="Reminder rows.", no_args_is_help=True)
calendar_app = typer.Typer(help="School term dates and closures.", no_args_is_help=True)
app.add_typer(reminders_app, name="reminders")
app.add_typer(calendar_app, name="calendar")


def parse_now(text: str | None) -> datetime | None:
    """An ISO instant; without an offset it is read in CONSENTBOT_TIMEZONE (wall-clock time at school)."""
    if text is None:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        fail(f"--now must be an ISO date-time such as 2026-03-02T09:00+00:00, not {text!r}")
        raise
    from bot.config import Settings

    return when if when.tzinfo else when.replace(tzinfo=ZoneInfo(Settings().timezone))


@app.command()
def remind(now: str | None = typer.Option(None, help="Run as of this ISO time (default: now)"),
           dry_run: bool = typer.Option(False, "--dry-run", help="Show what would be sent, change nothing")) -> None:
    """Run the reminder sweep once: send what is due, defer what falls outside school time."""
    from bot import reminders

    at = parse_now(now)
    if dry_run:
        report = run(lambda svc: reminders.preview(svc, now=at or svc.clock()))
        for plan, row in report.plans:
            who = report.names.get(row.recipient_id or 0, "-")
            when = f" until {plan.due_at.isoformat(timespec='minutes')}" if plan.due_at else ""
            ref = report.refs.get(row.case_id, "-")
            typer.echo(f"would {plan.action}\t{row.kind} level {row.level}\t{ref}\tto {who}\t{plan.reason}{when}")
    else:
        report = run(lambda svc: reminders.sweep(svc, now=at))
    prefix = "would have " if dry_run else ""
    typer.echo(f"{prefix}sent {report.sent}, deferred {report.deferred}, cancelled {report.cancelled}, "
               f"superseded {report.superseded}")


@app.command()
def digest(now: str | None = typer.Option(None, help="Build as of this ISO time (default: now)"),
           dry_run: bool = typer.Option(False, "--dry-run", help="Show the digests, change nothing")) -> None:
    """Build today's digest for every DSL whose school is open and whose digest time has come, in the
    school's timezone (its own time, else CONSENTBOT_DIGEST_TIME); the weekly summary, once a week.
    """
    from bot.config import Settings
    from bot.digest import run_digests
    from bot.messages import Message
    from bot.scheduler import digest_time

    try:
        default_time = digest_time(Settings())
    except ValueError as exc:
        fail(str(exc))
        raise
    report = run(lambda svc: run_digests(svc, now=parse_now(now), default_time=default_time, dry_run=dry_run))
    for person, row in report.messages:
        typer.echo(f"{'would send' if dry_run else 'queued'} {row.dedupe_key} to {person.display_name}")
        if dry_run:
            for line in Message.from_json(row.payload).lines:
                typer.echo(f"    {line}")
    typer.echo(f"{len(report.messages)} digests, {report.folded} reminders folded in")


@reminders_app.command("list")
def reminders_list(overdue: bool = typer.Option(False, "--overdue", help="Only those due by now")) -> None:
    """List pending and claimed reminders: due time, kind, rung, case reference, recipient."""
    from storage import reminder_repo

    async def go(svc: Any) -> list[Any]:
        async with svc.db.transaction() as s:
            return await reminder_repo.listing(s, overdue_at=svc.clock() if overdue else None)

    rows = run(go)
    for reminder, ref, name in rows:
        typer.echo(f"{reminder.due_at.isoformat(timespec='minutes')}\t{reminder.kind}\tlevel {reminder.level}"
                   f"\t{ref}\t{name}\t{reminder.status}")
    typer.echo(f"{len(rows)} reminders")


@calendar_app.command("import")
def calendar_import(file: Path, school: str = typer.Option("default", help="School slug")) -> None:
    """Replace a school's term dates and closures from a CSV (kind,start,end[,label]) or .ics file."""
    from bot import reminders

    try:
        text = file.read_text(encoding="utf-8")
        ics = file.suffix.lower() == ".ics" or text.lstrip("\ufeff").startswith("BEGIN:VCALENDAR")
        terms, closures = run(lambda svc: reminders.import_calendar(svc, school=school, text=text, ics=ics))
    except (OSError, ValueError) as exc:
        fail(f"{file}: {exc}")
        return
    typer.echo(f"imported {terms} terms and {closures} closures for {school}")
