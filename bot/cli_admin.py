"""The `consentbot` commands for schools and deployment health: `school set|list`, `doctor` (registered on import)."""

from __future__ import annotations

import typer

from bot.cli import app, fail, run

school_app = typer.Typer(help="Schools and their settings.", no_args_is_help=True)
app.add_typer(school_app, name="school")
CLEAR = 'Pass "" to clear it.'
DSL_PHONE = f"Phone number for the DSL, shown when the bot cannot reach one. {CLEAR}"
FRONT_DOOR = f"The school office's phone number. {CLEAR}"
ESCALATION = (f"Who is told when no DSL or deputy can be alerted: an active member of staff of the school "
              f"(default: its admins). {CLEAR}")
DIGEST = f"When the DSLs' daily digest goes, local time (not 01:00-02:59). {CLEAR}"
PLATFORM = f"slack or teams: where people registered on both are messaged (default: Slack). {CLEAR}"


@school_app.command("set")
def school_set(slug: str, name: str | None = typer.Option(None, help="The school's name as people read it"),
               dsl_phone: str | None = typer.Option(None, help=DSL_PHONE),
               front_door_phone: str | None = typer.Option(None, help=FRONT_DOOR),
               escalation: str | None = typer.Option(None, metavar="EMAIL", help=ESCALATION),
               timezone: str | None = typer.Option(None, help="IANA timezone, e.g. Europe/London"),
               digest_time: str | None = typer.Option(None, metavar="HH:MM", help=DIGEST),
               platform: str | None = typer.Option(None, metavar="slack|teams", help=PLATFORM)) -> None:
    """Change a school's settings; only the options given change."""
    from bot import schools

    changes = schools.Changes(name=name, dsl_phone=dsl_phone, front_door_phone=front_door_phone,
                              escalation=escalation, timezone=timezone, digest_time=digest_time, platform=platform)
    if changes == schools.Changes():
        fail("nothing to change: give at least one of --name, --dsl-phone, --front-door-phone, --escalation, "
             "--timezone, --digest-time, --platform")
    changed = run(lambda svc: schools.update(svc, slug=slug, changes=changes))
    typer.echo(f"school {slug}: {'changed ' + ', '.join(changed) if changed else 'nothing changed'}")


@school_app.command("list")
def school_list() -> None:
    """One line per school with its settings ("-" where not set)."""
    from bot import schools

    for row in run(lambda svc: schools.listing(svc)):
        typer.echo("\t".join((row.slug, f"name={row.name}", f"timezone={row.timezone}",
                              f"dsl_phone={row.dsl_phone or '-'}", f"front_door_phone={row.front_door_phone or '-'}",
                              f"escalation={row.escalation or '-'}", f"digest_time={row.digest_time or '-'}",
                              f"platform={row.platform or '-'}")))


@app.command()
def doctor() -> None:
    """List what would stop alerts reaching each school's DSL. Exits 1 when any school cannot be alerted."""
    from bot import doctor as checks

    report = run(lambda svc: checks.check(svc))
    for line in report.reach:
        typer.echo(line)
    for finding in report.findings:
        typer.echo(finding.line())
    typer.echo(report.summary())
    if report.unalertable:
        raise typer.Exit(1)
