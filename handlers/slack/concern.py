"""Raising a concern: `/concern`, the global shortcut and the message shortcut each open the
checklist's first step in a modal. Slack wants an answer within 3 seconds
(https://docs.slack.dev/interactivity/handling-user-interaction#acknowledgment_response),
so we ack first; the trigger_id stays valid for views.open for those same 3 seconds.
"""

from __future__ import annotations

from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot import screens
from bot.cases import Services
from handlers.slack.blocks import RAISE_FROM
from handlers.slack.first_contact import NOT_LINKED
from handlers.slack.modals import render_modal
from handlers.slack.parse import message_text, user_id


def register(app: AsyncApp, svc: Services) -> None:
    """The three ways in, and a fourth from a case's window: a new concern about the same child (G5)."""

    @app.command("/concern")
    async def on_command(ack: Any, body: dict[str, Any], client: AsyncWebClient, context: dict[str, Any]) -> None:
        await ack()
        await open_first_step(svc, client, body, not_linked=context.get(NOT_LINKED))

    @app.shortcut("concern_global")
    async def on_global_shortcut(ack: Any, body: dict[str, Any], client: AsyncWebClient,
                                 context: dict[str, Any]) -> None:
        await ack()
        await open_first_step(svc, client, body, not_linked=context.get(NOT_LINKED))

    @app.action(RAISE_FROM)
    async def on_raise_from(ack: Any, body: dict[str, Any], action: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        screen = await screens.first_screen(svc, slack_user_id=user_id(body),
                                            raised_from=str(action.get("value") or "")[:20] or None)
        await client.views_push(trigger_id=body["trigger_id"], view=render_modal(screen))

    @app.shortcut("concern_from_message")
    async def on_message_shortcut(ack: Any, body: dict[str, Any], client: AsyncWebClient,
                                  context: dict[str, Any]) -> None:
        await ack()
        await open_first_step(svc, client, body, quoted=message_text(body), not_linked=context.get(NOT_LINKED))


async def open_first_step(svc: Services, client: AsyncWebClient, body: dict[str, Any], quoted: str = "",
                          not_linked: str | None = None) -> None:
    """The first step, the immediate-danger question (G1), or why this person cannot raise one; a
    quoted message rides below it until the step that asks what was seen or heard. `not_linked`:
    what to tell someone unknown whose Slack email could not be read (handlers/slack/first_contact.py).
    """
    screen = await screens.first_screen(svc, quoted=quoted, slack_user_id=user_id(body))
    if not screen.submittable and not_linked:  # refused as unknown (and logged): say how to get linked
        screen = screens.note_screen(not_linked)
    await client.views_open(trigger_id=body["trigger_id"], view=render_modal(screen))
