"""The `consentbot` commands that work on cases and people (registered on import)."""

from __future__ import annotations

import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import typer

from bot.cli import ROLES, app, audit_app, fail, run, staff_app

T = TypeVar("T")
AS_HELP = "Your email, as registered with `staff add`: the access log names you (else the OS user)"


def run_as(email: str | None, make: Callable[[Any, Any], Awaitable[T]]) -> T:
    """Run `make(services, operator)`, the operator being the member of staff with `email`, else the
    OS user running the command: the access log never records an operator command as nobody's.
    """
    from bot import people

    async def go(svc: Any) -> T:
        who = await people.operator(svc, email=email)
        if email and who.staff_id is None:
            typer.echo(f"warning: no active member of staff {email}: the access log names the OS user", err=True)
        return await make(svc, who)

    return run(go)


@staff_app.command("add")
def staff_add(email: str, role: str = typer.Option(..., help="staff, dsl, deputy or admin"),
              name: str = typer.Option(..., help="Display name"),
              school: str = typer.Option("default", help="School slug (must exist, unless --create-school)"),
              create_school: bool = typer.Option(False, "--create-school", help="Create the school if it is new"),
              slack_id: str | None = typer.Option(None, help="Slack member id (U012ABCDEF)"),
              teams_id: str | None = typer.Option(None, help="Teams user id (Entra object id, or 29:...)"),
              as_: str | None = typer.Option(None, "--as", help=AS_HELP)) -> None:
    """Add a member of staff with a role."""
    from bot import people

    if role not in ROLES:
        fail(f"role must be one of {', '.join(ROLES)}")
    person = run_as(as_, lambda svc, who: people.add(svc, email=email, role=role, name=name, school=school,
                                                     slack_user_id=slack_id, teams_user_id=teams_id,
                                                     create_school=create_school, by=who))
    typer.echo(f"added {person.email} as {person.role} at {school}")


@staff_app.command("list")
def staff_list(school: str | None = typer.Option(None, help="Only this school")) -> None:
    """List active staff and their roles."""
    from bot import people

    for row in run(lambda svc: people.listing(svc, school=school)):
        typer.echo("\t".join(row))


@staff_app.command("remove")
def staff_remove(email: str, as_: str | None = typer.Option(None, "--as", help=AS_HELP)) -> None:
    """Deactivate a member of staff (history that names them is kept)."""
    from bot import people

    run_as(as_, lambda svc, who: people.remove(svc, email=email, by=who))
    typer.echo(f"removed {email}")


@app.command()
def chat(as_: str = typer.Option(..., "--as", help="Your email, as registered with `staff add`"),
         case: str | None = typer.Option(None, help="Go straight to this case reference"),
         raised_from: str | None = typer.Option(None, "--from-case", help="Raise a new concern about the child of "
                                                "this earlier case (a re-escalation); both cases show the link")) -> None:
    """Run the checklist in the terminal (works with piped input)."""
    from handlers.console import Console

    if case and raised_from:
        fail("give --case (work on a case) or --from-case (raise a new concern from one), not both")
    code = run(lambda svc: Console(svc, sys.stdin, sys.stdout).session(email=as_, case_ref=case,
                                                                       raised_from=raised_from))
    raise typer.Exit(code)


@app.command()
def export(case_ref: str, format: str = typer.Option("json", "--format", help="json, csv or pdf"),
           as_: str | None = typer.Option(None, "--as", help=AS_HELP),
           out: Path | None = typer.Option(None, help="Write to this file (created private, 0600) instead of "
                                                      "standard output; a PDF goes to REF.pdf unless given "
                                                      "(- for standard output, never a terminal)")) -> None:
    """Write a case's consent decision record, with the referral form section (S10)."""
    from bot.record import flatten
    from bot.views import export_as_operator

    if format not in ("json", "csv", "pdf"):
        fail("format must be json, csv or pdf")
    if format == "pdf" and str(out) == "-" and sys.stdout.isatty():
        fail("a PDF is not written to a terminal: give --out FILE, or pipe standard output")
    details = run_as(as_, lambda svc, who: export_as_operator(svc, case_ref=case_ref, format=format, operator=who))
    if format == "pdf":
        _write_pdf(details.record, out)
        return
    text = json.dumps(details.record, indent=2) + "\n" if format == "json" else _csv(flatten(details.record))
    _emit(text, out)


def _emit(text: str, out: Path | None) -> bool:
    """Print `text`, or write it to `out`, created private (0600). True when written to a file."""
    from bot.crypto import write_private

    if not out:
        typer.echo(text, nl=False)
        return False
    try:
        write_private(out, text, replace=True)
    except OSError as exc:
        fail(f"cannot write {out}: {exc.strerror or type(exc).__name__}")
    return True


def _write_pdf(record: dict[str, Any], out: Path | None) -> None:
    from bot.pdf import render_pdf, write_private_bytes

    data = render_pdf(record)
    if str(out) == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return
    path = out or Path(f"{record['case_ref']}.pdf")
    try:
        write_private_bytes(path, data)
    except OSError as exc:
        fail(f"cannot write {path}: {exc.strerror or type(exc).__name__}")
    typer.echo(f"wrote {path}", err=True)


# A spreadsheet runs a cell that begins with one of these as a formula (=HYPERLINK(...), +cmd|...):
# such a cell is written with a leading quote, so it is shown as the text that was typed (OWASP
# "CSV injection").
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _csv(rows: list[tuple[str, str]]) -> str:
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["field", "value"])
    writer.writerows([tuple(_inert(cell) for cell in row) for row in rows])
    return buffer.getvalue()


def _inert(cell: str) -> str:
    return "'" + cell if cell.startswith(FORMULA_STARTS) else cell


@audit_app.command("verify")
def audit_verify(checkpoint: Path | None = typer.Option(None, help="Also check against this checkpoint file "
                                                                   "(from `audit checkpoint`)")) -> None:
    """Check every keyed chain, the index of cases, the staff records, and every case against its
    events; with --checkpoint, that no chain lost what it held then. Exits 1 on any problem.
    """
    from bot import checkpoint as checkpoints
    from bot.audit import verify

    text = _read(checkpoint) if checkpoint else None
    report: Any = run(lambda svc: verify(svc, checkpoint=checkpoints.parse(svc.keyring, text) if text else None))
    for problem in report.problems:
        typer.echo(f"FAIL {problem.line()}")
    against = f" against the checkpoint {checkpoint}" if checkpoint else ""
    typer.echo(f"checked {report.cases} cases, {report.events} events, {report.access_entries} access log entries"
               f"{against}: {'FAILED' if report.problems else 'ok'}")
    if report.problems:
        raise typer.Exit(1)


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"cannot read {path}: {getattr(exc, 'strerror', None) or type(exc).__name__}")
    raise AssertionError("unreachable")


@audit_app.command("checkpoint")
def audit_checkpoint(out: Path | None = typer.Option(None, help="Write to this file (created private, 0600) "
                                                                "instead of standard output"),
                     as_: str | None = typer.Option(None, "--as", help=AS_HELP)) -> None:
    """Write the head of every chain, signed, to keep outside the database (docs/audit.md):
    `audit verify --checkpoint FILE` then catches a chain cut short or a case deleted.
    """
    from bot.checkpoint import take_logged

    text = run_as(as_, lambda svc, who: take_logged(svc, by=who))
    if _emit(text, out):
        typer.echo(f"wrote {out}", err=True)


@audit_app.command("show")
def audit_show(case: str | None = typer.Option(None, help="Only entries about this case")) -> None:
    """List access log entries (views, exports, refusals, staff changes): ids only."""
    from bot.audit import access_entries

    for line in run(lambda svc: access_entries(svc, case_ref=case)):
        typer.echo(line)


outbox_app = typer.Typer(help="Queued notifications.", no_args_is_help=True)
app.add_typer(outbox_app, name="outbox")


@outbox_app.command("drain")
def outbox_drain(platform: str = typer.Option("slack", help="Which platform's queue: slack or teams"),
                 wait: float = typer.Option(30.0, help="Seconds to wait for rate-limited or retried messages")) -> None:
    """Send every due notification once (what `serve` does in the background), then exit."""
    from bot.config import Settings
    from bot.sender import drain

    settings = Settings()
    if platform == "slack":
        if not (settings.slack_bot_token or settings.slack_oauth):
            fail("Slack is not configured: set SLACK_BOT_TOKEN, or SLACK_CLIENT_ID and SLACK_CLIENT_SECRET for "
                 "several workspaces (see docs/slack-setup.md)")
        from handlers.slack import sender_platform  # composition root: wires the platform in

        report = run(lambda svc: drain(svc, sender_platform(settings, svc), max_wait=wait))
    elif platform == "teams":
        if not settings.teams_configured:
            fail("Teams is not configured: set TEAMS_CLIENT_ID, TEAMS_CLIENT_SECRET and TEAMS_TENANT_ID "
                 "(see docs/teams-setup.md)")
        from handlers.teams import app as teams  # composition root, as above

        report = run(lambda svc: drain(svc, teams.sender_platform(settings, svc), max_wait=wait))
    else:
        fail(f"no {platform!r} queue: use slack or teams")
    counts = ", ".join(f"{name} {n}" for name, n in sorted(report.counts.items())) or "nothing due"
    typer.echo(f"outbox {platform}: {counts}")
