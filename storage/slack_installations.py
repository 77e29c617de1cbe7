"""Slack installations (several workspaces mode): the SQL behind the installation store and the
choice of a workspace per school. Tokens arrive and leave encrypted; bot/workspaces.py holds the key.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from storage.models import SlackInstallation, Staff
from storage.repo import _insert

# What a reinstall replaces; the school it serves is kept.
REPLACED = ("team_name", "app_id", "is_enterprise_install", "bot_token", "bot_id", "bot_user_id", "bot_scopes",
            "installed_at")


async def save_installation(session: AsyncSession, values: dict[str, Any]) -> None:
    """Insert a workspace's installation, or replace the token and scopes of a reinstall."""
    insert = _insert(session, SlackInstallation).values(**values)
    await session.execute(insert.on_conflict_do_update(index_elements=["enterprise_id", "team_id"],
                                                       set_={name: values[name] for name in REPLACED}))


async def find_installation(session: AsyncSession, *, enterprise_id: str, team_id: str) -> SlackInstallation | None:
    """The installation of one workspace; for an org-wide install, the org's (team_id "")."""
    query = select(SlackInstallation).where(SlackInstallation.enterprise_id == enterprise_id,
                                            col(SlackInstallation.team_id).in_([team_id, ""]))
    rows = list((await session.execute(query)).scalars())
    return next((r for r in rows if r.team_id == team_id), rows[0] if rows and enterprise_id else None)


async def installation_by_id(session: AsyncSession, installation_id: int) -> SlackInstallation | None:
    """An installation by its row id (the sender's message references carry it)."""
    return await session.get(SlackInstallation, installation_id)


async def installation_of_school(session: AsyncSession, school_id: int) -> SlackInstallation | None:
    """The workspace that serves the school, if one is linked."""
    query = select(SlackInstallation).where(SlackInstallation.school_id == school_id)
    return (await session.execute(query)).scalars().first()


async def any_installed(session: AsyncSession) -> bool:
    """True once any workspace is installed through OAuth (a trust's set-up of several workspaces)."""
    return (await session.execute(select(SlackInstallation.id).limit(1))).first() is not None


async def installation_of_slack_user(session: AsyncSession, slack_user_id: str) -> SlackInstallation | None:
    """The workspace serving the school of the person with this Slack user id."""
    query = (select(SlackInstallation).join(Staff, col(Staff.school_id) == col(SlackInstallation.school_id))
             .where(Staff.slack_user_id == slack_user_id))
    return (await session.execute(query)).scalars().first()


async def school_of_slack_user(session: AsyncSession, slack_user_id: str) -> int | None:
    """The school of the person (active or not) with this Slack user id; None for nobody."""
    query = select(Staff.school_id).where(Staff.slack_user_id == slack_user_id)
    return (await session.execute(query)).scalars().first()


async def list_installations(session: AsyncSession) -> list[SlackInstallation]:
    """Every installed workspace, oldest first."""
    return list((await session.execute(select(SlackInstallation).order_by(col(SlackInstallation.id)))).scalars())


async def link_school(session: AsyncSession, *, installation_id: int, school_id: int) -> None:
    """Make the workspace serve the school (a workspace it served before no longer does)."""
    await session.execute(update(SlackInstallation).where(col(SlackInstallation.school_id) == school_id,
                                                          col(SlackInstallation.id) != installation_id)
                          .values(school_id=None))
    await session.execute(update(SlackInstallation).where(col(SlackInstallation.id) == installation_id)
                          .values(school_id=school_id))


async def delete_installation(session: AsyncSession, *, enterprise_id: str, team_id: str) -> None:
    """Forget a workspace (uninstalled, or its tokens revoked)."""
    await session.execute(delete(SlackInstallation).where(col(SlackInstallation.enterprise_id) == enterprise_id,
                                                          col(SlackInstallation.team_id) == team_id))
