"""Slack commands for several workspaces (a trust): `consentbot slack workspaces` lists the
workspaces installed through /slack/install, `consentbot slack link TEAM_ID --school SLUG`
makes one serve a school (docs/slack-setup.md, "Several workspaces").
"""

from __future__ import annotations

import typer

from bot.cli import app, run
from bot.cli_commands import AS_HELP, run_as

slack_app = typer.Typer(help="Slack: the workspaces of several-workspaces mode.", no_args_is_help=True)
app.add_typer(slack_app, name="slack")


@slack_app.command("workspaces")
def list_workspaces() -> None:
    """The workspaces installed through OAuth, and the school each serves."""
    from bot import workspaces

    rows = run(lambda svc: workspaces.listing(svc))
    if not rows:
        typer.echo("no Slack workspace has installed the app yet: open /slack/install (docs/slack-setup.md)")
    for workspace, school in rows:
        serves = f"serves {school}" if school else "not linked: run `consentbot slack link` (serves nobody yet)"
        typer.echo(f"{workspace.name}\t{workspace.team_name or '-'}\tinstalled {workspace.installed_at:%Y-%m-%d}"
                   f"\t{serves}")


@slack_app.command("link")
def link(team_id: str = typer.Argument(..., metavar="TEAM_ID", help="The workspace's id (T...), or an org's (E...)."),
         school: str = typer.Option(..., "--school", metavar="SLUG", help="The school it serves."),
         as_: str | None = typer.Option(None, "--as", help=AS_HELP)) -> None:
    """Make an installed workspace serve a school: its people are found among that school's staff
    only, and the school's DMs go with its token. A school has one workspace: linking moves it.
    The access log records the link and who made it.
    """
    from bot import workspaces

    workspace = run_as(as_, lambda svc, who: workspaces.link(svc, team_id=team_id.strip(), school=school.strip(),
                                                             by=who))
    typer.echo(f"Slack workspace {workspace.name} ({workspace.team_name or '-'}) now serves {school.strip()}")
