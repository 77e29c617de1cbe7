"""Teams commands: `consentbot teams package`."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

import typer

from bot.cli import app, fail

teams_app = typer.Typer(help="Microsoft Teams: the app package and the directory.", no_args_is_help=True)
app.add_typer(teams_app, name="teams")
SETUP = "docs/teams-setup.md"
UPLOAD = "Teams admin centre > Teams apps > Manage apps > Upload new app"
GUID = re.compile(r"[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")
LINK = "Default https://HOST/{page} with --domain (consentbot does not serve it: give your school's own page)."


@teams_app.command("package")
def package(out: Path = typer.Option(Path("consentbot-teams.zip"), help="Where to write the zip."),
            name: str = typer.Option("Consentbot", help="The app's name in Teams (at most 30 characters)."),
            domain: str | None = typer.Option(None, metavar="HOST",
                                              help="The bot's public host name, e.g. consentbot.school.example."),
            app_id: str | None = typer.Option(None, metavar="GUID", help="The manifest id (default: TEAMS_CLIENT_ID)."),
            app_version: str = typer.Option("1.0.0", metavar="X.Y.Z",
                                            help="The app's version: raise it for every changed package you upload."),
            website_url: str | None = typer.Option(None, metavar="URL", help="The app's support page."),
            privacy_url: str | None = typer.Option(None, metavar="URL", help=LINK.format(page="privacy")),
            terms_url: str | None = typer.Option(None, metavar="URL", help=LINK.format(page="terms")),
            force: bool = typer.Option(False, "--force", help="Replace --out if it exists.")) -> None:
    """Build the Teams app package (manifest and icons) to upload in the Teams admin centre."""
    from handlers.teams.package import build_package

    bot_id = _client_id()
    try:
        data = build_package(app_id=app_id or bot_id, bot_id=bot_id, name=name, domain=_host(domain),
                             version=app_version, website_url=website_url, privacy_url=privacy_url,
                             terms_url=terms_url)
    except ValueError as exc:
        fail(str(exc))
    _write(out, data, force=force)
    typer.echo(f"wrote {out} (app id {app_id or bot_id}, bot {bot_id}, version {app_version})")
    defaulted = [flag for flag, given in (("--website-url", website_url), ("--privacy-url", privacy_url),
                                          ("--terms-url", terms_url)) if not given]
    if defaulted:
        where = f"https://{_host(domain)}/..." if domain else "https://consentbot.example.org/... (placeholders)"
        typer.echo(f"note: the app's developer links point at {where}; pass {', '.join(defaulted)} "
                   f"to use your school's own pages (see {SETUP})")
    typer.echo(f"next: upload it in {UPLOAD}")


def _client_id() -> str:
    """TEAMS_CLIENT_ID from the environment or .env, or a one-line error (before the Teams SDK is loaded)."""
    from pydantic import ValidationError

    from bot.config import Settings, invalid_settings

    try:
        client_id = (Settings().teams_client_id or "").strip()
    except ValidationError as exc:  # names the settings only: a value may be a secret
        fail(f"invalid setting: {invalid_settings(exc)}")
        raise AssertionError("unreachable") from exc
    if not client_id:
        fail(f"TEAMS_CLIENT_ID is not set: set it to the Entra app registration's Application (client) id (see {SETUP})")
    elif not GUID.fullmatch(client_id):
        fail(f"TEAMS_CLIENT_ID is not a GUID: it is the Entra app registration's Application (client) id, "
             f"like 00000000-0000-0000-0000-000000000000 (see {SETUP})")
    return client_id


def _host(domain: str | None) -> str | None:
    """The host of `domain`, also when given as an address (https://host/api/messages)."""
    if domain is None:
        return None
    host = urlsplit(domain.strip() if "://" in domain else f"//{domain.strip()}").hostname
    return host or domain


def _write(out: Path, data: bytes, *, force: bool) -> None:
    try:
        with out.open("wb" if force else "xb") as file:
            file.write(data)
    except FileExistsError:
        fail(f"{out} exists: pass --force to replace it")
    except OSError as exc:
        fail(f"cannot write {out}: {exc.strerror}")
