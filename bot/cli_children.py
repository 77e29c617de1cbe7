"""`consentbot chronology`: every case and decision about one child, in time order (registered on import)."""

from __future__ import annotations

import getpass
from typing import TYPE_CHECKING

import typer

from bot.cli import app, run

if TYPE_CHECKING:
    from bot.cases import Services


@app.command()
def chronology(ref: str = typer.Argument(..., help="The child's reference (CH-...), or a case about them (C-...)"),
               as_: str | None = typer.Option(None, "--as", help="Your email, if you are registered (a DSL or "
                                                                "deputy of the child's school); else your login "
                                                                "name is recorded")) -> None:
    """Show a child's chronology: every case about them and every decision, oldest first (logged)."""
    from bot import cases
    from bot.chronology import chronology as read

    async def go(svc: Services) -> list[str]:
        actor = await cases.identify(svc, email=as_.strip().lower()) if as_ else None
        found = await read(svc, ref=ref, actor=actor, operator=None if actor else f"os:{getpass.getuser()}")
        return found.lines()

    for line in run(go):
        typer.echo(line)
