"""`consentbot staff edit|reactivate|import`: changing people without copying ids by hand."""

from __future__ import annotations

from pathlib import Path

import typer

from bot.cli import fail, staff_app
from bot.cli_commands import AS_HELP, run_as


@staff_app.command("edit")
def staff_edit(email: str,
               name: str | None = typer.Option(None, help="New display name"),
               role: str | None = typer.Option(None, help="staff, dsl, deputy or admin"),
               slack_id: str | None = typer.Option(None, help="Slack member id (U012ABCDEF); '' unlinks"),
               teams_id: str | None = typer.Option(None, help="Teams user id (Entra object id, or 29:...); '' unlinks"),
               new_email: str | None = typer.Option(None, "--email", help="New email address"),
               as_: str | None = typer.Option(None, "--as", help=AS_HELP)) -> None:
    """Change a member of staff's name, role, email or platform ids (a removed person's too)."""
    from bot import people

    changes = people.Edit(name=name, role=role, slack_user_id=slack_id, teams_user_id=teams_id, email=new_email)
    if changes == people.Edit():
        fail("nothing to change: give --name, --role, --slack-id, --teams-id or --email")
    changed = run_as(as_, lambda svc, who: people.edit(svc, email=email, changes=changes, by=who))
    typer.echo(f"{email}: changed {', '.join(changed)}" if changed else f"{email}: unchanged")


@staff_app.command("reactivate")
def staff_reactivate(email: str, as_: str | None = typer.Option(None, "--as", help=AS_HELP)) -> None:
    """Give a removed member of staff access again, with the role and ids they had."""
    from bot import people

    person = run_as(as_, lambda svc, who: people.reactivate(svc, email=email, by=who))
    typer.echo(f"reactivated {person.email} as {person.role}")


@staff_app.command("import")
def staff_import(file: Path = typer.Argument(..., help="CSV with the columns email,name,role and optionally "
                                                       "school,slack_id,teams_id"),
                 school: str | None = typer.Option(None, help="School slug for rows without a school column "
                                                              "(must exist)"),
                 dry_run: bool = typer.Option(False, "--dry-run", help="Show the changes, make none"),
                 as_: str | None = typer.Option(None, "--as", help=AS_HELP)) -> None:
    """Add or update many people at once, in one transaction: one bad row and nothing changes."""
    from bot.people_import import ImportRefused, import_staff, parse_rows

    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"cannot read {file}: {getattr(exc, 'strerror', None) or type(exc).__name__} (save it as UTF-8 CSV)")
    try:
        rows = parse_rows(text, school=school)
    except ImportRefused as exc:
        fail(f"{file}: {exc}: nothing was changed")
    report = run_as(as_, lambda svc, who: import_staff(svc, rows=rows, dry_run=dry_run, by=who))
    verb = "would add" if dry_run else "added"
    for email in report.added:
        typer.echo(f"{email}: {verb}")
    for email, changed in report.updated:
        typer.echo(f"{email}: {'would change' if dry_run else 'changed'} {', '.join(changed)}")
    typer.echo(f"{verb} {len(report.added)}, {'would update' if dry_run else 'updated'} {len(report.updated)}, "
               f"unchanged {report.unchanged}" + (" (dry run: nothing was written)" if dry_run else ""))


@staff_app.command("join")
def staff_join(email: str,
               school: str = typer.Option(..., help="The other school's slug (must exist)"),
               role: str = typer.Option(..., help="Their role there: staff, dsl, deputy or admin"),
               as_: str | None = typer.Option(None, "--as", help=AS_HELP)) -> None:
    """Give a member of staff a role at another school too (a trust's DSL covering two schools), or
    change their role there. They choose the school when they raise a concern.
    """
    from bot import people

    done = run_as(as_, lambda svc, who: people.join(svc, email=email, school=school, role=role, by=who))
    typer.echo({"added": f"{email} is now {role} at {school} too",
                "changed": f"{email}: role at {school} changed to {role}",
                "unchanged": f"{email}: already {role} at {school}"}[done])


@staff_app.command("leave")
def staff_leave(email: str, school: str = typer.Option(..., help="The school they no longer belong to"),
                as_: str | None = typer.Option(None, "--as", help=AS_HELP)) -> None:
    """End a member of staff's role at a school other than their home one (history keeps their name)."""
    from bot import people

    run_as(as_, lambda svc, who: people.leave(svc, email=email, school=school, by=who))
    typer.echo(f"{email} no longer belongs to {school}")
