"""The App Home tab: a DSL sees the school's open cases grouped by what they wait for; staff
see the actions assigned to them. References and step titles only, never child details.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot import cases, views
from bot.cases import CaseView, Person, Services
from bot.errors import NotFound
from handlers.slack.blocks import render_home
from handlers.slack.first_contact import NOT_LINKED

Group = tuple[str, list[tuple[CaseView, bool]]]


def register(app: AsyncApp, svc: Services) -> None:
    """Publish the Home tab whenever someone opens it."""

    @app.event("app_home_opened")
    async def on_home_opened(event: dict[str, Any], client: AsyncWebClient, context: dict[str, Any]) -> None:
        if event.get("tab", "home") != "home":
            return  # the Messages tab
        who = str(event.get("user") or "")
        await client.views_publish(user_id=who, view=await home_view(svc, who, not_linked=context.get(NOT_LINKED)))


async def home_view(svc: Services, slack_user: str, *, not_linked: str | None = None) -> dict[str, Any]:
    """The Home tab for one Slack user; `not_linked`: what to tell someone unknown whose Slack email
    could not be read (handlers/slack/first_contact.py).
    """
    try:
        me = await cases.identify(svc, slack_user_id=slack_user)
    except NotFound as refusal:
        return render_home([], intro=not_linked or str(refusal))
    mine = await views.my_cases(svc, actor=me)
    role = svc.policy.role_label(me.role)
    return render_home(group(me, mine, svc.clock()), intro=f"Signed in as {me.name} ({role}).")


def group(me: Person, mine: list[CaseView], now: datetime) -> list[Group]:
    """Deciders: awaiting decision / awaiting outcome / overdue. Staff: what waits for them."""
    def overdue(c: CaseView) -> bool:
        return c.status == "awaiting_outcome" and c.due_at is not None and c.due_at < now

    if me.is_decider:
        return [("Awaiting decision", [(c, False) for c in mine if c.status == "awaiting_decision"]),
                ("Awaiting outcome", [(c, False) for c in mine if c.status == "awaiting_outcome" and not overdue(c)]),
                ("Overdue", [(c, True) for c in mine if overdue(c)]),
                ("Not finished by the person raising it", [(c, False) for c in mine if c.status == "draft"])]
    waiting = [c for c in mine if c.answerable_by(me)]
    return [("Assigned to you", [(c, overdue(c)) for c in waiting if c.status == "awaiting_outcome"]),
            ("Concerns you have not finished raising", [(c, False) for c in waiting if c.status == "draft"])]
