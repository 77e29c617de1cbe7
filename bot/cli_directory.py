"""`consentbot staff sync-teams`: people and roles from the Entra directory."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer

from bot.cli import fail, run, staff_app
from bot.errors import BotError

if TYPE_CHECKING:
    from bot.config import Settings
    from bot.directory import DirectoryPerson, SyncReport
    from bot.ports import DeliveryError

GRAPH_SCOPE = "https://graph.microsoft.com/.default"
GRAPH_TIMEOUT = 10.0
REQUIRED = (("TEAMS_CLIENT_ID", "teams_client_id"), ("TEAMS_CLIENT_SECRET", "teams_client_secret"),
            ("TEAMS_TENANT_ID", "teams_tenant_id"), ("TEAMS_DSL_GROUP_ID", "teams_dsl_group_id"))
CREDENTIALS = "check TEAMS_CLIENT_ID, TEAMS_CLIENT_SECRET and TEAMS_TENANT_ID (docs/teams-setup.md)"
PERMISSIONS = ("grant the app registration the Microsoft Graph application permissions GroupMember.Read.All and "
               "User.ReadBasic.All, with admin consent (docs/teams-setup.md)")


class DirectoryUnavailable(BotError):
    """The directory could not be read: the message says what to fix."""


@staff_app.command("sync-teams")
def staff_sync_teams(school: str = typer.Option(..., help="School slug (must exist)"),
                     dry_run: bool = typer.Option(False, "--dry-run", help="Show the changes, make none")) -> None:
    """Add, update and remove staff from the Entra groups TEAMS_DSL_GROUP_ID and TEAMS_STAFF_GROUP_ID."""
    settings = _settings()
    report = run(lambda svc: _sync(svc, settings, school=school, dry_run=dry_run))
    for email, change in report.changes:
        typer.echo(f"{email}: {change}")
    verb = "would change" if dry_run else "changed"
    typer.echo(f"{school}: {verb} {len(report.changes)}, unchanged {report.unchanged}"
               + (" (dry run: nothing was written)" if dry_run else ""))


def _settings() -> Settings:
    from pydantic import ValidationError

    from bot.config import Settings, invalid_settings

    try:
        settings = Settings()
    except ValidationError as exc:  # names the settings only: a value may be a secret
        fail(f"invalid setting: {invalid_settings(exc)}")
    missing = [name for name, field in REQUIRED if not getattr(settings, field)]
    if missing:
        fail(f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set: the Entra app registration and "
             "the DSL group's object id are needed to read the directory (docs/teams-setup.md)")
    return settings


async def _sync(svc: Any, settings: Settings, *, school: str, dry_run: bool) -> SyncReport:
    from bot.directory import check_school, sync

    await check_school(svc, school=school)
    from handlers.teams.graph import Directory, build_graph_client  # composition root: wires Graph in
    from handlers.teams.http import EntraTokens, outbound_client

    entra = EntraTokens(outbound_client(timeout=GRAPH_TIMEOUT), login_url=settings.teams_login_url,
                        tenant_id=str(settings.teams_tenant_id), client_id=str(settings.teams_client_id),
                        client_secret=str(settings.teams_client_secret))

    async def token() -> str:
        return await entra.token(GRAPH_SCOPE)

    directory = Directory(build_graph_client(settings.graph_api_url, token, timeout=GRAPH_TIMEOUT))
    try:
        dsls = await _members(directory, "TEAMS_DSL_GROUP_ID", str(settings.teams_dsl_group_id))
        staff = (await _members(directory, "TEAMS_STAFF_GROUP_ID", settings.teams_staff_group_id)
                 if settings.teams_staff_group_id else None)
    finally:
        await directory.aclose()
        await entra.http.aclose()
    if staff is None:
        typer.echo("no TEAMS_STAFF_GROUP_ID: nobody is removed; DSLs not in the DSL group become staff")
    return await sync(svc, school=school, dsls=dsls, staff=staff, dry_run=dry_run)


async def _members(directory: Any, setting: str, group_id: str) -> list[DirectoryPerson]:
    from bot.ports import DeliveryError
    from handlers.teams.graph import waiting_out_rate_limits

    try:
        people: list[DirectoryPerson] = await waiting_out_rate_limits(lambda: directory.transitive_members(group_id))
    except DeliveryError as exc:
        raise DirectoryUnavailable(_advice(exc, setting, group_id)) from None
    typer.echo(f"reading group {setting} ({group_id}): {len(people)} {'person' if len(people) == 1 else 'people'}")
    return people


def _advice(exc: DeliveryError, setting: str, group_id: str) -> str:
    """One line: what failed (the error's code) and what to fix."""
    code = exc.code
    status = code.split(":")[1] if code.startswith("graph:") else ""
    if code.startswith("entra:"):
        return f"Entra ID refused the app's credentials ({code}): {CREDENTIALS}"
    if status == "401":
        return f"Microsoft Graph refused the app's token ({code}): {CREDENTIALS}"
    if status == "403":
        return f"Microsoft Graph may not list the members of group {group_id} ({code}): {PERMISSIONS}"
    if status in ("400", "404"):
        return (f"no group {group_id} in the directory ({code}): check {setting}, the group's Object ID in the "
                "Entra admin centre (Groups > the group > Overview)")
    return (f"could not read group {group_id} from Microsoft Graph ({code}): try again later; behind a proxy, "
            "set HTTPS_PROXY (and SSL_CERT_FILE if it inspects TLS)")
