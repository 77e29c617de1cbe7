"""Slack workspaces in several-workspaces mode (docs/slack-setup.md, "Several workspaces"): each
workspace installs the app through OAuth and serves one school, linked by an administrator
(`consentbot slack link TEAM_ID --school SLUG`). Nothing crosses: a request from a workspace
acts only for people of its school, and a school's DMs go with its own workspace's token.

Bot tokens are stored encrypted with the key ring, bound to their workspace.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from bot import cases
from bot.cases import Services
from bot.errors import NotFound
from bot.people import Operator, os_operator
from storage import repo
from storage import slack_installations as store
from storage.audit import append_access
from storage.models import SlackInstallation, utcnow

logger = logging.getLogger(__name__)
LINKED = "slack_workspace_linked"  # the access-log action of `consentbot slack link`


@dataclass(frozen=True)
class Workspace:
    """One installation, its bot token decrypted. `team_id` is "" for an org-wide install."""

    team_id: str
    bot_token: str = field(repr=False)
    enterprise_id: str = ""
    team_name: str = ""
    app_id: str = ""
    is_enterprise_install: bool = False
    bot_id: str = ""
    bot_user_id: str = ""
    bot_scopes: str = ""
    installed_at: datetime = field(default_factory=utcnow)
    id: int = 0
    school_id: int | None = None

    @property
    def name(self) -> str:
        """How commands and logs name the workspace: its team id (or its org's id)."""
        return self.team_id or self.enterprise_id


def _context(enterprise_id: str, team_id: str) -> str:
    # The token opens only in its own row: copied onto another workspace's row, it fails to decrypt.
    return f"slack-installation:{enterprise_id}:{team_id}"


def _workspace(svc: Services, row: SlackInstallation) -> Workspace:
    token = svc.keyring.decrypt(row.bot_token, context=_context(row.enterprise_id, row.team_id))
    return Workspace(team_id=row.team_id, bot_token=token, enterprise_id=row.enterprise_id, team_name=row.team_name,
                     app_id=row.app_id, is_enterprise_install=row.is_enterprise_install, bot_id=row.bot_id,
                     bot_user_id=row.bot_user_id, bot_scopes=row.bot_scopes, installed_at=row.installed_at,
                     id=row.id or 0, school_id=row.school_id)


async def save(svc: Services, *, workspace: Workspace) -> None:
    """Record an installation (a reinstall replaces the token and keeps the school)."""
    token = svc.keyring.encrypt(workspace.bot_token, context=_context(workspace.enterprise_id, workspace.team_id))
    values = {"enterprise_id": workspace.enterprise_id, "team_id": workspace.team_id,
              "team_name": workspace.team_name[:200], "app_id": workspace.app_id,
              "is_enterprise_install": workspace.is_enterprise_install, "bot_token": token,
              "bot_id": workspace.bot_id, "bot_user_id": workspace.bot_user_id,
              "bot_scopes": workspace.bot_scopes[:2000], "installed_at": workspace.installed_at}
    async with svc.db.transaction() as s:
        await store.save_installation(s, values)
    logger.info("slack workspace installed team=%s", workspace.name)


async def find(svc: Services, *, enterprise_id: str | None, team_id: str | None) -> Workspace | None:
    """The installation a request from this workspace is served by."""
    async with svc.db.transaction() as s:
        row = await store.find_installation(s, enterprise_id=enterprise_id or "", team_id=team_id or "")
    return _workspace(svc, row) if row is not None else None


async def by_id(svc: Services, installation_id: int) -> Workspace | None:
    """An installation by its id."""
    async with svc.db.transaction() as s:
        row = await store.installation_by_id(s, installation_id)
    return _workspace(svc, row) if row is not None else None


async def of_slack_user(svc: Services, *, slack_user_id: str) -> Workspace | None:
    """The workspace of the person's school: the one whose token reaches them."""
    async with svc.db.transaction() as s:
        row = await store.installation_of_slack_user(s, slack_user_id)
    return _workspace(svc, row) if row is not None else None


async def listing(svc: Services) -> list[tuple[Workspace, str | None]]:
    """Every installed workspace with the slug of the school it serves (None: not linked yet)."""
    async with svc.db.transaction() as s:
        rows = await store.list_installations(s)
        slugs = {school.id: school.slug for school in await repo.list_schools(s)}
    return [(_workspace(svc, row), slugs.get(row.school_id)) for row in rows]


async def link(svc: Services, *, team_id: str, school: str, by: Operator | None = None) -> Workspace:
    """Make the installed workspace `team_id` (or org id) serve the school `school` (a slug that
    must exist). A school is served by one workspace: linking it elsewhere moves it. The link is
    in the access log, written with it, naming `by` (else the OS user).
    """
    async with svc.db.transaction() as s:
        target = await repo.get_school(s, school)
        if target is None or target.id is None:
            raise NotFound(f"No school {school!r}. `consentbot school list` shows them.")
        rows = [r for r in await store.list_installations(s) if team_id in (r.team_id, r.enterprise_id)]
        if len(rows) != 1 or rows[0].id is None:
            raise NotFound(f"No installed Slack workspace {team_id!r}. Install the app from /slack/install first; "
                           "`consentbot slack workspaces` lists the installed ones.")
        before = await store.installation_of_school(s, target.id)
        await _log_link(svc, s, rows[0], before, school_id=target.id, by=by or os_operator())
        await store.link_school(s, installation_id=rows[0].id, school_id=target.id)
    logger.info("slack workspace linked team=%s school_id=%s", team_id, target.id)
    workspace = await by_id(svc, rows[0].id)
    assert workspace is not None  # noqa: S101 - just written
    return workspace


async def _log_link(svc: Services, s: AsyncSession, row: SlackInstallation, before: SlackInstallation | None, *,
                    school_id: int, by: Operator) -> None:
    # Which workspace speaks for a school decides whose requests act there and where its DMs go:
    # a relink moves all of that, so the entry keeps what it replaced (the school this workspace
    # served, and the workspace that served this school).
    moved: dict[str, int | None] = {"previous_school_id": row.school_id} if row.school_id not in (None, school_id) else {}
    if before is not None and before.id != row.id:
        moved["previous_installation_id"] = before.id
    await append_access(s, action=LINKED, at=svc.clock(), actor_id=by.staff_id, school_id=school_id,
                        detail={"team_id": row.team_id or row.enterprise_id, "installation_id": row.id, **moved,
                                **by.detail})


async def remove(svc: Services, *, enterprise_id: str | None, team_id: str | None) -> None:
    """Forget a workspace's installation (Bolt calls this when the app is uninstalled)."""
    async with svc.db.transaction() as s:
        await store.delete_installation(s, enterprise_id=enterprise_id or "", team_id=team_id or "")
    logger.info("slack workspace removed team=%s", team_id or enterprise_id)


async def admits(svc: Services, *, workspace: Workspace, slack_user_id: str | None) -> bool:
    """Whether a request from `workspace` by this Slack user may go on: only when the workspace
    serves a school, and the user is nobody the bot knows (the listeners then refuse them) or a
    member of that school. A refusal is written to the access log as the person's identification
    within the workspace's school (the same record as any unregistered person's).
    """
    if workspace.school_id is None:
        return False
    if not slack_user_id:
        return True
    async with svc.db.transaction() as s:
        home = await store.school_of_slack_user(s, slack_user_id)
    if home is None or home == workspace.school_id:
        return True
    try:
        await cases.identify(svc, slack_user_id=slack_user_id, school_id=workspace.school_id)
    except NotFound:
        return False
    return True  # pragma: no cover - the person belongs to another school: identify refuses
