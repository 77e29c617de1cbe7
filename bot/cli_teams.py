"""Teams commands: `consentbot teams package`."""

from __future__ import annotations

import typer

from bot.cli import app

teams_app = typer.Typer(help="Microsoft Teams: the app package and the directory.", no_args_is_help=True)
app.add_typer(teams_app, name="teams")
